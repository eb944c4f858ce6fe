//! The NATS JetStream backend.
//!
//! One stream (`TELAR` by default) holds every topic under `<prefix>.events.<topic>`, with
//! JetStream's duplicate window keyed by the envelope id (`Nats-Msg-Id`). Each consumer group is
//! a durable pull consumer filtered by its pattern, with `ack_wait` = the lease; a second durable
//! (`<group>-replay`) reads the group's replayed dead letters from `<prefix>.replay.<group>`.
//! Retries are naks with a delay; the delivery count is the attempt; dead letters go to the
//! SQL dead-letter store. The client reconnects by itself after the server restarts.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer, message::PublishMessage, stream};
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use telar_sql::Db;
use telar_types::Envelope;

use crate::broker::store::DeadLetterStore;
use crate::broker::{self, Acker, Feeds, Incoming};
use crate::bus::{Backend, SubscribeOptions, Subscription};
use crate::dead_letter::{DeadLetter, DeadLetterFilter};
use crate::handler::Handler;
use crate::topic::TopicPattern;
use crate::{Error, Result};

/// NATS JetStream settings (`[bus.nats]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    pub url: String,
    /// The JetStream stream holding every topic.
    pub stream: String,
    /// Subjects are `<prefix>.events.<topic>` and `<prefix>.replay.<group>`.
    pub subject_prefix: String,
    /// A re-published envelope id within this window is dropped by the server.
    pub duplicate_window_secs: u64,
    /// How long the stream keeps a message.
    pub max_age_secs: u64,
    pub connect_timeout_ms: u64,
    /// Publish acknowledgements and API calls.
    pub request_timeout_ms: u64,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: "nats://127.0.0.1:4222".into(),
            stream: "TELAR".into(),
            subject_prefix: "telar".into(),
            duplicate_window_secs: 120,
            max_age_secs: 7 * 24 * 3600,
            connect_timeout_ms: 5_000,
            request_timeout_ms: 5_000,
        }
    }
}

/// The NATS JetStream bus. Wrap it in [`crate::Bus`].
#[derive(Clone)]
pub struct NatsBus {
    inner: Arc<Inner>,
}

struct Inner {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    stream: stream::Stream,
    prefix: String,
    store: DeadLetterStore,
    feeds: Feeds,
}

impl NatsBus {
    /// Connects, and creates the stream or checks that the existing one carries our subjects.
    /// Dead letters go to `dead_letters` (the service's database, or a SQLite file).
    pub async fn open(config: &NatsConfig, dead_letters: Db) -> Result<Self> {
        let timeout = Duration::from_millis(config.request_timeout_ms);
        let client = async_nats::ConnectOptions::new()
            .name("telar-bus")
            .connection_timeout(Duration::from_millis(config.connect_timeout_ms))
            .request_timeout(Some(timeout))
            .connect(config.url.as_str())
            .await
            .map_err(|e| Error::Broker(format!("cannot connect to NATS at {}: {e}", config.url)))?;
        let mut jetstream = jetstream::new(client.clone());
        jetstream.set_timeout(timeout);
        let prefix = config.subject_prefix.clone();
        let subjects = vec![format!("{prefix}.events.>"), format!("{prefix}.replay.>")];
        let mut stream = jetstream
            .get_or_create_stream(stream::Config {
                name: config.stream.clone(),
                subjects: subjects.clone(),
                storage: stream::StorageType::File,
                retention: stream::RetentionPolicy::Limits,
                max_age: Duration::from_secs(config.max_age_secs),
                duplicate_window: Duration::from_secs(config.duplicate_window_secs),
                ..Default::default()
            })
            .await
            .map_err(Error::broker)?;
        let existing = stream
            .info()
            .await
            .map_err(Error::broker)?
            .config
            .subjects
            .clone();
        if let Some(missing) = subjects.iter().find(|s| !existing.contains(s)) {
            return Err(Error::Broker(format!(
                "stream {} exists without subject {missing} (it has {existing:?})",
                config.stream
            )));
        }
        let store = DeadLetterStore::open(dead_letters).await?;
        Ok(NatsBus {
            inner: Arc::new(Inner {
                client,
                jetstream,
                stream,
                prefix,
                store,
                feeds: Feeds::default(),
            }),
        })
    }

    /// Deletes the stream and with it every message and consumer (tests and teardown).
    pub async fn remove_topology(&self) -> Result<()> {
        let name = self.inner.stream.cached_info().config.name.clone();
        self.inner
            .jetstream
            .delete_stream(&name)
            .await
            .map_err(Error::broker)?;
        Ok(())
    }

    /// Publishes every envelope, then waits for every acknowledgement (pipelined).
    async fn publish_all(&self, envelopes: Vec<Envelope>) -> Result<()> {
        let mut acks = Vec::with_capacity(envelopes.len());
        for envelope in &envelopes {
            let subject = events_subject(&self.inner.prefix, &envelope.ty)?;
            let payload = envelope.to_json();
            let message = PublishMessage::build()
                .payload(payload.into())
                .message_id(&envelope.id);
            acks.push(
                self.inner
                    .jetstream
                    .send_publish(subject, message)
                    .await
                    .map_err(Error::broker)?,
            );
        }
        for ack in acks {
            ack.await.map_err(Error::broker)?;
        }
        Ok(())
    }

    /// Creates the group's durable consumer, or checks the existing one reads the same pattern
    /// (and updates its lease).
    async fn consumer(
        &self,
        name: &str,
        filter: String,
        options: &SubscribeOptions,
        deliver: consumer::DeliverPolicy,
    ) -> Result<consumer::PullConsumer> {
        if let Ok(info) = self.inner.stream.consumer_info(name).await
            && info.config.filter_subject != filter
        {
            return Err(Error::GroupPattern {
                group: options.group.clone(),
                existing: info.config.filter_subject.clone(),
                requested: filter,
            });
        }
        self.inner
            .stream
            .create_consumer(consumer::pull::Config {
                durable_name: Some(name.to_owned()),
                filter_subject: filter,
                deliver_policy: deliver,
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: options.lease,
                // Attempts are counted by the driver, which dead-letters past the policy.
                max_deliver: -1,
                max_ack_pending: 10_000,
                ..Default::default()
            })
            .await
            .map_err(Error::broker)
    }
}

fn events_subject(prefix: &str, topic: &str) -> Result<String> {
    let valid = !topic.is_empty()
        && topic.split('.').all(|token| {
            !token.is_empty()
                && token != "*"
                && token != ">"
                && !token.chars().any(char::is_whitespace)
        });
    if !valid {
        return Err(Error::Pattern {
            pattern: topic.to_owned(),
            reason: "a topic is dot-separated non-empty tokens without wildcards or spaces".into(),
        });
    }
    Ok(format!("{prefix}.events.{topic}"))
}

struct NatsAcker(jetstream::Message);

impl Acker for NatsAcker {
    fn ack(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { self.0.ack().await.map_err(Error::broker) })
    }
    fn retry(&self, delay: Duration, _next_attempt: u32) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.0
                .ack_with(AckKind::Nak(Some(delay)))
                .await
                .map_err(Error::broker)
        })
    }
    fn drop_message(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { self.0.ack_with(AckKind::Term).await.map_err(Error::broker) })
    }
    fn keep(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async {
            self.0
                .ack_with(AckKind::Progress)
                .await
                .map_err(Error::broker)
        })
    }
}

async fn messages(
    consumer: &consumer::PullConsumer,
    batch: usize,
) -> Result<impl futures::Stream<Item = Result<Incoming>> + Send + use<>> {
    let stream = consumer
        .stream()
        .max_messages_per_batch(batch)
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await
        .map_err(Error::broker)?;
    Ok(stream
        .map_err(Error::broker)
        .and_then(|message| async move {
            let attempt = message
                .info()
                .map(|info| u32::try_from(info.delivered).unwrap_or(u32::MAX))
                .unwrap_or(1);
            Ok(Incoming {
                // Shares the received buffer (no copy).
                payload: message.message.payload.clone(),
                attempt,
                acker: Arc::new(NatsAcker(message)),
            })
        }))
}

impl Backend for NatsBus {
    fn name(&self) -> &'static str {
        "nats"
    }

    fn publish_batch(&self, envelopes: Vec<Envelope>) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.publish_all(envelopes))
    }

    fn subscribe(
        &self,
        pattern: TopicPattern,
        options: SubscribeOptions,
        handler: Arc<dyn Handler>,
    ) -> BoxFuture<'_, Result<Subscription>> {
        Box::pin(async move {
            let prefix = &self.inner.prefix;
            let group = options.group.clone();
            let main = self
                .consumer(
                    &group,
                    format!("{prefix}.events.{}", pattern.as_str()),
                    &options,
                    consumer::DeliverPolicy::New,
                )
                .await?;
            let replays = self
                .consumer(
                    &format!("{group}-replay"),
                    format!("{prefix}.replay.{group}"),
                    &options,
                    consumer::DeliverPolicy::All,
                )
                .await?;
            self.inner.store.register(&group, pattern.as_str()).await?;
            let batch = options.max_in_flight;
            let feed = self
                .inner
                .feeds
                // JetStream drops duplicates by id at publish: no consumer-side check.
                .join(&group, false, || async {
                    let main = messages(&main, batch).await?;
                    let replays = messages(&replays, batch).await?;
                    Ok(futures::stream::select(main, replays).boxed())
                })
                .await?;
            Ok(broker::subscribe(
                feed,
                options,
                handler,
                self.inner.store.clone(),
            ))
        })
    }

    fn dead_letters(&self, filter: DeadLetterFilter) -> BoxFuture<'_, Result<Vec<DeadLetter>>> {
        Box::pin(self.inner.store.list(filter))
    }

    fn replay(&self, filter: DeadLetterFilter) -> BoxFuture<'_, Result<u64>> {
        Box::pin(async move {
            self.inner
                .store
                .replay_with(&filter, |group, envelope| async move {
                    let message = PublishMessage::build()
                        .payload(envelope.into())
                        // A fresh id: the duplicate window must not swallow the replay.
                        .message_id(telar_types::new_id().to_string());
                    self.inner
                        .jetstream
                        .send_publish(format!("{}.replay.{group}", self.inner.prefix), message)
                        .await
                        .map_err(Error::broker)?
                        .await
                        .map_err(Error::broker)?;
                    Ok(())
                })
                .await
        })
    }

    fn purge(&self, filter: DeadLetterFilter) -> BoxFuture<'_, Result<u64>> {
        Box::pin(self.inner.store.purge(filter))
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let _ = self.inner.client.flush().await;
        })
    }
}
