//! Admin routes any service can mount: orchestrated sagas (`saga_routes`) and the choreography
//! log (`saga_log_routes`, the clinical lab's `GET /saga/logs`).

use axum::Json;
use axum::extract::{Path, Query, State};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use telar_kit::{ApiError, OpenApiRouter, routes};
use utoipa::{IntoParams, ToSchema};

use crate::choreography::{LogFilter, SagaLogEntry, Tracker};
use crate::{SagaAdmin, SagaRecord, SagaStatus, StepLogEntry};

/// `GET /admin/sagas`, `GET /admin/sagas/{id}`, `POST /admin/sagas/{id}/retry`,
/// `POST /admin/sagas/{id}/abort`.
pub fn saga_routes(admin: SagaAdmin) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(list_sagas))
        .routes(routes!(show_saga))
        .routes(routes!(retry_saga))
        .routes(routes!(abort_saga))
        .with_state(admin)
}

/// `GET /saga/logs?saga_id=&status=&event_type=&stuck=&limit=`.
pub fn saga_log_routes(tracker: Tracker) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(saga_logs))
        .with_state(tracker)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<SagaStatus>,
    /// At most this many, newest first (default 100).
    limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
struct SagaDetail {
    saga: SagaRecord,
    log: Vec<StepLogEntry>,
}

#[derive(Debug, Serialize, ToSchema)]
struct Accepted {
    id: String,
    /// What happens next.
    message: String,
}

/// Sagas, newest first.
#[utoipa::path(get, path = "/admin/sagas", tag = "sagas", params(ListQuery),
    responses((status = 200, body = [SagaRecord])))]
async fn list_sagas(
    State(admin): State<SagaAdmin>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<SagaRecord>>, ApiError> {
    Ok(Json(
        admin
            .list(query.status, query.limit.unwrap_or(100).min(1_000))
            .await?,
    ))
}

/// One saga with its full step log.
#[utoipa::path(get, path = "/admin/sagas/{id}", tag = "sagas",
    responses((status = 200, body = SagaDetail), (status = 404, body = telar_kit::Problem)))]
async fn show_saga(
    State(admin): State<SagaAdmin>,
    Path(id): Path<String>,
) -> Result<Json<SagaDetail>, ApiError> {
    let saga = admin.get(&id).await?;
    let log = admin.log(&id).await?;
    Ok(Json(SagaDetail { saga, log }))
}

/// Resumes the compensation of a saga that needs attention.
#[utoipa::path(post, path = "/admin/sagas/{id}/retry", tag = "sagas",
    responses((status = 202, body = Accepted), (status = 404, body = telar_kit::Problem), (status = 409, body = telar_kit::Problem)))]
async fn retry_saga(
    State(admin): State<SagaAdmin>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    admin.retry(&id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            id,
            message: "compensation resumes".into(),
        }),
    ))
}

/// Stops a running saga after its current step and compensates it.
#[utoipa::path(post, path = "/admin/sagas/{id}/abort", tag = "sagas",
    responses((status = 202, body = Accepted), (status = 404, body = telar_kit::Problem), (status = 409, body = telar_kit::Problem)))]
async fn abort_saga(
    State(admin): State<SagaAdmin>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    admin.abort(&id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            id,
            message: "the saga stops after its current step and compensates".into(),
        }),
    ))
}

/// The choreography saga log, in arrival order.
#[utoipa::path(get, path = "/saga/logs", tag = "sagas", params(LogFilter),
    responses((status = 200, body = [SagaLogEntry])))]
async fn saga_logs(
    State(tracker): State<Tracker>,
    Query(filter): Query<LogFilter>,
) -> Result<Json<Vec<SagaLogEntry>>, ApiError> {
    Ok(Json(tracker.search(&filter).await?))
}
