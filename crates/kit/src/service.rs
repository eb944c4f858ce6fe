//! The `Service` builder: routes in, a fully equipped HTTP server out.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderName, HeaderValue, Method, header};
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::config::{CorsConfig, KitConfig};
use crate::error::{ApiError, FieldError, Problem};
use crate::health::{self, HealthState, ReadyCheck};
use crate::middleware::{self, Observe};
use crate::negotiate;

#[derive(OpenApi)]
#[openapi(components(schemas(Problem, FieldError)))]
struct KitDoc;

/// A service under construction: its API routes (documented, JSON/XML negotiated), optional
/// raw routes, readiness checks and HTTP settings.
pub struct Service {
    name: String,
    version: String,
    config: KitConfig,
    api: OpenApiRouter,
    fixed: OpenApiRouter,
    raw: Router,
    checks: Vec<ReadyCheck>,
}

impl Service {
    pub fn new(name: impl Into<String>) -> Self {
        Service {
            name: name.into(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            config: KitConfig::default(),
            api: OpenApiRouter::new(),
            fixed: OpenApiRouter::new(),
            raw: Router::new(),
            checks: Vec::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    pub fn config(mut self, config: KitConfig) -> Self {
        self.config = config;
        self
    }

    /// Documented API routes; their responses are JSON or XML by `Accept`.
    pub fn api(mut self, router: OpenApiRouter) -> Self {
        self.api = self.api.merge(router);
        self
    }

    /// Documented routes that answer in a format of their own choosing, whatever `Accept` says
    /// (simulators of third-party servers, file downloads with a schema).
    pub fn api_fixed_format(mut self, router: OpenApiRouter) -> Self {
        self.fixed = self.fixed.merge(router);
        self
    }

    /// Routes outside negotiation and the OpenAPI document (file bodies, redirects, ...).
    pub fn routes(mut self, router: Router) -> Self {
        self.raw = self.raw.merge(router);
        self
    }

    /// A dependency checked by `/ready`.
    pub fn ready_check(mut self, check: ReadyCheck) -> Self {
        self.checks.push(check);
        self
    }

    /// The complete router, for tests and in-process composition.
    pub fn into_router(self) -> Router {
        self.build(Arc::new(AtomicBool::new(false)))
    }

    /// The complete router for a server of the caller's own (the gateway's), whose `/ready`
    /// fails once `draining` is set.
    pub fn into_router_draining(self, draining: Arc<AtomicBool>) -> Router {
        self.build(draining)
    }

    fn build(self, draining: Arc<AtomicBool>) -> Router {
        // Metrics recorded before a recorder exists are lost: make sure there is one.
        telar_telemetry::install_metrics();
        let service: Arc<str> = self.name.clone().into();
        let (api, mut openapi) = self.api.split_for_parts();
        let (fixed, fixed_openapi) = self.fixed.split_for_parts();
        openapi.merge(fixed_openapi);
        openapi.merge(KitDoc::openapi());
        openapi.info.title = self.name.clone();
        openapi.info.version = self.version.clone();
        let api = api.layer(negotiate::NegotiateLayer);
        let docs: Router = SwaggerUi::new("/docs").url("/openapi.json", openapi).into();
        let ops = Router::new()
            .route("/health", get(health::health))
            .route("/ready", get(health::ready))
            .route("/metrics", get(health::metrics))
            .with_state(HealthState {
                service: service.clone(),
                checks: Arc::new(self.checks),
                draining,
            });
        let observe = Observe {
            service,
            timeout: Duration::from_millis(self.config.request_timeout_ms),
            metrics: Arc::default(),
        };
        Router::new()
            .merge(api)
            .merge(fixed)
            .merge(self.raw)
            .merge(docs)
            .merge(ops)
            .fallback(not_found)
            .layer(DefaultBodyLimit::max(self.config.body_limit_bytes))
            .layer(tower::util::option_layer(cors_layer(&self.config.cors)))
            .layer(CatchPanicLayer::custom(|_| {
                ApiError::internal("handler panicked").into_response()
            }))
            .layer(middleware::ObserveLayer::new(observe))
    }

    /// Serves until `shutdown` resolves, then stops accepting and waits for in-flight requests
    /// to finish. If some are still running when the grace period ends, `run` returns without
    /// waiting for them (their connections are not forcibly closed: in `telar` the process
    /// exits next).
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let grace = Duration::from_millis(self.config.shutdown_grace_ms);
        let name = self.name.clone();
        let draining = Arc::new(AtomicBool::new(false));
        let router = self.build(draining.clone());
        let (stopped_tx, mut stopped_rx) = tokio::sync::watch::channel(false);
        let signal = async move {
            shutdown.await;
            draining.store(true, Ordering::Relaxed);
            let _ = stopped_tx.send(true);
        };
        let server = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(signal)
        .into_future();
        let grace_elapsed = async move {
            let _ = stopped_rx.wait_for(|stopped| *stopped).await;
            tracing::info!(service = %name, "draining in-flight requests");
            tokio::time::sleep(grace).await;
            name
        };
        tokio::select! {
            result = server => result,
            name = grace_elapsed => {
                tracing::warn!(service = %name, grace_ms = grace.as_millis() as u64, "grace period over; closing remaining connections");
                Ok(())
            }
        }
    }
}

async fn not_found() -> Response {
    ApiError::not_found("no route matches this path").into_response()
}

/// No layer at all when no origin is configured: preflights then reach the routes like any
/// other request (and get 405 or whatever the service answers).
fn cors_layer(config: &CorsConfig) -> Option<CorsLayer> {
    if config.allowed_origins.is_empty() {
        return None;
    }
    let any = config.allowed_origins.iter().any(|o| o == "*");
    let origins: Vec<HeaderValue> = config
        .allowed_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    let allow_origin = if any {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins)
    };
    let layer = CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::CONTENT_TYPE,
            header::ACCEPT,
            header::AUTHORIZATION,
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("traceparent"),
        ])
        .expose_headers([HeaderName::from_static("x-request-id")])
        .max_age(Duration::from_secs(config.max_age_secs));
    Some(layer)
}
