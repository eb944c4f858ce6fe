//! Carrying one trace across hops: the context of the request or message being handled, and
//! the `traceparent` to send on an outbound call or a published envelope.
//!
//! With OTLP export on, the context is the exporting span's own (trace id, span id), so the
//! next hop's span becomes its child in the exported tree. With export off there is no span
//! tree to join, but the trace id still travels so every service's log lines of one request
//! share it: the current hop's context lives in a task-local set by whoever handles the request
//! or message (the service kit, the bus consumer).

use std::future::Future;

use opentelemetry::trace::TraceContextExt;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::TraceParent;

tokio::task_local! {
    static CURRENT: TraceParent;
}

/// Runs `future` as the handling of `hop` (a request or a message): outbound calls and
/// published envelopes made inside it carry `hop`'s trace.
pub async fn in_trace<F: Future>(hop: TraceParent, future: F) -> F::Output {
    CURRENT.scope(hop, future).await
}

/// The exported context of `span` (trace id and its own span id), when OTLP export is on and
/// the span is recorded.
pub fn span_traceparent(span: &tracing::Span) -> Option<TraceParent> {
    if !crate::otlp_active() {
        return None;
    }
    let context = span.context();
    let span_ref = context.span();
    let span_context = span_ref.span_context();
    span_context.is_valid().then(|| TraceParent {
        trace_id: span_context.trace_id().to_bytes(),
        parent_id: span_context.span_id().to_bytes(),
        sampled: span_context.is_sampled(),
    })
}

/// The context of this hop for a handler whose span is `span` and whose caller sent
/// `incoming`: the exported span's own context when OTLP is on, else the caller's trace with a
/// fresh id for this hop (or a new root).
pub fn hop(span: &tracing::Span, incoming: Option<&TraceParent>) -> TraceParent {
    if let Some(parent) = incoming
        && crate::otlp_active()
    {
        parent.attach_as_parent(span);
    }
    span_traceparent(span)
        .or_else(|| incoming.map(TraceParent::child))
        .unwrap_or_else(TraceParent::new_root)
}

/// The `traceparent` an outbound call or a published message should carry when `span` (a
/// client or producer span created inside the handler) stands for it; `None` outside any
/// traced work.
pub fn outgoing(span: &tracing::Span) -> Option<TraceParent> {
    span_traceparent(span).or_else(|| CURRENT.try_with(TraceParent::child).ok())
}

/// Whether this code runs while handling a request or a message (inside [`in_trace`]): only
/// then do publishes join a trace. Background work (an outbox relay, a timer) keeps the
/// `traceparent` its envelopes already carry, and hot paths skip producer spans.
pub fn in_hop() -> bool {
    CURRENT.try_with(|_| ()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_trace_of_the_handled_hop_travels_without_an_exporter() {
        assert!(outgoing(&tracing::Span::none()).is_none());
        let hop = TraceParent::new_root();
        let sent = in_trace(hop, async { outgoing(&tracing::Span::none()) })
            .await
            .expect("inside a hop");
        assert_eq!(sent.trace_id, hop.trace_id);
        assert_ne!(sent.parent_id, hop.parent_id, "a new id for the next hop");
    }

    #[test]
    fn a_hop_continues_the_callers_trace_or_starts_one() {
        let caller = TraceParent::new_root();
        let continued = hop(&tracing::Span::none(), Some(&caller));
        assert_eq!(continued.trace_id, caller.trace_id);
        let root = hop(&tracing::Span::none(), None);
        assert_ne!(root.trace_id, caller.trace_id);
    }
}
