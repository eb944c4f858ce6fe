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
        otel.name = format!("{} process", delivery.envelope.ty),
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
    let hop = telar_telemetry::hop(&span, incoming.as_ref());
    span.record("trace_id", hop.trace_id_hex().as_str());
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

/// `queue_processing_duration`, and `queue_message_consumed` or `queue_message_failed`
/// (`outcome`: retry or dead).
pub(crate) fn observe(topic: String, group: &str, outcome: &'static str, started: Instant) {
    let group = group.to_owned();
    metrics::histogram!("queue_processing_duration", "topic" => topic.clone(), "group" => group.clone())
        .record(started.elapsed().as_secs_f64());
    if outcome == "ack" {
        metrics::counter!("queue_message_consumed", "topic" => topic, "group" => group)
            .increment(1);
    } else {
        metrics::counter!("queue_message_failed", "topic" => topic, "group" => group, "outcome" => outcome)
            .increment(1);
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}
