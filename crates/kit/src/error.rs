//! The one place where errors become HTTP responses: RFC 9457 `application/problem+json`
//! (or `application/problem+xml` when the client asked for XML).

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use telar_types::{Classify, ErrorCode};
use utoipa::ToSchema;

use crate::middleware::current_request_id;

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Stable machine-readable code, e.g. `invalid_argument`.
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// One entry per invalid field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// What is wrong with one field of the input (`field` is a dotted path, e.g. `owner.email`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// An error on its way out of a handler. Client errors keep their detail; server errors are
/// answered with an opaque text and their cause goes to the log with the request id.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    detail: Option<String>,
    errors: Vec<FieldError>,
    retry_after: Option<Duration>,
}

impl ApiError {
    /// An error of a classified kind with a human-readable detail.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::from_u16(code.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code: code.as_str(),
            detail: Some(detail.into()),
            errors: Vec::new(),
            retry_after: None,
        }
    }

    /// 422 naming the invalid field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        let message = message.into();
        let mut error = ApiError::new(
            ErrorCode::InvalidArgument,
            format!("invalid field `{field}`: {message}"),
        );
        error.errors.push(FieldError { field, message });
        error
    }

    /// Adds another invalid field.
    pub fn with_field(mut self, field: impl Into<String>, message: impl Into<String>) -> Self {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
        self
    }

    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// An error with a status outside the classified kinds (400, 405, 406, 413, 415, ...).
    pub fn with_status(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            detail: Some(detail.into()),
            errors: Vec::new(),
            retry_after: None,
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::with_status(StatusCode::BAD_REQUEST, "bad_request", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, detail)
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::Internal, cause.to_string())
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn field_errors(&self) -> &[FieldError] {
        &self.errors
    }

    /// The problem body this error is answered with.
    pub fn to_problem(&self) -> Problem {
        let server_error = self.status.is_server_error();
        let detail = if server_error
            && self.status != StatusCode::GATEWAY_TIMEOUT
            && self.status != StatusCode::SERVICE_UNAVAILABLE
        {
            Some(
                "the server could not complete the request; quote the request id when reporting it"
                    .to_owned(),
            )
        } else {
            self.detail.clone()
        };
        Problem {
            type_uri: format!("https://telar.dev/problems/{}", self.code.replace('_', "-")),
            title: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            status: self.status.as_u16(),
            detail,
            code: self.code.to_owned(),
            request_id: current_request_id(),
            errors: self.errors.clone(),
        }
    }
}

impl<E> From<E> for ApiError
where
    E: Classify + std::error::Error,
{
    fn from(error: E) -> Self {
        let mut api = ApiError::new(error.code(), error.to_string());
        api.retry_after = error.retry_after();
        api
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(
                status = self.status.as_u16(),
                code = self.code,
                cause = self.detail.as_deref().unwrap_or(""),
                "request failed"
            );
        }
        let problem = self.to_problem();
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(after) = self.retry_after {
            let seconds = after.as_secs_f64().ceil().max(1.0) as u64;
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_hide_their_cause() {
        let problem = ApiError::internal("password=hunter2 at db").to_problem();
        assert_eq!(problem.status, 500);
        assert!(!problem.detail.unwrap_or_default().contains("hunter2"));
    }

    #[test]
    fn validation_errors_name_the_field() {
        let problem = ApiError::invalid("email", "must contain @").to_problem();
        assert_eq!(problem.status, 422);
        assert_eq!(problem.code, "invalid_argument");
        assert_eq!(problem.errors[0].field, "email");
    }
}
