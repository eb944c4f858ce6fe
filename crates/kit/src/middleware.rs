//! The per-request envelope: request id (accepted or generated, echoed), a tracing span with
//! service / request_id / trace_id, the request timeout, metrics and one log line per request.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
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
    pub metrics: Arc<MetricHandles>,
}

/// The request metrics of one (method, route, status), registered once and reused: the hot
/// path then costs three atomic updates instead of three registry lookups with fresh labels.
#[derive(Clone)]
struct Handles {
    count: metrics::Counter,
    duration: metrics::Histogram,
    errors: Option<metrics::Counter>,
}

/// (method, status, handles) of one route.
type Registered = (&'static str, u16, Handles);

/// Handles by route template, then (method, status). Bounded: templates, methods (see
/// `method_label`) and statuses are all finite.
#[derive(Default)]
pub(crate) struct MetricHandles {
    by_route: RwLock<HashMap<String, Vec<Registered>>>,
}

impl MetricHandles {
    fn get(&self, service: &str, method: &'static str, route: &str, status: u16) -> Handles {
        if let Ok(map) = self.by_route.read()
            && let Some(found) = map
                .get(route)
                .and_then(|list| list.iter().find(|(m, s, _)| *m == method && *s == status))
        {
            return found.2.clone();
        }
        let labels = [
            ("service", service.to_owned()),
            ("method", method.to_owned()),
            ("route", route.to_owned()),
            ("status", status.to_string()),
        ];
        let handles = Handles {
            count: metrics::counter!("http_server_request_count", &labels),
            duration: metrics::histogram!("http_server_request_duration", &labels),
            errors: (status >= 500).then(|| metrics::counter!("http_server_error_count", &labels)),
        };
        if let Ok(mut map) = self.by_route.write() {
            map.entry(route.to_owned())
                .or_default()
                .push((method, status, handles.clone()));
        }
        handles
    }
}

/// Client ids are accepted if short and printable, so they can be logged and echoed safely.
fn accepted_request_id(value: Option<&HeaderValue>) -> Option<String> {
    let text = value?.to_str().ok()?;
    let valid = !text.is_empty() && text.len() <= 128 && text.bytes().all(|b| b.is_ascii_graphic());
    valid.then(|| text.to_owned())
}

/// Standard methods by name; anything else is `OTHER`, so clients cannot mint label values.
fn method_label(method: &http::Method) -> &'static str {
    use http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
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
    let method = method_label(request.method());
    let span = tracing::info_span!(
        "request",
        service = &*ctx.service,
        request_id = request_id.as_str(),
        trace_id = tracing::field::Empty,
        method,
        route = route.as_str(),
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

    // axum answers a wrong method with a bare 405 from inside each route (so route layers
    // still see the request); give it the same problem body as every other error.
    if response.status() == StatusCode::METHOD_NOT_ALLOWED
        && !response.headers().contains_key(http::header::CONTENT_TYPE)
    {
        let allow = response.headers().get(http::header::ALLOW).cloned();
        response = REQUEST_ID.sync_scope(request_id.clone(), || {
            ApiError::with_status(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this path does not accept this method",
            )
            .into_response()
        });
        if let Some(allow) = allow {
            response.headers_mut().insert(http::header::ALLOW, allow);
        }
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    let handles = ctx.metrics.get(&ctx.service, method, &route, status);
    handles.count.increment(1);
    handles.duration.record(elapsed.as_secs_f64());
    if let Some(errors) = handles.errors {
        errors.increment(1);
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
