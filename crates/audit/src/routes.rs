//! `GET /audit` (filters, paging), `GET /audit/verify`, `GET /audit/export` (JSON lines).

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use telar_kit::{ApiError, OpenApiRouter, routes};
use telar_types::ErrorCode;

use crate::log::{AuditError, AuditLog, Filter, Verification};
use crate::record::AuditRecord;

pub fn router(log: AuditLog) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(verify))
        .routes(routes!(export))
        .with_state(log)
}

impl From<AuditError> for ApiError {
    fn from(error: AuditError) -> Self {
        match error {
            AuditError::Invalid { field, reason } => ApiError::invalid(field, reason),
            AuditError::Sql(error) => ApiError::new(ErrorCode::Unavailable, error.to_string()),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Page {
    records: Vec<AuditRecord>,
    /// Pass as `after` for the next page (absent on the last one).
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after: Option<i64>,
}

/// Records matching every given filter, oldest first.
#[utoipa::path(get, path = "/audit", tag = "audit", params(Filter),
    responses((status = 200, body = Page), (status = 422, body = telar_kit::Problem)))]
async fn list(
    State(log): State<AuditLog>,
    Query(filter): Query<Filter>,
) -> Result<Json<Page>, ApiError> {
    let limit = filter.limit.unwrap_or(100).clamp(1, 1000) as usize;
    let records = log.list(&filter).await?;
    let next_after = (records.len() == limit)
        .then(|| records.last().map(|r| r.seq))
        .flatten();
    Ok(Json(Page {
        records,
        next_after,
    }))
}

/// Recomputes the chain; names the first record edited or missing.
#[utoipa::path(get, path = "/audit/verify", tag = "audit",
    responses((status = 200, body = Verification)))]
async fn verify(State(log): State<AuditLog>) -> Result<Json<Verification>, ApiError> {
    Ok(Json(log.verify().await?))
}

/// Every record as JSON lines (`application/x-ndjson`), oldest first.
#[utoipa::path(get, path = "/audit/export", tag = "audit",
    responses((status = 200, content_type = "application/x-ndjson", body = String)))]
async fn export(State(log): State<AuditLog>) -> Result<Response, ApiError> {
    let mut body = Vec::new();
    let mut after = 0;
    loop {
        let page = log.page(after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for record in &page {
            if serde_json::to_writer(&mut body, record).is_ok() {
                body.push(b'\n');
            }
        }
    }
    Ok(([(http::header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}
