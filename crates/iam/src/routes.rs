//! The iam service's route: `POST /authorize`.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use telar_kit::{ApiError, OpenApiRouter, Payload, routes};
use utoipa::ToSchema;

use crate::{Decided, Iam};

/// `POST /authorize` on a kit service: `.api(iam_routes(iam))`.
pub fn iam_routes(iam: Iam) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(authorize))
        .with_state(iam)
}

/// A question for the policies.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Question {
    /// e.g. `User::"1032456789"`.
    principal: String,
    /// e.g. `Action::"download"`.
    action: String,
    /// e.g. `Document::"d1"`.
    resource: String,
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    context: serde_json::Value,
    /// The entities the policies look at, in Cedar's JSON form.
    #[serde(default = "empty_array")]
    #[schema(value_type = Vec<Object>)]
    entities: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}

fn empty_array() -> serde_json::Value {
    serde_json::json!([])
}

/// Allow or deny, with the policies that decided.
#[utoipa::path(post, path = "/authorize", tag = "iam", request_body = Question,
    responses((status = 200, body = Decided), (status = 422, body = telar_kit::Problem)))]
async fn authorize(
    State(iam): State<Iam>,
    Payload(question): Payload<Question>,
) -> Result<Json<Decided>, ApiError> {
    Ok(Json(iam.decide(
        &question.principal,
        &question.action,
        &question.resource,
        question.context,
        question.entities,
    )?))
}
