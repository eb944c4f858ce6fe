//! The token a service sends when it calls another service: a client-credentials token from the
//! identity service, fetched once and reused until shortly before it expires.

use std::sync::Arc;
use std::time::{Duration, Instant};
use telar_kit::SendTraced;

use serde::Deserialize;
use tokio::sync::Mutex;

#[derive(Clone)]
pub struct TokenSource {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    token_url: String,
    client_id: String,
    client_secret: String,
    cached: Mutex<Option<(String, Instant)>>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: u64,
}

impl TokenSource {
    pub fn new(token_url: &str, client_id: &str, client_secret: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        TokenSource {
            inner: Arc::new(Inner {
                http,
                token_url: token_url.to_owned(),
                client_id: client_id.to_owned(),
                client_secret: client_secret.to_owned(),
                cached: Mutex::new(None),
            }),
        }
    }

    /// A valid token: the cached one, or a new one (one fetch at a time).
    pub async fn token(&self) -> Result<String, String> {
        let mut cached = self.inner.cached.lock().await;
        if let Some((token, until)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let response = self
            .inner
            .http
            .post(&self.inner.token_url)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(format!(
                "grant_type=client_credentials&client_id={}&client_secret={}",
                form_encode(&self.inner.client_id),
                form_encode(&self.inner.client_secret)
            ))
            .send_traced()
            .await
            .map_err(|e| format!("identity service unreachable: {e}"))?;
        if !response.status().is_success() {
            return Err(format!(
                "identity service refused the service credentials ({})",
                response.status()
            ));
        }
        let answer: TokenAnswer = response
            .json()
            .await
            .map_err(|e| format!("identity service answer: {e}"))?;
        // Renewed a minute early (or at half its life when shorter).
        let margin = Duration::from_secs(answer.expires_in.min(120) / 2);
        let until = Instant::now() + Duration::from_secs(answer.expires_in) - margin;
        *cached = Some((answer.access_token.clone(), until));
        Ok(answer.access_token)
    }
}

/// An HTTP client for another service of this operator: its base URL, a timeout, and the
/// service token on every call.
#[derive(Clone)]
pub struct ServiceClient {
    pub base: String,
    pub http: reqwest::Client,
    pub tokens: TokenSource,
}

impl ServiceClient {
    pub fn new(base: &str, timeout: Duration, tokens: TokenSource) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .unwrap_or_default();
        ServiceClient {
            base: base.trim_end_matches('/').to_owned(),
            http,
            tokens,
        }
    }

    /// A request to `path` with the service token.
    pub async fn request(
        &self,
        method: http::Method,
        path: &str,
    ) -> Result<reqwest::RequestBuilder, String> {
        let token = self.tokens.token().await?;
        Ok(self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token))
    }
}

/// `application/x-www-form-urlencoded` for one value.
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
