//! Outbound HTTP calls that join the caller's trace: a client span per call (`http.client`,
//! method, host, status) and the `traceparent` header that makes the callee's span its child.

use std::future::Future;

use tracing::Instrument;

/// `send_traced()` in place of `send()` on any `reqwest` request.
pub trait SendTraced {
    /// Sends the request inside a client span and with the trace context in `traceparent`
    /// (kept when the caller already set one).
    fn send_traced(self) -> impl Future<Output = reqwest::Result<reqwest::Response>> + Send;
}

impl SendTraced for reqwest::RequestBuilder {
    fn send_traced(self) -> impl Future<Output = reqwest::Result<reqwest::Response>> + Send {
        let (client, request) = self.build_split();
        async move {
            let mut request = request?;
            let host = request.url().host_str().unwrap_or("").to_owned();
            let span = tracing::info_span!(
                "http.client",
                otel.kind = "client",
                otel.name = format!("{} {host}", request.method()),
                http.request.method = request.method().as_str(),
                server.address = host.as_str(),
                url.path = request.url().path(),
                http.response.status_code = tracing::field::Empty,
            );
            if !request.headers().contains_key("traceparent")
                && let Some(context) = telar_telemetry::outgoing(&span)
                && let Ok(value) = http::HeaderValue::from_str(&context.to_header())
            {
                request.headers_mut().insert("traceparent", value);
            }
            let result = client.execute(request).instrument(span.clone()).await;
            if let Ok(response) = &result {
                span.record("http.response.status_code", response.status().as_u16());
            }
            result
        }
    }
}
