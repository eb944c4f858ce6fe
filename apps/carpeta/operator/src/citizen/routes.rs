//! citizen's API (routed by the gateway under `/citizens`).

use std::time::Duration;
use telar_kit::SendTraced;

use axum::Json;
use axum::extract::{Path, Query, State as Extract};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use telar_auth::{Authenticated, Claims};
use telar_kit::{ApiError, OpenApiRouter, Payload, routes};
use telar_types::ErrorCode;
use utoipa::{IntoParams, ToSchema};

use super::State;
use super::store::Citizen;
use crate::domain::{CitizenId, events, mask_id, validate_email};
use crate::shared::{SERVICE_ROLE, event, is_staff, may_act_for, now_rfc3339};

pub(crate) fn router(state: State) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(register, search))
        .routes(routes!(get_citizen, update, remove))
        .routes(routes!(import))
        .routes(routes!(set_status))
        .with_state(state)
}

fn text_field(field: &str, value: &str, max: usize) -> Result<String, ApiError> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > max || value.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            field,
            format!("must be 1 to {max} characters, without control characters"),
        ));
    }
    Ok(value.to_owned())
}

fn storage(error: impl std::fmt::Display) -> ApiError {
    ApiError::internal(error)
}

/// A new citizen.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RegisterCitizen {
    id: CitizenId,
    name: String,
    address: String,
    email: String,
}

/// Registers a citizen with this operator: stored and registered at the hub (201), or stored as
/// `pending_hub` while the hub registration is queued (202). 409 when this operator or the hub
/// already has the citizen (with the hub's reason).
#[utoipa::path(post, path = "/citizens", tag = "citizen", request_body = RegisterCitizen,
    responses((status = 201, body = Citizen), (status = 202, body = Citizen),
              (status = 409, body = telar_kit::Problem), (status = 422, body = telar_kit::Problem)))]
async fn register(
    Extract(state): Extract<State>,
    Authenticated(claims): Authenticated,
    Payload(input): Payload<RegisterCitizen>,
) -> Result<(StatusCode, Json<Citizen>), ApiError> {
    let id = input.id.to_string();
    may_act_for(&claims, &id)?;
    let name = text_field("name", &input.name, 200)?;
    let address = text_field("address", &input.address, 200)?;
    let email = input.email.trim().to_lowercase();
    validate_email(&email).map_err(|reason| ApiError::invalid("email", reason))?;
    let previous = state.citizens.get(&id).await.map_err(storage)?;
    if let Some(existing) = &previous
        && existing.status != "rejected"
    {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!(
                "citizen {id} is already registered with this operator ({})",
                existing.status
            ),
        ));
    }
    let request = state
        .hub
        .request(http::Method::POST, "/hub/citizens")
        .await
        .map_err(|e| ApiError::new(ErrorCode::Unavailable, e))?
        .header(
            "idempotency-key",
            format!(
                "register-{id}-{}",
                previous.as_ref().map_or("0", |c| c.updated_at.as_str())
            ),
        )
        .json(&json!({"id": id, "name": name, "address": address, "email": email}));
    let response = request.send_traced().await.map_err(|e| {
        ApiError::new(
            ErrorCode::Unavailable,
            format!("hub-client unreachable: {e}"),
        )
    })?;
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let detail = body["detail"]
        .as_str()
        .unwrap_or("hub-client failed")
        .to_owned();
    let (http_status, citizen_status, hub_call) = match status {
        201 => (StatusCode::CREATED, "registered", None),
        202 => (
            StatusCode::ACCEPTED,
            "pending_hub",
            body["call"]["id"].as_i64(),
        ),
        409 => return Err(ApiError::new(ErrorCode::Conflict, detail)),
        422 => return Err(ApiError::new(ErrorCode::InvalidArgument, detail)),
        503 => {
            return Err(ApiError::new(ErrorCode::Unavailable, detail)
                .with_retry_after(Duration::from_secs(5)));
        }
        other => {
            return Err(ApiError::internal(format!(
                "hub-client answered {other}: {detail}"
            )));
        }
    };
    let now = now_rfc3339();
    let citizen = Citizen {
        id: id.clone(),
        name,
        address,
        email,
        status: citizen_status.into(),
        hub_call,
        created_at: now.clone(),
        updated_at: now,
    };
    let mut tx = state.citizens.db.begin().await.map_err(storage)?;
    let key = state
        .pii
        .key_in(&mut tx, &id)
        .await
        .map_err(ApiError::internal)?;
    let stored = if previous.is_some() {
        state.citizens.update(&mut tx, &citizen).await
    } else {
        state.citizens.insert(&mut tx, &citizen).await
    };
    match stored {
        Ok(()) => {}
        Err(telar_sql::Error::UniqueViolation(_)) => {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!("citizen {id} is already registered with this operator"),
            ));
        }
        Err(error) => return Err(storage(error)),
    }
    if hub_call.is_none() {
        let registered = super::registered_event(&citizen, &key).map_err(ApiError::internal)?;
        state
            .outbox
            .append(&mut tx, &registered)
            .await
            .map_err(storage)?;
    }
    state.outbox.commit(tx).await.map_err(storage)?;
    tracing::info!(
        citizen = mask_id(&id),
        status = citizen_status,
        "citizen registered"
    );
    Ok((http_status, Json(citizen)))
}

/// One citizen (the citizen themself or staff).
#[utoipa::path(get, path = "/citizens/{id}", tag = "citizen", params(("id" = String, Path)),
    responses((status = 200, body = Citizen), (status = 404, body = telar_kit::Problem)))]
async fn get_citizen(
    Extract(state): Extract<State>,
    Authenticated(claims): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<Citizen>, ApiError> {
    let id = CitizenId::parse(&id)
        .map_err(|reason| ApiError::invalid("id", reason))?
        .to_string();
    may_act_for(&claims, &id)?;
    state
        .citizens
        .get(&id)
        .await
        .map_err(storage)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no citizen {id} with this operator")))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct SearchParams {
    /// Part of a name or email, or the start of an id.
    q: String,
    /// At most this many (default 50, at most 500).
    limit: Option<u32>,
}

/// Finds citizens (staff only).
#[utoipa::path(get, path = "/citizens", tag = "citizen", params(SearchParams),
    responses((status = 200, body = Vec<Citizen>), (status = 403, body = telar_kit::Problem)))]
async fn search(
    Extract(state): Extract<State>,
    Authenticated(claims): Authenticated,
    Query(params): Query<SearchParams>,
) -> Result<Json<Vec<Citizen>>, ApiError> {
    if !is_staff(&claims) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "searching citizens is for the operator's staff",
        ));
    }
    let q = params.q.trim();
    if q.is_empty() || q.len() > 100 {
        return Err(ApiError::invalid("q", "must be 1 to 100 characters"));
    }
    let limit = i64::from(params.limit.unwrap_or(50).clamp(1, 500));
    state
        .citizens
        .search(q, limit)
        .await
        .map(Json)
        .map_err(storage)
}

/// Fields to change; absent ones stay.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateCitizen {
    name: Option<String>,
    address: Option<String>,
    email: Option<String>,
}

/// Changes a citizen's name, address or email; `carpeta.citizen.updated` names what changed.
#[utoipa::path(patch, path = "/citizens/{id}", tag = "citizen", params(("id" = String, Path)),
    request_body = UpdateCitizen,
    responses((status = 200, body = Citizen), (status = 404, body = telar_kit::Problem), (status = 422, body = telar_kit::Problem)))]
async fn update(
    Extract(state): Extract<State>,
    Authenticated(claims): Authenticated,
    Path(id): Path<String>,
    Payload(input): Payload<UpdateCitizen>,
) -> Result<Json<Citizen>, ApiError> {
    let id = CitizenId::parse(&id)
        .map_err(|reason| ApiError::invalid("id", reason))?
        .to_string();
    may_act_for(&claims, &id)?;
    let name = input
        .name
        .as_deref()
        .map(|v| text_field("name", v, 200))
        .transpose()?;
    let address = input
        .address
        .as_deref()
        .map(|v| text_field("address", v, 200))
        .transpose()?;
    let email = input.email.as_deref().map(|v| v.trim().to_lowercase());
    if let Some(email) = &email {
        validate_email(email).map_err(|reason| ApiError::invalid("email", reason))?;
    }
    let mut tx = state.citizens.db.begin().await.map_err(storage)?;
    let key = state
        .pii
        .key_in(&mut tx, &id)
        .await
        .map_err(ApiError::internal)?;
    let mut citizen = state
        .citizens
        .get_in(&mut tx, &id)
        .await
        .map_err(storage)?
        .ok_or_else(|| ApiError::not_found(format!("no citizen {id} with this operator")))?;
    let mut changed = Vec::new();
    for (field, new, old) in [
        ("name", name, &mut citizen.name),
        ("address", address, &mut citizen.address),
        ("email", email, &mut citizen.email),
    ] {
        if let Some(new) = new
            && new != *old
        {
            *old = new;
            changed.push(field);
        }
    }
    if changed.is_empty() {
        return Ok(Json(citizen));
    }
    citizen.updated_at = now_rfc3339();
    state
        .citizens
        .update(&mut tx, &citizen)
        .await
        .map_err(storage)?;
    let updated = key
        .seal(event(
            events::CITIZEN_UPDATED,
            &id,
            json!({"id": id, "changed": changed, "email": citizen.email, "name": citizen.name}),
        ))
        .map_err(ApiError::internal)?;
    state
        .outbox
        .append(&mut tx, &updated)
        .await
        .map_err(storage)?;
    state.outbox.commit(tx).await.map_err(storage)?;
    Ok(Json(citizen))
}

fn require_service(claims: &Claims) -> Result<(), ApiError> {
    crate::shared::require_any(claims, &[SERVICE_ROLE])
}

/// A citizen arriving from another operator (the transfer service only).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ImportCitizen {
    name: String,
    email: String,
    address: String,
    /// `receiving` while documents arrive, then `registered` or `pending_hub`.
    status: String,
}

const STATUSES: &[&str] = &[
    "registered",
    "pending_hub",
    "rejected",
    "transferring",
    "receiving",
];

/// Stores a citizen received from another operator, without a hub call (the transfer service
/// registers them at the hub when the origin has let go). Same input again: same row.
#[utoipa::path(put, path = "/citizens/{id}/import", tag = "citizen", params(("id" = String, Path)),
    request_body = ImportCitizen, responses((status = 200, body = Citizen), (status = 403, body = telar_kit::Problem)))]
async fn import(
    Extract(state): Extract<State>,
    Authenticated(claims): Authenticated,
    Path(id): Path<String>,
    Payload(input): Payload<ImportCitizen>,
) -> Result<Json<Citizen>, ApiError> {
    require_service(&claims)?;
    let id = CitizenId::parse(&id)
        .map_err(|reason| ApiError::invalid("id", reason))?
        .to_string();
    if !STATUSES.contains(&input.status.as_str()) {
        return Err(ApiError::invalid(
            "status",
            format!("must be one of {}", STATUSES.join(", ")),
        ));
    }
    let now = now_rfc3339();
    let mut tx = state.citizens.db.begin().await.map_err(storage)?;
    let existing = state.citizens.get_in(&mut tx, &id).await.map_err(storage)?;
    let citizen = Citizen {
        id: id.clone(),
        name: text_field("name", &input.name, 200)?,
        address: text_field("address", &input.address, 200)?,
        email: input.email.trim().to_lowercase(),
        status: input.status,
        hub_call: None,
        created_at: existing
            .as_ref()
            .map_or_else(|| now.clone(), |c| c.created_at.clone()),
        updated_at: now,
    };
    if existing.is_some() {
        state
            .citizens
            .update(&mut tx, &citizen)
            .await
            .map_err(storage)?;
    } else {
        state
            .citizens
            .insert(&mut tx, &citizen)
            .await
            .map_err(storage)?;
    }
    tx.commit().await.map_err(storage)?;
    Ok(Json(citizen))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SetStatus {
    status: String,
    /// The queued hub call when `pending_hub`.
    hub_call: Option<i64>,
}

/// Moves a citizen's status (the transfer service only); `registered` publishes
/// `carpeta.citizen.registered`.
#[utoipa::path(put, path = "/citizens/{id}/status", tag = "citizen", params(("id" = String, Path)),
    request_body = SetStatus, responses((status = 200, body = Citizen), (status = 404, body = telar_kit::Problem)))]
async fn set_status(
    Extract(state): Extract<State>,
    Authenticated(claims): Authenticated,
    Path(id): Path<String>,
    Payload(input): Payload<SetStatus>,
) -> Result<Json<Citizen>, ApiError> {
    require_service(&claims)?;
    if !STATUSES.contains(&input.status.as_str()) {
        return Err(ApiError::invalid(
            "status",
            format!("must be one of {}", STATUSES.join(", ")),
        ));
    }
    let mut tx = state.citizens.db.begin().await.map_err(storage)?;
    let key = state
        .pii
        .key_in(&mut tx, &id)
        .await
        .map_err(ApiError::internal)?;
    let mut citizen = state
        .citizens
        .get_in(&mut tx, &id)
        .await
        .map_err(storage)?
        .ok_or_else(|| ApiError::not_found(format!("no citizen {id} with this operator")))?;
    if citizen.status == input.status && citizen.hub_call == input.hub_call {
        return Ok(Json(citizen));
    }
    citizen.status = input.status;
    citizen.hub_call = input.hub_call;
    citizen.updated_at = now_rfc3339();
    state
        .citizens
        .update(&mut tx, &citizen)
        .await
        .map_err(storage)?;
    if citizen.status == "registered" {
        let registered = super::registered_event(&citizen, &key).map_err(ApiError::internal)?;
        state
            .outbox
            .append(&mut tx, &registered)
            .await
            .map_err(storage)?;
    }
    state.outbox.commit(tx).await.map_err(storage)?;
    Ok(Json(citizen))
}

/// Removes a citizen who left for another operator (the transfer service only), publishes
/// `carpeta.citizen.transferred`, on which the other services forget them, and deletes their
/// keys (crypto-shredding their events). Absent: 204 too.
#[utoipa::path(delete, path = "/citizens/{id}", tag = "citizen", params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = telar_kit::Problem)))]
async fn remove(
    Extract(state): Extract<State>,
    Authenticated(claims): Authenticated,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    require_service(&claims)?;
    let mut tx = state.citizens.db.begin().await.map_err(storage)?;
    if state
        .citizens
        .get_in(&mut tx, &id)
        .await
        .map_err(storage)?
        .is_some()
    {
        state.citizens.delete(&mut tx, &id).await.map_err(storage)?;
        let gone = event(events::CITIZEN_TRANSFERRED, &id, json!({"id": id}));
        state.outbox.append(&mut tx, &gone).await.map_err(storage)?;
        state.outbox.commit(tx).await.map_err(storage)?;
    } else {
        drop(tx);
    }
    // After the row is gone (and again on a retry, when it already was): their keys go, and
    // every stored copy of their events keeps only ciphertext.
    let forgotten = state.pii.forget(&id).await.map_err(ApiError::internal)?;
    tracing::info!(
        citizen = mask_id(&id),
        keys = forgotten,
        "citizen removed, personal data in events shredded"
    );
    Ok(StatusCode::NO_CONTENT)
}
