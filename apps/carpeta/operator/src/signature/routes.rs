//! signature's API (gateway: `/signatures`; `/signatures/verify` is public).

use axum::Json;
use axum::extract::{Path, State as Extract};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use telar_auth::Authenticated;
use telar_kit::SendTraced;
use telar_kit::{ApiError, OpenApiRouter, Payload, routes};
use telar_types::ErrorCode;
use utoipa::ToSchema;

use super::{State, authenticated_event};
use crate::shared::{now_rfc3339, peers};

pub(crate) fn router(state: State) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(sign))
        .routes(routes!(receipt))
        .routes(routes!(verify))
        .with_state(state)
}

/// A document's signature and its authentication at the hub.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Receipt {
    pub document_id: String,
    pub owner: String,
    pub title: String,
    /// Hex SHA-256 of the document, as confirmed at upload.
    pub sha256: String,
    /// Base64 Ed25519 signature over the 32 bytes of `sha256`.
    pub signature: String,
    pub key_id: String,
    /// `authenticated`, `pending_hub` (queued at the hub-client) or `hub_refused`.
    pub status: String,
    pub hub_message: String,
    pub signed_at: String,
    pub authenticated_at: Option<String>,
}

async fn stored(state: &State, document: &str) -> Result<Option<Receipt>, ApiError> {
    let row = telar_sql::query("SELECT * FROM signatures WHERE document_id = $1")
        .bind(document.to_owned())
        .fetch_optional(&state.db)
        .await
        .map_err(ApiError::internal)?;
    let Some(row) = row else { return Ok(None) };
    let get = |c: &str| row.get::<String>(c).map_err(ApiError::internal);
    Ok(Some(Receipt {
        document_id: get("document_id")?,
        owner: get("owner")?,
        title: get("title")?,
        sha256: get("sha256")?,
        signature: get("signature")?,
        key_id: get("key_id")?,
        status: get("status")?,
        hub_message: get("hub_message")?,
        signed_at: get("signed_at")?,
        authenticated_at: row.get("authenticated_at").map_err(ApiError::internal)?,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SignRequest {
    document_id: String,
}

/// Signs a document and has the hub authenticate it: 201 authenticated, 202 while the hub call
/// is queued; signing again answers the stored receipt (200).
#[utoipa::path(post, path = "/signatures", tag = "signature", request_body = SignRequest,
    responses((status = 201, body = Receipt), (status = 202, body = Receipt), (status = 200, body = Receipt),
              (status = 403, body = telar_kit::Problem), (status = 409, body = telar_kit::Problem)))]
async fn sign(
    Extract(state): Extract<State>,
    Authenticated(claims): Authenticated,
    Payload(input): Payload<SignRequest>,
) -> Result<(StatusCode, Json<Receipt>), ApiError> {
    if input.document_id.is_empty() || input.document_id.len() > 64 {
        return Err(ApiError::invalid("document_id", "must be a document id"));
    }
    let document = peers::document(&state.ingestion, &input.document_id).await?;
    state
        .authorizer
        .check(&claims, "sign", &document.owner, &document.id)
        .await?;
    if let Some(receipt) = stored(&state, &document.id).await? {
        return Ok((StatusCode::OK, Json(receipt)));
    }
    let sha256 = match (&document.status[..], &document.sha256) {
        ("ready", Some(sha)) => sha.clone(),
        _ => {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "the document's upload is not confirmed",
            ));
        }
    };
    let signature = state.key.sign(&sha256).map_err(ApiError::internal)?;
    // Before the hub: the event needs the citizen's contact, and a missing one must not leave a
    // document authenticated without its notification.
    let authenticated = authenticated_event(
        &state,
        &document.id,
        &document.owner,
        &document.title,
        &sha256,
    )
    .await?;
    let url = peers::download_url(&state.ingestion, &document.id).await?;
    let response = state
        .hub
        .request(http::Method::PUT, "/hub/documents/authenticate")
        .await
        .map_err(|e| ApiError::new(ErrorCode::Unavailable, e))?
        .header("idempotency-key", format!("authenticate-{}", document.id))
        .json(&json!({"citizen_id": document.owner, "url": url, "title": document.title}))
        .send_traced()
        .await
        .map_err(|e| {
            ApiError::new(
                ErrorCode::Unavailable,
                format!("hub-client unreachable: {e}"),
            )
        })?;
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let (http_status, receipt_status, hub_call) = match status {
        200 => (StatusCode::CREATED, "authenticated", None),
        202 => (
            StatusCode::ACCEPTED,
            "pending_hub",
            body["call"]["id"].as_i64(),
        ),
        422 => {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                body["detail"]
                    .as_str()
                    .unwrap_or("the hub refused")
                    .to_owned(),
            ));
        }
        other => {
            return Err(ApiError::new(
                ErrorCode::Unavailable,
                format!("hub-client answered {other}"),
            ));
        }
    };
    let now = now_rfc3339();
    let receipt = Receipt {
        document_id: document.id.clone(),
        owner: document.owner.clone(),
        title: document.title.clone(),
        sha256,
        signature,
        key_id: state.key.key_id.clone(),
        status: receipt_status.into(),
        hub_message: body["message"].as_str().unwrap_or_default().to_owned(),
        signed_at: now.clone(),
        authenticated_at: (receipt_status == "authenticated").then_some(now),
    };
    let mut tx = state.db.begin().await.map_err(ApiError::internal)?;
    let inserted = telar_sql::query(
        "INSERT INTO signatures (document_id, owner, title, sha256, signature, key_id, status, hub_call, hub_message, signed_at, authenticated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (document_id) DO NOTHING",
    )
    .bind(receipt.document_id.clone())
    .bind(receipt.owner.clone())
    .bind(receipt.title.clone())
    .bind(receipt.sha256.clone())
    .bind(receipt.signature.clone())
    .bind(receipt.key_id.clone())
    .bind(receipt.status.clone())
    .bind(hub_call)
    .bind(receipt.hub_message.clone())
    .bind(receipt.signed_at.clone())
    .bind(receipt.authenticated_at.clone())
    .execute(&mut tx)
    .await
    .map_err(ApiError::internal)?;
    if inserted == 0 {
        // A concurrent request signed it first: its receipt is the receipt.
        drop(tx);
        let existing = stored(&state, &document.id)
            .await?
            .ok_or_else(|| ApiError::internal("receipt vanished"))?;
        return Ok((StatusCode::OK, Json(existing)));
    }
    if hub_call.is_none() {
        state
            .outbox
            .append(&mut tx, &authenticated)
            .await
            .map_err(ApiError::internal)?;
        metrics::counter!("documents_signed").increment(1);
    }
    state.outbox.commit(tx).await.map_err(ApiError::internal)?;
    Ok((http_status, Json(receipt)))
}

/// A document's receipt.
#[utoipa::path(get, path = "/signatures/{document_id}", tag = "signature", params(("document_id" = String, Path)),
    responses((status = 200, body = Receipt), (status = 404, body = telar_kit::Problem)))]
async fn receipt(
    Extract(state): Extract<State>,
    Authenticated(claims): Authenticated,
    Path(document_id): Path<String>,
) -> Result<Json<Receipt>, ApiError> {
    let receipt = stored(&state, &document_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("document {document_id} is not signed")))?;
    state
        .authorizer
        .check(&claims, "read", &receipt.owner, &document_id)
        .await?;
    Ok(Json(receipt))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct VerifyRequest {
    /// Hex SHA-256 of the file.
    sha256: String,
    /// Base64 signature from the receipt.
    signature: String,
}

#[derive(Debug, Serialize, ToSchema)]
struct Verified {
    valid: bool,
    key_id: String,
    /// Base64 Ed25519 public key: verify offline with it.
    public_key: String,
}

/// Whether a signature is this operator's over a SHA-256 (anyone may ask: no token needed).
#[utoipa::path(post, path = "/signatures/verify", tag = "signature", request_body = VerifyRequest,
    responses((status = 200, body = Verified), (status = 422, body = telar_kit::Problem)))]
async fn verify(
    Extract(state): Extract<State>,
    Payload(input): Payload<VerifyRequest>,
) -> Result<Json<Verified>, ApiError> {
    if input.sha256.len() != 64 || !input.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::invalid("sha256", "must be 64 hex digits"));
    }
    Ok(Json(Verified {
        valid: state.key.verify(&input.sha256, &input.signature),
        key_id: state.key.key_id.clone(),
        public_key: state.key.public_key(),
    }))
}
