//! The crash test's sagas: three steps that record their effects in a ledger keyed by the
//! step's idempotency key; every fifth saga is refused at its last step (and compensates), every
//! seventeenth also has a compensation that always fails (and parks). Steps pause a little so
//! kills land mid-step.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use telar_saga::{RetryPolicy, Saga, SagaEngine, Step, StepContext, StepError};
use telar_sql::{Db, Migration, SqliteConfig, query};

use crate::BoxError;

pub const LEDGER: Migration = Migration {
    version: 1,
    name: "ledger",
    sqlite: "CREATE TABLE effects (key TEXT PRIMARY KEY, saga TEXT NOT NULL, runs INTEGER NOT NULL);",
    postgres: "CREATE TABLE effects (key TEXT PRIMARY KEY, saga TEXT NOT NULL, runs BIGINT NOT NULL);",
};

/// Applies an effect once per key; `runs` counts how often it was attempted (re-runs after a
/// kill are expected: at least once).
async fn effect(db: &Db, key: &str, saga: &str) -> Result<(), StepError> {
    query(
        "INSERT INTO effects (key, saga, runs) VALUES ($1, $2, 1)
         ON CONFLICT (key) DO UPDATE SET runs = effects.runs + 1",
    )
    .bind(key)
    .bind(saga)
    .execute(db)
    .await
    .map(|_| ())
    .map_err(|e| StepError::transient(e.to_string()))
}

fn number(saga_id: &str) -> u64 {
    saga_id.trim_start_matches('s').parse().unwrap_or(0)
}

async fn pause() {
    tokio::time::sleep(Duration::from_millis(rand::random_range(0..4))).await;
}

fn step(db: &Db, name: &'static str, last: bool) -> Step {
    let (act, undo) = (db.clone(), db.clone());
    Step::new(name, move |c: StepContext| {
        let db = act.clone();
        async move {
            pause().await;
            if last && number(&c.saga_id).is_multiple_of(5) {
                return Err(StepError::permanent("refused by the other operator"));
            }
            effect(&db, &c.idempotency_key, &c.saga_id).await?;
            Ok(json!(name))
        }
    })
    .compensate(move |c: StepContext| {
        let db = undo.clone();
        async move {
            pause().await;
            if number(&c.saga_id).is_multiple_of(17) && c.step == "reserve" {
                return Err(StepError::transient("registry unreachable"));
            }
            effect(&db, &format!("undo:{}", c.idempotency_key), &c.saga_id).await
        }
    })
    .retry(RetryPolicy::attempts(3).backoff(Duration::from_millis(1), Duration::from_millis(10)))
    .compensation_retry(
        RetryPolicy::attempts(3).backoff(Duration::from_millis(1), Duration::from_millis(10)),
    )
    .timeout(Duration::from_secs(5))
}

pub fn saga(db: &Db) -> Saga {
    Saga::new("transfer")
        .step(step(db, "reserve", false))
        .step(step(db, "notify-hub", false))
        .step(step(db, "confirm", true))
}

pub async fn open(path: &Path) -> Result<Db, BoxError> {
    let db = Db::sqlite(path, &SqliteConfig::default()).await?;
    db.migrate(&[LEDGER]).await?;
    Ok(db)
}

/// Starts (idempotently) every saga, resumes unfinished ones, and waits for all to settle.
pub async fn worker(path: &Path, sagas: usize) -> Result<(), BoxError> {
    let db = open(path).await?;
    let engine = SagaEngine::open(db.clone(), "crash-worker", [saga(&db)]).await?;
    engine.recover().await?;
    for n in 0..sagas {
        engine
            .start_with_id("transfer", &format!("s{n}"), json!({"n": n}))
            .await?;
    }
    for n in 0..sagas {
        engine
            .wait(&format!("s{n}"), Duration::from_secs(120))
            .await?;
    }
    println!("done");
    Ok(())
}
