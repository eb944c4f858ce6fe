//! Content negotiation: JSON or XML by `Accept`, 406 when neither is acceptable.

use axum::body::Body;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};

use crate::error::ApiError;
use crate::xml;

/// A representation the kit can produce or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Xml,
}

/// Largest JSON response converted to XML (bigger ones are streamed as they are produced by
/// handlers that know their format).
const MAX_CONVERTED_BODY: usize = 16 * 1024 * 1024;

impl Format {
    /// The preferred format by `Accept` (RFC 9110 q-values; JSON wins ties). `None`: neither is
    /// acceptable. A missing or empty header accepts anything.
    pub fn from_accept(headers: &HeaderMap) -> Option<Format> {
        let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
            return Some(Format::Json);
        };
        if accept.trim().is_empty() {
            return Some(Format::Json);
        }
        let mut json_q: f32 = 0.0;
        let mut xml_q: f32 = 0.0;
        let mut json_specific = false;
        let mut xml_specific = false;
        for item in accept.split(',') {
            let mut parts = item.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .filter_map(|q| q.trim().parse::<f32>().ok())
                .next()
                .unwrap_or(1.0);
            match media.as_str() {
                "application/json" | "application/problem+json" => {
                    json_q = if json_specific { json_q.max(q) } else { q };
                    json_specific = true;
                }
                "application/xml" | "text/xml" | "application/problem+xml" => {
                    xml_q = if xml_specific { xml_q.max(q) } else { q };
                    xml_specific = true;
                }
                "*/*" | "application/*" => {
                    if !json_specific {
                        json_q = json_q.max(q);
                    }
                    if !xml_specific {
                        xml_q = xml_q.max(q * 0.99);
                    }
                }
                "text/*" if !xml_specific => xml_q = xml_q.max(q),
                _ => {}
            }
        }
        if json_q <= 0.0 && xml_q <= 0.0 {
            None
        } else if xml_q > json_q {
            Some(Format::Xml)
        } else {
            Some(Format::Json)
        }
    }
}

/// Layer for API routes: refuses with 406 before running the handler when neither JSON nor
/// XML is acceptable, and turns JSON bodies into XML when XML is preferred. JSON requests pass
/// through with no extra allocation.
#[derive(Clone, Copy)]
pub(crate) struct NegotiateLayer;

impl<S> tower::Layer<S> for NegotiateLayer {
    type Service = Negotiate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Negotiate { inner }
    }
}

#[derive(Clone)]
pub(crate) struct Negotiate<S> {
    inner: S,
}

type BoxResponse = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl<S> tower::Service<Request> for Negotiate<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = futures::future::Either<S::Future, BoxResponse>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        use futures::future::Either;
        match Format::from_accept(request.headers()) {
            Some(Format::Json) => Either::Left(self.inner.call(request)),
            Some(Format::Xml) => {
                let response = self.inner.call(request);
                Either::Right(Box::pin(async move {
                    let Ok(response) = response.await;
                    Ok(to_xml(response).await)
                }))
            }
            None => {
                let refusal = ApiError::with_status(
                    StatusCode::NOT_ACCEPTABLE,
                    "not_acceptable",
                    "this resource is available as application/json or application/xml",
                )
                .into_response();
                Either::Right(Box::pin(async move { Ok(refusal) }))
            }
        }
    }
}

async fn to_xml(response: Response) -> Response {
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let problem = content_type.starts_with("application/problem+json");
    if !(problem || content_type.starts_with("application/json")) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_CONVERTED_BODY).await else {
        return ApiError::internal("response body too large to convert to xml").into_response();
    };
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return ApiError::internal("handler produced invalid json").into_response();
    };
    let (root, namespace, media) = if problem {
        (
            "problem",
            Some("urn:ietf:rfc:7807"),
            "application/problem+xml",
        )
    } else {
        ("response", None, "application/xml")
    };
    let document = xml::to_xml(root, namespace, &value);
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(document))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> Option<Format> {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(header::ACCEPT, value);
        }
        Format::from_accept(&headers)
    }

    #[test]
    fn picks_by_quality_with_json_winning_ties() {
        assert_eq!(accept(""), Some(Format::Json));
        assert_eq!(accept("*/*"), Some(Format::Json));
        assert_eq!(accept("application/xml"), Some(Format::Xml));
        assert_eq!(accept("text/xml"), Some(Format::Xml));
        assert_eq!(
            accept("application/json;q=0.5, application/xml"),
            Some(Format::Xml)
        );
        assert_eq!(accept("application/xml;q=0.5, */*"), Some(Format::Json));
        assert_eq!(
            accept("text/html, application/xml;q=0.9"),
            Some(Format::Xml)
        );
    }

    #[test]
    fn refuses_when_neither_is_acceptable() {
        assert_eq!(accept("image/png"), None);
        assert_eq!(accept("text/html"), None);
        assert_eq!(accept("application/json;q=0"), None);
    }
}
