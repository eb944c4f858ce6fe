//! One request, start to end: route, identity, limits, forward, relay the answer — with every
//! failure rendered in one place, and one access-log line and one set of metrics each.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use telar_auth::AuthError;
use telar_resilience::{Decision, Verdict};
use telar_telemetry::{LogLine, TraceParent};
use tracing::Instrument;

use crate::error::GatewayError;
use crate::gateway::{Gateway, NAME, Peer};
use crate::h1::body::Conn;
use crate::h1::head::{Kind, RequestHead};
use crate::h1::write;
use crate::headers::{self, Forward};
use crate::identity::{Identity, bearer_value};
use crate::proxy::{self, Answer, Failure};
use crate::relay::{Own, relay, reset_secs};
use crate::routes::{Route, has_dot_segments};

/// What one request went through, for its log line and metrics.
#[derive(Default)]
pub(crate) struct Outcome {
    pub route: Option<Arc<Route>>,
    pub identity: Option<Arc<Identity>>,
    pub decision: Option<Decision>,
    pub failures: Vec<Failure>,
}

impl Gateway {
    /// Answers one request read from `client`; whether the connection can carry another.
    pub(crate) async fn serve(
        &self,
        client: &mut Conn,
        request: RequestHead,
        peer: &Peer,
        out: &mut Vec<u8>,
    ) -> bool {
        let started = Instant::now();
        if crate::routes::is_reserved(request.path()) {
            return self.serve_own(client, request, out).await;
        }
        let request_id = headers::request_id(&request);
        let incoming = request
            .header(Kind::Traceparent)
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(TraceParent::parse);
        // A span only when spans are exported: the proxy's hot path stays free of tracing
        // dispatch otherwise, and the header still carries the trace one hop further.
        let span = if telar_telemetry::otlp_active() {
            tracing::info_span!(
                "gateway",
                otel.kind = "server",
                otel.name = format!("gateway {}", request.method),
                http.request.method = request.method.as_str(),
                url.path = request.path(),
                request_id = request_id.as_str(),
                http.response.status_code = tracing::field::Empty,
            )
        } else {
            tracing::Span::none()
        };
        let trace = telar_telemetry::hop(&span, incoming.as_ref());
        let mut outcome = Outcome::default();
        let mut body_read = !request.framing.has_body();
        let result = self
            .proxy(
                client,
                &request,
                peer,
                &request_id,
                &trace,
                &mut outcome,
                &mut body_read,
            )
            .instrument(span.clone())
            .await;
        let keep = request.keep_alive && !self.inner.draining.load(Ordering::Relaxed);
        let idle = outcome
            .route
            .as_ref()
            .map_or(std::time::Duration::from_secs(30), |route| route.timeout);
        let (status, keep) = match result {
            Ok(answer) => {
                let status = answer.head.status;
                let own = Own {
                    request_id: &request_id,
                    decision: outcome.decision,
                };
                let relayed =
                    relay(client, answer, &request, &own, keep && body_read, out, idle).await;
                if let Some(failure) = relayed.failure {
                    outcome.failures.push(failure);
                }
                (status, relayed.keep)
            }
            Err(error) => {
                let keep = keep && body_read;
                let mut response = self.inner.errors.render(&error, &request_id);
                let headers = response.headers_mut();
                if let Some(decision) = outcome.decision {
                    rate_limit_headers(headers, decision);
                }
                if let Ok(id) = HeaderValue::from_str(&request_id) {
                    headers.insert(REQUEST_ID, id);
                }
                let status = response.status().as_u16();
                let head = request.method == Method::HEAD;
                let written =
                    write::response(&mut client.io, response, head, !keep, out, idle).await;
                (status, keep && written.is_ok())
            }
        };
        span.record("http.response.status_code", status);
        self.record(
            &request,
            peer,
            &request_id,
            &trace,
            &outcome,
            status,
            started,
        );
        keep
    }

    /// Metrics and the access-log line of one request.
    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        request: &RequestHead,
        peer: &Peer,
        request_id: &str,
        trace: &TraceParent,
        outcome: &Outcome,
        status: u16,
        started: Instant,
    ) {
        let elapsed = started.elapsed();
        let route = outcome
            .route
            .as_ref()
            .map_or("unmatched", |r| r.prefix.as_str());
        self.inner
            .metrics
            .record(NAME, &request.method, route, status, elapsed);
        let upstream = outcome.route.as_ref().map(|r| r.upstream.name.as_str());
        for failure in &outcome.failures {
            metrics::counter!(
                "gateway_upstream_failures",
                "upstream" => upstream.unwrap_or("-").to_owned(),
                "kind" => failure.label(),
            )
            .increment(1);
        }
        if tracing::enabled!(target: "telar_gateway::access", tracing::Level::INFO)
            && let Some(mut line) = LogLine::info("telar_gateway::access")
        {
            // Written directly (same shape as every log line): one per request, so it skips
            // tracing's dispatch.
            line.str("service", NAME)
                .str("request_id", request_id)
                .str("trace_id", trace.trace_id_hex().as_str())
                .str("client", peer.ip_text())
                .str("method", request.method.as_str())
                .str("path", request.path())
                .str("route", route)
                .str("upstream", upstream.unwrap_or("-"))
                .str(
                    "user",
                    outcome
                        .identity
                        .as_ref()
                        .map_or("-", |i| i.claims.sub.as_str()),
                )
                .u64("status", u64::from(status))
                .f64("duration_ms", elapsed.as_secs_f64() * 1000.0)
                .str("message", "request");
            line.emit();
        }
    }

    /// Route, identity, limits, then the upstream's answer.
    #[allow(clippy::too_many_arguments)]
    async fn proxy(
        &self,
        client: &mut Conn,
        request: &RequestHead,
        peer: &Peer,
        request_id: &str,
        trace: &TraceParent,
        outcome: &mut Outcome,
        body_read: &mut bool,
    ) -> Result<Answer, GatewayError> {
        if has_dot_segments(request.path()) {
            return Err(GatewayError::BadRequest(
                "paths with `.` or `..` segments are refused".into(),
            ));
        }
        let route = self
            .inner
            .table
            .load()
            .find(request.path())
            .cloned()
            .ok_or(GatewayError::UnknownService)?;
        outcome.route = Some(route.clone());
        if !route.allows(&request.method) {
            return Err(GatewayError::MethodNotAllowed {
                allowed: route.allow_header.clone(),
            });
        }
        let identity = match request.header(Kind::Authorization).and_then(bearer_value) {
            Some(token) => match self.inner.auth.verify(token).await {
                Ok(identity) => Some(identity),
                Err(AuthError::Unavailable(reason)) => {
                    tracing::warn!(%reason, "token keys unavailable");
                    return Err(GatewayError::Unavailable {
                        upstream: "identity".into(),
                        retry_after: None,
                    });
                }
                // A bad token on a public route is ignored: the request goes on as anonymous.
                Err(_) if route.public => None,
                Err(_) => return Err(GatewayError::Unauthenticated),
            },
            None if route.public => None,
            None => return Err(GatewayError::Unauthenticated),
        };
        outcome.identity = identity.clone();
        if let Some(limits) = &self.inner.limits {
            let anonymous;
            let (bucket, rule) = match &identity {
                Some(identity) => (identity.bucket.as_str(), identity.rule),
                None => {
                    anonymous = limits.rules.for_address(peer.address.ip());
                    (anonymous.0.as_str(), anonymous.1)
                }
            };
            match limits.check(bucket, rule, peer.address.ip()).await {
                Verdict::Allowed(decision) => outcome.decision = Some(decision),
                Verdict::Exempt => {}
                Verdict::Limited(decision) => {
                    outcome.decision = Some(decision);
                    count_refusal(bucket, "limited");
                    return Err(GatewayError::Limited {
                        limit: decision.limit,
                        retry_after: decision.retry_after,
                    });
                }
                Verdict::Banned { retry_after } => {
                    count_refusal(bucket, "banned");
                    return Err(GatewayError::Banned { retry_after });
                }
            }
        }
        if let crate::h1::head::Framing::Length(length) = request.framing
            && length > route.max_body
        {
            return Err(GatewayError::PayloadTooLarge {
                limit: route.max_body,
            });
        }
        let add = Forward {
            identity: identity.as_deref(),
            client_ip: peer.ip_text(),
            request_id,
            traceparent: &trace.to_header(),
        };
        proxy::forward(
            &route,
            request,
            &add,
            client,
            &mut outcome.failures,
            body_read,
        )
        .await
    }
}

fn count_refusal(bucket: &str, kind: &'static str) {
    let role = bucket
        .split_once(':')
        .map_or(bucket, |(role, _)| role)
        .to_owned();
    metrics::counter!("gateway_rate_limited", "bucket" => role, "kind" => kind).increment(1);
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

fn rate_limit_headers(headers: &mut HeaderMap, decision: Decision) {
    headers.insert(RATELIMIT_LIMIT, HeaderValue::from(decision.limit));
    headers.insert(RATELIMIT_REMAINING, HeaderValue::from(decision.remaining));
    headers.insert(RATELIMIT_RESET, HeaderValue::from(reset_secs(decision)));
}
