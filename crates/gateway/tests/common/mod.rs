//! A recording upstream, a token issuer and a gateway on loopback ports.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::IntoResponse;
use axum::routing::{any, get, post};
use futures::StreamExt;
use http::StatusCode;
use serde_json::{Value, json};
use telar_auth::{Claims, KeyRing, Verifier, VerifierConfig};
use telar_gateway::{Gateway, GatewayConfig, RouteConfig, UpstreamConfig};
use telar_testkit::Shutdown;

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// What an upstream saw.
#[derive(Default)]
pub struct Seen {
    pub hits: AtomicUsize,
    pub bytes: AtomicU64,
}

/// An upstream that answers `/echo/...` with what it received, `/status/{code}` with that
/// status, `/slow/{ms}` after a pause, `/upload` with the bytes it counted and
/// `/download/{bytes}` with that many bytes, streamed.
pub struct Upstream {
    pub url: String,
    pub seen: Arc<Seen>,
    pub shutdown: Shutdown,
}

async fn echo(State(seen): State<Arc<Seen>>, request: Request) -> impl IntoResponse {
    seen.hits.fetch_add(1, Ordering::SeqCst);
    let headers: BTreeMap<String, String> = request
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    axum::Json(json!({
        "method": request.method().as_str(),
        "uri": request.uri().to_string(),
        "headers": headers,
    }))
}

async fn status(State(seen): State<Arc<Seen>>, Path(code): Path<u16>) -> StatusCode {
    seen.hits.fetch_add(1, Ordering::SeqCst);
    StatusCode::from_u16(code).unwrap()
}

async fn slow(State(seen): State<Arc<Seen>>, Path(ms): Path<u64>) -> &'static str {
    seen.hits.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    "slow"
}

async fn upload(State(seen): State<Arc<Seen>>, body: Body) -> String {
    seen.hits.fetch_add(1, Ordering::SeqCst);
    let mut stream = body.into_data_stream();
    let mut total = 0u64;
    while let Some(Ok(chunk)) = stream.next().await {
        total += chunk.len() as u64;
    }
    seen.bytes.store(total, Ordering::SeqCst);
    total.to_string()
}

async fn download(Path(bytes): Path<u64>) -> Body {
    let chunk = bytes::Bytes::from(vec![7u8; 64 * 1024]);
    let chunks = bytes.div_ceil(chunk.len() as u64);
    let stream = futures::stream::iter(0..chunks).map(move |i| {
        let size = (bytes - i * chunk.len() as u64).min(chunk.len() as u64) as usize;
        Ok::<_, std::io::Error>(chunk.slice(..size))
    });
    Body::from_stream(stream)
}

pub async fn upstream() -> Upstream {
    let seen = Arc::new(Seen::default());
    let app = Router::new()
        .route("/status/{code}", any(status))
        .route("/slow/{ms}", get(slow))
        .route("/api/slow/{ms}", get(slow))
        .route("/upload", post(upload))
        .route("/download/{bytes}", get(download))
        .fallback(echo)
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = Shutdown::new();
    let signal = shutdown.signal();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(signal)
            .await
    });
    Upstream {
        url,
        seen,
        shutdown,
    }
}

/// Signs tokens the gateway trusts.
pub struct Issuer {
    pub keys: KeyRing,
}

impl Issuer {
    pub fn new() -> Self {
        Issuer {
            keys: KeyRing::generate(now(), 3600).unwrap(),
        }
    }

    pub fn verifier(&self) -> Verifier {
        Verifier::new(VerifierConfig::new("telar", "telar")).with_keys(&self.keys.jwks(now()))
    }

    pub fn token(&self, sub: &str, roles: &[&str], expires_in: i64) -> String {
        self.keys
            .sign(&Claims {
                sub: sub.into(),
                roles: roles.iter().map(|r| (*r).to_owned()).collect(),
                permissions: vec!["documents:read".into()],
                org_id: Some("op-1".into()),
                iss: "telar".into(),
                aud: "telar".into(),
                exp: now() + expires_in,
                iat: now() - 1,
                jti: uuid::Uuid::new_v4().to_string(),
            })
            .unwrap()
    }
}

pub fn route(prefix: &str, upstream: &str) -> RouteConfig {
    RouteConfig::new(prefix, upstream)
}

pub fn upstream_config(urls: &[&str]) -> UpstreamConfig {
    UpstreamConfig {
        instances: urls.iter().map(|u| (*u).to_owned()).collect(),
        ..UpstreamConfig::default()
    }
}

pub struct Running {
    pub url: String,
    pub gateway: Gateway,
    pub shutdown: Shutdown,
}

impl Running {
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }
}

pub async fn start(config: GatewayConfig, issuer: &Issuer) -> Running {
    let gateway = Gateway::build(config, telar_kit::KitConfig::default(), issuer.verifier())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = Shutdown::new();
    tokio::spawn(gateway.clone().run(listener, shutdown.signal()));
    Running {
        url,
        gateway,
        shutdown,
    }
}

pub fn client() -> reqwest::Client {
    telar_testkit::client()
}

pub async fn json(response: reqwest::Response) -> Value {
    response.json().await.unwrap()
}

/// Polls `check` every 20 ms for up to 10 s.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..500 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never happened: {what}");
}

/// A raw TCP connection to a gateway (or any server) at `url`.
pub async fn raw(url: &str) -> tokio::net::TcpStream {
    tokio::net::TcpStream::connect(url.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Everything the peer sends until it closes the connection (at most 10 s).
pub async fn read_all(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut buffer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buffer)).await;
    String::from_utf8_lossy(&buffer).into_owned()
}
