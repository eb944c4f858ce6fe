//! 3-step sagas whose steps only persist, next to the raw durable commit rate.

use std::time::{Duration, Instant};

use serde_json::json;
use telar_saga::{Saga, SagaEngine, Step, StepContext};
use telar_sql::{Db, SqliteConfig, query};

use crate::BoxError;

/// Engine writes per saga: create (leased), one record per step (the last completes it).
const ENGINE_WRITES: usize = 4;
/// Each step's own write.
const STEP_WRITES: usize = 3;

pub async fn run(backend: &str, quick: bool) -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let db = match backend {
        "sqlite" => Db::sqlite(&dir.path().join("sagas.db"), &SqliteConfig::default()).await?,
        "postgres" => {
            let config = telar_sql::PostgresConfig {
                url: std::env::var("TELAR_TEST_POSTGRES_URL")
                    .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
                max_connections: 16,
                ..telar_sql::PostgresConfig::default()
            };
            Db::postgres(
                &config,
                &format!("bench_{}", telar_types::new_id().simple()),
            )
            .await?
        }
        other => return Err(format!("unknown engine {other}").into()),
    };
    query("CREATE TABLE effects (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        .execute(&db)
        .await?;
    let sagas = if quick { 300 } else { 2_000 };

    // Raw: the same number of concurrent writers, one durable commit each, as fast as possible.
    let raw_commits = sagas * (ENGINE_WRITES + STEP_WRITES);
    let started = Instant::now();
    let writers: Vec<_> = (0..64)
        .map(|w| {
            let db = db.clone();
            tokio::spawn(async move {
                for n in (w..raw_commits).step_by(64) {
                    query("INSERT INTO effects (key, value) VALUES ($1, 'raw')")
                        .bind(format!("raw-{n}"))
                        .execute(&db)
                        .await?;
                }
                Ok::<_, telar_sql::Error>(())
            })
        })
        .collect();
    for writer in writers {
        writer.await??;
    }
    let raw_per_s = raw_commits as f64 / started.elapsed().as_secs_f64();

    let step = |name: &'static str| {
        let db = db.clone();
        Step::new(name, move |c: StepContext| {
            let db = db.clone();
            async move {
                query("INSERT INTO effects (key, value) VALUES ($1, 'step') ON CONFLICT (key) DO NOTHING")
                    .bind(c.idempotency_key.clone())
                    .execute(&db)
                    .await
                    .map_err(|e| telar_saga::StepError::transient(e.to_string()))?;
                Ok(json!(null))
            }
        })
    };
    let saga = Saga::new("bench")
        .step(step("one"))
        .step(step("two"))
        .step(step("three"));
    let engine = SagaEngine::open(db.clone(), "bench", [saga]).await?;
    let started = Instant::now();
    let mut launched = Vec::with_capacity(sagas);
    for n in 0..sagas {
        launched.push((
            engine
                .start_with_id("bench", &format!("b{n}"), json!({}))
                .await?,
            Instant::now(),
        ));
    }
    let mut latencies = Vec::with_capacity(sagas);
    for (id, at) in &launched {
        let done = engine.wait(id, Duration::from_secs(300)).await?;
        if done.status != telar_saga::SagaStatus::Completed {
            return Err(format!("{id} ended {:?}", done.status).into());
        }
        latencies.push(at.elapsed().as_secs_f64() * 1e3);
    }
    let per_s = sagas as f64 / started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let pick = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    let writes = ENGINE_WRITES + STEP_WRITES;
    let target = 0.5 * raw_per_s / writes as f64;
    println!(
        "saga engine={backend} sagas_per_s={per_s:.0} p50_ms={:.1} p99_ms={:.1} raw_commits_per_s={raw_per_s:.0} writes_per_saga={writes} target_sagas_per_s={target:.0}",
        pick(0.5),
        pick(0.99)
    );
    println!(
        "RESULT name=saga value={per_s:.0} reference={:.0} ratio={:.3} unit=sagas/s",
        raw_per_s / writes as f64,
        per_s / (raw_per_s / writes as f64)
    );
    Ok(())
}
