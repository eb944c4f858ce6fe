//! What every Carpeta service shares: clocks, callers' roles, the service token for calls
//! between services.

mod app;
pub mod peers;
mod pii_keys;
mod tokens;

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use telar_auth::Claims;
use telar_kit::ApiError;
use telar_types::ErrorCode;

pub use app::{App, Stop, Task};
pub use pii_keys::PiiKeys;
pub use tokens::{ServiceClient, TokenSource};

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The role of service accounts: other services of this operator calling in.
pub const SERVICE_ROLE: &str = "service";
/// Operator staff.
pub const OPERATOR_ROLE: &str = "operador";
/// A citizen, whose `sub` is their 10-digit id.
pub const CITIZEN_ROLE: &str = "ciudadano";

/// The operator's staff (`operador`, `admin`) or one of its services.
pub fn is_staff(claims: &Claims) -> bool {
    [OPERATOR_ROLE, SERVICE_ROLE, "admin"]
        .iter()
        .any(|r| claims.has_role(r))
}

/// 403 unless the caller is staff, or the citizen `citizen` themself.
pub fn may_act_for(claims: &Claims, citizen: &str) -> Result<(), ApiError> {
    if is_staff(claims) || (claims.has_role(CITIZEN_ROLE) && claims.sub == citizen) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::Forbidden,
            "only the citizen or the operator's staff may do this",
        ))
    }
}

/// 403 unless the caller has one of `roles`.
pub fn require_any(claims: &Claims, roles: &[&str]) -> Result<(), ApiError> {
    if roles.iter().any(|role| claims.has_role(role)) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("this needs one of the roles: {}", roles.join(", ")),
        ))
    }
}

/// How Carpeta's services check tokens and get their own (`[carpeta.auth]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub issuer: String,
    pub audience: String,
    /// Where the issuer's keys are (`service://identity/.well-known/jwks.json` in `telar up`).
    pub jwks_url: String,
    /// The identity service's token endpoint, for the services' own client-credentials token.
    pub token_url: String,
    /// The services' account at the identity service (role `service`); created by the identity
    /// service at start when listed in its `clients`.
    pub client_id: String,
    /// From the secrets (`TELAR_CARPETA__AUTH__CLIENT_SECRET`), not the file, outside a laptop.
    pub client_secret: String,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            issuer: "http://127.0.0.1:8008".into(),
            audience: "telar".into(),
            jwks_url: "service://identity/.well-known/jwks.json".into(),
            token_url: "service://identity/token".into(),
            client_id: "carpeta-services".into(),
            client_secret: String::new(),
        }
    }
}

/// Where state shared by a service's instances lives (limits, caches, locks).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SharedStore {
    /// `memory`: this process (embedded mode, one instance). `redis`: every instance.
    pub backend: String,
    pub redis_url: String,
}

impl Default for SharedStore {
    fn default() -> Self {
        SharedStore {
            backend: "memory".into(),
            redis_url: "redis://127.0.0.1:6379".into(),
        }
    }
}

impl SharedStore {
    /// A limiter and a cache store under `prefix`.
    pub async fn open(
        &self,
        prefix: &str,
    ) -> Result<
        (
            std::sync::Arc<dyn telar_resilience::Limiter>,
            std::sync::Arc<dyn telar_resilience::CacheStore>,
        ),
        String,
    > {
        use std::sync::Arc;
        use telar_resilience::{MemoryCache, MemoryLimiter, RedisCache, RedisLimiter};
        match self.backend.as_str() {
            "memory" => Ok((
                Arc::new(MemoryLimiter::new()),
                Arc::new(MemoryCache::new(10_000)),
            )),
            "redis" => {
                let limiter = RedisLimiter::connect(&self.redis_url, prefix)
                    .await
                    .map_err(|e| format!("store.redis_url: {e}"))?;
                let cache = RedisCache::connect(&self.redis_url, prefix)
                    .await
                    .map_err(|e| format!("store.redis_url: {e}"))?;
                Ok((Arc::new(limiter), Arc::new(cache)))
            }
            other => Err(format!("store.backend: `{other}` is not memory or redis")),
        }
    }
}

/// A Carpeta event (source `carpeta`, the aggregate's id as subject).
pub fn event(ty: &str, subject: &str, data: serde_json::Value) -> telar_types::Envelope {
    telar_types::Envelope::new("carpeta", ty, data).with_subject(subject)
}

/// A route layer: 401 without a valid token (after `telar_auth::authenticate`).
pub async fn require_token(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if request.extensions().get::<Claims>().is_some() {
        next.run(request).await
    } else {
        ApiError::new(ErrorCode::Unauthenticated, "a bearer token is required").into_response()
    }
}

/// A Carpeta service's kit service: `api` behind token verification, and `/ready` checking
/// its database.
pub fn service(
    name: &str,
    kit: telar_kit::KitConfig,
    verifier: telar_auth::Verifier,
    api: telar_kit::OpenApiRouter,
    db: &telar_sql::Db,
) -> telar_kit::Service {
    let api = api.layer(axum::middleware::from_fn_with_state(
        verifier,
        telar_auth::authenticate,
    ));
    let db = db.clone();
    telar_kit::Service::new(name)
        .config(kit)
        .api(api)
        .ready_check(telar_kit::ReadyCheck::new("database", move || {
            let db = db.clone();
            async move { db.ping().await.map_err(|e| e.to_string()) }
        }))
}

/// A route layer: 401 without a token, 403 unless the caller is staff (`operador`, `admin`)
/// or one of the operator's services.
pub async fn require_staff(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match request.extensions().get::<Claims>() {
        None => {
            ApiError::new(ErrorCode::Unauthenticated, "a bearer token is required").into_response()
        }
        Some(claims) => match require_any(claims, &[OPERATOR_ROLE, "admin", SERVICE_ROLE]) {
            Ok(()) => next.run(request).await,
            Err(error) => error.into_response(),
        },
    }
}
