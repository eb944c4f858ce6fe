use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde_json::json;
use telar_bus::{
    Backend, Bus, DeadLetter, DeadLetterFilter, EmbeddedBus, EmbeddedConfig, Handler, NatsBus,
    NatsConfig, RabbitBus, RabbitConfig, Result, SubscribeOptions, Subscription, TopicPattern,
};
use telar_types::Envelope;

/// A bus under test, and what keeps its storage alive.
pub struct TestBus {
    pub bus: Bus,
    /// The embedded log file, for tests that damage it on purpose.
    pub path: Option<std::path::PathBuf>,
    pub reopen: Box<dyn Fn() -> BoxFuture<'static, Bus> + Send + Sync>,
    /// Removes what the test left on a shared server (streams, queues).
    pub cleanup: Option<Cleanup>,
    _dir: Option<Arc<tempfile::TempDir>>,
}

pub type Cleanup = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

pub async fn embedded() -> TestBus {
    embedded_with(|_| {}).await
}

/// An embedded bus with settings changed by `adjust` (the path is set by the helper).
pub async fn embedded_with(adjust: impl FnOnce(&mut EmbeddedConfig)) -> TestBus {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let mut config = EmbeddedConfig {
        path: dir.path().join("bus.db"),
        ..EmbeddedConfig::default()
    };
    adjust(&mut config);
    let bus = Bus::new(EmbeddedBus::open(&config).await.expect("open bus"));
    let keep = dir.clone();
    TestBus {
        bus,
        path: Some(config.path.clone()),
        reopen: Box::new(move || {
            let config = config.clone();
            let _keep = keep.clone();
            Box::pin(async move { Bus::new(EmbeddedBus::open(&config).await.expect("reopen bus")) })
        }),
        cleanup: None,
        _dir: Some(dir),
    }
}

/// A NATS JetStream bus on the running server (`TELAR_TEST_NATS_URL`, default 127.0.0.1:4222), on
/// a stream and subject prefix of its own; dead letters in a PostgreSQL schema of its own.
pub async fn nats() -> TestBus {
    let name = telar_testkit::unique_name("t");
    let config = NatsConfig {
        url: std::env::var("TELAR_TEST_NATS_URL")
            .unwrap_or_else(|_| "nats://127.0.0.1:4222".into()),
        stream: name.to_uppercase(),
        subject_prefix: name.clone(),
        max_age_secs: 600,
        ..NatsConfig::default()
    };
    let store = telar_testkit::postgres_db("bus_nats").await;
    let nats = NatsBus::open(&config, store.clone())
        .await
        .expect("open NATS bus");
    let bus = Bus::new(nats.clone());
    TestBus {
        bus,
        cleanup: Some(Box::new(move || {
            Box::pin(async move {
                let _ = nats.remove_topology().await;
            })
        })),
        path: None,
        reopen: Box::new(move || {
            let (config, store) = (config.clone(), store.clone());
            Box::pin(async move {
                Bus::new(
                    NatsBus::open(&config, store)
                        .await
                        .expect("reopen NATS bus"),
                )
            })
        }),
        _dir: None,
    }
}

/// A RabbitMQ bus on the running server (`TELAR_TEST_RABBITMQ_URL`, default guest@127.0.0.1:5672), on
/// an exchange and queues of its own; dead letters in a PostgreSQL schema of its own.
pub async fn rabbitmq() -> TestBus {
    let name = telar_testkit::unique_name("t");
    let config = RabbitConfig {
        url: std::env::var("TELAR_TEST_RABBITMQ_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into()),
        exchange: format!("{name}.events"),
        queue_prefix: name,
        ..RabbitConfig::default()
    };
    let store = telar_testkit::postgres_db("bus_rabbit").await;
    let bus = Bus::new(
        RabbitBus::open(&config, store.clone())
            .await
            .expect("open RabbitMQ bus"),
    );
    let (cleanup_config, cleanup_store) = (config.clone(), store.clone());
    TestBus {
        bus,
        path: None,
        reopen: Box::new(move || {
            let (config, store) = (config.clone(), store.clone());
            Box::pin(async move {
                Bus::new(
                    RabbitBus::open(&config, store)
                        .await
                        .expect("reopen RabbitMQ bus"),
                )
            })
        }),
        cleanup: Some(Box::new(move || {
            // On a connection of its own: the test may have closed the bus.
            Box::pin(async move {
                if let Ok(rabbit) = RabbitBus::open(&cleanup_config, cleanup_store).await {
                    let _ = rabbit.remove_topology().await;
                    Backend::close(&rabbit).await;
                }
            })
        })),
        _dir: None,
    }
}

pub fn event(topic: &str, subject: &str, n: u64) -> Envelope {
    Envelope::new("/test", topic, json!({"n": n})).with_subject(subject)
}

pub fn n_of(envelope: &Envelope) -> u64 {
    envelope
        .data
        .as_ref()
        .and_then(|d| d["n"].as_u64())
        .unwrap_or(u64::MAX)
}

pub fn options(group: &str) -> SubscribeOptions {
    SubscribeOptions::group(group)
}

/// Polls `check` until it holds or 15 s pass (for effects that land after an acknowledgement).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub async fn dead_letters(bus: &Bus, group: &str) -> Vec<DeadLetter> {
    bus.dead_letters(DeadLetterFilter::group(group))
        .await
        .expect("list dead letters")
}

/// A backend decorator whose publishes fail while `down` is set: a broker outage.
pub struct Flaky {
    pub inner: Bus,
    pub down: Arc<AtomicBool>,
    /// Publishes refused so far.
    pub refused: Arc<std::sync::atomic::AtomicUsize>,
}

/// The next value from a channel, or a failed test after 15 s (never a hung suite).
pub async fn next<T>(receiver: &mut tokio::sync::mpsc::UnboundedReceiver<T>) -> Option<T> {
    match tokio::time::timeout(Duration::from_secs(15), receiver.recv()).await {
        Ok(value) => value,
        Err(_) => panic!("nothing arrived within 15 s"),
    }
}

impl Backend for Flaky {
    fn name(&self) -> &'static str {
        "flaky"
    }
    fn publish_batch(&self, envelopes: Vec<Envelope>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            if self.down.load(Ordering::SeqCst) {
                self.refused.fetch_add(1, Ordering::SeqCst);
                return Err(telar_bus::Error::Closed);
            }
            self.inner.publish_batch(envelopes).await
        })
    }
    fn subscribe(
        &self,
        pattern: TopicPattern,
        options: SubscribeOptions,
        handler: Arc<dyn Handler>,
    ) -> BoxFuture<'_, Result<Subscription>> {
        Box::pin(async move {
            let handler = move |delivery| handler.handle(delivery);
            self.inner
                .subscribe(pattern.as_str(), options, handler)
                .await
        })
    }
    fn dead_letters(&self, filter: DeadLetterFilter) -> BoxFuture<'_, Result<Vec<DeadLetter>>> {
        Box::pin(self.inner.dead_letters(filter))
    }
    fn replay(&self, filter: DeadLetterFilter) -> BoxFuture<'_, Result<u64>> {
        Box::pin(self.inner.replay(filter))
    }
    fn purge(&self, filter: DeadLetterFilter) -> BoxFuture<'_, Result<u64>> {
        Box::pin(self.inner.purge(filter))
    }
}

/// Subscribes to `pattern` with `options`, acknowledging every delivery and reporting each
/// envelope's `n` on the returned channel.
pub async fn ack_all(
    bus: &Bus,
    pattern: &str,
    options: SubscribeOptions,
) -> (Subscription, tokio::sync::mpsc::UnboundedReceiver<u64>) {
    let (seen, received) = tokio::sync::mpsc::unbounded_channel();
    let sub = bus
        .subscribe(pattern, options, move |d: telar_bus::Delivery| {
            let seen = seen.clone();
            async move {
                let _ = seen.send(n_of(&d.envelope));
                telar_bus::Outcome::Ack
            }
        })
        .await
        .expect("subscribe");
    (sub, received)
}
