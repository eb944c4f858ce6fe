//! Forwarding one request to its route's upstream: bodies streamed both ways (never buffered),
//! the route's timeout on the response headers, a failure reported to the instance's breaker,
//! and retries only where sending again is safe — idempotent methods without a body — within the
//! upstream's retry budget.

use axum::body::Body;
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{Method, Request, Response, Uri};
use http_body_util::Limited;
use hyper::body::Incoming;
use telar_resilience::status_is_transient;

use crate::error::GatewayError;
use crate::headers;
use crate::pool::{PooledBody, SendError};
use crate::routes::Route;
use crate::upstream::Instance;

/// What happened upstream, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Connect,
    Timeout,
    Protocol,
    Status,
}

impl Failure {
    pub fn label(self) -> &'static str {
        match self {
            Failure::Connect => "connect",
            Failure::Timeout => "timeout",
            Failure::Protocol => "protocol",
            Failure::Status => "status",
        }
    }
}

fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// The origin-form target (`/path?query`) on `instance`.
fn target(instance: &Instance, path: &str, query: Option<&str>) -> Result<Uri, GatewayError> {
    let path_and_query = match query {
        Some(query) => format!("{}{path}?{query}", instance.base_path),
        None if instance.base_path.is_empty() => path.to_owned(),
        None => format!("{}{path}", instance.base_path),
    };
    PathAndQuery::try_from(path_and_query)
        .map(Uri::from)
        .map_err(|_| GatewayError::BadRequest("invalid request path".into()))
}

/// Sends the request (headers already rewritten) and returns the upstream's answer, streaming.
/// `failures` receives each upstream failure, including those retried.
pub async fn forward(
    route: &Route,
    mut parts: Parts,
    body: Incoming,
    failures: &mut Vec<Failure>,
) -> Result<Response<PooledBody>, GatewayError> {
    let upstream = &route.upstream;
    let path = route.upstream_path(parts.uri.path());
    let query = parts.uri.query();
    let retryable = idempotent(&parts.method) && headers::bodyless(&parts.headers);
    let mut body = if retryable {
        drop(body);
        None
    } else {
        Some(Body::new(Limited::new(body, route.max_body as usize)))
    };
    upstream.budget.deposit();
    let mut attempt = 1;
    let mut failed = None;
    loop {
        let last = !retryable || attempt >= upstream.retry.max_attempts;
        let (index, permit) = upstream
            .pick(failed)
            .map_err(|after| GatewayError::Unavailable {
                upstream: upstream.name.clone(),
                retry_after: Some(after),
            })?;
        let instance = &upstream.instances[index];
        failed = Some(index);
        let mut request = Request::new(body.take().unwrap_or_else(Body::empty));
        *request.method_mut() = parts.method.clone();
        *request.uri_mut() = target(instance, &path, query)?;
        *request.headers_mut() = if last {
            std::mem::take(&mut parts.headers)
        } else {
            parts.headers.clone()
        };
        request
            .headers_mut()
            .insert(http::header::HOST, instance.host.clone());
        let sent = tokio::time::timeout(route.timeout, instance.pool.send(request)).await;
        let (failure, error) = match sent {
            Ok(Ok(response)) if !status_is_transient(response.status().as_u16()) => {
                permit.success();
                return Ok(response);
            }
            Ok(Ok(response)) => {
                permit.failure();
                if last || !upstream.budget.withdraw() {
                    failures.push(Failure::Status);
                    return Ok(response);
                }
                (Failure::Status, None)
            }
            Ok(Err(error)) if error.body_too_large() => {
                // The client's fault, not the upstream's: the permit counts nothing.
                drop(permit);
                return Err(GatewayError::PayloadTooLarge {
                    limit: route.max_body,
                });
            }
            Ok(Err(error)) => {
                permit.failure();
                let connect = matches!(error, SendError::Connect { .. });
                let failure = if connect {
                    Failure::Connect
                } else {
                    Failure::Protocol
                };
                tracing::debug!(upstream = %upstream.name, error = %error, "upstream call failed");
                let mapped = if connect {
                    GatewayError::Unavailable {
                        upstream: upstream.name.clone(),
                        retry_after: None,
                    }
                } else {
                    GatewayError::BadGateway {
                        upstream: upstream.name.clone(),
                    }
                };
                (failure, Some(mapped))
            }
            Err(_elapsed) => {
                // A timed-out call is not sent again: the client has already waited the route's
                // whole timeout.
                permit.failure();
                failures.push(Failure::Timeout);
                return Err(GatewayError::Timeout {
                    upstream: upstream.name.clone(),
                });
            }
        };
        failures.push(failure);
        if let Some(error) = error
            && (last || !upstream.budget.withdraw())
        {
            return Err(error);
        }
        metrics::counter!("gateway_retries", "upstream" => upstream.name.clone()).increment(1);
        tokio::time::sleep(upstream.retry.delay(attempt)).await;
        attempt += 1;
    }
}
