//! `telar-bench-store [sqlite|postgres] [--quick]`: the event store next to raw SQL on the same
//! database and durability, in one run:
//!
//! - append, one event per commit (with its version check) vs a plain INSERT per commit;
//! - append in batches of 100 vs a 100-row INSERT per commit;
//! - `read_all` in pages of 1 000 (decoded) vs the same SELECT with the columns fetched raw;
//! - aggregate load at 10, 1 000 and 100 000 events (10 000 on --quick), by replay and from a
//!   snapshot taken every 100 events.
//!
//! Prints one line per measurement, then `RESULT` for single appends.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::json;
use telar_sql::{Db, SqliteConfig, generated_query, placeholders, query};
use telar_store::{Aggregate, EventStore, ExpectedVersion, Metadata, NewEvent, Repository};
use telar_types::{Classify, ErrorCode};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let engine = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or("sqlite".into());
    let dir = tempfile::tempdir()?;
    let db = match engine.as_str() {
        "sqlite" => Db::sqlite(&dir.path().join("store.db"), &SqliteConfig::default()).await?,
        "postgres" => {
            let config = telar_sql::PostgresConfig {
                url: std::env::var("TELAR_TEST_POSTGRES_URL")
                    .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
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
    // The same table as the store's (`es_events`), for the raw reference.
    let raw_table = match db.dialect() {
        telar_sql::Dialect::Sqlite => {
            "CREATE TABLE raw_events (position INTEGER PRIMARY KEY AUTOINCREMENT, stream TEXT NOT NULL, version INTEGER NOT NULL, event_id TEXT NOT NULL UNIQUE, type TEXT NOT NULL, type_version INTEGER NOT NULL, data TEXT NOT NULL, metadata TEXT NOT NULL, recorded_at TEXT NOT NULL, UNIQUE (stream, version))"
        }
        telar_sql::Dialect::Postgres => {
            "CREATE TABLE raw_events (position BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, stream TEXT NOT NULL, version BIGINT NOT NULL, event_id TEXT NOT NULL UNIQUE, type TEXT NOT NULL, type_version BIGINT NOT NULL, data TEXT NOT NULL, metadata TEXT NOT NULL, recorded_at TEXT NOT NULL, UNIQUE (stream, version))"
        }
    };
    query(raw_table).execute(&db).await?;
    let store = EventStore::open(db.clone()).await?;
    let singles = if quick { 1_000 } else { 5_000 };
    let batches = if quick { 50 } else { 300 };
    let long = if quick { 10_000 } else { 100_000 };

    // One event per commit.
    let started = Instant::now();
    for n in 0..singles {
        store
            .append(
                &format!("single-{}", n % 100),
                ExpectedVersion::Any,
                vec![event(n)],
            )
            .await?;
    }
    let ours = singles as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    for n in 0..singles {
        raw_insert(&db, &format!("single-{}", n % 100), n as i64, &[event(n)]).await?;
    }
    let raw = singles as f64 / started.elapsed().as_secs_f64();
    println!(
        "append_single engine={engine} events_per_s={ours:.0} raw_per_s={raw:.0} ratio={:.3}",
        ours / raw
    );
    let (single_ours, single_raw) = (ours, raw);

    // Batches of 100.
    let started = Instant::now();
    for b in 0..batches {
        let events = (0..100).map(|n| event(b * 100 + n)).collect();
        store
            .append(&format!("batch-{b}"), ExpectedVersion::NoStream, events)
            .await?;
    }
    let ours = (batches * 100) as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    for b in 0..batches {
        let events: Vec<NewEvent> = (0..100).map(|n| event(b * 100 + n)).collect();
        raw_insert(&db, &format!("batch-{b}"), 0, &events).await?;
    }
    let raw = (batches * 100) as f64 / started.elapsed().as_secs_f64();
    println!(
        "append_batch100 engine={engine} events_per_s={ours:.0} raw_per_s={raw:.0} ratio={:.3}",
        ours / raw
    );

    // The long aggregate, written in batches, then loaded.
    let mut version = 0;
    while version < long {
        let events = (0..500.min(long - version))
            .map(|n| counted(version + n))
            .collect::<Vec<_>>();
        let appended = store
            .append(
                "counter-long",
                ExpectedVersion::Exact(version as i64),
                events,
            )
            .await?;
        version = appended.version as usize;
    }
    for n in [10usize, 1_000] {
        let events = (0..n).map(counted).collect();
        store
            .append(&format!("counter-n{n}"), ExpectedVersion::NoStream, events)
            .await?;
    }
    for (id, length) in [("n10", 10), ("n1000", 1_000), ("long", long)] {
        let plain = Repository::<Counter>::new(store.clone());
        let replay_ms = timed(|| async { plain.load(id).await.map(|_| ()) }).await?;
        let snapshots = Repository::<Counter>::new(store.clone()).with_snapshots(100, 1);
        // One command through the snapshotting repository takes the snapshot.
        snapshots.execute(id, Add(1), Metadata::default()).await?;
        let snapshot_ms = timed(|| async { snapshots.load(id).await.map(|_| ()) }).await?;
        println!("load events={length} replay_ms={replay_ms:.2} snapshot_ms={snapshot_ms:.2}");
    }

    // read_all, pages of 1 000.
    let started = Instant::now();
    let (mut position, mut read) = (0, 0usize);
    loop {
        let page = store.read_all(position, 1_000).await?;
        let Some(last) = page.last() else { break };
        position = last.position;
        read += page.len();
    }
    let ours = read as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let (mut position, mut raw_read) = (0i64, 0usize);
    loop {
        let rows = query("SELECT position, stream, version, event_id, type, type_version, data, metadata, recorded_at FROM es_events WHERE position > $1 ORDER BY position LIMIT 1000")
            .bind(position)
            .fetch_all(&db)
            .await?;
        let Some(last) = rows.last() else { break };
        position = last.get("position")?;
        raw_read += rows.len();
    }
    let raw = raw_read as f64 / started.elapsed().as_secs_f64();
    println!(
        "read_all engine={engine} events_per_s={ours:.0} raw_per_s={raw:.0} ratio={:.3}",
        ours / raw
    );
    println!(
        "RESULT name=store value={single_ours:.0} reference={single_raw:.0} ratio={:.3} unit=appends/s",
        single_ours / single_raw
    );
    Ok(())
}

fn event(n: usize) -> NewEvent {
    NewEvent::new(
        "DocumentUploaded",
        json!({"document": format!("doc-{n}"), "size": 1024, "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}),
    )
}

fn counted(n: usize) -> NewEvent {
    NewEvent::new("Added", json!(n % 7))
}

/// The same row the store writes, without the version check: one transaction per call.
async fn raw_insert(
    db: &Db,
    stream: &str,
    first_version: i64,
    events: &[NewEvent],
) -> Result<(), BoxError> {
    let mut tx = db.begin().await?;
    let sql = format!(
        "INSERT INTO raw_events (stream, version, event_id, type, type_version, data, metadata, recorded_at) VALUES {}",
        placeholders(events.len(), 8, 1)
    );
    let mut insert = generated_query(sql);
    for (i, event) in events.iter().enumerate() {
        insert = insert
            .bind(stream)
            .bind(first_version * 1_000 + i as i64 + 1)
            .bind(&event.id)
            .bind(&event.ty)
            .bind(1i64)
            .bind(event.data.to_string())
            .bind("{}")
            .bind("2026-11-23T00:00:00Z");
    }
    insert.execute(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Median of 5 runs, in milliseconds.
async fn timed<F, Fut>(run: F) -> Result<f64, BoxError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), telar_store::Error>>,
{
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        run().await?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[2])
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Counter {
    total: u64,
}

struct Add(u64);

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
enum CounterEvent {
    Added(u64),
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

impl Classify for Never {
    fn code(&self) -> ErrorCode {
        ErrorCode::Internal
    }
}

impl Aggregate for Counter {
    const KIND: &'static str = "counter";
    type Command = Add;
    type Event = CounterEvent;
    type Error = Never;

    fn handle(&self, command: Add) -> Result<Vec<CounterEvent>, Never> {
        Ok(vec![CounterEvent::Added(command.0)])
    }

    fn apply(&mut self, event: &CounterEvent) {
        let CounterEvent::Added(n) = event;
        self.total += n;
    }
}
