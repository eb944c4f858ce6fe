//! The RabbitMQ reference: bare lapin with the same shape of work — 256 publishers on one
//! confirm channel each awaiting its confirm, persistent messages through a topic exchange into
//! a quorum queue, one consumer (prefetch 256) decoding each envelope and acking.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use telar_types::Envelope;

use crate::{BoxError, age_ms, bench_envelope, summarize};

pub async fn run(
    url: &str,
    messages: usize,
    publishers: usize,
    payload: &str,
) -> Result<(f64, f64, f64), BoxError> {
    let connection = Connection::connect(url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let name = format!("raw{}", telar_types::new_id().simple());
    let exchange = format!("{name}.events");
    channel
        .exchange_declare(
            exchange.as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    channel
        .queue_declare(
            name.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            arguments,
        )
        .await?;
    channel
        .queue_bind(
            name.as_str().into(),
            exchange.as_str().into(),
            "bench.event".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let consumer_channel = connection.create_channel().await?;
    consumer_channel
        .basic_qos(256, BasicQosOptions::default())
        .await?;
    let mut consumer = consumer_channel
        .basic_consume(
            name.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(messages)));
    let sink = latencies.clone();
    let consuming = tokio::spawn(async move {
        let mut seen = 0;
        while seen < messages {
            let Some(delivery) = consumer.next().await else {
                break;
            };
            let delivery = delivery?;
            if let Ok(envelope) = Envelope::from_json(&delivery.data) {
                sink.lock().map(|mut l| l.push(age_ms(&envelope))).ok();
            }
            delivery.ack(BasicAckOptions::default()).await?;
            seen += 1;
        }
        Ok::<_, BoxError>(())
    });
    let per_publisher = messages / publishers;
    let started = Instant::now();
    let tasks: Vec<_> = (0..publishers)
        .map(|p| {
            let (channel, exchange, payload) =
                (channel.clone(), exchange.clone(), payload.to_owned());
            tokio::spawn(async move {
                for n in 0..per_publisher {
                    let envelope = bench_envelope(&payload, p, per_publisher, n);
                    channel
                        .basic_publish(
                            exchange.as_str().into(),
                            "bench.event".into(),
                            BasicPublishOptions::default(),
                            &envelope.to_json(),
                            BasicProperties::default().with_delivery_mode(2),
                        )
                        .await?
                        .await?;
                }
                Ok::<_, BoxError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    tokio::time::timeout(Duration::from_secs(600), consuming).await???;
    let elapsed = started.elapsed();
    channel
        .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
        .await?;
    channel
        .exchange_delete(exchange.as_str().into(), Default::default())
        .await?;
    let latencies = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    Ok(summarize(messages, elapsed, latencies))
}
