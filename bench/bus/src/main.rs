//! `telar-bench-bus MESSAGES`: for `synchronous = full` and `normal`, publishes MESSAGES 1 KiB
//! events from 256 concurrent publishers through the embedded bus to one consumer group and
//! measures publish→consume throughput and end-to-end latency; then inserts the same rows into
//! a plain SQLite table in batches of 500 at the same durability (the raw reference).
//! Prints one line per measurement: `NAME sync=S msgs_per_s=X p50_ms=Y p99_ms=Z`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use telar_bus::{Bus, EmbeddedBus, EmbeddedConfig, Outcome, SubscribeOptions};
use telar_sql::Synchronous;
use telar_types::Envelope;
use tokio::sync::Notify;

const PUBLISHERS: usize = 256;
const RAW_BATCH: usize = 500;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let messages: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    let payload = "x".repeat(1024);
    for (label, synchronous) in [("full", Synchronous::Full), ("normal", Synchronous::Normal)] {
        let (rate, p50, p99) = embedded(messages, &payload, synchronous).await?;
        println!("embedded sync={label} msgs_per_s={rate:.0} p50_ms={p50:.2} p99_ms={p99:.2}");
        let raw = raw_inserts(messages, &payload, synchronous).await?;
        println!("raw_sqlite sync={label} msgs_per_s={raw:.0}");
    }
    Ok(())
}

async fn embedded(
    messages: usize,
    payload: &str,
    synchronous: Synchronous,
) -> Result<(f64, f64, f64), Box<dyn std::error::Error>> {
    let per_publisher = messages / PUBLISHERS;
    let messages = per_publisher * PUBLISHERS;
    let dir = tempfile::tempdir()?;
    let config = EmbeddedConfig {
        path: dir.path().join("bus.db"),
        synchronous,
        ..EmbeddedConfig::default()
    };
    let bus = Bus::new(EmbeddedBus::open(&config).await?);
    let latencies: Arc<Mutex<Vec<f64>>> = Arc::new(Mutex::new(Vec::with_capacity(messages)));
    let all_done = Arc::new(Notify::new());
    let (sink, done) = (latencies.clone(), all_done.clone());
    let subscription = bus
        .subscribe(
            "bench.event",
            SubscribeOptions::group("bench").max_in_flight(256),
            move |delivery: telar_bus::Delivery| {
                let (sink, done) = (sink.clone(), done.clone());
                async move {
                    let sent = delivery
                        .envelope
                        .time
                        .map(|t| t.unix_timestamp_nanos())
                        .unwrap_or_default();
                    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
                    let finished = sink.lock().map(|mut l| {
                        l.push((now - sent) as f64 / 1e6);
                        l.len()
                    });
                    if finished.is_ok_and(|n| n >= messages) {
                        done.notify_one();
                    }
                    Outcome::Ack
                }
            },
        )
        .await?;
    let started = Instant::now();
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let bus = bus.clone();
            let payload = payload.to_owned();
            tokio::spawn(async move {
                for n in 0..per_publisher {
                    let envelope = Envelope::new(
                        "/bench",
                        "bench.event",
                        serde_json::json!({"p": payload, "n": n}),
                    )
                    .with_subject(format!("s{}", (p * per_publisher + n) % 512));
                    bus.publish(envelope).await?;
                }
                Ok::<_, telar_bus::Error>(())
            })
        })
        .collect();
    for publisher in publishers {
        publisher.await??;
    }
    tokio::time::timeout(Duration::from_secs(600), all_done.notified()).await?;
    let elapsed = started.elapsed().as_secs_f64();
    subscription.stop().await;
    let mut latencies = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    latencies.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    Ok((messages as f64 / elapsed, pick(0.5), pick(0.99)))
}

/// The reference: the same rows inserted with rusqlite (prepared statement, transactions of
/// 500) at the same durability — the fastest plain way to get them durably into SQLite.
async fn raw_inserts(
    messages: usize,
    payload: &str,
    synchronous: Synchronous,
) -> Result<f64, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("raw.db");
    let bodies: Vec<Vec<u8>> = (0..messages)
        .map(|n| {
            Envelope::new(
                "/bench",
                "bench.event",
                serde_json::json!({"p": payload, "n": n}),
            )
            .to_json()
        })
        .collect();
    let level = match synchronous {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    let rate = tokio::task::spawn_blocking(move || -> Result<f64, rusqlite::Error> {
        let mut connection = rusqlite::Connection::open(&path)?;
        connection.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))?;
        connection.pragma_update(None, "synchronous", level)?;
        connection.execute(
            "CREATE TABLE rows (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, topic TEXT NOT NULL, body BLOB NOT NULL)",
            [],
        )?;
        let started = Instant::now();
        for (index, chunk) in bodies.chunks(RAW_BATCH).enumerate() {
            let tx = connection.transaction()?;
            {
                let mut insert = tx.prepare_cached("INSERT INTO rows (id, topic, body) VALUES (?1, ?2, ?3)")?;
                for (offset, body) in chunk.iter().enumerate() {
                    insert.execute(rusqlite::params![format!("{index}-{offset}"), "bench.event", body])?;
                }
            }
            tx.commit()?;
        }
        Ok(bodies.len() as f64 / started.elapsed().as_secs_f64())
    })
    .await??;
    Ok(rate)
}
