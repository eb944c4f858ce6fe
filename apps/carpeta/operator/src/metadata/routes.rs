//! metadata's API (routed by the gateway under `/metadata`).

use axum::Json;
use axum::extract::{Path, Query, State as Extract};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use telar_auth::Authenticated;
use telar_kit::{ApiError, OpenApiRouter, routes};
use telar_search::SearchQuery;
use telar_types::{Classify, ErrorCode};
use utoipa::{IntoParams, ToSchema};

use super::State;
use super::store::DocumentMeta;
use crate::domain::CitizenId;
use crate::shared::{is_staff, now_rfc3339};

pub(crate) fn router(state: State) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(search))
        .routes(routes!(soft_delete))
        .with_state(state)
}

fn storage(error: impl std::fmt::Display) -> ApiError {
    ApiError::internal(error)
}

fn owner_of(text: &str) -> Result<String, ApiError> {
    CitizenId::parse(text)
        .map(|id| id.to_string())
        .map_err(|r| ApiError::invalid("owner", r))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct ListParams {
    owner: String,
    /// Include soft-deleted documents.
    #[serde(default)]
    deleted: bool,
}

/// A citizen's documents, by title.
#[utoipa::path(get, path = "/metadata/documents", tag = "metadata", params(ListParams),
    responses((status = 200, body = Vec<DocumentMeta>), (status = 403, body = telar_kit::Problem)))]
async fn list(
    Extract(state): Extract<State>,
    Authenticated(claims): Authenticated,
    Query(params): Query<ListParams>,
) -> Result<Json<Vec<DocumentMeta>>, ApiError> {
    let owner = owner_of(&params.owner)?;
    state.authorizer.check(&claims, "read", &owner, "*").await?;
    state
        .metas
        .of_owner(&owner, params.deleted)
        .await
        .map(Json)
        .map_err(storage)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct SearchParams {
    /// Any words (Spanish: "cedula" finds "Cédula", "diplomas" finds "Diploma").
    #[serde(default)]
    q: String,
    /// The citizen whose documents to search (required for citizens).
    owner: Option<String>,
    /// Only documents with this tag.
    tag: Option<String>,
    #[serde(default)]
    offset: usize,
    /// 1 to 100 (default 20).
    limit: Option<usize>,
}

#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
struct Found {
    total: u64,
    hits: Vec<FoundHit>,
    /// Served from the 120 s cache.
    cached: bool,
}

#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
struct FoundHit {
    id: String,
    owner: String,
    title: String,
    score: f32,
    /// HTML: the document's text escaped, matches in `<mark>`.
    highlight: String,
}

/// Full-text search over title, file name and tags; best first.
#[utoipa::path(get, path = "/metadata/search", tag = "metadata", params(SearchParams),
    responses((status = 200, body = Found), (status = 403, body = telar_kit::Problem), (status = 422, body = telar_kit::Problem)))]
async fn search(
    Extract(state): Extract<State>,
    Authenticated(claims): Authenticated,
    Query(params): Query<SearchParams>,
) -> Result<Json<Found>, ApiError> {
    let owner = params.owner.as_deref().map(owner_of).transpose()?;
    match &owner {
        Some(owner) => state.authorizer.check(&claims, "read", owner, "*").await?,
        None if is_staff(&claims) => {}
        None => {
            return Err(ApiError::invalid(
                "owner",
                "is required: a citizen searches their own documents",
            ));
        }
    }
    if params.q.len() > 500 {
        return Err(ApiError::invalid("q", "at most 500 characters"));
    }
    let limit = params.limit.unwrap_or(20);
    if !(1..=SearchQuery::MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be 1 to 100"));
    }
    let mut query = SearchQuery::text(params.q.clone()).page(params.offset, limit);
    if let Some(owner) = &owner {
        query = query.owner(owner.clone());
    }
    if let Some(tag) = &params.tag {
        query = query.tag(tag.trim().to_lowercase());
    }
    let digest = Sha256::digest(serde_json::to_vec(&query).unwrap_or_default());
    let scope = owner.as_deref().unwrap_or("*");
    // Read before searching: a change after this point moves the generation on, and what is
    // stored below under the old one is never read again.
    let generation = state.generation(scope).await;
    let key = format!("{scope}:{generation}:{}", hex::encode(&digest[..16]));
    if let Ok(Some(mut found)) = state.cache.get::<Found>(&key).await {
        found.cached = true;
        return Ok(Json(found));
    }
    let page = state
        .index
        .search(&query)
        .await
        .map_err(|e| ApiError::new(e.code(), e.to_string()))?;
    let found = Found {
        total: page.total,
        hits: page
            .hits
            .into_iter()
            .map(|h| FoundHit {
                id: h.id,
                owner: h.owner,
                title: h.title,
                score: h.score,
                highlight: h.highlight,
            })
            .collect(),
        cached: false,
    };
    if let Err(error) = state.cache.set(&key, &found, state.cache_ttl).await {
        tracing::warn!(%error, "search answer not cached");
    }
    Ok(Json(found))
}

/// Soft-deletes a document's metadata: it stays listed with `deleted=true`, and leaves search.
#[utoipa::path(delete, path = "/metadata/documents/{id}", tag = "metadata", params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = telar_kit::Problem), (status = 404, body = telar_kit::Problem)))]
async fn soft_delete(
    Extract(state): Extract<State>,
    Authenticated(claims): Authenticated,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let meta = state
        .metas
        .get(&id)
        .await
        .map_err(storage)?
        .ok_or_else(|| ApiError::not_found(format!("no document {id}")))?;
    state
        .authorizer
        .check(&claims, "delete", &meta.owner, &id)
        .await?;
    if meta.deleted_at.is_some() {
        return Ok(StatusCode::NO_CONTENT);
    }
    let mut tx = state.metas.db.begin().await.map_err(storage)?;
    state
        .metas
        .mark(&mut tx, &id, "deleted_at", &now_rfc3339())
        .await
        .map_err(storage)?;
    state
        .index
        .remove(&id)
        .await
        .map_err(|e| ApiError::new(ErrorCode::Unavailable, e.to_string()))?;
    tx.commit().await.map_err(storage)?;
    state.invalidate(&meta.owner).await;
    Ok(StatusCode::NO_CONTENT)
}
