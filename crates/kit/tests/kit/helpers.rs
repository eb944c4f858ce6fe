use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use telar_kit::{ApiError, KitConfig, OpenApiRouter, Payload, ReadyCheck, Service, routes};
use telar_testkit::Shutdown;
use tokio::sync::Notify;
use utoipa::ToSchema;

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCitizen {
    pub id: i64,
    pub email: String,
}

#[derive(Clone, Default)]
pub struct TestState {
    /// Notified when `/slow` has started, so tests act while a request is in flight.
    pub slow_started: Arc<Notify>,
}

/// Registers a citizen (echoes it back).
#[utoipa::path(post, path = "/citizens", request_body = NewCitizen,
    responses((status = 201, body = NewCitizen), (status = 422, body = telar_kit::Problem)))]
async fn create_citizen(
    Payload(citizen): Payload<NewCitizen>,
) -> Result<(StatusCode, Json<NewCitizen>), ApiError> {
    if !citizen.email.contains('@') {
        return Err(ApiError::invalid("email", "must contain @"));
    }
    Ok((StatusCode::CREATED, Json(citizen)))
}

#[derive(Deserialize)]
struct SlowQuery {
    ms: u64,
}

/// Answers after `ms` milliseconds.
#[utoipa::path(get, path = "/slow", responses((status = 200)))]
async fn slow(
    State(state): State<TestState>,
    Query(query): Query<SlowQuery>,
) -> Json<&'static str> {
    state.slow_started.notify_one();
    tokio::time::sleep(Duration::from_millis(query.ms)).await;
    Json("done")
}

/// Always fails with an internal error whose cause must not leak.
#[utoipa::path(get, path = "/boom", responses((status = 500)))]
async fn boom() -> Result<Json<()>, ApiError> {
    Err(ApiError::internal(
        "connection string postgres://admin:hunter2@db",
    ))
}

/// Panics.
#[utoipa::path(get, path = "/panic", responses((status = 500)))]
async fn panics() -> Json<usize> {
    let values: Vec<usize> = Vec::new();
    assert_eq!(values.len(), 1, "deliberate panic");
    Json(values.len())
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub state: TestState,
    pub shutdown: Shutdown,
    pub server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

pub async fn spawn_with(config: KitConfig, ready_ok: bool) -> TestApp {
    let state = TestState::default();
    let api = OpenApiRouter::new()
        .routes(routes!(create_citizen))
        .routes(routes!(slow))
        .routes(routes!(boom))
        .routes(routes!(panics))
        .with_state(state.clone());
    let service = Service::new("kit-test")
        .config(config)
        .api(api)
        .ready_check(ReadyCheck::new("database", move || async move {
            if ready_ok {
                Ok(())
            } else {
                Err("connection refused".to_owned())
            }
        }));
    let running = telar_testkit::serve(service).await;
    TestApp {
        base: running.base,
        client: telar_testkit::client(),
        state,
        shutdown: running.shutdown,
        server: running.server,
    }
}

pub async fn spawn() -> TestApp {
    spawn_with(KitConfig::default(), true).await
}
