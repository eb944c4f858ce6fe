//! The control API for tests and demos: inject faults, inspect and reset state.

use axum::Json;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Serialize;
use telar_kit::{ApiError, OpenApiRouter, Payload, routes};
use telar_types::ErrorCode;
use utoipa::ToSchema;

use crate::AppState;
use crate::faults::{self, Faults};
use crate::store::{AuthenticationRecord, CitizenRecord, OperatorRecord};

pub(crate) fn router(state: AppState) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(get_faults, put_faults, clear_faults))
        .routes(routes!(get_state))
        .routes(routes!(reset))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ))
        .with_state(state)
}

async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(expected) = &state.config.control_token {
        let given = request
            .headers()
            .get("x-control-token")
            .map(|v| v.as_bytes())
            .unwrap_or(b"");
        if !constant_time_eq(given, expected.as_bytes()) {
            return ApiError::new(
                ErrorCode::Unauthenticated,
                "header `x-control-token` is missing or wrong",
            )
            .into_response();
        }
    }
    next.run(request).await
}

/// Compares without an early exit, so timing does not reveal how much of a guess was right.
fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut difference = given.len() ^ expected.len();
    for (index, byte) in expected.iter().enumerate() {
        difference |= usize::from(given.get(index).copied().unwrap_or(0) ^ byte);
    }
    difference == 0
}

#[derive(Serialize, ToSchema)]
struct SimState {
    citizens: Vec<CitizenRecord>,
    operators: Vec<OperatorRecord>,
    authentications: Vec<AuthenticationRecord>,
    faults: Faults,
}

/// The faults in force (remaining 503 window and remaining forced failures).
#[utoipa::path(get, path = "/control/faults", tag = "control", responses((status = 200, body = Faults)))]
async fn get_faults(State(state): State<AppState>) -> Json<Faults> {
    Json(state.faults.current())
}

/// Replaces the faults applied to hub calls.
#[utoipa::path(put, path = "/control/faults", tag = "control", request_body = Faults,
    responses((status = 200, body = Faults), (status = 422, body = telar_kit::Problem)))]
async fn put_faults(
    State(state): State<AppState>,
    Payload(faults): Payload<Faults>,
) -> Result<Json<Faults>, ApiError> {
    faults::validate(&faults, state.request_timeout_ms)
        .map_err(|(field, message)| ApiError::invalid(field, message))?;
    tracing::info!(?faults, "faults set");
    state.faults.set(faults);
    Ok(Json(state.faults.current()))
}

/// Removes every fault.
#[utoipa::path(delete, path = "/control/faults", tag = "control", responses((status = 204)))]
async fn clear_faults(State(state): State<AppState>) -> StatusCode {
    state.faults.set(Faults::default());
    StatusCode::NO_CONTENT
}

/// Everything the simulated hub holds.
#[utoipa::path(get, path = "/control/state", tag = "control", responses((status = 200, body = SimState)))]
async fn get_state(State(state): State<AppState>) -> Result<Json<SimState>, ApiError> {
    Ok(Json(SimState {
        citizens: state.store.citizens().await?,
        operators: state.store.operators().await?,
        authentications: state.store.authentications().await?,
        faults: state.faults.current(),
    }))
}

/// Forgets all citizens, operators and authentications, and clears faults.
#[utoipa::path(post, path = "/control/reset", tag = "control", responses((status = 204)))]
async fn reset(State(state): State<AppState>) -> Result<StatusCode, ApiError> {
    state.store.reset().await?;
    state.faults.set(Faults::default());
    Ok(StatusCode::NO_CONTENT)
}
