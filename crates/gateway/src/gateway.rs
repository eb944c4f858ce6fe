//! The gateway's shared state: the routing table (reloadable), token checks, limits, error
//! style and its own API. Serving a request is in `serve.rs`, the server loop in `server.rs`.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use telar_auth::{Verifier, VerifierConfig};
use telar_kit::{KitConfig, RequestMetrics};

use crate::config::{EdgeAuthConfig, GatewayConfig, RoutesConfig};
use crate::error::ErrorRenderer;
use crate::identity::EdgeAuth;
use crate::limits::{EdgeLimits, RoleRules};
use crate::routes::RouteTable;

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
    ip: String,
}

impl Peer {
    pub fn new(address: SocketAddr) -> Self {
        Peer {
            address,
            ip: address.ip().to_string(),
        }
    }

    pub fn ip_text(&self) -> &str {
        &self.ip
    }
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
}

fn read_routes(path: &std::path::Path) -> Result<RoutesConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("routes file {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("routes file {}: {e}", path.display()))
}
