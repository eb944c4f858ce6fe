//! Dead-letter admin routes any service can mount: `telar_bus::admin_routes(bus)`.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use telar_kit::{ApiError, OpenApiRouter, Payload, routes};
use utoipa::{IntoParams, ToSchema};

use crate::Bus;
use crate::dead_letter::{DeadLetter, DeadLetterFilter};

/// `GET /admin/dlq`, `GET /admin/dlq/{id}`, `POST /admin/dlq/replay`, `POST /admin/dlq/purge`.
pub fn admin_routes(bus: Bus) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(list_dead_letters))
        .routes(routes!(show_dead_letter))
        .routes(routes!(replay_dead_letters))
        .routes(routes!(purge_dead_letters))
        .with_state(bus)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    group: Option<String>,
    topic: Option<String>,
    /// At most this many (default 100).
    limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
struct Affected {
    /// How many dead letters the operation applied to.
    count: u64,
}

/// Dead letters, oldest first.
#[utoipa::path(get, path = "/admin/dlq", tag = "dead letters", params(ListQuery),
    responses((status = 200, body = [DeadLetter])))]
async fn list_dead_letters(
    State(bus): State<Bus>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<DeadLetter>>, ApiError> {
    let filter = DeadLetterFilter {
        id: None,
        group: query.group,
        topic: query.topic,
        limit: Some(query.limit.unwrap_or(100)),
    };
    Ok(Json(bus.dead_letters(filter).await?))
}

/// One dead letter with its envelope, last error and attempt history.
#[utoipa::path(get, path = "/admin/dlq/{id}", tag = "dead letters",
    responses((status = 200, body = DeadLetter), (status = 404, body = telar_kit::Problem)))]
async fn show_dead_letter(
    State(bus): State<Bus>,
    Path(id): Path<i64>,
) -> Result<Json<DeadLetter>, ApiError> {
    Ok(Json(bus.dead_letter(id).await?))
}

/// Puts matching dead letters back in their group's queue (an empty filter means all).
#[utoipa::path(post, path = "/admin/dlq/replay", tag = "dead letters", request_body = DeadLetterFilter,
    responses((status = 200, body = Affected)))]
async fn replay_dead_letters(
    State(bus): State<Bus>,
    Payload(filter): Payload<DeadLetterFilter>,
) -> Result<Json<Affected>, ApiError> {
    Ok(Json(Affected {
        count: bus.replay(filter).await?,
    }))
}

/// Deletes matching dead letters (an empty filter means all).
#[utoipa::path(post, path = "/admin/dlq/purge", tag = "dead letters", request_body = DeadLetterFilter,
    responses((status = 200, body = Affected)))]
async fn purge_dead_letters(
    State(bus): State<Bus>,
    Payload(filter): Payload<DeadLetterFilter>,
) -> Result<Json<Affected>, ApiError> {
    Ok(Json(Affected {
        count: bus.purge(filter).await?,
    }))
}
