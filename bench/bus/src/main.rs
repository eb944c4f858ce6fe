//! `telar-bench-bus BACKEND MESSAGES`: publishes MESSAGES 1 KiB events from 256 concurrent
//! publishers through the bus to one consumer group and measures publish→consume throughput
//! and end-to-end latency, then the raw reference in the same run:
//!
//! - `embedded`: for `synchronous = full` and `normal`, against the same rows inserted into a
//!   plain SQLite table in batches of 500 at the same durability. The bus is measured twice:
//!   `embedded` publishes as the reference inserts and as the outbox relay publishes — batches
//!   (`publish_batch` of 256, four relays at once); `embedded_single` has 256 publishers each
//!   awaiting every single `publish` (a service publishing straight from its requests);
//! - `nats`: against bare async-nats JetStream (publish awaiting each ack, pull consumer, ack);
//! - `rabbitmq`: against bare lapin (publisher confirms, quorum queue, prefetch 256, ack).
//!
//! Prints one line per measurement: `NAME sync=S msgs_per_s=X p50_ms=Y p99_ms=Z`.

mod raw_nats;
mod raw_rabbit;
mod raw_sqlite;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use telar_bus::{
    Bus, EmbeddedBus, EmbeddedConfig, NatsBus, NatsConfig, Outcome, RabbitBus, RabbitConfig,
    SubscribeOptions,
};
use telar_sql::Synchronous;
use telar_types::Envelope;
use tokio::sync::Notify;

/// The allocator the `telar` binary runs the bus with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PUBLISHERS: usize = 256;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let backend = args.next().unwrap_or_else(|| "embedded".into());
    let messages: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(20_000);
    let messages = messages / PUBLISHERS * PUBLISHERS;
    let payload = "x".repeat(1024);
    match backend.as_str() {
        "embedded" => {
            // This machine's speed drifts between seconds: the bus and the reference run
            // alternately, three rounds each (one with --quick), and the medians are compared.
            let rounds = if messages < 50_000 { 1 } else { 3 };
            for (label, synchronous) in
                [("full", Synchronous::Full), ("normal", Synchronous::Normal)]
            {
                let mut batched = Vec::new();
                let mut single = Vec::new();
                let mut raws = Vec::new();
                for _ in 0..rounds {
                    for (publishing, results) in [
                        (Publishing::Batched, &mut batched),
                        (Publishing::Single, &mut single),
                    ] {
                        let dir = tempfile::tempdir()?;
                        let config = EmbeddedConfig {
                            path: dir.path().join("bus.db"),
                            synchronous,
                            ..EmbeddedConfig::default()
                        };
                        let bus = Bus::new(EmbeddedBus::open(&config).await?);
                        results.push(through_bus_with(&bus, messages, &payload, publishing).await?);
                        bus.close().await;
                    }
                    raws.push(raw_sqlite::raw_inserts(messages, &payload, synchronous).await?);
                }
                raws.sort_by(f64::total_cmp);
                let raw = raws[raws.len() / 2];
                for (name, mut results) in [("embedded", batched), ("embedded_single", single)] {
                    results.sort_by(|a, b| a.0.total_cmp(&b.0));
                    let (rate, p50, p99) = results[results.len() / 2];
                    println!(
                        "{name} sync={label} msgs_per_s={rate:.0} p50_ms={p50:.2} p99_ms={p99:.2}"
                    );
                }
                println!("raw_sqlite sync={label} msgs_per_s={raw:.0}");
            }
        }
        "nats" => {
            let url =
                std::env::var("TELAR_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
            let name = format!("bench{}", telar_types::new_id().simple());
            let config = NatsConfig {
                url: url.clone(),
                stream: name.to_uppercase(),
                subject_prefix: name.clone(),
                max_age_secs: 600,
                ..NatsConfig::default()
            };
            let dir = tempfile::tempdir()?;
            let nats = NatsBus::open(&config, dead_letter_db(dir.path()).await?).await?;
            let (rate, p50, p99) = through_bus(&Bus::new(nats.clone()), messages, &payload).await?;
            nats.remove_topology().await?;
            println!("nats sync=file msgs_per_s={rate:.0} p50_ms={p50:.2} p99_ms={p99:.2}");
            let (rate, p50, p99) = raw_nats::run(&url, messages, PUBLISHERS, &payload).await?;
            println!("raw_nats sync=file msgs_per_s={rate:.0} p50_ms={p50:.2} p99_ms={p99:.2}");
        }
        "rabbitmq" => {
            let url = std::env::var("TELAR_AMQP_URL")
                .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
            let name = format!("bench{}", telar_types::new_id().simple());
            let config = RabbitConfig {
                url: url.clone(),
                exchange: format!("{name}.events"),
                queue_prefix: name,
                ..RabbitConfig::default()
            };
            let dir = tempfile::tempdir()?;
            let rabbit = RabbitBus::open(&config, dead_letter_db(dir.path()).await?).await?;
            let (rate, p50, p99) =
                through_bus(&Bus::new(rabbit.clone()), messages, &payload).await?;
            rabbit.remove_topology().await?;
            println!("rabbitmq sync=quorum msgs_per_s={rate:.0} p50_ms={p50:.2} p99_ms={p99:.2}");
            let (rate, p50, p99) = raw_rabbit::run(&url, messages, PUBLISHERS, &payload).await?;
            println!(
                "raw_rabbitmq sync=quorum msgs_per_s={rate:.0} p50_ms={p50:.2} p99_ms={p99:.2}"
            );
        }
        other => return Err(format!("unknown backend {other}: embedded, nats or rabbitmq").into()),
    }
    Ok(())
}

async fn dead_letter_db(dir: &std::path::Path) -> Result<telar_sql::Db, BoxError> {
    Ok(telar_sql::Db::sqlite(&dir.join("dead.db"), &telar_sql::SqliteConfig::default()).await?)
}

/// Milliseconds since the envelope's `time` (end-to-end latency).
pub fn age_ms(envelope: &Envelope) -> f64 {
    let sent = envelope
        .time
        .map(|t| t.unix_timestamp_nanos())
        .unwrap_or_default();
    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    (now - sent) as f64 / 1e6
}

pub fn bench_envelope(payload: &str, publisher: usize, per_publisher: usize, n: usize) -> Envelope {
    Envelope::new(
        "/bench",
        "bench.event",
        serde_json::json!({"p": payload, "n": n}),
    )
    .with_subject(format!("s{}", (publisher * per_publisher + n) % 512))
}

/// Throughput, p50 and p99 from the latencies of `messages` deliveries over `elapsed`.
pub fn summarize(messages: usize, elapsed: Duration, mut latencies: Vec<f64>) -> (f64, f64, f64) {
    latencies.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    (
        messages as f64 / elapsed.as_secs_f64(),
        pick(0.5),
        pick(0.99),
    )
}

/// How the harness publishes.
#[derive(Clone, Copy)]
pub enum Publishing {
    /// `PUBLISHERS` tasks, each awaiting every `publish` (a service publishing from requests).
    Single,
    /// `RELAYS` tasks, each awaiting `publish_batch` of `RELAY_BATCH` envelopes: what the
    /// outbox relay does, and what the raw reference does (batched inserts).
    Batched,
}

/// Concurrent batch publishers (as several services' outbox relays) and their batch size (the
/// relay's).
const RELAYS: usize = 4;
const RELAY_BATCH: usize = 256;

async fn through_bus(
    bus: &Bus,
    messages: usize,
    payload: &str,
) -> Result<(f64, f64, f64), BoxError> {
    through_bus_with(bus, messages, payload, Publishing::Single).await
}

async fn through_bus_with(
    bus: &Bus,
    messages: usize,
    payload: &str,
    publishing: Publishing,
) -> Result<(f64, f64, f64), BoxError> {
    let per_publisher = messages / PUBLISHERS;
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
                    let age = age_ms(&delivery.envelope);
                    let finished = sink.lock().map(|mut l| {
                        l.push(age);
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
    let cpu_before = cpu_by_thread();
    let started = Instant::now();
    let publishers: Vec<_> = match publishing {
        Publishing::Single => (0..PUBLISHERS)
            .map(|p| {
                let bus = bus.clone();
                let payload = payload.to_owned();
                tokio::spawn(async move {
                    for n in 0..per_publisher {
                        bus.publish(bench_envelope(&payload, p, per_publisher, n))
                            .await?;
                    }
                    Ok::<_, telar_bus::Error>(())
                })
            })
            .collect(),
        Publishing::Batched => (0..RELAYS)
            .map(|r| {
                let bus = bus.clone();
                let payload = payload.to_owned();
                let per_relay = messages / RELAYS;
                tokio::spawn(async move {
                    let mut n = 0;
                    while n < per_relay {
                        let batch = (n..(n + RELAY_BATCH).min(per_relay))
                            .map(|i| bench_envelope(&payload, r, per_relay, i))
                            .collect();
                        bus.publish_batch(batch).await?;
                        n += RELAY_BATCH;
                    }
                    Ok::<_, telar_bus::Error>(())
                })
            })
            .collect(),
    };
    for publisher in publishers {
        publisher.await??;
    }
    // Where the time goes: how long the publishers took, against the whole publish→consume.
    let published = started.elapsed();
    tokio::time::timeout(Duration::from_secs(600), all_done.notified()).await?;
    eprintln!(
        "[bench] publishers done after {:.2} s ({:.0} msgs/s), last delivery after {:.2} s",
        published.as_secs_f64(),
        messages as f64 / published.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    let elapsed = started.elapsed();
    eprintln!("[bench] cpu seconds by thread: {}", cpu_since(&cpu_before));
    subscription.stop().await;
    let latencies = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    Ok(summarize(messages, elapsed, latencies))
}

/// CPU ticks (user + system, 1/100 s) of this process's threads, summed by thread name.
pub fn cpu_by_thread() -> std::collections::BTreeMap<String, u64> {
    let mut totals = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return totals;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ... field 14 utime, 15 stime (counted from the closing parenthesis).
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_owned();
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        *totals.entry(name).or_default() += ticks(11) + ticks(12);
    }
    totals
}

/// "name=seconds" for every thread name that used CPU since `before` (threads that ended are
/// not counted: the bus's threads live as long as the bus).
pub fn cpu_since(before: &std::collections::BTreeMap<String, u64>) -> String {
    cpu_by_thread()
        .into_iter()
        .filter_map(|(name, ticks)| {
            let used = ticks.saturating_sub(before.get(&name).copied().unwrap_or(0));
            (used > 0).then(|| format!("{name}={:.2}", used as f64 / 100.0))
        })
        .collect::<Vec<_>>()
        .join(" ")
}
