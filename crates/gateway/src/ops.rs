//! The gateway's own API, beside `/health`, `/ready`, `/metrics` and `/docs`: the rate-limit
//! status, the routing table with each instance's breaker, and a reload. `/ops/*` needs a token
//! with one of `[gateway.auth] ops_roles`.

use axum::Json;
use axum::Router;
use axum::extract::State;
use http::HeaderMap;
use serde::Serialize;
use telar_kit::{ApiError, OpenApiRouter, ReadyCheck, Service, routes};
use telar_types::ErrorCode;
use utoipa::ToSchema;

use crate::gateway::{Gateway, NAME};
use crate::identity::bearer;
use crate::limits::LimitStatus;

pub fn router(gateway: &Gateway) -> Router {
    let api = OpenApiRouter::new()
        .routes(routes!(limit_status))
        .routes(routes!(list_routes))
        .routes(routes!(reload_routes))
        .with_state(gateway.clone());
    let weak = std::sync::Arc::downgrade(&gateway.inner);
    let routes_loaded = ReadyCheck::new("routes", move || {
        let error = weak
            .upgrade()
            .and_then(|inner| inner.reload_error.lock().ok().and_then(|e| e.clone()));
        async move { error.map_or(Ok(()), Err) }
    });
    Service::new(NAME)
        .config(gateway.inner.kit.clone())
        .api(api)
        .ready_check(routes_loaded)
        .into_router_draining(gateway.draining())
}

async fn require_ops(gateway: &Gateway, headers: &HeaderMap) -> Result<(), ApiError> {
    let token = bearer(headers)
        .ok_or_else(|| ApiError::new(ErrorCode::Unauthenticated, "a bearer token is required"))?;
    let identity = gateway
        .inner
        .auth
        .verify(token)
        .await
        .map_err(|_| ApiError::new(ErrorCode::Unauthenticated, "invalid token"))?;
    let allowed = &gateway.inner.config.auth.ops_roles;
    if identity
        .claims
        .roles
        .iter()
        .any(|role| allowed.contains(role))
    {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("one of the roles {allowed:?} is required"),
        ))
    }
}

/// Limits per bucket, and the buckets banned or refused lately.
#[utoipa::path(get, path = "/ops/ratelimit/status", tag = "ops",
    responses((status = 200, body = LimitStatus), (status = 401, body = telar_kit::Problem),
              (status = 403, body = telar_kit::Problem)))]
async fn limit_status(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
) -> Result<Json<LimitStatus>, ApiError> {
    require_ops(&gateway, &headers).await?;
    let Some(limits) = &gateway.inner.limits else {
        return Err(ApiError::new(ErrorCode::NotFound, "rate limits are off"));
    };
    let status = limits
        .status()
        .await
        .map_err(|e| ApiError::new(ErrorCode::Unavailable, e.to_string()))?;
    Ok(Json(status))
}

#[derive(Debug, Serialize, ToSchema)]
struct RouteView {
    prefix: String,
    upstream: String,
    public: bool,
    timeout_ms: u64,
    instances: Vec<InstanceView>,
}

#[derive(Debug, Serialize, ToSchema)]
struct InstanceView {
    url: String,
    /// `closed`, `open` or `half_open`.
    breaker: String,
}

/// The routing table in use, with each upstream instance's breaker.
#[utoipa::path(get, path = "/ops/routes", tag = "ops",
    responses((status = 200, body = Vec<RouteView>), (status = 401, body = telar_kit::Problem)))]
async fn list_routes(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
) -> Result<Json<Vec<RouteView>>, ApiError> {
    require_ops(&gateway, &headers).await?;
    let table = gateway.inner.table.load();
    let views = table
        .routes()
        .iter()
        .map(|route| RouteView {
            prefix: if route.prefix.is_empty() {
                "/".into()
            } else {
                route.prefix.clone()
            },
            upstream: route.upstream.name.clone(),
            public: route.public,
            timeout_ms: u64::try_from(route.timeout.as_millis()).unwrap_or(u64::MAX),
            instances: route
                .upstream
                .instances
                .iter()
                .map(|instance| InstanceView {
                    url: format!("http://{}{}", instance.authority, instance.base_path),
                    breaker: match instance.breaker.state() {
                        telar_resilience::BreakerState::Closed => "closed",
                        telar_resilience::BreakerState::Open => "open",
                        telar_resilience::BreakerState::HalfOpen => "half_open",
                    }
                    .into(),
                })
                .collect(),
        })
        .collect();
    Ok(Json(views))
}

/// Re-reads the routes file now (it is also re-read when it changes).
#[utoipa::path(post, path = "/ops/routes/reload", tag = "ops",
    responses((status = 200, body = Vec<RouteView>), (status = 422, body = telar_kit::Problem)))]
async fn reload_routes(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
) -> Result<Json<Vec<RouteView>>, ApiError> {
    require_ops(&gateway, &headers).await?;
    gateway
        .reload_file()
        .map_err(|e| ApiError::new(ErrorCode::InvalidArgument, e))?;
    list_routes(State(gateway), headers).await
}
