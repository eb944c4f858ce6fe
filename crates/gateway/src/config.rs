//! `[gateway]` in a system's config: routes, upstreams, token checks, limits, edge limits and
//! the shape of error bodies. Routes and upstreams can also live in their own file, re-read when
//! it changes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    pub routes: Vec<RouteConfig>,
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// A TOML file holding `[[routes]]` and `[upstreams.*]`; when set it replaces the inline
    /// table and is re-read when it changes (requests in flight keep the table they started with).
    pub routes_file: Option<PathBuf>,
    pub auth: EdgeAuthConfig,
    pub limits: LimitsConfig,
    pub edge: EdgeConfig,
    pub errors: ErrorConfig,
}

impl GatewayConfig {
    /// The inline routing table.
    pub fn table(&self) -> RoutesConfig {
        RoutesConfig {
            routes: self.routes.clone(),
            upstreams: self.upstreams.clone(),
        }
    }
}

/// The routing table: what a reload replaces (and what `routes_file` holds).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RoutesConfig {
    pub routes: Vec<RouteConfig>,
    pub upstreams: BTreeMap<String, UpstreamConfig>,
}

/// One path prefix and where it goes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Matched on whole segments: `/api/citizens` matches `/api/citizens` and
    /// `/api/citizens/7`, never `/api/citizensx`. The longest matching prefix wins.
    pub prefix: String,
    /// A key of `[upstreams]`.
    pub upstream: String,
    /// No token needed (limits then apply per client address).
    #[serde(default)]
    pub public: bool,
    /// Methods let through (empty: all); others get 405.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Removes the prefix before forwarding (`/api/citizens/7` → `/7`).
    #[serde(default)]
    pub strip_prefix: bool,
    /// Replaces the prefix before forwarding (`/api/v1` → `/internal`).
    #[serde(default)]
    pub rewrite: Option<String>,
    /// Longest wait for the upstream's response headers (default: the upstream's).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Largest request body on this route (default: `[gateway.edge] max_body_bytes`).
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
}

impl RouteConfig {
    /// A private route of `prefix` to `upstream`, forwarded unchanged.
    pub fn new(prefix: impl Into<String>, upstream: impl Into<String>) -> Self {
        RouteConfig {
            prefix: prefix.into(),
            upstream: upstream.into(),
            public: false,
            methods: Vec::new(),
            strip_prefix: false,
            rewrite: None,
            timeout_ms: None,
            max_body_bytes: None,
        }
    }
}

/// One upstream service: its instances and how it is protected.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// Base URLs (`http://127.0.0.1:8001`), used round-robin while their breaker is closed.
    pub instances: Vec<String>,
    pub timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// Total attempts for idempotent requests without a body (1: no retry).
    pub attempts: u32,
    pub retry_backoff_ms: u64,
    /// Retries allowed per request, on average (0.2: one retry per five requests).
    pub retry_budget: f64,
    pub breaker: BreakerSettings,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            instances: Vec::new(),
            timeout_ms: 30_000,
            connect_timeout_ms: 2_000,
            attempts: 2,
            retry_backoff_ms: 25,
            retry_budget: 0.2,
            breaker: BreakerSettings::default(),
        }
    }
}

/// Per instance: opens on a streak of failures (connection errors, timeouts, 5xx but 501) or a
/// failure rate; half-open after `open_secs`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerSettings {
    pub consecutive_failures: u32,
    pub failure_rate: f64,
    pub window_secs: u64,
    pub min_calls: u32,
    pub open_secs: u64,
    pub half_open_probes: u32,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            consecutive_failures: 5,
            failure_rate: 0.5,
            window_secs: 30,
            min_calls: 20,
            open_secs: 15,
            half_open_probes: 1,
        }
    }
}

/// Whose tokens the gateway accepts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeAuthConfig {
    pub issuer: String,
    pub audience: String,
    /// The identity service's JWKS (`None`: only keys handed to the gateway in process).
    pub jwks_url: Option<String>,
    /// Verified tokens remembered until they expire (a signature check costs ~35 µs).
    pub cache_entries: usize,
    /// Roles that may read `/ops/*` (limits status, routes).
    pub ops_roles: Vec<String>,
}

impl Default for EdgeAuthConfig {
    fn default() -> Self {
        EdgeAuthConfig {
            issuer: "telar".into(),
            audience: "telar".into(),
            jwks_url: None,
            cache_entries: 100_000,
            ops_roles: vec!["admin".into(), "operador".into()],
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LimitBackend {
    /// This gateway instance only.
    #[default]
    Memory,
    /// Shared by every instance through Redis.
    Redis,
}

/// Per-role limits on a sliding window, with bans.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub enabled: bool,
    pub backend: LimitBackend,
    pub redis_url: String,
    /// Requests per window for each role (a user with several roles gets the largest).
    pub roles: BTreeMap<String, u32>,
    /// For a signed-in user with none of the listed roles.
    pub default_limit: u32,
    /// For requests without a token (public routes), per client address.
    pub anonymous_limit: u32,
    pub window_secs: u64,
    /// Bans after this many refused requests within `ban_window_secs`.
    pub ban_after: u32,
    pub ban_window_secs: u64,
    pub ban_secs: u64,
    pub max_ban_secs: u64,
    /// Client networks never limited (CIDR: the hub's addresses).
    pub allowlist: Vec<String>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            enabled: true,
            backend: LimitBackend::Memory,
            redis_url: "redis://127.0.0.1:6379".into(),
            roles: BTreeMap::from([
                ("ciudadano".into(), 60),
                ("operador".into(), 200),
                ("transfer".into(), 400),
            ]),
            default_limit: 60,
            anonymous_limit: 60,
            window_secs: 60,
            ban_after: 5,
            ban_window_secs: 60,
            ban_secs: 300,
            max_ban_secs: 24 * 3600,
            allowlist: Vec::new(),
        }
    }
}

/// What the gateway accepts from clients before any upstream is involved.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeConfig {
    /// A client that has not sent its complete headers by then is disconnected (slowloris).
    pub header_read_timeout_ms: u64,
    /// Request line plus headers (at least 8 KiB); larger: 431.
    pub max_header_bytes: usize,
    /// Request bodies beyond this get 413 (streamed, never buffered).
    pub max_body_bytes: u64,
    /// Event loops serving connections (0: one per core).
    pub workers: usize,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            header_read_timeout_ms: 10_000,
            max_header_bytes: 16 * 1024,
            max_body_bytes: 2 * 1024 * 1024 * 1024,
            workers: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ErrorStyle {
    /// RFC 9457 `application/problem+json`, like every telar service.
    #[default]
    Problem,
    /// `{"status":"error","code":…,"meta":{"request_id"},"error":{"id","message"}}` (HeartGuard).
    Envelope,
}

/// How the gateway's own errors look to clients of this system.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ErrorConfig {
    pub style: ErrorStyle,
    /// Envelope ids are `<prefix>-UNKNOWN-SERVICE`, `<prefix>-SERVICE-UNAVAILABLE`, … unless
    /// `ids` names one (`rate_limited = "HG-RATE-001"`).
    pub prefix: Option<String>,
    pub ids: BTreeMap<String, String>,
}
