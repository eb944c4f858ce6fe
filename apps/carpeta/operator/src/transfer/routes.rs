//! transfer's API: citizens and staff start and follow transfers (`/transfers`); peers send
//! citizens and confirmations (`/api/transferCitizen`, `/api/transferCitizenConfirm`, public,
//! with or without a trailing slash).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State as Extract};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use telar_auth::Authenticated;
use telar_kit::{ApiError, OpenApiRouter, Payload, routes};
use telar_types::ErrorCode;
use utoipa::{IntoParams, ToSchema};

use super::protocol::{read_confirm, read_incoming};
use super::store::{self, Transfer};
use super::{State, receive, send};
use crate::domain::CitizenId;
use crate::shared::{may_act_for, peers};

pub(crate) fn router(state: State) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(start, list))
        .routes(routes!(operators))
        .routes(routes!(get_transfer))
        .routes(routes!(receive_citizen))
        .routes(routes!(receive_confirm))
        .with_state(state)
}

/// The same handlers at the paths with a trailing slash (peers use both).
pub(crate) fn aliases(state: State) -> axum::Router {
    axum::Router::new()
        .route(
            "/api/transferCitizen/",
            axum::routing::post(receive_citizen),
        )
        .route(
            "/api/transferCitizenConfirm/",
            axum::routing::post(receive_confirm),
        )
        .with_state(state)
}

#[derive(Debug, Serialize, ToSchema)]
struct OperatorItem {
    id: String,
    name: String,
    transfer_url: Option<String>,
}

/// Operators a citizen can move to (this one excluded).
#[utoipa::path(get, path = "/transfers/operators", tag = "transfer", responses((status = 200, body = Vec<OperatorItem>)))]
async fn operators(
    Extract(state): Extract<State>,
    Authenticated(_claims): Authenticated,
) -> Result<Json<Vec<OperatorItem>>, ApiError> {
    let own = peers::get_json(&state.deps.hub, "hub-client", "/hub/registration")
        .await
        .ok();
    let listed =
        peers::get_json(&state.deps.hub, "hub-client", "/hub/operators?fresh=true").await?;
    let own_id = own
        .as_ref()
        .and_then(|o| o["id"].as_str())
        .unwrap_or_default();
    Ok(Json(
        listed
            .as_array()
            .into_iter()
            .flatten()
            .filter(|o| o["id"].as_str() != Some(own_id))
            .map(|o| OperatorItem {
                id: o["id"].as_str().unwrap_or_default().to_owned(),
                name: o["name"].as_str().unwrap_or_default().to_owned(),
                transfer_url: o["transfer_url"].as_str().map(str::to_owned),
            })
            .collect(),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct StartTransfer {
    citizen_id: CitizenId,
    /// The destination, as the hub lists it.
    operator_id: String,
}

/// Sends a citizen (and every document) to another operator. 202: the transfer runs; follow it
/// at `GET /transfers/{id}`.
#[utoipa::path(post, path = "/transfers", tag = "transfer", request_body = StartTransfer,
    responses((status = 202, body = Transfer), (status = 404, body = telar_kit::Problem), (status = 409, body = telar_kit::Problem),
              (status = 422, body = telar_kit::Problem)))]
async fn start(
    Extract(state): Extract<State>,
    Authenticated(claims): Authenticated,
    Payload(input): Payload<StartTransfer>,
) -> Result<(StatusCode, Json<Transfer>), ApiError> {
    let citizen = input.citizen_id.to_string();
    may_act_for(&claims, &citizen)?;
    let found = peers::get_json(
        &state.deps.citizens,
        "citizen",
        &format!("/citizens/{citizen}"),
    )
    .await?;
    if found["status"] != "registered" {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!(
                "the citizen is `{}`, not `registered`",
                found["status"].as_str().unwrap_or("?")
            ),
        ));
    }
    if store::running_out(&state.deps.db, &citizen)
        .await
        .map_err(ApiError::internal)?
        .is_some()
    {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "a transfer of this citizen is already running",
        ));
    }
    let own = peers::get_json(&state.deps.hub, "hub-client", "/hub/registration").await?;
    let listed =
        peers::get_json(&state.deps.hub, "hub-client", "/hub/operators?fresh=true").await?;
    let destination = listed
        .as_array()
        .into_iter()
        .flatten()
        .find(|o| o["id"].as_str() == Some(input.operator_id.as_str()))
        .ok_or_else(|| ApiError::invalid("operator_id", "the hub lists no such operator"))?;
    if own["id"] == destination["id"] {
        return Err(ApiError::invalid("operator_id", "is this operator"));
    }
    let transfer_url = destination["transfer_url"]
        .as_str()
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
        .ok_or_else(|| {
            ApiError::invalid(
                "operator_id",
                "that operator has no transfer URL at the hub",
            )
        })?;
    let input = json!({"citizen": citizen, "operator_id": input.operator_id, "transfer_url": transfer_url,
                       "own_operator": own["name"]});
    let id = state
        .engine
        .start(send::SAGA, input)
        .await
        .map_err(ApiError::internal)?;
    // The saga's first step records the transfer; answer with what is known now.
    let transfer = store::get(&state.deps.db, &id)
        .await
        .map_err(ApiError::internal)?
        .unwrap_or(Transfer {
            id,
            citizen,
            direction: "out".into(),
            peer: destination["id"].as_str().unwrap_or_default().to_owned(),
            status: "running".into(),
            detail: String::new(),
            created_at: crate::shared::now_rfc3339(),
            updated_at: crate::shared::now_rfc3339(),
        });
    Ok((StatusCode::ACCEPTED, Json(transfer)))
}

#[derive(Debug, Serialize, ToSchema)]
struct TransferDetail {
    transfer: Transfer,
    /// The saga's steps as logged.
    #[schema(value_type = Vec<Object>)]
    steps: Vec<Value>,
}

/// A transfer and its steps.
#[utoipa::path(get, path = "/transfers/{id}", tag = "transfer", params(("id" = String, Path)),
    responses((status = 200, body = TransferDetail), (status = 404, body = telar_kit::Problem)))]
async fn get_transfer(
    Extract(state): Extract<State>,
    Authenticated(claims): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<TransferDetail>, ApiError> {
    let transfer = store::get(&state.deps.db, &id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(format!("no transfer {id}")))?;
    may_act_for(&claims, &transfer.citizen)?;
    let steps = state
        .engine
        .log(&id)
        .await
        .map_err(ApiError::internal)?
        .into_iter()
        .map(|entry| serde_json::to_value(entry).unwrap_or_default())
        .collect();
    Ok(Json(TransferDetail { transfer, steps }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct ListParams {
    citizen: String,
}

/// A citizen's transfers, newest first.
#[utoipa::path(get, path = "/transfers", tag = "transfer", params(ListParams), responses((status = 200, body = Vec<Transfer>)))]
async fn list(
    Extract(state): Extract<State>,
    Authenticated(claims): Authenticated,
    Query(params): Query<ListParams>,
) -> Result<Json<Vec<Transfer>>, ApiError> {
    let citizen = CitizenId::parse(&params.citizen)
        .map_err(|r| ApiError::invalid("citizen", r))?
        .to_string();
    may_act_for(&claims, &citizen)?;
    store::of_citizen(&state.deps.db, &citizen)
        .await
        .map(Json)
        .map_err(ApiError::internal)
}

fn read_json(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))
}

/// A peer sends a citizen (the agreed protocol; either dialect). 201 accepted (200 when the
/// same transfer was already accepted); the documents are fetched afterwards and `req_status`
/// is POSTed to the given confirm URL.
#[utoipa::path(post, path = "/api/transferCitizen", tag = "transfer", request_body = Object,
    responses((status = 201, body = Object), (status = 200, body = Object), (status = 422, body = telar_kit::Problem)))]
async fn receive_citizen(
    Extract(state): Extract<State>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let incoming =
        read_incoming(&read_json(&body)?).map_err(|e| ApiError::invalid(e.field, e.reason))?;
    let id = receive::saga_id(&incoming);
    let known = state.engine.get(&id).await.is_ok();
    if !known {
        let input = json!({"citizen": incoming.id.to_string(), "incoming": incoming});
        state
            .engine
            .start_with_id(receive::SAGA, &id, input)
            .await
            .map_err(ApiError::internal)?;
    }
    let status = if known {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(
            json!({"message": "Transferencia recibida", "id": incoming.id.number(), "transfer": id}),
        ),
    ))
}

/// A peer confirms a citizen this operator sent: `req_status` 1 (done) or 0 (failed).
#[utoipa::path(post, path = "/api/transferCitizenConfirm", tag = "transfer", request_body = Object,
    responses((status = 200, body = Object), (status = 404, body = telar_kit::Problem), (status = 422, body = telar_kit::Problem)))]
async fn receive_confirm(
    Extract(state): Extract<State>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let (citizen, accepted) =
        read_confirm(&read_json(&body)?).map_err(|e| ApiError::invalid(e.field, e.reason))?;
    let transfer = store::running_out(&state.deps.db, &citizen.to_string())
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no transfer of citizen {citizen} is waiting for a confirmation"
            ))
        })?;
    state
        .engine
        .signal(&transfer.id, "confirm", json!({"accepted": accepted}))
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(
        json!({"message": "Confirmación recibida", "id": citizen.number(), "req_status": i32::from(accepted)}),
    ))
}
