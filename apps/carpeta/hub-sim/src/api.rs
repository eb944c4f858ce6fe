//! The hub's endpoints, answering as the real server does (the contract table in
//! `shared/systems/carpeta.md`, not the widely copied Swagger).

use axum::Json;
use axum::extract::{FromRequest, Path, Request, State};
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use serde::Serialize;
use serde_json::{Map, Value, json};
use telar_kit::{ApiError, OpenApiRouter, routes};
use utoipa::ToSchema;

use crate::AppState;
use crate::domain::{self, Rejected, messages};
use crate::faults::hub_guard;

pub(crate) fn router(state: AppState) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(validate_citizen))
        .routes(routes!(register_citizen))
        .routes(routes!(unregister_citizen))
        .routes(routes!(authenticate_document))
        .routes(routes!(register_operator))
        .routes(routes!(register_transfer_endpoint))
        .routes(routes!(get_operators))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            hub_guard,
        ))
        .with_state(state)
}

/// A hub request body. Without `Content-Type: application/json` the hub sees an empty body
/// (and validation then fails with 501); malformed JSON is a 400; a non-object is empty.
struct HubBody(Value);

impl<S: Send + Sync> FromRequest<S> for HubBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("application/json")
            });
        let bytes = telar_kit::body_bytes(request, state).await?;
        if !is_json || bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(HubBody(Value::Object(Map::new())));
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(value @ Value::Object(_)) => Ok(HubBody(value)),
            Ok(_) => Ok(HubBody(Value::Object(Map::new()))),
            Err(error) => Err(ApiError::bad_request(format!("malformed JSON: {error}"))),
        }
    }
}

fn say(status: StatusCode, message: impl Serialize) -> Response {
    (status, Json(message)).into_response()
}

fn rejected(Rejected(message): Rejected) -> Response {
    say(StatusCode::NOT_IMPLEMENTED, message)
}

/// Body of `POST /apis/registerCitizen` (documentation only: the hub validates by hand).
#[derive(ToSchema)]
#[allow(dead_code, non_snake_case)]
struct RegisterCitizen {
    /// At least 10 consecutive digits.
    id: u64,
    name: String,
    address: String,
    /// TLD segments of 2–3 characters.
    email: String,
    operatorId: String,
    operatorName: String,
}

#[derive(ToSchema)]
#[allow(dead_code, non_snake_case)]
struct UnregisterCitizen {
    id: u64,
    /// Ignored by the hub.
    operatorId: Option<String>,
    /// Ignored by the hub.
    operatorName: Option<String>,
}

#[derive(ToSchema)]
#[allow(dead_code, non_snake_case)]
struct AuthenticateDocument {
    idCitizen: u64,
    UrlDocument: String,
    documentTitle: String,
}

#[derive(ToSchema)]
#[allow(dead_code, non_snake_case)]
struct RegisterOperator {
    name: String,
    address: String,
    contactMail: String,
    participants: Vec<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct OperatorCreated {
    message: String,
    /// 24 hex digits.
    id_operator: String,
}

#[derive(ToSchema)]
#[allow(dead_code, non_snake_case)]
struct RegisterTransferEndPoint {
    idOperator: String,
    endPoint: String,
    /// Accepted and never stored.
    endPointConfirm: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[allow(non_snake_case)]
struct OperatorItem {
    _id: String,
    operatorName: String,
    participants: Vec<String>,
    /// Present only once registered; returned exactly as registered.
    #[serde(skip_serializing_if = "Option::is_none")]
    transferAPIURL: Option<String>,
}

/// Is this citizen registered with some operator?
#[utoipa::path(get, path = "/apis/validateCitizen/{id}", tag = "hub",
    params(("id" = String, Path, description = "citizen id, at least 10 consecutive digits")),
    responses(
        (status = 200, body = String, description = "registered: \"…registrado en el operador: {name} \""),
        (status = 204, description = "free: registered nowhere"),
        (status = 501, body = String, description = "malformed id")))]
async fn validate_citizen(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if !domain::is_valid_citizen_id(&id) {
        return Ok(rejected(Rejected(
            "Error de validación: el id debe tener al menos 10 dígitos consecutivos".into(),
        )));
    }
    Ok(match state.store.find_citizen(&id).await? {
        Some(citizen) => say(
            StatusCode::OK,
            messages::registered_in(&id, &citizen.operator_name),
        ),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

/// Registers a citizen with an operator; ids are unique across all operators.
#[utoipa::path(post, path = "/apis/registerCitizen", tag = "hub", request_body = RegisterCitizen,
    responses(
        (status = 201, body = String, description = "\"Ciudadano con id: … Creado exitosamente\""),
        (status = 501, body = String, description = "duplicate (\"ya se encuentra registrado\") or invalid field")))]
async fn register_citizen(
    State(state): State<AppState>,
    HubBody(body): HubBody,
) -> Result<Response, ApiError> {
    let registration = match domain::parse_registration(&body) {
        Ok(registration) => registration,
        Err(rejection) => return Ok(rejected(rejection)),
    };
    Ok(if state.store.insert_citizen(&registration).await? {
        tracing::info!(operator = %registration.operator_name, "citizen registered");
        say(StatusCode::CREATED, messages::created(&registration.id))
    } else {
        say(
            StatusCode::NOT_IMPLEMENTED,
            messages::duplicate(&registration.id),
        )
    })
}

/// Removes a citizen by id (operator fields are ignored).
#[utoipa::path(delete, path = "/apis/unregisterCitizen", tag = "hub", request_body = UnregisterCitizen,
    responses(
        (status = 200, body = String),
        (status = 204, description = "not registered"),
        (status = 501, body = String, description = "malformed id")))]
async fn unregister_citizen(
    State(state): State<AppState>,
    HubBody(body): HubBody,
) -> Result<Response, ApiError> {
    let id = match domain::citizen_id(&body, "id") {
        Ok(id) => id,
        Err(rejection) => return Ok(rejected(rejection)),
    };
    Ok(if state.store.delete_citizen(&id).await? {
        say(StatusCode::OK, messages::unregistered(&id))
    } else {
        StatusCode::NO_CONTENT.into_response()
    })
}

/// Records that a document was authenticated; the hub only ever sees its URL.
#[utoipa::path(put, path = "/apis/authenticateDocument", tag = "hub", request_body = AuthenticateDocument,
    responses(
        (status = 200, body = String, description = "ends with \"[Code: 0001]\""),
        (status = 501, body = String, description = "idCitizen not a positive number, or a field is null")))]
async fn authenticate_document(
    State(state): State<AppState>,
    HubBody(body): HubBody,
) -> Result<Response, ApiError> {
    let authentication = match domain::parse_authentication(&body) {
        Ok(authentication) => authentication,
        Err(rejection) => return Ok(rejected(rejection)),
    };
    state.store.record_authentication(&authentication).await?;
    let title = authentication
        .document_title
        .as_deref()
        .unwrap_or("undefined");
    Ok(say(
        StatusCode::OK,
        messages::authenticated(title, &authentication.id_citizen),
    ))
}

/// Registers an operator (names need not be unique).
#[utoipa::path(post, path = "/apis/registerOperator", tag = "hub", request_body = RegisterOperator,
    responses(
        (status = 201, body = OperatorCreated),
        (status = 501, body = String, description = "invalid field")))]
async fn register_operator(
    State(state): State<AppState>,
    HubBody(body): HubBody,
) -> Result<Response, ApiError> {
    let operator = match domain::parse_operator(&body) {
        Ok(operator) => operator,
        Err(rejection) => return Ok(rejected(rejection)),
    };
    let id = domain::new_operator_id();
    state.store.insert_operator(&id, &operator).await?;
    Ok(say(
        StatusCode::CREATED,
        OperatorCreated {
            message: messages::OPERATOR_CREATED.to_owned(),
            id_operator: id,
        },
    ))
}

/// Sets an operator's transfer URL; `endPointConfirm` is accepted but never stored.
#[utoipa::path(put, path = "/apis/registerTransferEndPoint", tag = "hub", request_body = RegisterTransferEndPoint,
    responses(
        (status = 200, body = String),
        (status = 204, description = "unknown operator id"),
        (status = 501, body = String, description = "malformed operator id or missing endPoint")))]
async fn register_transfer_endpoint(
    State(state): State<AppState>,
    HubBody(body): HubBody,
) -> Result<Response, ApiError> {
    let endpoint = match domain::parse_transfer_endpoint(&body) {
        Ok(endpoint) => endpoint,
        Err(rejection) => return Ok(rejected(rejection)),
    };
    Ok(
        if state
            .store
            .set_transfer_endpoint(&endpoint.operator_id, &endpoint.endpoint)
            .await?
        {
            say(StatusCode::OK, messages::ENDPOINT_REGISTERED)
        } else {
            StatusCode::NO_CONTENT.into_response()
        },
    )
}

/// Every operator, in registration order.
#[utoipa::path(get, path = "/apis/getOperators", tag = "hub",
    responses(
        (status = 200, body = [OperatorItem]),
        (status = 204, description = "no operators")))]
async fn get_operators(State(state): State<AppState>) -> Result<Response, ApiError> {
    let operators = state.store.operators().await?;
    if operators.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let items: Vec<OperatorItem> = operators
        .into_iter()
        .map(|operator| OperatorItem {
            _id: operator.id,
            operatorName: operator.name,
            participants: operator.participants,
            transferAPIURL: operator.transfer_api_url,
        })
        .collect();
    Ok(say(StatusCode::OK, json!(items)))
}
