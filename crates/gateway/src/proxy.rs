//! Forwarding one request to its route's upstream: the request's body streamed as it arrives,
//! the route's timeout on everything up to the response head, a failure reported to the
//! instance's breaker, and retries only where sending again is safe — idempotent methods without
//! a body — within the upstream's retry budget.

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use telar_resilience::status_is_transient;
use tokio::io::AsyncWriteExt;

use crate::error::GatewayError;
use crate::h1::body::{BodyError, Conn, Encode, transfer};
use crate::h1::head::{Framing, RequestHead, ResponseHead};
use crate::h1::write::field;
use crate::headers::{Forward, forward_fields};
use crate::pool::{Checkout, InstancePool};
use crate::routes::Route;
use crate::upstream::Instance;

/// Largest response head accepted from an upstream.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

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

/// An upstream's answer: its head, and the connection its body is still to be read from.
pub struct Answer {
    pub head: ResponseHead,
    pub conn: Conn,
    pub pool: Arc<InstancePool>,
}

enum ExchangeError {
    /// No connection could be opened: nothing was sent.
    Connect(String),
    /// The client's body could not be read (its fault, not the upstream's).
    Client(BodyError),
    /// The upstream broke the exchange.
    Upstream(String),
    /// The upstream stopped reading the request's body (it may have answered already).
    Stopped(String),
}

fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// `METHOD <base><path>[?query] HTTP/1.1` and `Host` for `instance`.
fn request_line(
    out: &mut Vec<u8>,
    method: &Method,
    instance: &Instance,
    path: &str,
    query: Option<&str>,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(instance.base_path.as_bytes());
    out.extend_from_slice(path.as_bytes());
    if let Some(query) = query {
        out.push(b'?');
        out.extend_from_slice(query.as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    field(out, b"host", instance.host.as_bytes());
}

/// Sends the request — its head rewritten with what `add` says, its body read from `client` as
/// it arrives — and returns the upstream's answer. `failures` receives each upstream failure,
/// including those retried; `body_read` tells whether the client's body was read to its end.
pub async fn forward(
    route: &Route,
    request: &RequestHead,
    add: &Forward<'_>,
    client: &mut Conn,
    failures: &mut Vec<Failure>,
    body_read: &mut bool,
) -> Result<Answer, GatewayError> {
    let upstream = &route.upstream;
    let path = route.upstream_path(request.path());
    let retryable = idempotent(&request.method) && !request.framing.has_body();
    *body_read = !request.framing.has_body();
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
        let mut head = Vec::with_capacity(2048);
        request_line(&mut head, &request.method, instance, &path, request.query());
        forward_fields(&mut head, request, add);
        let exchange = Exchange {
            pool: &instance.pool,
            request,
            limit: route.max_body,
            idle: route.timeout,
            retryable,
        };
        let sent = tokio::time::timeout(route.timeout, exchange.run(head, client, body_read)).await;
        let (failure, error) = match sent {
            Ok(Ok((conn, head))) if !status_is_transient(head.status) => {
                permit.success();
                let pool = instance.pool.clone();
                return Ok(Answer { head, conn, pool });
            }
            Ok(Ok((conn, head))) => {
                permit.failure();
                if last || !upstream.budget.withdraw() {
                    failures.push(Failure::Status);
                    let pool = instance.pool.clone();
                    return Ok(Answer { head, conn, pool });
                }
                (Failure::Status, None)
            }
            Ok(Err(ExchangeError::Client(error))) => {
                // The client's fault, not the upstream's: the permit counts nothing.
                drop(permit);
                return Err(match error {
                    BodyError::TooLarge(limit) => GatewayError::PayloadTooLarge { limit },
                    other => GatewayError::BadRequest(format!("request body: {other}")),
                });
            }
            Ok(Err(ExchangeError::Connect(reason))) => {
                permit.failure();
                tracing::debug!(upstream = %upstream.name, %reason, "upstream connect failed");
                let error = GatewayError::Unavailable {
                    upstream: upstream.name.clone(),
                    retry_after: None,
                };
                (Failure::Connect, Some(error))
            }
            Ok(Err(ExchangeError::Upstream(reason) | ExchangeError::Stopped(reason))) => {
                permit.failure();
                tracing::debug!(upstream = %upstream.name, %reason, "upstream exchange failed");
                let error = GatewayError::BadGateway {
                    upstream: upstream.name.clone(),
                };
                (Failure::Protocol, Some(error))
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

/// One request sent on one instance, up to the response head.
struct Exchange<'a> {
    pool: &'a InstancePool,
    request: &'a RequestHead,
    limit: u64,
    idle: Duration,
    retryable: bool,
}

impl Exchange<'_> {
    async fn run(
        &self,
        head: Vec<u8>,
        client: &mut Conn,
        body_read: &mut bool,
    ) -> Result<(Conn, ResponseHead), ExchangeError> {
        let head_request = self.request.method == Method::HEAD;
        let mut head = Some(head);
        loop {
            let Checkout { mut conn, reused } =
                self.pool.checkout().await.map_err(ExchangeError::Connect)?;
            // A connection the upstream closed while it sat idle answers nothing; a request that
            // can be sent again then goes on a new connection.
            let resend = reused && self.retryable;
            if self.request.framing.has_body() {
                let mut pending = head.take().unwrap_or_default();
                match self.send_body(&mut conn, client, &mut pending).await {
                    Ok(()) => *body_read = true,
                    // An upstream may refuse a body before reading it all (413, 401, …) and
                    // close: its answer is relayed, and the client's connection closes after it.
                    Err(ExchangeError::Stopped(reason)) => {
                        return match early_answer(&mut conn, head_request, self.idle).await {
                            Some(mut answer) => {
                                answer.keep_alive = false;
                                Ok((conn, answer))
                            }
                            None => Err(ExchangeError::Upstream(reason)),
                        };
                    }
                    Err(other) => return Err(other),
                }
            } else if let Err(error) = conn.io.write_all(head.as_deref().unwrap_or_default()).await
            {
                if resend {
                    continue;
                }
                return Err(ExchangeError::Upstream(format!(
                    "sending the request: {error}"
                )));
            }
            loop {
                let parsed = if conn.buffer.is_empty() {
                    Ok(None)
                } else {
                    ResponseHead::parse(&mut conn.buffer, head_request)
                };
                match parsed {
                    // Interim answers (100 Continue, 103 Early Hints) are not relayed.
                    Ok(Some(answer))
                        if (100..200).contains(&answer.status) && answer.status != 101 =>
                    {
                        continue;
                    }
                    Ok(Some(answer)) if answer.status == 101 => {
                        return Err(ExchangeError::Upstream(
                            "unrequested protocol switch".into(),
                        ));
                    }
                    Ok(Some(answer)) => return Ok((conn, answer)),
                    Ok(None) => {}
                    Err(error) => return Err(ExchangeError::Upstream(format!("{error:?}"))),
                }
                if conn.buffer.len() > MAX_RESPONSE_HEAD {
                    return Err(ExchangeError::Upstream("response head too large".into()));
                }
                let nothing_yet = conn.buffer.is_empty();
                match conn.fill(8 * 1024).await {
                    Ok(0) | Err(_) if resend && nothing_yet => break,
                    Ok(0) => {
                        return Err(ExchangeError::Upstream("closed before answering".into()));
                    }
                    Err(error) => return Err(ExchangeError::Upstream(error.to_string())),
                    Ok(_) => {}
                }
            }
        }
    }

    /// Sends the head in `pending` and the client's body after it.
    async fn send_body(
        &self,
        conn: &mut Conn,
        client: &mut Conn,
        pending: &mut Vec<u8>,
    ) -> Result<(), ExchangeError> {
        if self.request.expect_continue && client.buffer.is_empty() {
            client
                .io
                .write_all(CONTINUE)
                .await
                .map_err(|e| ExchangeError::Client(BodyError::Write(e)))?;
        }
        let encode = match self.request.framing {
            Framing::Chunked => Encode::Chunked,
            _ => Encode::Raw,
        };
        transfer(
            client,
            self.request.framing,
            &mut conn.io,
            encode,
            self.limit,
            self.idle,
            pending,
        )
        .await
        .map(|_| ())
        .map_err(|error| {
            if error.sender_at_fault() {
                ExchangeError::Client(error)
            } else {
                ExchangeError::Stopped(error.to_string())
            }
        })
    }
}

/// A final response an upstream sent while it stopped reading the request, if one arrives.
async fn early_answer(conn: &mut Conn, head_request: bool, idle: Duration) -> Option<ResponseHead> {
    let read = async {
        loop {
            if !conn.buffer.is_empty() {
                match ResponseHead::parse(&mut conn.buffer, head_request) {
                    Ok(Some(answer)) if answer.status >= 200 => return Some(answer),
                    Ok(Some(_)) => continue,
                    Ok(None) => {}
                    Err(_) => return None,
                }
            }
            if conn.buffer.len() > MAX_RESPONSE_HEAD
                || !matches!(conn.fill(8 * 1024).await, Ok(n) if n > 0)
            {
                return None;
            }
        }
    };
    tokio::time::timeout(idle, read).await.ok().flatten()
}
