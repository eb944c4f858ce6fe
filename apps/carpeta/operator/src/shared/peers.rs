//! Typed calls to the operator's other services, with the service token; their failures become
//! API errors the caller can return as they are.

use std::time::Duration;
use telar_kit::SendTraced;

use serde::Deserialize;
use serde_json::Value;
use telar_kit::ApiError;
use telar_types::ErrorCode;

use super::ServiceClient;

/// What ingestion says of a document.
#[derive(Debug, Clone, Deserialize)]
pub struct DocumentInfo {
    pub id: String,
    pub owner: String,
    pub title: String,
    pub filename: String,
    pub content_type: String,
    pub status: String,
    pub sha256: Option<String>,
    pub size: Option<i64>,
}

fn unavailable(what: &str, detail: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorCode::Unavailable, format!("{what}: {detail}"))
        .with_retry_after(Duration::from_secs(2))
}

/// GET `path` on `client` as JSON; 404 stays 404, other failures are 503.
pub async fn get_json(client: &ServiceClient, what: &str, path: &str) -> Result<Value, ApiError> {
    let response = client
        .request(http::Method::GET, path)
        .await
        .map_err(|e| unavailable(what, e))?
        .send_traced()
        .await
        .map_err(|e| unavailable(what, e))?;
    match response.status().as_u16() {
        200 => response.json().await.map_err(|e| unavailable(what, e)),
        404 => Err(ApiError::not_found(format!("{what}: not found"))),
        other => Err(unavailable(what, format!("answered {other}"))),
    }
}

pub async fn document(ingestion: &ServiceClient, id: &str) -> Result<DocumentInfo, ApiError> {
    let value = get_json(ingestion, "ingestion", &format!("/documents/{id}")).await?;
    serde_json::from_value(value).map_err(|e| unavailable("ingestion", e))
}

/// A fresh download link of a document (ingestion's 15-minute link).
pub async fn download_url(ingestion: &ServiceClient, id: &str) -> Result<String, ApiError> {
    let value = get_json(
        ingestion,
        "ingestion",
        &format!("/documents/{id}/download-url"),
    )
    .await?;
    value["url"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| unavailable("ingestion", "no url"))
}

/// A citizen's name and email from the citizen service, sealed with the citizen's key (for
/// events that notify them: only readers with the key see them, and never after the citizen
/// left).
pub async fn sealed_contact(
    citizens: &ServiceClient,
    id: &str,
) -> Result<(Value, Value), ApiError> {
    let value = get_json(
        citizens,
        "citizen",
        &format!("/citizens/{id}/sealed-contact"),
    )
    .await?;
    Ok((value["name"].clone(), value["email"].clone()))
}
