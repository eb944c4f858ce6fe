//! What every backend's consumer does around a handler: run it with a timeout and a panic
//! guard, and count the outcome.

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures::FutureExt;
use telar_telemetry::TraceParent;
use tracing::Instrument;

use crate::handler::{Delivery, Handler, Outcome};

/// Runs the handler: a panic becomes a rejection (dead letter with the panic message), a
/// timeout a retry. It runs in a consumer span that continues the envelope's trace, so its
/// logs, calls and publishes join the trace of the request that caused the message.
pub(crate) async fn run_handler(
    handler: &dyn Handler,
    delivery: Delivery,
    timeout: Duration,
) -> Outcome {
    let span = tracing::info_span!(
        "consume",
        otel.kind = "consumer",
        otel.name = tracing::field::Empty,
        messaging.destination.name = delivery.envelope.ty.as_str(),
        messaging.consumer.group.name = delivery.group.as_str(),
        messaging.message.id = delivery.envelope.id.as_str(),
        attempt = delivery.attempt,
        trace_id = tracing::field::Empty,
    );
    let incoming = delivery
        .envelope
        .traceparent
        .as_deref()
        .and_then(TraceParent::parse);
    // Formatted only for a span someone records (no subscriber, or filtered out: nothing); the
    // name before the parent is set, which fixes the exported span.
    let recorded = !span.is_disabled();
    if recorded {
        span.record(
            "otel.name",
            format!("{} process", delivery.envelope.ty).as_str(),
        );
    }
    let hop = telar_telemetry::hop(&span, incoming.as_ref());
    if recorded {
        span.record("trace_id", hop.trace_id_hex().as_str());
    }
    let run = AssertUnwindSafe(telar_telemetry::in_trace(
        hop,
        handler.handle(delivery).instrument(span),
    ))
    .catch_unwind();
    match tokio::time::timeout(timeout, run).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(panic)) => Outcome::reject(format!("handler panicked: {}", panic_message(&panic))),
        Err(_) => Outcome::retry(format!(
            "handler timed out after {} ms",
            timeout.as_millis()
        )),
    }
}

/// One topic's consumer metrics in one group (handles resolved once, not per message).
struct TopicMetrics {
    duration: metrics::Histogram,
    consumed: metrics::Counter,
    retried: metrics::Counter,
    dead: metrics::Counter,
}

type MetricsCache =
    std::collections::HashMap<String, std::collections::HashMap<String, TopicMetrics>>;

static METRICS: std::sync::Mutex<Option<MetricsCache>> = std::sync::Mutex::new(None);

static PUBLISHED: std::sync::Mutex<Option<std::collections::HashMap<String, metrics::Counter>>> =
    std::sync::Mutex::new(None);

/// `queue_message_published` for `topic`, resolved once per topic.
pub(crate) fn published_counter(topic: &str) -> metrics::Counter {
    let Ok(mut cache) = PUBLISHED.lock() else {
        return metrics::counter!("queue_message_published", "topic" => topic.to_owned());
    };
    let cache = cache.get_or_insert_with(Default::default);
    if let Some(counter) = cache.get(topic) {
        return counter.clone();
    }
    let counter = metrics::counter!("queue_message_published", "topic" => topic.to_owned());
    cache.insert(topic.to_owned(), counter.clone());
    counter
}

/// `queue_processing_duration`, and `queue_message_consumed` or `queue_message_failed`
/// (`outcome`: retry or dead). Looked up by `&str` in a process-wide cache: no label strings
/// are built per message.
pub(crate) fn observe(topic: &str, group: &str, outcome: &'static str, started: Instant) {
    let elapsed = started.elapsed().as_secs_f64();
    let Ok(mut cache) = METRICS.lock() else {
        return;
    };
    let groups = cache.get_or_insert_with(Default::default);
    if !groups.contains_key(group) {
        groups.insert(group.to_owned(), Default::default());
    }
    let Some(topics) = groups.get_mut(group) else {
        return;
    };
    if !topics.contains_key(topic) {
        let labels = |outcome: Option<&'static str>| {
            let mut labels = vec![
                metrics::Label::new("topic", topic.to_owned()),
                metrics::Label::new("group", group.to_owned()),
            ];
            labels.extend(outcome.map(|o| metrics::Label::new("outcome", o)));
            labels
        };
        topics.insert(
            topic.to_owned(),
            TopicMetrics {
                duration: metrics::histogram!("queue_processing_duration", labels(None)),
                consumed: metrics::counter!("queue_message_consumed", labels(None)),
                retried: metrics::counter!("queue_message_failed", labels(Some("retry"))),
                dead: metrics::counter!("queue_message_failed", labels(Some("dead"))),
            },
        );
    }
    let Some(handles) = topics.get(topic) else {
        return;
    };
    handles.duration.record(elapsed);
    match outcome {
        "ack" => handles.consumed.increment(1),
        "retry" => handles.retried.increment(1),
        _ => handles.dead.increment(1),
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}
