//! The gateway: one handler for every proxied request — route, identity, limits, forward — with
//! every failure rendered in one place, and one access-log line and one set of metrics each.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Body;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use hyper::body::Incoming;
use telar_auth::{AuthError, Verifier, VerifierConfig};
use telar_kit::{KitConfig, RequestMetrics};
use telar_resilience::{Decision, Verdict};
use telar_telemetry::{LogLine, TraceParent};
use tower::ServiceExt;
use tracing::Instrument;

use crate::config::{EdgeAuthConfig, GatewayConfig, RoutesConfig};
use crate::error::{ErrorRenderer, GatewayError};
use crate::headers::{self, REQUEST_ID, TRACEPARENT};
use crate::identity::{EdgeAuth, Identity, bearer, strip_identity_headers};
use crate::limits::{EdgeLimits, RoleRules};
use crate::proxy::{self, Failure};
use crate::routes::{RESERVED, Route, RouteTable, has_dot_segments};

pub const NAME: &str = "gateway";

/// A running gateway's shared state. Cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub table: ArcSwap<RouteTable>,
    pub config: GatewayConfig,
    pub auth: EdgeAuth,
    pub limits: Option<EdgeLimits>,
    pub errors: ErrorRenderer,
    pub ops: std::sync::OnceLock<Router>,
    pub draining: Arc<AtomicBool>,
    pub reload_error: Mutex<Option<String>>,
    pub metrics: RequestMetrics,
    pub kit: KitConfig,
    /// Event loops serving connections, each with its own upstream pools.
    pub workers: usize,
}

/// The client of a connection, with its address already in text (every request of the
/// connection logs it and forwards it).
pub struct Peer {
    pub address: SocketAddr,
    pub ip: HeaderValue,
}

impl Peer {
    pub fn new(address: SocketAddr) -> Self {
        let ip = HeaderValue::from_str(&address.ip().to_string())
            .unwrap_or(HeaderValue::from_static("unknown"));
        Peer { address, ip }
    }

    fn ip_text(&self) -> &str {
        self.ip.to_str().unwrap_or("")
    }
}

/// What one request went through, for its log line and metrics.
#[derive(Default)]
struct Outcome {
    route: Option<Arc<Route>>,
    identity: Option<Arc<Identity>>,
    decision: Option<Decision>,
    failures: Vec<Failure>,
}

/// The verifier the gateway's `[auth]` section describes.
pub fn verifier(config: &EdgeAuthConfig) -> Verifier {
    let mut verifier = VerifierConfig::new(&config.issuer, &config.audience);
    verifier.jwks_url = config.jwks_url.clone();
    Verifier::new(verifier)
}

impl Gateway {
    /// Compiles the routes (from `routes_file` when set), connects the limits backend and
    /// prepares the ops API. `verifier` checks tokens (see [`verifier`]).
    pub async fn build(
        config: GatewayConfig,
        kit: KitConfig,
        verifier: Verifier,
    ) -> Result<Self, String> {
        let routes = match &config.routes_file {
            Some(path) => read_routes(path)?,
            None => config.table(),
        };
        let workers = match config.edge.workers {
            0 => crate::server::default_workers(),
            n => n,
        };
        let table = RouteTable::compile(&routes, &config.edge, workers, None)?;
        let rules = Arc::new(RoleRules::new(&config.limits));
        let limits = if config.limits.enabled {
            Some(EdgeLimits::new(&config.limits, rules.clone()).await?)
        } else {
            None
        };
        let auth = EdgeAuth::new(verifier, rules, config.auth.cache_entries);
        let gateway = Gateway {
            inner: Arc::new(Inner {
                table: ArcSwap::from_pointee(table),
                errors: ErrorRenderer::new(config.errors.clone()),
                config,
                auth,
                limits,
                ops: std::sync::OnceLock::new(),
                draining: Arc::default(),
                reload_error: Mutex::new(None),
                metrics: RequestMetrics::default(),
                kit,
                workers,
            }),
        };
        let ops = crate::ops::router(&gateway);
        let _ = gateway.inner.ops.set(ops);
        Ok(gateway)
    }

    /// Replaces the routing table. Requests already routed finish on the old one; upstreams
    /// whose settings did not change keep their connections and breakers. A table that does
    /// not compile is refused and the current one stays.
    pub fn reload(&self, routes: &RoutesConfig) -> Result<(), String> {
        let current = self.inner.table.load();
        let table = RouteTable::compile(
            routes,
            &self.inner.config.edge,
            self.inner.workers,
            Some(&current),
        )?;
        self.inner.table.store(Arc::new(table));
        tracing::info!(routes = routes.routes.len(), "gateway routes reloaded");
        Ok(())
    }

    /// Re-reads `routes_file`. A refused file keeps the last good table and fails `/ready`
    /// until a good one is read.
    pub fn reload_file(&self) -> Result<(), String> {
        let Some(path) = &self.inner.config.routes_file else {
            return Err("no routes_file is configured".into());
        };
        let result = read_routes(path).and_then(|routes| self.reload(&routes));
        if let Ok(mut error) = self.inner.reload_error.lock() {
            *error = result.as_ref().err().cloned();
        }
        if let Err(error) = &result {
            tracing::error!(%error, "gateway routes not reloaded; keeping the last good table");
        }
        result
    }

    /// Reloads `routes_file` whenever it changes, until `shutdown`.
    pub async fn watch(self, every: Duration, shutdown: impl Future<Output = ()> + Send) {
        let Some(path) = self.inner.config.routes_file.clone() else {
            return;
        };
        let modified =
            |path: &std::path::Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let mut seen = modified(&path);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(every) => {}
            }
            let now = modified(&path);
            if now != seen {
                seen = now;
                let _ = self.reload_file();
            }
        }
    }

    pub(crate) fn draining(&self) -> Arc<AtomicBool> {
        self.inner.draining.clone()
    }

    /// Answers one request from `peer`.
    pub async fn handle(&self, request: Request<Incoming>, peer: &Peer) -> Response<Body> {
        let started = Instant::now();
        if is_reserved(request.uri().path()) {
            let Some(ops) = self.inner.ops.get() else {
                return Response::new(Body::empty());
            };
            return match ops.clone().oneshot(request.map(Body::new)).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
        }
        let request_id = headers::request_id(request.headers());
        let incoming = request
            .headers()
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(TraceParent::parse);
        // A span only when spans are exported: the proxy's hot path stays free of tracing
        // dispatch otherwise, and the header still carries the trace one hop further.
        let span = if telar_telemetry::otlp_active() {
            tracing::info_span!(
                "gateway",
                otel.kind = "server",
                otel.name = format!("gateway {}", request.method()),
                http.request.method = request.method().as_str(),
                url.path = request.uri().path(),
                request_id = request_id.to_str().unwrap_or(""),
                http.response.status_code = tracing::field::Empty,
            )
        } else {
            tracing::Span::none()
        };
        let trace = telar_telemetry::hop(&span, incoming.as_ref());
        let method = request.method().clone();
        let uri = request.uri().clone();
        let mut outcome = Outcome::default();
        let result = self
            .proxy(request, peer, &request_id, &trace, &mut outcome)
            .instrument(span.clone())
            .await;
        let mut response = match result {
            Ok(response) => response,
            Err(error) => self
                .inner
                .errors
                .render(&error, request_id.to_str().unwrap_or("")),
        };
        let headers = response.headers_mut();
        if let Some(decision) = outcome.decision {
            rate_limit_headers(headers, decision);
        }
        headers.insert(REQUEST_ID, request_id.clone());
        let status = response.status().as_u16();
        span.record("http.response.status_code", status);
        let elapsed = started.elapsed();
        let route = outcome
            .route
            .as_ref()
            .map_or("unmatched", |r| r.prefix.as_str());
        self.inner
            .metrics
            .record(NAME, &method, route, status, elapsed);
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
                .str("request_id", request_id.to_str().unwrap_or(""))
                .str("trace_id", trace.trace_id_hex().as_str())
                .str("client", peer.ip_text())
                .str("method", method.as_str())
                .str("path", uri.path())
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
        response
    }

    async fn proxy(
        &self,
        request: Request<Incoming>,
        peer: &Peer,
        request_id: &HeaderValue,
        trace: &TraceParent,
        outcome: &mut Outcome,
    ) -> Result<Response<Body>, GatewayError> {
        let (mut parts, body) = request.into_parts();
        if has_dot_segments(parts.uri.path()) {
            return Err(GatewayError::BadRequest(
                "paths with `.` or `..` segments are refused".into(),
            ));
        }
        let route = self
            .inner
            .table
            .load()
            .find(parts.uri.path())
            .cloned()
            .ok_or(GatewayError::UnknownService)?;
        outcome.route = Some(route.clone());
        if !route.allows(&parts.method) {
            return Err(GatewayError::MethodNotAllowed {
                allowed: route.allow_header.clone(),
            });
        }
        let identity = match bearer(&parts.headers) {
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
        if headers::content_length(&parts.headers).is_some_and(|len| len > route.max_body) {
            return Err(GatewayError::PayloadTooLarge {
                limit: route.max_body,
            });
        }
        let headers = &mut parts.headers;
        headers::remove_hop_by_hop(headers);
        strip_identity_headers(headers);
        if let Some(identity) = &identity {
            for (name, value) in &identity.headers {
                headers.insert(name.clone(), value.clone());
            }
        }
        headers::add_forwarded(headers, &peer.ip);
        headers.insert(REQUEST_ID, request_id.clone());
        if let Ok(value) = HeaderValue::from_str(&trace.to_header()) {
            headers.insert(TRACEPARENT, value);
        }
        let mut response = proxy::forward(&route, parts, body, &mut outcome.failures).await?;
        headers::remove_hop_by_hop(response.headers_mut());
        Ok(response.map(Body::new))
    }
}

fn count_refusal(bucket: &str, kind: &'static str) {
    let role = bucket
        .split_once(':')
        .map_or(bucket, |(role, _)| role)
        .to_owned();
    metrics::counter!("gateway_rate_limited", "bucket" => role, "kind" => kind).increment(1);
}

const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

fn rate_limit_headers(headers: &mut HeaderMap, decision: Decision) {
    let reset = decision.retry_after.as_millis().div_ceil(1000);
    headers.insert(RATELIMIT_LIMIT, number(u64::from(decision.limit)));
    headers.insert(RATELIMIT_REMAINING, number(u64::from(decision.remaining)));
    headers.insert(
        RATELIMIT_RESET,
        number(u64::try_from(reset).unwrap_or(u64::MAX)),
    );
}

/// A header value for a count. The small ones every response carries are made once.
fn number(value: u64) -> HeaderValue {
    static SMALL: std::sync::OnceLock<Vec<HeaderValue>> = std::sync::OnceLock::new();
    let small = SMALL.get_or_init(|| (0..=1024u64).map(HeaderValue::from).collect());
    usize::try_from(value)
        .ok()
        .and_then(|index| small.get(index))
        .cloned()
        .unwrap_or_else(|| HeaderValue::from(value))
}

fn is_reserved(path: &str) -> bool {
    RESERVED.iter().any(|reserved| {
        path.strip_prefix(reserved)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

fn read_routes(path: &std::path::Path) -> Result<RoutesConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("routes file {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("routes file {}: {e}", path.display()))
}
