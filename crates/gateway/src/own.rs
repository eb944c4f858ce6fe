//! Requests for the gateway's own paths (`/health`, `/ready`, `/metrics`, `/ops/*`, `/docs`):
//! the body is read whole (these are small), the request handed to the kit router as an
//! `http::Request`, and its response written back.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use http::{HeaderName, HeaderValue, Method, Request, Response, Uri};
use tower::ServiceExt;

use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::h1::body::{BodyError, Conn, Encode, transfer};
use crate::h1::head::RequestHead;
use crate::h1::write;

/// Largest body the gateway's own API reads.
const OWN_BODY_LIMIT: u64 = 1024 * 1024;
/// Longest time its own API takes to read a request or write an answer.
const OWN_TIMEOUT: Duration = Duration::from_secs(30);

impl Gateway {
    /// Answers a request for one of the gateway's own paths; whether the connection goes on.
    pub(crate) async fn serve_own(
        &self,
        client: &mut Conn,
        request: RequestHead,
        out: &mut Vec<u8>,
    ) -> bool {
        let head_request = request.method == Method::HEAD;
        let mut body = Vec::new();
        let read = transfer(
            client,
            request.framing,
            &mut body,
            Encode::Raw,
            OWN_BODY_LIMIT,
            OWN_TIMEOUT,
            &mut Vec::new(),
        )
        .await;
        if let Err(error) = read {
            let error = match error {
                BodyError::TooLarge(limit) => GatewayError::PayloadTooLarge { limit },
                other => GatewayError::BadRequest(format!("request body: {other}")),
            };
            let response = self.inner.errors.render(&error, "");
            let _ = write::response(
                &mut client.io,
                response,
                head_request,
                true,
                out,
                OWN_TIMEOUT,
            )
            .await;
            return false;
        }
        let response = match to_http(&request, body) {
            Ok(http_request) => match self.inner.ops.get() {
                Some(ops) => match ops.clone().oneshot(http_request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                },
                None => Response::new(Body::empty()),
            },
            Err(error) => self.inner.errors.render(&error, ""),
        };
        let keep = request.keep_alive && !self.inner.draining.load(Ordering::Relaxed);
        let written = write::response(
            &mut client.io,
            response,
            head_request,
            !keep,
            out,
            OWN_TIMEOUT,
        )
        .await;
        keep && written.is_ok()
    }
}

fn to_http(request: &RequestHead, body: Vec<u8>) -> Result<Request<Body>, GatewayError> {
    let invalid = |what: &str| GatewayError::BadRequest(format!("invalid {what}"));
    let target = match request.query() {
        Some(query) => format!("{}?{query}", request.path()),
        None => request.path().to_owned(),
    };
    let mut http_request = Request::new(Body::from(body));
    *http_request.method_mut() = request.method.clone();
    *http_request.uri_mut() = Uri::try_from(target).map_err(|_| invalid("request target"))?;
    let headers = http_request.headers_mut();
    for (_, name, value) in request.fields.iter() {
        let name = HeaderName::from_bytes(name).map_err(|_| invalid("header name"))?;
        let value = HeaderValue::from_bytes(value).map_err(|_| invalid("header value"))?;
        headers.append(name, value);
    }
    Ok(http_request)
}
