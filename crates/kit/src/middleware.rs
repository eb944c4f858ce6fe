//! The per-request envelope: request id (accepted or generated, echoed), a tracing span with
//! service / request_id / trace_id, the request timeout, metrics and one log line per request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderValue, StatusCode};
use telar_telemetry::{TraceParent, current_trace_id};
use tracing::Instrument;

use crate::error::ApiError;

pub(crate) const REQUEST_ID_HEADER: &str = "x-request-id";

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being handled, if called while handling one.
pub(crate) fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// The request's id (the client's `X-Request-ID` when valid, else a new UUID v7), for handlers
/// that pass it on to other services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(|| RequestId(uuid::Uuid::now_v7().to_string())))
    }
}

#[derive(Clone)]
pub(crate) struct Observe {
    pub service: Arc<str>,
    pub timeout: Duration,
}

/// Client ids are accepted if short and printable, so they can be logged and echoed safely.
fn accepted_request_id(value: Option<&HeaderValue>) -> Option<String> {
    let text = value?.to_str().ok()?;
    let valid = !text.is_empty() && text.len() <= 128 && text.bytes().all(|b| b.is_ascii_graphic());
    valid.then(|| text.to_owned())
}

fn is_probe(route: &str) -> bool {
    matches!(route, "/health" | "/ready" | "/metrics")
}

pub(crate) async fn observe(
    State(ctx): State<Observe>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let request_id = accepted_request_id(request.headers().get(REQUEST_ID_HEADER))
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let span = tracing::info_span!(
        "request",
        service = %ctx.service,
        request_id = %request_id,
        trace_id = tracing::field::Empty,
        method = %method,
        route = %route,
    );
    let incoming = request
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(TraceParent::parse);
    if let Some(parent) = &incoming {
        parent.attach_as_parent(&span);
    }
    let trace_id = incoming
        .map(|parent| parent.trace_id_hex())
        .or_else(|| current_trace_id(&span))
        .unwrap_or_else(|| TraceParent::new_root().trace_id_hex());
    span.record("trace_id", trace_id.as_str());
    request
        .extensions_mut()
        .insert(RequestId(request_id.clone()));

    let timeout = ctx.timeout;
    let handle = async move {
        match tokio::time::timeout(timeout, next.run(request)).await {
            Ok(response) => response,
            Err(_) => ApiError::with_status(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                format!("the request took longer than {} ms", timeout.as_millis()),
            )
            .into_response(),
        }
    };
    let mut response = REQUEST_ID
        .scope(request_id.clone(), handle.instrument(span.clone()))
        .await;

    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    let labels = [
        ("service", ctx.service.to_string()),
        ("method", method),
        ("route", route.clone()),
        ("status", status.to_string()),
    ];
    metrics::counter!("http_server_request_count", &labels).increment(1);
    metrics::histogram!("http_server_request_duration", &labels).record(elapsed.as_secs_f64());
    if status >= 500 {
        metrics::counter!("http_server_error_count", &labels).increment(1);
    }
    let duration_ms = elapsed.as_secs_f64() * 1000.0;
    span.in_scope(|| {
        if is_probe(&route) {
            tracing::debug!(status, duration_ms, "request completed");
        } else {
            tracing::info!(status, duration_ms, "request completed");
        }
    });
    response
}
