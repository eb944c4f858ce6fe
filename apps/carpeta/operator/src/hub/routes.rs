//! hub-client's API, for the operator's other services (role `service`) and its staff
//! (`operador`): never routed by the gateway.

use axum::Json;
use axum::extract::{Path, Query, State};
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use telar_auth::Authenticated;
use telar_kit::{ApiError, OpenApiRouter, Payload, routes};
use telar_types::ErrorCode;
use utoipa::{IntoParams, ToSchema};

use super::Registration;
use super::calls::HubCall;
use super::client::{HubClient, HubError, Reply};
use super::queue::QueuedCall;
use super::wire::{Operator, is_duplicate, read_registered_operator};
use crate::domain::{CitizenId, validate_email};
use crate::shared::{OPERATOR_ROLE, SERVICE_ROLE, require_any};

pub(crate) fn router(client: HubClient) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(validate_citizen, unregister_citizen))
        .routes(routes!(register_citizen))
        .routes(routes!(authenticate_document))
        .routes(routes!(list_operators))
        .routes(routes!(registration, register_now))
        .routes(routes!(list_calls))
        .routes(routes!(get_call))
        .routes(routes!(status))
        .with_state(client)
}

fn caller(claims: &telar_auth::Claims) -> Result<(), ApiError> {
    require_any(claims, &[SERVICE_ROLE, OPERATOR_ROLE, "admin"])
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(value) => match value.to_str() {
            Ok(key) if !key.is_empty() && key.len() <= 128 => Ok(Some(key.to_owned())),
            _ => Err(ApiError::invalid(
                "Idempotency-Key",
                "must be 1 to 128 visible characters",
            )),
        },
    }
}

fn failed(error: HubError) -> ApiError {
    match error {
        HubError::Unavailable {
            reason,
            retry_after,
        } => ApiError::new(ErrorCode::Unavailable, reason).with_retry_after(retry_after),
        HubError::Storage(cause) => ApiError::internal(cause),
    }
}

/// What the hub said, or that the call is queued.
#[derive(Debug, Serialize, ToSchema)]
pub struct HubReply {
    /// `registered`, `free`, `unregistered`, `not_registered`, `authenticated` or `queued`.
    pub outcome: String,
    /// The hub's status code (absent when queued).
    pub hub_status: Option<u16>,
    /// The hub's message, as text.
    pub message: String,
    /// Answered from the 15-minute memory of final answers.
    pub cached: bool,
    /// The operator holding the citizen (validate).
    pub operator: Option<String>,
    /// The queued call (202).
    pub call: Option<QueuedCall>,
}

fn reply(
    status: StatusCode,
    outcome: &str,
    answer: &super::wire::HubAnswer,
    cached: bool,
) -> (StatusCode, Json<HubReply>) {
    (
        status,
        Json(HubReply {
            outcome: outcome.to_owned(),
            hub_status: Some(answer.status),
            message: answer.message(),
            cached,
            operator: None,
            call: None,
        }),
    )
}

fn queued(call: QueuedCall) -> (StatusCode, Json<HubReply>) {
    (
        StatusCode::ACCEPTED,
        Json(HubReply {
            outcome: "queued".into(),
            hub_status: None,
            message: call.last_error.clone(),
            cached: false,
            operator: None,
            call: Some(call),
        }),
    )
}

fn refused(answer: &super::wire::HubAnswer) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidArgument,
        format!(
            "the hub refused the call ({}): {}",
            answer.status,
            answer.message()
        ),
    )
}

fn citizen_id(text: &str) -> Result<CitizenId, ApiError> {
    CitizenId::parse(text).map_err(|reason| ApiError::invalid("id", reason))
}

/// Whether a citizen is registered with any operator (validateCitizen). Never queued: 503 with
/// `Retry-After` when the hub cannot be asked now.
#[utoipa::path(get, path = "/hub/citizens/{id}", tag = "hub-client",
    params(("id" = String, Path, description = "10-digit citizen id")),
    responses((status = 200, body = HubReply), (status = 422, body = telar_kit::Problem),
              (status = 503, body = telar_kit::Problem)))]
async fn validate_citizen(
    State(client): State<HubClient>,
    Authenticated(claims): Authenticated,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<HubReply>), ApiError> {
    caller(&claims)?;
    let id = citizen_id(&id)?;
    match client
        .call(HubCall::ValidateCitizen { id }, None)
        .await
        .map_err(failed)?
    {
        Reply::Answer { answer, cached } if answer.status == 204 => {
            Ok(reply(StatusCode::OK, "free", &answer, cached))
        }
        Reply::Answer { answer, cached } if answer.is_success() => {
            let (status, mut body) = reply(StatusCode::OK, "registered", &answer, cached);
            body.operator = read_registered_operator(&answer.message());
            Ok((status, body))
        }
        Reply::Answer { answer, .. } => Err(refused(&answer)),
        Reply::Queued(call) => Ok(queued(call)),
    }
}

/// A citizen to register at the hub: only what the hub needs.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RegisterCitizen {
    id: CitizenId,
    name: String,
    address: String,
    email: String,
}

/// Registers a citizen with this operator at the hub. 201 registered; 409 when another
/// registration exists (the hub's reason, and the operator holding the citizen when known);
/// 202 queued when the hub cannot take it now.
#[utoipa::path(post, path = "/hub/citizens", tag = "hub-client", request_body = RegisterCitizen,
    params(("Idempotency-Key" = Option<String>, Header, description = "repeats within 15 min get the first answer")),
    responses((status = 201, body = HubReply), (status = 202, body = HubReply),
              (status = 409, body = telar_kit::Problem), (status = 422, body = telar_kit::Problem)))]
async fn register_citizen(
    State(client): State<HubClient>,
    Authenticated(claims): Authenticated,
    headers: HeaderMap,
    Payload(input): Payload<RegisterCitizen>,
) -> Result<(StatusCode, Json<HubReply>), ApiError> {
    caller(&claims)?;
    let key = idempotency_key(&headers)?;
    validate_email(&input.email).map_err(|reason| ApiError::invalid("email", reason))?;
    for (field, value) in [("name", &input.name), ("address", &input.address)] {
        if value.trim().is_empty() || value.len() > 200 {
            return Err(ApiError::invalid(field, "must be 1 to 200 characters"));
        }
    }
    let registration = client
        .registration()
        .await
        .map_err(failed)?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unavailable,
                "this operator is not registered at the hub yet",
            )
            .with_retry_after(std::time::Duration::from_secs(5))
        })?;
    let call = HubCall::RegisterCitizen {
        id: input.id,
        name: input.name.trim().to_owned(),
        address: input.address.trim().to_owned(),
        email: input.email,
        operator_id: registration.id,
        operator_name: registration.name,
    };
    match client.call(call, key.as_deref()).await.map_err(failed)? {
        Reply::Answer { answer, cached } if answer.is_success() => {
            Ok(reply(StatusCode::CREATED, "registered", &answer, cached))
        }
        Reply::Answer { answer, .. } if is_duplicate(&answer.message()) => Err(ApiError::new(
            ErrorCode::Conflict,
            format!("the hub already has this citizen: {}", answer.message()),
        )),
        Reply::Answer { answer, .. } => Err(refused(&answer)),
        Reply::Queued(call) => Ok(queued(call)),
    }
}

/// Removes a citizen from the hub (unregisterCitizen). 200 `unregistered` or `not_registered`
/// (the hub had nothing); 202 queued.
#[utoipa::path(delete, path = "/hub/citizens/{id}", tag = "hub-client",
    params(("id" = String, Path, description = "10-digit citizen id"),
           ("Idempotency-Key" = Option<String>, Header, description = "repeats within 15 min get the first answer")),
    responses((status = 200, body = HubReply), (status = 202, body = HubReply)))]
async fn unregister_citizen(
    State(client): State<HubClient>,
    Authenticated(claims): Authenticated,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<HubReply>), ApiError> {
    caller(&claims)?;
    let key = idempotency_key(&headers)?;
    let id = citizen_id(&id)?;
    let registration = client.registration().await.map_err(failed)?;
    let (operator_id, operator_name) = registration.map(|r| (r.id, r.name)).unwrap_or_default();
    let call = HubCall::UnregisterCitizen {
        id,
        operator_id,
        operator_name,
    };
    match client.call(call, key.as_deref()).await.map_err(failed)? {
        Reply::Answer { answer, cached } if answer.status == 204 => {
            Ok(reply(StatusCode::OK, "not_registered", &answer, cached))
        }
        Reply::Answer { answer, cached } if answer.is_success() => {
            Ok(reply(StatusCode::OK, "unregistered", &answer, cached))
        }
        Reply::Answer { answer, .. } => Err(refused(&answer)),
        Reply::Queued(call) => Ok(queued(call)),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AuthenticateDocument {
    citizen_id: CitizenId,
    /// A presigned GET URL (≤ 15 min): the hub never gets the bytes.
    url: String,
    title: String,
}

/// Asks the hub to authenticate a document (authenticateDocument).
#[utoipa::path(put, path = "/hub/documents/authenticate", tag = "hub-client", request_body = AuthenticateDocument,
    params(("Idempotency-Key" = Option<String>, Header, description = "repeats within 15 min get the first answer")),
    responses((status = 200, body = HubReply), (status = 202, body = HubReply), (status = 422, body = telar_kit::Problem)))]
async fn authenticate_document(
    State(client): State<HubClient>,
    Authenticated(claims): Authenticated,
    headers: HeaderMap,
    Payload(input): Payload<AuthenticateDocument>,
) -> Result<(StatusCode, Json<HubReply>), ApiError> {
    caller(&claims)?;
    let key = idempotency_key(&headers)?;
    if !(input.url.starts_with("http://") || input.url.starts_with("https://")) {
        return Err(ApiError::invalid("url", "must be an http(s) URL"));
    }
    if input.title.trim().is_empty() || input.title.len() > 300 {
        return Err(ApiError::invalid("title", "must be 1 to 300 characters"));
    }
    let call = HubCall::AuthenticateDocument {
        id: input.citizen_id,
        url: input.url,
        title: input.title,
    };
    match client.call(call, key.as_deref()).await.map_err(failed)? {
        Reply::Answer { answer, cached } if answer.is_success() => {
            Ok(reply(StatusCode::OK, "authenticated", &answer, cached))
        }
        Reply::Answer { answer, .. } => Err(refused(&answer)),
        Reply::Queued(call) => Ok(queued(call)),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct OperatorsParams {
    /// Ask the hub now rather than answer the list read within the last 30 s.
    #[serde(default)]
    fresh: bool,
}

/// Every operator the hub lists (both dialects read; URLs trimmed).
#[utoipa::path(get, path = "/hub/operators", tag = "hub-client", params(OperatorsParams),
    responses((status = 200, body = Vec<Operator>), (status = 503, body = telar_kit::Problem)))]
async fn list_operators(
    State(client): State<HubClient>,
    Authenticated(claims): Authenticated,
    Query(params): Query<OperatorsParams>,
) -> Result<Json<Vec<Operator>>, ApiError> {
    caller(&claims)?;
    client
        .operators(params.fresh)
        .await
        .map(Json)
        .map_err(failed)
}

/// This operator's registration at the hub.
#[utoipa::path(get, path = "/hub/registration", tag = "hub-client",
    responses((status = 200, body = Registration), (status = 404, body = telar_kit::Problem)))]
async fn registration(
    State(client): State<HubClient>,
    Authenticated(claims): Authenticated,
) -> Result<Json<Registration>, ApiError> {
    caller(&claims)?;
    client
        .registration()
        .await
        .map_err(failed)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("this operator is not registered at the hub yet"))
}

/// Registers this operator (and its transfer endpoint) now, if not done yet.
#[utoipa::path(post, path = "/hub/registration", tag = "hub-client",
    responses((status = 200, body = Registration), (status = 503, body = telar_kit::Problem)))]
async fn register_now(
    State(client): State<HubClient>,
    Authenticated(claims): Authenticated,
) -> Result<Json<Registration>, ApiError> {
    caller(&claims)?;
    client
        .ensure_registered()
        .await
        .map(Json)
        .map_err(|reason| ApiError::new(ErrorCode::Unavailable, reason))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct CallFilter {
    /// `queued`, `done` or `failed`.
    status: Option<String>,
    /// At most this many, newest first (default 100, at most 1000).
    limit: Option<u32>,
}

/// Queued calls and their outcomes, newest first.
#[utoipa::path(get, path = "/hub/calls", tag = "hub-client", params(CallFilter),
    responses((status = 200, body = Vec<QueuedCall>)))]
async fn list_calls(
    State(client): State<HubClient>,
    Authenticated(claims): Authenticated,
    Query(filter): Query<CallFilter>,
) -> Result<Json<Vec<QueuedCall>>, ApiError> {
    caller(&claims)?;
    if let Some(status) = &filter.status
        && !["queued", "done", "failed"].contains(&status.as_str())
    {
        return Err(ApiError::invalid(
            "status",
            "must be queued, done or failed",
        ));
    }
    let limit = i64::from(filter.limit.unwrap_or(100).clamp(1, 1000));
    client
        .queue
        .list(filter.status, limit)
        .await
        .map(Json)
        .map_err(ApiError::internal)
}

/// One queued call.
#[utoipa::path(get, path = "/hub/calls/{id}", tag = "hub-client",
    params(("id" = i64, Path)), responses((status = 200, body = QueuedCall), (status = 404, body = telar_kit::Problem)))]
async fn get_call(
    State(client): State<HubClient>,
    Authenticated(claims): Authenticated,
    Path(id): Path<i64>,
) -> Result<Json<QueuedCall>, ApiError> {
    caller(&claims)?;
    client
        .queue
        .get(id)
        .await
        .map_err(ApiError::internal)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no queued call {id}")))
}

#[derive(Debug, Serialize, ToSchema)]
struct EndpointStatus {
    endpoint: String,
    /// `closed`, `open` or `half_open`.
    breaker: String,
    /// Calls still allowed in the current minute.
    remaining: u32,
}

#[derive(Debug, Serialize, ToSchema)]
struct Status {
    endpoints: Vec<EndpointStatus>,
    queued: i64,
}

/// Hub protection at a glance: each endpoint's breaker and remaining calls, and the queue.
#[utoipa::path(get, path = "/hub/status", tag = "hub-client", responses((status = 200, body = Status)))]
async fn status(
    State(client): State<HubClient>,
    Authenticated(claims): Authenticated,
) -> Result<Json<Status>, ApiError> {
    caller(&claims)?;
    let endpoints = client
        .protected
        .status()
        .await
        .into_iter()
        .map(|(endpoint, breaker, remaining)| EndpointStatus {
            endpoint,
            breaker,
            remaining,
        })
        .collect();
    let queued = client
        .queue
        .queued_count()
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(Status { endpoints, queued }))
}
