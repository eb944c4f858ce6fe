//! `/health` (the process answers), `/ready` (its dependencies answer) and `/metrics`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Map, Value, json};

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// A named dependency check run by `/ready` (database ping, broker connection, ...).
#[derive(Clone)]
pub struct ReadyCheck {
    name: String,
    check: Arc<dyn Fn() -> CheckFuture + Send + Sync>,
}

impl ReadyCheck {
    pub fn new<F, Fut>(name: impl Into<String>, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        ReadyCheck {
            name: name.into(),
            check: Arc::new(move || Box::pin(check())),
        }
    }
}

/// Each check gets this long before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub(crate) struct HealthState {
    pub service: Arc<str>,
    pub checks: Arc<Vec<ReadyCheck>>,
    pub draining: Arc<AtomicBool>,
}

fn health_json(status: StatusCode, body: Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/health+json"),
    );
    response
}

pub(crate) async fn health(State(state): State<HealthState>) -> Response {
    health_json(
        StatusCode::OK,
        json!({"status": "pass", "service": &*state.service}),
    )
}

pub(crate) async fn ready(State(state): State<HealthState>) -> Response {
    let runs = state.checks.iter().map(|check| async move {
        let outcome = match tokio::time::timeout(CHECK_TIMEOUT, (check.check)()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(reason),
            Err(_) => Err(format!("no answer within {} ms", CHECK_TIMEOUT.as_millis())),
        };
        (check.name.clone(), outcome)
    });
    let outcomes = futures::future::join_all(runs).await;
    let mut checks = Map::new();
    let mut failed = Vec::new();
    for (name, outcome) in outcomes {
        let entry = match outcome {
            Ok(()) => json!({"status": "pass"}),
            Err(reason) => {
                failed.push(name.clone());
                json!({"status": "fail", "output": reason})
            }
        };
        checks.insert(name, entry);
    }
    if state.draining.load(Ordering::Relaxed) {
        failed.push("shutdown".to_owned());
        checks.insert(
            "shutdown".into(),
            json!({"status": "fail", "output": "draining"}),
        );
    }
    if failed.is_empty() {
        health_json(
            StatusCode::OK,
            json!({"status": "pass", "service": &*state.service, "checks": checks}),
        )
    } else {
        tracing::warn!(failed = ?failed, "not ready");
        health_json(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "fail", "service": &*state.service, "failed": failed, "checks": checks}),
        )
    }
}

pub(crate) async fn metrics() -> Response {
    let mut response = telar_telemetry::render_metrics().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
