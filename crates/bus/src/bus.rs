use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use telar_types::Envelope;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::dead_letter::{DeadLetter, DeadLetterFilter};
use crate::handler::Handler;
use crate::policy::RetryPolicy;
use crate::topic::TopicPattern;
use crate::{Error, Result};

/// How a consumer group consumes.
#[derive(Debug, Clone)]
pub struct SubscribeOptions {
    /// Consumers with the same group share the work; distinct groups each get every message.
    pub group: String,
    pub policy: RetryPolicy,
    /// Deliveries handled at once by this consumer (bounded memory for slow handlers).
    pub max_in_flight: usize,
    /// A delivery not settled within this time is delivered again.
    pub lease: Duration,
    /// A handler running longer is abandoned and the delivery retried.
    pub handler_timeout: Duration,
}

impl SubscribeOptions {
    pub fn group(group: impl Into<String>) -> Self {
        SubscribeOptions {
            group: group.into(),
            policy: RetryPolicy::default(),
            max_in_flight: 64,
            lease: Duration::from_secs(60),
            handler_timeout: Duration::from_secs(30),
        }
    }

    pub fn policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    pub fn max_in_flight(mut self, max: usize) -> Self {
        self.max_in_flight = max.max(1);
        self
    }

    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    pub fn handler_timeout(mut self, timeout: Duration) -> Self {
        self.handler_timeout = timeout;
        self
    }
}

/// A running consumer. `stop` lets in-flight deliveries finish and settle; dropping the handle
/// stops the consumer the same way, without waiting.
#[must_use = "dropping a Subscription stops its consumer"]
pub struct Subscription {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Subscription {
    pub fn new(stop: watch::Sender<bool>, task: JoinHandle<()>) -> Self {
        Subscription { stop, task }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// Stops without waiting for in-flight handlers: their deliveries come back after the lease
    /// (as after a crash).
    pub fn abort(self) {
        self.task.abort();
    }
}

/// One implementation of the bus (embedded SQLite, NATS JetStream, RabbitMQ).
pub trait Backend: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Durable once the future resolves. Envelopes with an id already published are ignored.
    fn publish_batch(&self, envelopes: Vec<Envelope>) -> BoxFuture<'_, Result<()>>;
    fn subscribe(
        &self,
        pattern: TopicPattern,
        options: SubscribeOptions,
        handler: Arc<dyn Handler>,
    ) -> BoxFuture<'_, Result<Subscription>>;
    fn dead_letters(&self, filter: DeadLetterFilter) -> BoxFuture<'_, Result<Vec<DeadLetter>>>;
    /// Puts matching dead letters back in their group's queue with fresh attempts.
    fn replay(&self, filter: DeadLetterFilter) -> BoxFuture<'_, Result<u64>>;
    fn purge(&self, filter: DeadLetterFilter) -> BoxFuture<'_, Result<u64>>;
    /// Releases the backend's resources; later calls fail.
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// The handle services hold. Cheap to clone.
#[derive(Clone)]
pub struct Bus {
    backend: Arc<dyn Backend>,
}

impl Bus {
    pub fn new(backend: impl Backend) -> Self {
        Bus {
            backend: Arc::new(backend),
        }
    }

    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    pub async fn publish(&self, envelope: Envelope) -> Result<()> {
        self.publish_batch(vec![envelope]).await
    }

    /// Publishes `envelopes` durably. Published while handling a request or a message, each
    /// carries that trace (`traceparent`, through a producer span).
    pub async fn publish_batch(&self, mut envelopes: Vec<Envelope>) -> Result<()> {
        if envelopes.is_empty() {
            return Ok(());
        }
        let span = crate::outbox::producer_span(&mut envelopes);
        // Counted by topic before the envelopes move: most batches are one topic.
        let mut counts: Vec<(metrics::Counter, u64)> = Vec::with_capacity(1);
        let mut last: Option<&str> = None;
        for envelope in &envelopes {
            match (last, counts.last_mut()) {
                (Some(topic), Some((_, n))) if topic == envelope.ty => *n += 1,
                _ => {
                    counts.push((crate::consume::published_counter(&envelope.ty), 1));
                    last = Some(&envelope.ty);
                }
            }
        }
        self.backend
            .publish_batch(envelopes)
            .instrument(span)
            .await?;
        for (counter, n) in counts {
            counter.increment(n);
        }
        Ok(())
    }

    pub async fn subscribe(
        &self,
        pattern: &str,
        options: SubscribeOptions,
        handler: impl Handler,
    ) -> Result<Subscription> {
        let pattern = TopicPattern::parse(pattern)?;
        if options.handler_timeout >= options.lease {
            // Otherwise a slow handler's message is handed to another consumer while it runs.
            return Err(Error::Options(format!(
                "handler_timeout ({} ms) must be shorter than lease ({} ms)",
                options.handler_timeout.as_millis(),
                options.lease.as_millis()
            )));
        }
        let valid_group = !options.group.is_empty()
            && options.group.len() <= 64
            && options
                .group
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid_group {
            // Group names become NATS durable names and RabbitMQ queue names.
            return Err(Error::Options(format!(
                "group `{}` must be 1 to 64 ASCII letters, digits, `-` or `_`",
                options.group
            )));
        }
        self.backend
            .subscribe(pattern, options, Arc::new(handler))
            .await
    }

    pub async fn dead_letters(&self, filter: DeadLetterFilter) -> Result<Vec<DeadLetter>> {
        self.backend.dead_letters(filter).await
    }

    pub async fn dead_letter(&self, id: i64) -> Result<DeadLetter> {
        self.backend
            .dead_letters(DeadLetterFilter::one(id))
            .await?
            .into_iter()
            .next()
            .ok_or(Error::DeadLetterNotFound(id))
    }

    pub async fn replay(&self, filter: DeadLetterFilter) -> Result<u64> {
        self.backend.replay(filter).await
    }

    pub async fn purge(&self, filter: DeadLetterFilter) -> Result<u64> {
        self.backend.purge(filter).await
    }

    /// Closes the backend (stop subscriptions first).
    pub async fn close(&self) {
        self.backend.close().await;
    }
}
