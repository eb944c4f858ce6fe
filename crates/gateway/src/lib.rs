//! The edge of a telar system. Routes path prefixes to upstream services from config (reloadable
//! without dropping connections), verifies bearer tokens against the identity service's JWKS and
//! forwards the caller as `x-telar-*` headers (never trusting a client's), limits each role on a
//! sliding window with bans and an allowlist (memory or Redis), protects each upstream instance
//! with a circuit breaker, retries only what is safe to send again, and streams bodies both ways.
//! Every failure becomes a response in one place (`error.rs`), as problem+json or the system's
//! own envelope.

mod config;
mod error;
mod gateway;
mod h1;
mod headers;
mod identity;
mod limits;
mod ops;
mod own;
mod pool;
mod proxy;
mod relay;
mod routes;
mod serve;
mod server;
mod upstream;

pub use config::{
    BreakerSettings, EdgeAuthConfig, EdgeConfig, ErrorConfig, ErrorStyle, GatewayConfig,
    LimitBackend, LimitsConfig, RouteConfig, RoutesConfig, UpstreamConfig,
};
pub use error::{ErrorRenderer, GatewayError};
pub use gateway::{Gateway, NAME, verifier};
pub use identity::{IDENTITY_PREFIX, ORG_HEADER, PERMISSIONS_HEADER, ROLES_HEADER, USER_HEADER};
pub use limits::{KeyView, LimitStatus};
