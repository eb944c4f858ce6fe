//! The NATS reference: bare async-nats JetStream with the same shape of work — 256 publishers
//! each awaiting its publish ack, one durable pull consumer decoding each envelope and acking.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use telar_types::Envelope;

use crate::{BoxError, age_ms, bench_envelope, cpu_by_thread, cpu_since, summarize};

pub async fn run(
    url: &str,
    messages: usize,
    publishers: usize,
    payload: &str,
) -> Result<(f64, f64, f64), BoxError> {
    let client = async_nats::connect(url).await?;
    let js = jetstream::new(client);
    let name = format!("RAW{}", telar_types::new_id().simple());
    let subject = format!("{}.bench", name.to_lowercase());
    let stream = js
        .create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![subject.clone()],
            storage: stream::StorageType::File,
            max_age: Duration::from_secs(600),
            ..Default::default()
        })
        .await?;
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("raw".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            max_ack_pending: 10_000,
            ..Default::default()
        })
        .await?;
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(messages)));
    let sink = latencies.clone();
    let consuming = tokio::spawn(async move {
        let mut messages_in = consumer
            .stream()
            .max_messages_per_batch(256)
            .messages()
            .await?;
        let mut seen = 0;
        while seen < messages {
            let Some(message) = messages_in.next().await else {
                break;
            };
            let message = message?;
            if let Ok(envelope) = Envelope::from_json(&message.payload) {
                sink.lock().map(|mut l| l.push(age_ms(&envelope))).ok();
            }
            message.ack().await?;
            seen += 1;
        }
        Ok::<_, BoxError>(())
    });
    let per_publisher = messages / publishers;
    let cpu_before = cpu_by_thread();
    let started = Instant::now();
    let tasks: Vec<_> = (0..publishers)
        .map(|p| {
            let (js, subject, payload) = (js.clone(), subject.clone(), payload.to_owned());
            tokio::spawn(async move {
                for n in 0..per_publisher {
                    let envelope = bench_envelope(&payload, p, per_publisher, n);
                    js.publish(subject.clone(), envelope.to_json().into())
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
    eprintln!(
        "[bench] raw cpu seconds by thread: {}",
        cpu_since(&cpu_before)
    );
    js.delete_stream(&name).await?;
    let latencies = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    Ok(summarize(messages, elapsed, latencies))
}
