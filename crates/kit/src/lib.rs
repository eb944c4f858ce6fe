//! The service kit: what every telar service gets without writing it. `/health`, `/ready` with
//! registered checks, `/metrics`, `/openapi.json` and `/docs` (offline), request ids, trace
//! context, CORS, body and time limits, RFC 9457 problem bodies, JSON or XML by negotiation and
//! graceful shutdown.

mod config;
mod error;
mod health;
mod middleware;
mod negotiate;
mod outbound;
mod payload;
mod service;
mod xml;

pub use config::{CorsConfig, KitConfig};
pub use error::{ApiError, FieldError, Problem};
pub use health::ReadyCheck;
pub use middleware::{RequestId, RequestMetrics};
pub use negotiate::Format;
pub use outbound::SendTraced;
pub use payload::{Payload, body_bytes};
pub use service::Service;

/// Re-exported so services declare routes without depending on utoipa-axum directly.
pub use utoipa_axum::{router::OpenApiRouter, routes};
