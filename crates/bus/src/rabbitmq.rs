//! The RabbitMQ backend.
//!
//! Envelopes go to a durable topic exchange (`telar.events`) with the topic as routing key,
//! persistent and confirmed by the broker before `publish` returns. Each consumer group is a
//! quorum queue (`<prefix>.<group>`) bound with the group's pattern. A retry is republished,
//! confirmed, into a delay queue (`<prefix>.<group>.retry.<ms>`, one per power-of-two delay, so
//! a long delay never holds back a short one) whose messages dead-letter back into the group's
//! queue when their time is up; the attempt number travels in a header, and redeliveries after a
//! lost consumer are counted by the quorum queue (`x-delivery-count`). Dead letters go to the SQL
//! dead-letter store. RabbitMQ has no publish-side deduplication: a consumer skips an envelope id
//! its group acknowledged recently in this process, and the inbox covers the rest. The
//! connection recovers by itself (lapin auto-recovery) after the server restarts.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
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

/// The header carrying the attempt number of a retried or replayed message.
const ATTEMPT: &str = "x-telar-attempt";

/// RabbitMQ settings (`[bus.rabbitmq]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RabbitConfig {
    /// `amqp://user:password@host:port/vhost`.
    pub url: String,
    /// The topic exchange every envelope is published to.
    pub exchange: String,
    /// Group queues are `<prefix>.<group>`.
    pub queue_prefix: String,
    /// Publisher confirms and topology calls.
    pub request_timeout_ms: u64,
    /// How the connection shows in RabbitMQ's management tools.
    pub connection_name: String,
}

impl Default for RabbitConfig {
    fn default() -> Self {
        RabbitConfig {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            exchange: "telar.events".into(),
            queue_prefix: "telar".into(),
            request_timeout_ms: 5_000,
            connection_name: "telar-bus".into(),
        }
    }
}

/// The RabbitMQ bus. Wrap it in [`crate::Bus`].
#[derive(Clone)]
pub struct RabbitBus {
    inner: Arc<Inner>,
}

struct Inner {
    connection: Connection,
    /// Publishes (with confirms) and topology.
    channel: Channel,
    config: RabbitConfig,
    store: DeadLetterStore,
    feeds: Feeds,
    /// Queues this instance declared (for `remove_topology`).
    declared: Mutex<Vec<String>>,
}

impl RabbitBus {
    /// Connects and declares the exchange. Dead letters go to `dead_letters`.
    pub async fn open(config: &RabbitConfig, dead_letters: Db) -> Result<Self> {
        let timeout = Duration::from_millis(config.request_timeout_ms);
        let properties = ConnectionProperties::default()
            .with_connection_name(config.connection_name.as_str().into())
            .enable_auto_recover();
        let connection = within(timeout, Connection::connect(&config.url, properties))
            .await
            .map_err(|e| match e {
                Error::Broker(reason) => {
                    Error::Broker(format!("cannot connect to RabbitMQ: {reason}"))
                }
                other => other,
            })?;
        let channel = within(timeout, connection.create_channel()).await?;
        within(
            timeout,
            channel.confirm_select(ConfirmSelectOptions::default()),
        )
        .await?;
        within(
            timeout,
            channel.exchange_declare(
                name(&config.exchange)?,
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            ),
        )
        .await?;
        let store = DeadLetterStore::open(dead_letters).await?;
        Ok(RabbitBus {
            inner: Arc::new(Inner {
                connection,
                channel,
                config: config.clone(),
                store,
                feeds: Feeds::default(),
                declared: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Deletes the queues of every group registered in the dead-letter store and the delay
    /// queues this instance declared, and the exchange (tests and teardown; their messages are
    /// lost).
    pub async fn remove_topology(&self) -> Result<()> {
        let mut queues = self
            .inner
            .declared
            .lock()
            .map(|q| q.clone())
            .unwrap_or_default();
        for group in self.inner.store.groups().await? {
            queues.push(self.group_queue(&group));
        }
        for queue in queues {
            let _ = self
                .inner
                .channel
                .queue_delete(name(&queue)?, QueueDeleteOptions::default())
                .await;
        }
        let _ = self
            .inner
            .channel
            .exchange_delete(name(&self.inner.config.exchange)?, Default::default())
            .await;
        Ok(())
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.inner.config.request_timeout_ms)
    }

    fn group_queue(&self, group: &str) -> String {
        format!("{}.{group}", self.inner.config.queue_prefix)
    }

    async fn declare(&self, queue: &str, arguments: FieldTable) -> Result<()> {
        let declared = self.inner.channel.queue_declare(
            name(queue)?,
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            arguments,
        );
        within(self.timeout(), declared).await?;
        if let Ok(mut queues) = self.inner.declared.lock()
            && !queues.iter().any(|q| q == queue)
        {
            queues.push(queue.to_owned());
        }
        Ok(())
    }

    async fn publish_all(&self, envelopes: Vec<Envelope>) -> Result<()> {
        let mut confirms = Vec::with_capacity(envelopes.len());
        for envelope in &envelopes {
            let properties = persistent(&envelope.id, None);
            let payload = envelope.to_json();
            let publish = self.inner.channel.basic_publish(
                name(&self.inner.config.exchange)?,
                name(&envelope.ty)?,
                BasicPublishOptions::default(),
                &payload,
                properties,
            );
            confirms.push(within(self.timeout(), publish).await?);
        }
        for confirm in confirms {
            confirmed(within(self.timeout(), confirm).await?)?;
        }
        Ok(())
    }
}

/// Waits for a broker call, at most `timeout`.
async fn within<T>(timeout: Duration, call: impl Future<Output = lapin::Result<T>>) -> Result<T> {
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result.map_err(Error::broker),
        Err(_) => Err(Error::Broker(format!(
            "RabbitMQ did not answer within {} ms",
            timeout.as_millis()
        ))),
    }
}

fn confirmed(confirmation: Confirmation) -> Result<()> {
    match confirmation {
        Confirmation::Nack(_) => Err(Error::Broker("RabbitMQ refused the message (nack)".into())),
        Confirmation::Ack(_) | Confirmation::NotRequested => Ok(()),
    }
}

fn name(text: &str) -> Result<ShortString> {
    ShortString::try_new(text.to_owned())
        .map_err(|_| Error::Broker(format!("name longer than 255 bytes: {text}")))
}

fn persistent(message_id: &str, attempt: Option<u32>) -> BasicProperties {
    let mut properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/cloudevents+json".into());
    if let Ok(id) = ShortString::try_new(message_id.to_owned()) {
        properties = properties.with_message_id(id);
    }
    if let Some(attempt) = attempt {
        let mut headers = BTreeMap::new();
        headers.insert(ATTEMPT.into(), AMQPValue::LongLongInt(i64::from(attempt)));
        properties = properties.with_headers(FieldTable::from(headers));
    }
    properties
}

fn header_number(properties: &BasicProperties, key: &str) -> Option<i64> {
    match properties.headers().as_ref()?.inner().get(key)? {
        AMQPValue::LongLongInt(v) => Some(*v),
        AMQPValue::LongInt(v) => Some(i64::from(*v)),
        AMQPValue::LongUInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortShortUInt(v) => Some(i64::from(*v)),
        _ => None,
    }
}

/// The AMQP binding key for a NATS-style pattern: `*` is one word in both; `>` (one or more)
/// becomes `*.#`.
fn binding_key(pattern: &TopicPattern) -> String {
    pattern
        .as_str()
        .split('.')
        .map(|token| if token == ">" { "*.#" } else { token })
        .collect::<Vec<_>>()
        .join(".")
}

/// The delay queue for `delay`: the next power of two in milliseconds (at least 16 ms, at most
/// about 4.7 hours).
fn delay_bucket(delay: Duration) -> u64 {
    let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
    ms.clamp(16, 1 << 24).next_power_of_two()
}

struct RabbitAcker {
    bus: RabbitBus,
    delivery: lapin::Acker,
    queue: String,
    message_id: String,
    payload: bytes::Bytes,
}

impl RabbitAcker {
    async fn ack_delivery(&self) -> Result<()> {
        match self.delivery.ack(BasicAckOptions::default()).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::Broker(
                "the channel closed before the acknowledgement; RabbitMQ redelivers".into(),
            )),
            Err(error) => Err(Error::broker(error)),
        }
    }
}

impl Acker for RabbitAcker {
    fn ack(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.ack_delivery())
    }

    fn retry(&self, delay: Duration, next_attempt: u32) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let bucket = delay_bucket(delay);
            let delay_queue = format!("{}.retry.{bucket}", self.queue);
            let mut arguments = BTreeMap::new();
            arguments.insert(
                "x-message-ttl".into(),
                AMQPValue::LongLongInt(bucket as i64),
            );
            arguments.insert(
                "x-dead-letter-exchange".into(),
                AMQPValue::LongString("".into()),
            );
            arguments.insert(
                "x-dead-letter-routing-key".into(),
                AMQPValue::LongString(self.queue.clone().into()),
            );
            // Unused delay queues go away by themselves.
            arguments.insert(
                "x-expires".into(),
                AMQPValue::LongLongInt((bucket * 2 + 60_000) as i64),
            );
            self.bus
                .declare(&delay_queue, FieldTable::from(arguments))
                .await?;
            let publish = self.bus.inner.channel.basic_publish(
                "".into(),
                name(&delay_queue)?,
                BasicPublishOptions::default(),
                &self.payload,
                persistent(&self.message_id, Some(next_attempt)),
            );
            let confirm = within(self.bus.timeout(), publish).await?;
            confirmed(within(self.bus.timeout(), confirm).await?)?;
            // Confirmed in the delay queue: only now let go of the original.
            self.ack_delivery().await
        })
    }

    fn drop_message(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.ack_delivery())
    }
}

impl Backend for RabbitBus {
    fn name(&self) -> &'static str {
        "rabbitmq"
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
            let group = options.group.clone();
            let queue = self.group_queue(&group);
            if let Some(existing) = self.inner.store.pattern(&group).await?
                && existing != pattern.as_str()
            {
                return Err(Error::GroupPattern {
                    group,
                    existing,
                    requested: pattern.as_str().to_owned(),
                });
            }
            let mut arguments = BTreeMap::new();
            arguments.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("quorum".into()),
            );
            self.declare(&queue, FieldTable::from(arguments)).await?;
            let bind = self.inner.channel.queue_bind(
                name(&queue)?,
                name(&self.inner.config.exchange)?,
                name(&binding_key(&pattern))?,
                QueueBindOptions::default(),
                FieldTable::default(),
            );
            within(self.timeout(), bind).await?;
            self.inner.store.register(&group, pattern.as_str()).await?;
            // Subscriptions of a group in one process share the first one's consumer: twice
            // its window lets a second subscription work while the first is busy.
            let prefetch =
                u16::try_from(options.max_in_flight.saturating_mul(2)).unwrap_or(u16::MAX);
            let feed = self
                .inner
                .feeds
                .join(&group, true, || self.consume(queue, prefetch))
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
                .replay_with(&filter, |group, payload| async move {
                    let message_id = Envelope::from_json(&payload)
                        .map(|e| e.id)
                        .unwrap_or_default();
                    // Straight into the group's queue (default exchange), attempts from 1 again.
                    let publish = self.inner.channel.basic_publish(
                        "".into(),
                        name(&self.group_queue(&group))?,
                        BasicPublishOptions::default(),
                        &payload,
                        persistent(&message_id, Some(1)),
                    );
                    let confirm = within(self.timeout(), publish).await?;
                    confirmed(within(self.timeout(), confirm).await?)
                })
                .await
        })
    }

    fn purge(&self, filter: DeadLetterFilter) -> BoxFuture<'_, Result<u64>> {
        Box::pin(self.inner.store.purge(filter))
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let _ = self.inner.connection.close(200, "bye".into()).await;
        })
    }
}

impl RabbitBus {
    /// A consumer on the group's queue, on a channel of its own (closed when the feed goes, so
    /// RabbitMQ redelivers whatever was not settled).
    async fn consume(&self, queue: String, prefetch: u16) -> Result<broker::Source> {
        let channel = within(self.timeout(), self.inner.connection.create_channel()).await?;
        within(
            self.timeout(),
            channel.basic_qos(prefetch, BasicQosOptions::default()),
        )
        .await?;
        let consumer = within(
            self.timeout(),
            channel.basic_consume(
                name(&queue)?,
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            ),
        )
        .await?;
        let bus = self.clone();
        let source = consumer.map_err(Error::broker).map_ok(move |delivery| {
            // First delivery: no header, no count. A retry carries its attempt; a redelivery
            // after a lost consumer adds the quorum queue's count.
            let base = header_number(&delivery.properties, ATTEMPT).unwrap_or(1);
            let redelivered = header_number(&delivery.properties, "x-delivery-count").unwrap_or(0);
            let attempt = u32::try_from(base + redelivered).unwrap_or(u32::MAX);
            let message_id = delivery
                .properties
                .message_id()
                .as_ref()
                .map(|id| id.as_str().to_owned())
                .unwrap_or_default();
            let payload = bytes::Bytes::from(delivery.data);
            Incoming {
                payload: payload.clone(),
                attempt,
                acker: Arc::new(RabbitAcker {
                    bus: bus.clone(),
                    delivery: delivery.acker,
                    queue: queue.clone(),
                    message_id,
                    payload,
                }),
            }
        });
        Ok(source.boxed())
    }
}
