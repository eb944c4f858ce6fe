//! `PUT` and `GET /objects/{key}` for local signed links. Every link problem (tampered, expired,
//! another operation, an unknown key) is the same 403; only a genuine link learns more (415 for
//! another content type, 413 past its size, 404 when nothing was uploaded, 416 for a range past
//! the end).

use std::ops::Range;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path as UrlPath, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, GetResultPayload, ObjectStoreExt, WriteMultipart};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use telar_kit::ApiError;
use telar_types::ErrorCode;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::{Grant, ObjectInfo, ObjectKey, Objects, now_secs};

#[derive(Debug, Deserialize)]
struct Link {
    op: String,
    exp: i64,
    #[serde(default)]
    ct: String,
    #[serde(default)]
    max: u64,
    sig: String,
}

pub fn router(objects: Objects) -> Router {
    Router::new()
        .route("/objects/{*key}", put(upload).get(download))
        .with_state(objects)
}

fn forbidden() -> ApiError {
    ApiError::new(ErrorCode::Forbidden, "invalid or expired link")
}

/// The key and grant of a genuine, unexpired link for `op`.
fn admit(
    objects: &Objects,
    key: &str,
    link: Option<Link>,
    op: &str,
) -> Result<(ObjectKey, Grant), ApiError> {
    let (Some(signer), Some(link)) = (objects.signer(), link) else {
        return Err(forbidden());
    };
    let key = ObjectKey::parse(key).map_err(|_| forbidden())?;
    let grant = Grant {
        op: link.op,
        key: key.to_string(),
        expires: link.exp,
        content_type: link.ct,
        max_bytes: link.max,
    };
    if grant.op != op || !signer.check(&grant, &link.sig, now_secs()) {
        return Err(forbidden());
    }
    Ok((key, grant))
}

fn media_type(value: &str) -> String {
    value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

async fn upload(
    State(objects): State<Objects>,
    UrlPath(key): UrlPath<String>,
    link: Result<Query<Link>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (key, grant) = admit(&objects, &key, link.ok().map(|q| q.0), "put")?;
    let sent_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !grant.content_type.is_empty() && media_type(sent_type) != media_type(&grant.content_type) {
        return Err(ApiError::with_status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("this link uploads `{}`", grant.content_type),
        ));
    }
    let too_large = || {
        ApiError::with_status(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("this link accepts at most {} bytes", grant.max_bytes),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > grant.max_bytes) {
        return Err(too_large());
    }
    let path = Path::from(key.as_str());
    let upload = objects
        .store()
        .put_multipart(&path)
        .await
        .map_err(store_error)?;
    let mut writer = WriteMultipart::new(upload);
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(error) => {
                let _ = writer.abort().await;
                return Err(ApiError::new(
                    ErrorCode::InvalidArgument,
                    format!("upload interrupted: {error}"),
                ));
            }
        };
        size += chunk.len() as u64;
        if size > grant.max_bytes {
            let _ = writer.abort().await;
            return Err(too_large());
        }
        hasher.update(&chunk);
        writer.put(chunk);
    }
    writer.finish().await.map_err(store_error)?;
    let info = ObjectInfo {
        key: key.to_string(),
        size,
        sha256: Some(hex::encode(hasher.finalize())),
    };
    Ok((StatusCode::CREATED, axum::Json(info)).into_response())
}

fn store_error(error: object_store::Error) -> ApiError {
    tracing::warn!(%error, "object store");
    ApiError::new(ErrorCode::Unavailable, "object storage unavailable")
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` within `size`; `Err` when it cannot be satisfied,
/// `Ok(None)` for anything else (several ranges, other units: the whole object is sent).
fn parse_range(header: &str, size: u64) -> Result<Option<Range<u64>>, ()> {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((start, end)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (start, end) = (start.trim(), end.trim());
    let range = match (start.parse::<u64>(), end.parse::<u64>()) {
        (Ok(start), Ok(end)) if start <= end => start..(end + 1).min(size),
        (Ok(start), Err(_)) if end.is_empty() => start..size,
        (Err(_), Ok(suffix)) if start.is_empty() && suffix > 0 => size.saturating_sub(suffix)..size,
        _ => return Ok(None),
    };
    if range.start >= size || range.is_empty() {
        return Err(());
    }
    Ok(Some(range))
}

async fn download(
    State(objects): State<Objects>,
    UrlPath(key): UrlPath<String>,
    link: Result<Query<Link>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (key, grant) = admit(&objects, &key, link.ok().map(|q| q.0), "get")?;
    let path = Path::from(key.as_str());
    let head = objects
        .store()
        .get_opts(
            &path,
            GetOptions {
                head: true,
                ..GetOptions::default()
            },
        )
        .await
        .map_err(|error| match error {
            object_store::Error::NotFound { .. } => ApiError::not_found("no such object"),
            other => store_error(other),
        })?;
    let size = head.meta.size;
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(text) => match parse_range(text, size) {
            Ok(range) => range,
            Err(()) => {
                let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
                if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    response.headers_mut().insert(header::CONTENT_RANGE, value);
                }
                return Ok(response);
            }
        },
        None => None,
    };
    let options = GetOptions {
        range: range.clone().map(GetRange::Bounded),
        ..GetOptions::default()
    };
    let result = objects
        .store()
        .get_opts(&path, options)
        .await
        .map_err(store_error)?;
    let length = result.range.end - result.range.start;
    let body = match result.payload {
        GetResultPayload::File(file, _) => file_body(file, result.range.start, length),
        GetResultPayload::Stream(stream) => Body::from_stream(stream),
    };
    let mut response = Response::new(body);
    let content_type = if grant.content_type.is_empty() {
        "application/octet-stream"
    } else {
        grant.content_type.as_str()
    };
    let response_headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(content_type) {
        response_headers.insert(header::CONTENT_TYPE, value);
    }
    response_headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    response_headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(range) = range {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(value) =
            HeaderValue::from_str(&format!("bytes {}-{}/{size}", range.start, range.end - 1))
        {
            response.headers_mut().insert(header::CONTENT_RANGE, value);
        }
    }
    Ok(response)
}

/// `length` bytes of a local file from `start`, read 256 KiB at a time (object_store's own file
/// stream reads 8 KiB at a time: a quarter of the throughput).
fn file_body(file: std::fs::File, start: u64, length: u64) -> Body {
    const CHUNK: usize = 256 * 1024;
    let state = (tokio::fs::File::from_std(file), start, length, false);
    let stream =
        futures::stream::try_unfold(state, |(mut file, start, left, positioned)| async move {
            if left == 0 {
                return Ok::<_, std::io::Error>(None);
            }
            if !positioned {
                file.seek(std::io::SeekFrom::Start(start)).await?;
            }
            let want = usize::try_from(left).unwrap_or(CHUNK).min(CHUNK);
            let mut buffer = bytes::BytesMut::zeroed(want);
            let read = file.read(&mut buffer).await?;
            if read == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "object shorter than its metadata",
                ));
            }
            buffer.truncate(read);
            Ok(Some((
                buffer.freeze(),
                (file, start, left - read as u64, true),
            )))
        });
    Body::from_stream(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        assert_eq!(parse_range("bytes=0-9", 100), Ok(Some(0..10)));
        assert_eq!(parse_range("bytes=90-", 100), Ok(Some(90..100)));
        assert_eq!(parse_range("bytes=-10", 100), Ok(Some(90..100)));
        assert_eq!(parse_range("bytes=95-200", 100), Ok(Some(95..100)));
        assert_eq!(parse_range("bytes=100-", 100), Err(()));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(parse_range("items=0-1", 100), Ok(None));
        assert_eq!(parse_range("bytes=5-2", 100), Ok(None));
    }
}
