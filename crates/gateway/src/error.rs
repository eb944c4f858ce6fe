//! Every way a request can fail at the gateway, and the one place where each becomes a response
//! (problem+json, or the system's own envelope).

use std::time::Duration;

use axum::body::Body;
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::json;

use crate::config::{ErrorConfig, ErrorStyle};

#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    #[error("no service is routed at this path")]
    UnknownService,
    #[error("method not allowed on this route")]
    MethodNotAllowed { allowed: String },
    #[error("{0}")]
    BadRequest(String),
    #[error("request line and header fields larger than {limit} bytes")]
    HeadersTooLarge { limit: usize },
    #[error("a valid bearer token is required")]
    Unauthenticated,
    #[error("not allowed to read this")]
    Forbidden,
    #[error("rate limit exceeded")]
    Limited { limit: u32, retry_after: Duration },
    #[error("too many requests over the limit; banned for a while")]
    Banned { retry_after: Duration },
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge { limit: u64 },
    #[error("service `{upstream}` is unavailable")]
    Unavailable {
        upstream: String,
        retry_after: Option<Duration>,
    },
    #[error("service `{upstream}` did not answer in time")]
    Timeout { upstream: String },
    #[error("service `{upstream}` gave an invalid answer")]
    BadGateway { upstream: String },
}

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::UnknownService => StatusCode::NOT_FOUND,
            GatewayError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::BadRequest(_) => StatusCode::BAD_REQUEST,
            GatewayError::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            GatewayError::Unauthenticated => StatusCode::UNAUTHORIZED,
            GatewayError::Forbidden => StatusCode::FORBIDDEN,
            GatewayError::Limited { .. } | GatewayError::Banned { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            GatewayError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::BadGateway { .. } => StatusCode::BAD_GATEWAY,
        }
    }

    /// The stable machine-readable kind (`code` in problems, the key of `[errors.ids]`).
    pub fn kind(&self) -> &'static str {
        match self {
            GatewayError::UnknownService => "unknown_service",
            GatewayError::MethodNotAllowed { .. } => "method_not_allowed",
            GatewayError::BadRequest(_) => "bad_request",
            GatewayError::HeadersTooLarge { .. } => "headers_too_large",
            GatewayError::Unauthenticated => "unauthenticated",
            GatewayError::Forbidden => "forbidden",
            GatewayError::Limited { .. } => "rate_limited",
            GatewayError::Banned { .. } => "banned",
            GatewayError::PayloadTooLarge { .. } => "payload_too_large",
            GatewayError::Unavailable { .. } => "service_unavailable",
            GatewayError::Timeout { .. } => "service_timeout",
            GatewayError::BadGateway { .. } => "bad_gateway",
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            GatewayError::Limited { retry_after, .. } | GatewayError::Banned { retry_after } => {
                Some(*retry_after)
            }
            GatewayError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Renders errors in the system's chosen style.
#[derive(Debug, Clone, Default)]
pub struct ErrorRenderer {
    config: ErrorConfig,
}

impl ErrorRenderer {
    pub fn new(config: ErrorConfig) -> Self {
        ErrorRenderer { config }
    }

    /// The envelope id of `kind`: configured, or `<PREFIX>-UNKNOWN-SERVICE` style.
    fn envelope_id(&self, kind: &str) -> String {
        if let Some(id) = self.config.ids.get(kind) {
            return id.clone();
        }
        let prefix = self.config.prefix.as_deref().unwrap_or("GW");
        format!("{prefix}-{}", kind.to_ascii_uppercase().replace('_', "-"))
    }

    pub fn render(&self, error: &GatewayError, request_id: &str) -> Response<Body> {
        let status = error.status();
        let message = error.to_string();
        let (content_type, body) = match self.config.style {
            ErrorStyle::Problem => (
                "application/problem+json",
                json!({
                    "type": format!("https://telar.dev/problems/{}", error.kind()),
                    "title": status.canonical_reason().unwrap_or("Error"),
                    "status": status.as_u16(),
                    "detail": message,
                    "code": error.kind(),
                    "request_id": request_id,
                }),
            ),
            ErrorStyle::Envelope => (
                "application/json",
                json!({
                    "status": "error",
                    "code": status.as_u16(),
                    "meta": { "request_id": request_id },
                    "error": { "id": self.envelope_id(error.kind()), "message": message },
                }),
            ),
        };
        let mut response = Response::new(Body::from(body.to_string()));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if let Some(after) = error.retry_after() {
            // Whole seconds, rounded up: a client that waits exactly this long is let in.
            let secs = after.as_millis().div_ceil(1000).max(1);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs as u64));
        }
        match error {
            GatewayError::Unauthenticated => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            GatewayError::MethodNotAllowed { allowed } => {
                if let Ok(value) = HeaderValue::from_str(allowed) {
                    headers.insert(header::ALLOW, value);
                }
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_ids_follow_the_prefix_unless_named() {
        let renderer = ErrorRenderer::new(ErrorConfig {
            style: ErrorStyle::Envelope,
            prefix: Some("HG-GW".into()),
            ids: [("rate_limited".to_owned(), "HG-RATE-001".to_owned())].into(),
        });
        assert_eq!(
            renderer.envelope_id("unknown_service"),
            "HG-GW-UNKNOWN-SERVICE"
        );
        assert_eq!(
            renderer.envelope_id("service_timeout"),
            "HG-GW-SERVICE-TIMEOUT"
        );
        assert_eq!(renderer.envelope_id("rate_limited"), "HG-RATE-001");
    }
}
