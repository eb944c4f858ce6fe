//! ingestion's API (routed by the gateway under `/documents`; signed links under `/objects`).

use axum::Json;
use axum::extract::{Path, Query, State as Extract};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use telar_auth::{Authenticated, Claims};
use telar_kit::{ApiError, OpenApiRouter, Payload, routes};
use telar_objects::{ObjectsError, SignedUrl};
use telar_types::{Classify, ErrorCode};
use utoipa::{IntoParams, ToSchema};

use super::State;
use super::store::Document;
use crate::domain::{CitizenId, events};
use crate::shared::{event, now_rfc3339};

pub(crate) fn router(state: State) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(upload_url, list))
        .routes(routes!(confirm))
        .routes(routes!(get_document, delete))
        .routes(routes!(download_url))
        .with_state(state)
}

fn storage(error: impl std::fmt::Display) -> ApiError {
    ApiError::internal(error)
}

fn objects_error(error: ObjectsError) -> ApiError {
    ApiError::new(error.code(), error.to_string())
}

/// A file name as it may appear in an object key: letters, digits, `.`, `-`, `_`.
fn safe_filename(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        let c = if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
            c
        } else {
            '-'
        };
        if !(c == '-' && out.ends_with('-')) {
            out.push(c);
        }
    }
    let out: String = out
        .trim_matches(|c| c == '.' || c == '-')
        .chars()
        .take(100)
        .collect();
    if out.is_empty() {
        "document".into()
    } else {
        out
    }
}

fn is_content_type(text: &str) -> bool {
    let Some((kind, sub)) = text.split_once('/') else {
        return false;
    };
    let token = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    token(kind) && token(sub)
}

async fn document(state: &State, id: &str) -> Result<Document, ApiError> {
    state
        .documents
        .get(id)
        .await
        .map_err(storage)?
        .filter(|d| d.status != "deleted")
        .ok_or_else(|| ApiError::not_found(format!("no document {id}")))
}

/// A document to upload.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewDocument {
    /// The citizen the document belongs to (a citizen: themself).
    owner: CitizenId,
    title: String,
    filename: String,
    content_type: String,
    /// Bytes the upload may have at most.
    size: u64,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
struct UploadTicket {
    document: Document,
    /// PUT the file here with the given headers (valid 1 h).
    #[schema(value_type = Object)]
    upload: SignedUrl,
}

/// Creates a document and its upload link (upload-url). Then PUT the file to `upload.url` and
/// confirm with its SHA-256.
#[utoipa::path(post, path = "/documents", tag = "ingestion", request_body = NewDocument,
    responses((status = 201, body = UploadTicket), (status = 403, body = telar_kit::Problem), (status = 422, body = telar_kit::Problem)))]
async fn upload_url(
    Extract(state): Extract<State>,
    Authenticated(claims): Authenticated,
    Payload(input): Payload<NewDocument>,
) -> Result<(StatusCode, Json<UploadTicket>), ApiError> {
    let owner = input.owner.to_string();
    let title = input.title.trim().to_owned();
    if title.is_empty() || title.chars().count() > 200 {
        return Err(ApiError::invalid("title", "must be 1 to 200 characters"));
    }
    if input.filename.trim().is_empty() || input.filename.len() > 255 {
        return Err(ApiError::invalid("filename", "must be 1 to 255 characters"));
    }
    if !is_content_type(&input.content_type) {
        return Err(ApiError::invalid(
            "content_type",
            "must be a media type such as application/pdf",
        ));
    }
    if input.size == 0 {
        return Err(ApiError::invalid("size", "must be greater than 0"));
    }
    if input.tags.len() > 20
        || input
            .tags
            .iter()
            .any(|t| t.trim().is_empty() || t.len() > 50)
    {
        return Err(ApiError::invalid(
            "tags",
            "at most 20 tags of 1 to 50 characters",
        ));
    }
    let id = telar_types::new_id().to_string();
    state
        .authorizer
        .check(&claims, "upload", &owner, &id)
        .await?;
    let key = format!("citizens/{owner}/{id}-{}", safe_filename(&input.filename));
    let object_key = telar_objects::Objects::key(&key).map_err(objects_error)?;
    let upload = state
        .objects
        .presign_put(
            &object_key,
            &input.content_type,
            input.size,
            state.upload_link,
        )
        .await
        .map_err(objects_error)?;
    let now = now_rfc3339();
    let document = Document {
        id,
        owner,
        title,
        filename: input.filename.trim().to_owned(),
        content_type: input.content_type,
        declared_size: i64::try_from(input.size).unwrap_or(i64::MAX),
        tags: input.tags.iter().map(|t| t.trim().to_lowercase()).collect(),
        object_key: key,
        status: "pending".into(),
        size: None,
        sha256: None,
        created_at: now.clone(),
        updated_at: now,
    };
    state.documents.insert(&document).await.map_err(storage)?;
    Ok((StatusCode::CREATED, Json(UploadTicket { document, upload })))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Confirm {
    /// Hex SHA-256 of the uploaded file.
    sha256: String,
    /// Its size in bytes.
    size: u64,
}

/// Confirms an upload (confirm-upload): the stored file must have this size and SHA-256 (409
/// otherwise; upload again and confirm again). Then the document is `ready` and
/// `carpeta.document.uploaded` is published. Confirming twice answers the same.
#[utoipa::path(post, path = "/documents/{id}/confirm", tag = "ingestion", params(("id" = String, Path)), request_body = Confirm,
    responses((status = 200, body = Document), (status = 404, body = telar_kit::Problem), (status = 409, body = telar_kit::Problem)))]
async fn confirm(
    Extract(state): Extract<State>,
    Authenticated(claims): Authenticated,
    Path(id): Path<String>,
    Payload(input): Payload<Confirm>,
) -> Result<Json<Document>, ApiError> {
    let found = document(&state, &id).await?;
    state
        .authorizer
        .check(&claims, "upload", &found.owner, &id)
        .await?;
    if input.sha256.len() != 64 || !input.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::invalid("sha256", "must be 64 hex digits"));
    }
    let sha256 = input.sha256.to_lowercase();
    if found.status == "ready" {
        return if found.sha256.as_deref() == Some(sha256.as_str()) {
            Ok(Json(found))
        } else {
            Err(ApiError::new(
                ErrorCode::Conflict,
                "the document is already confirmed with another SHA-256",
            ))
        };
    }
    let key = telar_objects::Objects::key(&found.object_key).map_err(objects_error)?;
    let info = state
        .objects
        .confirm(&key, Some(input.size), &sha256)
        .await
        .map_err(|error| match error {
            ObjectsError::NotFound(_) => ApiError::new(
                ErrorCode::Conflict,
                "nothing was uploaded for this document yet",
            ),
            other => objects_error(other),
        })?;
    let size = i64::try_from(info.size).unwrap_or(i64::MAX);
    let now = now_rfc3339();
    let mut tx = state.documents.db.begin().await.map_err(storage)?;
    if state
        .documents
        .transition(
            &mut tx,
            &id,
            "pending",
            "ready",
            Some((size, sha256.clone())),
            &now,
        )
        .await
        .map_err(storage)?
    {
        let uploaded = event(
            events::DOCUMENT_UPLOADED,
            &found.owner,
            json!({"id": id, "owner": found.owner, "title": found.title, "filename": found.filename,
                   "content_type": found.content_type, "size": size, "sha256": sha256,
                   "tags": found.tags, "object_key": found.object_key}),
        );
        state
            .outbox
            .append(&mut tx, &uploaded)
            .await
            .map_err(storage)?;
    }
    state.outbox.commit(tx).await.map_err(storage)?;
    document(&state, &id).await.map(Json)
}

/// One document.
#[utoipa::path(get, path = "/documents/{id}", tag = "ingestion", params(("id" = String, Path)),
    responses((status = 200, body = Document), (status = 403, body = telar_kit::Problem), (status = 404, body = telar_kit::Problem)))]
async fn get_document(
    Extract(state): Extract<State>,
    Authenticated(claims): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<Document>, ApiError> {
    let found = document(&state, &id).await?;
    state
        .authorizer
        .check(&claims, "read", &found.owner, &id)
        .await?;
    Ok(Json(found))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct ListParams {
    owner: String,
    /// Include deleted documents.
    #[serde(default)]
    deleted: bool,
}

/// A citizen's documents.
#[utoipa::path(get, path = "/documents", tag = "ingestion", params(ListParams),
    responses((status = 200, body = Vec<Document>), (status = 403, body = telar_kit::Problem)))]
async fn list(
    Extract(state): Extract<State>,
    Authenticated(claims): Authenticated,
    Query(params): Query<ListParams>,
) -> Result<Json<Vec<Document>>, ApiError> {
    let owner = CitizenId::parse(&params.owner)
        .map_err(|r| ApiError::invalid("owner", r))?
        .to_string();
    state.authorizer.check(&claims, "read", &owner, "*").await?;
    state
        .documents
        .of_owner(&owner, params.deleted)
        .await
        .map(Json)
        .map_err(storage)
}

#[derive(Debug, Serialize, ToSchema)]
struct DownloadLink {
    url: String,
    expires_at: i64,
}

/// A download link (download-url), valid 15 minutes.
#[utoipa::path(get, path = "/documents/{id}/download-url", tag = "ingestion", params(("id" = String, Path)),
    responses((status = 200, body = DownloadLink), (status = 403, body = telar_kit::Problem), (status = 409, body = telar_kit::Problem)))]
async fn download_url(
    Extract(state): Extract<State>,
    Authenticated(claims): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<DownloadLink>, ApiError> {
    let found = document(&state, &id).await?;
    state
        .authorizer
        .check(&claims, "download", &found.owner, &id)
        .await?;
    if found.status != "ready" {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "the upload of this document is not confirmed yet",
        ));
    }
    let key = telar_objects::Objects::key(&found.object_key).map_err(objects_error)?;
    let link = state
        .objects
        .presign_get(&key, &found.content_type, state.download_link)
        .await
        .map_err(objects_error)?;
    Ok(Json(DownloadLink {
        url: link.url,
        expires_at: link.expires_at,
    }))
}

/// Deletes a document: its file is removed, the row stays `deleted`, and
/// `carpeta.document.deleted` is published.
#[utoipa::path(delete, path = "/documents/{id}", tag = "ingestion", params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = telar_kit::Problem), (status = 404, body = telar_kit::Problem)))]
async fn delete(
    Extract(state): Extract<State>,
    Authenticated(claims): Authenticated,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let found = document(&state, &id).await?;
    authorize_delete(&state, &claims, &found).await?;
    let key = telar_objects::Objects::key(&found.object_key).map_err(objects_error)?;
    match state.objects.delete(&key).await {
        Ok(()) | Err(ObjectsError::NotFound(_)) => {}
        Err(error) => return Err(objects_error(error)),
    }
    let now = now_rfc3339();
    let mut tx = state.documents.db.begin().await.map_err(storage)?;
    let from = found.status.clone();
    if state
        .documents
        .transition(&mut tx, &id, &from, "deleted", None, &now)
        .await
        .map_err(storage)?
    {
        let deleted = event(
            events::DOCUMENT_DELETED,
            &found.owner,
            json!({"id": id, "owner": found.owner}),
        );
        state
            .outbox
            .append(&mut tx, &deleted)
            .await
            .map_err(storage)?;
    }
    state.outbox.commit(tx).await.map_err(storage)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn authorize_delete(
    state: &State,
    claims: &Claims,
    document: &Document,
) -> Result<(), ApiError> {
    state
        .authorizer
        .check(claims, "delete", &document.owner, &document.id)
        .await
}
