//! `Payload<T>`: a request body read as JSON or XML by `Content-Type`, with errors that name
//! the offending field.

use axum::extract::{FromRequest, Request};
use bytes::Bytes;
use http::{StatusCode, header};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::negotiate::Format;
use crate::xml;

/// The typed body of a request. JSON (`application/json`, `*+json`) or XML
/// (`application/xml`, `text/xml`, `*+xml`); anything else is 415.
#[derive(Debug, Clone)]
pub struct Payload<T>(pub T);

impl<S, T> FromRequest<S> for Payload<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let format = body_format(request.headers())?;
        let bytes = body_bytes(request, state).await?;
        match format {
            Format::Json => parse_json(&bytes).map(Payload),
            Format::Xml => {
                let text = std::str::from_utf8(&bytes)
                    .map_err(|_| ApiError::bad_request("xml body is not valid UTF-8"))?;
                xml::from_xml(text)
                    .map(Payload)
                    .map_err(|reason| ApiError::invalid("body", reason))
            }
        }
    }
}

/// The raw body, within the service's size limit (413 problem beyond it), for handlers that
/// parse bodies their own way.
pub async fn body_bytes<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::with_status(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "request body exceeds the size limit of this service",
                )
            } else {
                ApiError::bad_request(rejection.body_text())
            }
        })
}

fn body_format(headers: &http::HeaderMap) -> Result<Format, ApiError> {
    let unsupported = |detail: String| {
        ApiError::with_status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            detail,
        )
    };
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(unsupported(
            "header `Content-Type` is required: application/json or application/xml".into(),
        ));
    };
    let media = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if media == "application/json"
        || (media.starts_with("application/") && media.ends_with("+json"))
    {
        Ok(Format::Json)
    } else if media == "application/xml" || media == "text/xml" || media.ends_with("+xml") {
        Ok(Format::Xml)
    } else {
        Err(unsupported(format!(
            "header `Content-Type` is `{media}`; use application/json or application/xml"
        )))
    }
}

/// Parses JSON; syntax errors are 400, shape errors 422 with the field's path.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(&mut deserializer);
    let value = match parsed {
        Ok(value) => value,
        Err(error) => {
            let path = error.path().to_string();
            let inner = error.into_inner();
            return Err(json_error(&path, &inner));
        }
    };
    deserializer
        .end()
        .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?;
    Ok(value)
}

fn json_error(path: &str, error: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match error.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::bad_request(format!("malformed JSON: {error}"))
        }
        Category::Data => {
            let message = error.to_string();
            let message = message
                .split(" at line ")
                .next()
                .unwrap_or(&message)
                .to_owned();
            let field = named_field(&message)
                .map(|name| join_path(path, name))
                .unwrap_or_else(|| {
                    if path == "." {
                        "body".to_owned()
                    } else {
                        path.to_owned()
                    }
                });
            ApiError::invalid(field, message)
        }
    }
}

/// serde names the field itself in "missing field `x`" and "unknown field `x`" messages.
fn named_field(message: &str) -> Option<&str> {
    let rest = message
        .strip_prefix("missing field `")
        .or_else(|| message.strip_prefix("unknown field `"))?;
    rest.split('`').next()
}

fn join_path(path: &str, name: &str) -> String {
    if path.rsplit('.').next() == Some(name) {
        path.to_owned()
    } else if path == "." || path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Citizen {
        id: i64,
        email: String,
        address: Address,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Address {
        city: String,
    }

    fn field_of(body: &str) -> (u16, String) {
        let error = parse_json::<Citizen>(body.as_bytes()).expect_err("invalid");
        let field = error
            .field_errors()
            .first()
            .map(|f| f.field.clone())
            .unwrap_or_default();
        (error.status().as_u16(), field)
    }

    #[test]
    fn names_wrong_missing_and_unknown_fields() {
        assert_eq!(
            field_of(r#"{"id":"x","email":"a","address":{"city":"c"}}"#),
            (422, "id".into())
        );
        assert_eq!(
            field_of(r#"{"id":1,"address":{"city":"c"}}"#),
            (422, "email".into())
        );
        assert_eq!(
            field_of(r#"{"id":1,"email":"a","address":{"city":5}}"#),
            (422, "address.city".into())
        );
        assert_eq!(
            field_of(r#"{"id":1,"email":"a","address":{}}"#),
            (422, "address.city".into())
        );
        assert_eq!(
            field_of(r#"{"id":1,"email":"a","zip":1,"address":{"city":"c"}}"#),
            (422, "zip".into())
        );
    }

    #[test]
    fn malformed_json_is_a_bad_request() {
        assert_eq!(field_of(r#"{"id":1,"#).0, 400);
        assert_eq!(
            field_of(r#"{"id":1,"email":"a","address":{"city":"c"}} trailing"#).0,
            400
        );
    }
}
