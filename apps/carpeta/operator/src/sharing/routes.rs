//! sharing's API (gateway: `/shares`; `/s` is public).

use axum::Json;
use axum::extract::{Path, Query, State as Extract};
use axum::response::{IntoResponse, Redirect, Response};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use telar_auth::Authenticated;
use telar_kit::{ApiError, OpenApiRouter, Payload, routes};
use telar_sql::{Row, query};
use telar_types::ErrorCode;
use utoipa::{IntoParams, ToSchema};

use super::State;
use crate::domain::events;
use crate::shared::{event, now_ms, now_rfc3339, peers};

pub(crate) fn router(state: State) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(revoke))
        .routes(routes!(open))
        .with_state(state)
}

/// A short link.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Share {
    pub code: String,
    /// What to hand out: `{public_url}/s/{code}`.
    pub url: String,
    pub document_id: String,
    pub owner: String,
    /// Milliseconds since the epoch.
    pub expires_at: i64,
    pub max_accesses: Option<i64>,
    pub accesses: i64,
    pub revoked_at: Option<String>,
    pub created_at: String,
}

fn to_share(state: &State, row: &Row) -> telar_sql::Result<Share> {
    let code: String = row.get("code")?;
    Ok(Share {
        url: format!("{}/s/{code}", state.config.public_url.trim_end_matches('/')),
        code,
        document_id: row.get("document_id")?,
        owner: row.get("owner")?,
        expires_at: row.get("expires_at")?,
        max_accesses: row.get("max_accesses")?,
        accesses: row.get("accesses")?,
        revoked_at: row.get("revoked_at")?,
        created_at: row.get("created_at")?,
    })
}

async fn find(state: &State, code: &str) -> Result<Option<Share>, ApiError> {
    query("SELECT * FROM shares WHERE code = $1")
        .bind(code.to_owned())
        .fetch_optional(&state.db)
        .await
        .map_err(ApiError::internal)?
        .as_ref()
        .map(|row| to_share(state, row))
        .transpose()
        .map_err(ApiError::internal)
}

fn new_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    (0..10)
        .map(|_| char::from(ALPHABET[rand::random_range(0..ALPHABET.len())]))
        .collect()
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewShare {
    document_id: String,
    /// Seconds the link works (default 7 days, at most 30).
    expires_in_secs: Option<u64>,
    /// Opens allowed (none: unlimited until it expires).
    max_accesses: Option<u32>,
}

/// Creates a short link to a document (its owner; `carpeta.document.shared`).
#[utoipa::path(post, path = "/shares", tag = "sharing", request_body = NewShare,
    responses((status = 201, body = Share), (status = 403, body = telar_kit::Problem), (status = 422, body = telar_kit::Problem)))]
async fn create(
    Extract(state): Extract<State>,
    Authenticated(claims): Authenticated,
    Payload(input): Payload<NewShare>,
) -> Result<(StatusCode, Json<Share>), ApiError> {
    let expires_in = input
        .expires_in_secs
        .unwrap_or(state.config.default_expiry_secs);
    if !(60..=state.config.max_expiry_secs).contains(&expires_in) {
        return Err(ApiError::invalid(
            "expires_in_secs",
            format!("must be 60 to {}", state.config.max_expiry_secs),
        ));
    }
    if input.max_accesses == Some(0) {
        return Err(ApiError::invalid("max_accesses", "must be at least 1"));
    }
    if input.document_id.is_empty() || input.document_id.len() > 64 {
        return Err(ApiError::invalid("document_id", "must be a document id"));
    }
    let document = peers::document(&state.ingestion, &input.document_id).await?;
    state
        .authorizer
        .check(&claims, "share", &document.owner, &document.id)
        .await?;
    if document.status != "ready" {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "only a confirmed document can be shared",
        ));
    }
    let code = new_code();
    let expires_at = now_ms() + i64::try_from(expires_in * 1000).unwrap_or(i64::MAX);
    let mut tx = state.db.begin().await.map_err(ApiError::internal)?;
    query(
        "INSERT INTO shares (code, document_id, owner, expires_at, max_accesses, created_by, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(code.clone())
    .bind(document.id.clone())
    .bind(document.owner.clone())
    .bind(expires_at)
    .bind(input.max_accesses.map(i64::from))
    .bind(claims.sub.clone())
    .bind(now_rfc3339())
    .execute(&mut tx)
    .await
    .map_err(ApiError::internal)?;
    let shared = event(
        events::DOCUMENT_SHARED,
        &document.owner,
        json!({"id": document.id, "owner": document.owner, "expires_at": expires_at, "max_accesses": input.max_accesses}),
    );
    state
        .outbox
        .append(&mut tx, &shared)
        .await
        .map_err(ApiError::internal)?;
    state.outbox.commit(tx).await.map_err(ApiError::internal)?;
    let share = find(&state, &code)
        .await?
        .ok_or_else(|| ApiError::internal("share vanished"))?;
    Ok((StatusCode::CREATED, Json(share)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct ListParams {
    document_id: String,
}

/// A document's links, newest first.
#[utoipa::path(get, path = "/shares", tag = "sharing", params(ListParams), responses((status = 200, body = Vec<Share>)))]
async fn list(
    Extract(state): Extract<State>,
    Authenticated(claims): Authenticated,
    Query(params): Query<ListParams>,
) -> Result<Json<Vec<Share>>, ApiError> {
    let document = peers::document(&state.ingestion, &params.document_id).await?;
    state
        .authorizer
        .check(&claims, "read", &document.owner, &document.id)
        .await?;
    let rows = query("SELECT * FROM shares WHERE document_id = $1 ORDER BY created_at DESC, code")
        .bind(document.id)
        .fetch_all(&state.db)
        .await
        .map_err(ApiError::internal)?;
    rows.iter()
        .map(|row| to_share(&state, row))
        .collect::<Result<Vec<_>, _>>()
        .map(Json)
        .map_err(ApiError::internal)
}

/// Revokes a link: from now on it answers 410.
#[utoipa::path(delete, path = "/shares/{code}", tag = "sharing", params(("code" = String, Path)),
    responses((status = 204), (status = 403, body = telar_kit::Problem), (status = 404, body = telar_kit::Problem)))]
async fn revoke(
    Extract(state): Extract<State>,
    Authenticated(claims): Authenticated,
    Path(code): Path<String>,
) -> Result<StatusCode, ApiError> {
    let share = find(&state, &code)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no link {code}")))?;
    state
        .authorizer
        .check(&claims, "share", &share.owner, &share.document_id)
        .await?;
    query("UPDATE shares SET revoked_at = COALESCE(revoked_at, $1) WHERE code = $2")
        .bind(now_rfc3339())
        .bind(code)
        .execute(&state.db)
        .await
        .map_err(ApiError::internal)?;
    Ok(StatusCode::NO_CONTENT)
}

fn gone(reason: &str) -> Response {
    ApiError::with_status(StatusCode::GONE, "gone", reason).into_response()
}

/// Opens a link: counts the access and redirects (303) to a 15-minute download link. 410 when
/// it expired, was revoked, was used up or its document was deleted.
#[utoipa::path(get, path = "/s/{code}", tag = "sharing", params(("code" = String, Path)),
    responses((status = 303), (status = 404, body = telar_kit::Problem), (status = 410, body = telar_kit::Problem)))]
async fn open(
    Extract(state): Extract<State>,
    Path(code): Path<String>,
) -> Result<Response, ApiError> {
    if code.len() > 32 {
        return Err(ApiError::not_found("no such link"));
    }
    let now = now_ms();
    // One statement decides and counts: concurrent opens of a last allowed access let one in.
    let counted = query(
        "UPDATE shares SET accesses = accesses + 1
         WHERE code = $1 AND revoked_at IS NULL AND expires_at > $2
           AND (max_accesses IS NULL OR accesses < max_accesses)",
    )
    .bind(code.clone())
    .bind(now)
    .execute(&state.db)
    .await
    .map_err(ApiError::internal)?;
    let Some(share) = find(&state, &code).await? else {
        return Err(ApiError::not_found("no such link"));
    };
    if counted == 0 {
        return Ok(gone(if share.revoked_at.is_some() {
            "this link was revoked"
        } else if share.expires_at <= now {
            "this link has expired"
        } else {
            "this link was used as many times as allowed"
        }));
    }
    match peers::download_url(&state.ingestion, &share.document_id).await {
        Ok(url) => Ok(Redirect::to(&url).into_response()),
        Err(error) if error.status() == StatusCode::NOT_FOUND => {
            Ok(gone("the document was deleted"))
        }
        Err(error) => Err(error),
    }
}
