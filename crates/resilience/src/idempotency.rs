//! Idempotency keys for HTTP commands: a request with an `Idempotency-Key` header runs once;
//! the same key with the same request gets the stored response (marked `Idempotent-Replayed:
//! true`), also when the two arrive together (the second waits for the first); the same key with
//! a different request is 422. Keys expire after a TTL. A response of 5xx is not stored (the
//! client may retry). Stored in the service's database or in Redis.
//!
//! ```ignore
//! let idempotency = Idempotency::new(Arc::new(SqlIdempotency::open(db).await?), Duration::from_secs(86_400));
//! let router = router.route_layer(axum::middleware::from_fn_with_state(idempotency, idempotent));
//! ```

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use http::{HeaderName, HeaderValue, Method, StatusCode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use telar_sql::{Db, Migration, query};
use tokio::time::Instant;

use crate::limit::{LimitError, now_ms, redis_connection};

/// A response kept for replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What a key's first sight says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// This request runs.
    Started,
    /// It ran before: answer this.
    Replay(StoredResponse),
    /// The key was used for another request.
    Mismatch,
    /// The same request is running now.
    InProgress,
}

pub trait IdempotencyStore: Send + Sync + 'static {
    /// Claims `key` for a request with `fingerprint` (the claim lapses after `running_for`).
    fn begin<'a>(
        &'a self,
        key: &'a str,
        fingerprint: &'a str,
        running_for: Duration,
    ) -> BoxFuture<'a, Result<Begin, LimitError>>;
    fn complete<'a>(
        &'a self,
        key: &'a str,
        response: &'a StoredResponse,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), LimitError>>;
    /// Forgets a claim whose request failed (5xx), so a retry runs again.
    fn abandon<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), LimitError>>;
}

/// The layer's state.
#[derive(Clone)]
pub struct Idempotency {
    store: Arc<dyn IdempotencyStore>,
    ttl: Duration,
    /// How long a second request waits for the first before 409.
    wait: Duration,
    /// Largest body fingerprinted (larger ones get 413).
    max_body: usize,
}

impl Idempotency {
    pub fn new(store: Arc<dyn IdempotencyStore>, ttl: Duration) -> Self {
        Idempotency {
            store,
            ttl,
            wait: Duration::from_secs(10),
            max_body: 10 * 1024 * 1024,
        }
    }

    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }
}

const HEADER: &str = "idempotency-key";
/// Response headers kept with the body.
const KEPT: &[&str] = &["content-type", "location", "etag"];

fn problem(status: StatusCode, detail: &str) -> Response {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    (
        status,
        [(http::header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

fn replay(stored: StoredResponse) -> Response {
    let mut response = Response::new(Body::from(stored.body));
    *response.status_mut() = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    for (name, value) in stored.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            response.headers_mut().insert(name, value);
        }
    }
    response.headers_mut().insert(
        HeaderName::from_static("idempotent-replayed"),
        HeaderValue::from_static("true"),
    );
    response
}

/// The middleware (`axum::middleware::from_fn_with_state(idempotency, idempotent)`).
pub async fn idempotent(
    State(idempotency): State<Idempotency>,
    request: Request,
    next: Next,
) -> Response {
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let Some(key) = request.headers().get(HEADER).cloned() else {
        return next.run(request).await;
    };
    if safe {
        return next.run(request).await;
    }
    let key = match key.to_str() {
        Ok(key) if !key.is_empty() && key.len() <= 255 => key.to_owned(),
        _ => {
            return problem(
                StatusCode::BAD_REQUEST,
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            );
        }
    };
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, idempotency.max_body).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body too large to be idempotent",
            );
        }
    };
    let mut hash = Sha256::new();
    hash.update(parts.method.as_str());
    hash.update(b" ");
    hash.update(parts.uri.to_string());
    hash.update(b"\n");
    hash.update(&bytes);
    let fingerprint = hash
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    let deadline = Instant::now() + idempotency.wait;
    loop {
        let begun = idempotency
            .store
            .begin(
                &key,
                &fingerprint,
                idempotency.wait.max(Duration::from_secs(30)),
            )
            .await;
        match begun {
            Err(error) => {
                tracing::warn!(%error, "idempotency store unavailable");
                return problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "idempotency store unavailable",
                );
            }
            Ok(Begin::Replay(stored)) => return replay(stored),
            Ok(Begin::Mismatch) => {
                return problem(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Idempotency-Key was already used for a different request",
                );
            }
            Ok(Begin::InProgress) => {
                if Instant::now() >= deadline {
                    return problem(
                        StatusCode::CONFLICT,
                        "a request with this Idempotency-Key is still running",
                    );
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Ok(Begin::Started) => break,
        }
    }
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        let _ = idempotency.store.abandon(&key).await;
        return problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the response could not be read",
        );
    };
    if parts.status.is_server_error() {
        let _ = idempotency.store.abandon(&key).await;
    } else {
        let stored = StoredResponse {
            status: parts.status.as_u16(),
            headers: KEPT
                .iter()
                .filter_map(|name| {
                    parts
                        .headers
                        .get(*name)
                        .and_then(|v| v.to_str().ok())
                        .map(|v| ((*name).to_owned(), v.to_owned()))
                })
                .collect(),
            body: bytes.to_vec(),
        };
        if let Err(error) = idempotency
            .store
            .complete(&key, &stored, idempotency.ttl)
            .await
        {
            tracing::warn!(%error, "idempotent response not stored");
        }
    }
    Response::from_parts(parts, Body::from(bytes))
}

pub const IDEMPOTENCY_MIGRATION: Migration = Migration {
    version: 1_000_301,
    name: "telar idempotency keys",
    sqlite: "CREATE TABLE telar_idempotency (key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, response TEXT, expires_at INTEGER NOT NULL);",
    postgres: "CREATE TABLE telar_idempotency (key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, response TEXT, expires_at BIGINT NOT NULL);",
};

/// Keys in the service's database (`telar_idempotency`).
#[derive(Clone)]
pub struct SqlIdempotency {
    db: Db,
}

fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 2)
}

impl SqlIdempotency {
    pub async fn open(db: Db) -> Result<Self, LimitError> {
        db.migrate(&[IDEMPOTENCY_MIGRATION])
            .await
            .map_err(LimitError::from)?;
        Ok(SqlIdempotency { db })
    }
}

/// What a stored claim says for a request with `fingerprint`.
fn judge(fingerprint: &str, stored: &str, response: Option<String>) -> Begin {
    if stored != fingerprint {
        return Begin::Mismatch;
    }
    match response.and_then(|text| serde_json::from_str(&text).ok()) {
        Some(response) => Begin::Replay(response),
        None => Begin::InProgress,
    }
}

impl IdempotencyStore for SqlIdempotency {
    fn begin<'a>(
        &'a self,
        key: &'a str,
        fingerprint: &'a str,
        running_for: Duration,
    ) -> BoxFuture<'a, Result<Begin, LimitError>> {
        Box::pin(async move {
            let now = now_ms();
            // A free (or expired) key is claimed in one statement; a live one returns no row.
            let claimed = query(
                "INSERT INTO telar_idempotency (key, fingerprint, response, expires_at) VALUES ($1, $2, NULL, $3)
                 ON CONFLICT (key) DO UPDATE SET fingerprint = excluded.fingerprint, response = NULL,
                   expires_at = excluded.expires_at
                 WHERE telar_idempotency.expires_at <= $4
                 RETURNING key",
            )
            .bind(key)
            .bind(fingerprint)
            .bind(now + ms(running_for))
            .bind(now)
            .fetch_optional(&self.db)
            .await
            .map_err(LimitError::from)?;
            if claimed.is_some() {
                return Ok(Begin::Started);
            }
            let row = query("SELECT fingerprint, response FROM telar_idempotency WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.db)
                .await
                .map_err(LimitError::from)?;
            Ok(match row {
                None => Begin::InProgress,
                Some(row) => judge(
                    fingerprint,
                    &row.get::<String>("fingerprint").map_err(LimitError::from)?,
                    row.get("response").map_err(LimitError::from)?,
                ),
            })
        })
    }

    fn complete<'a>(
        &'a self,
        key: &'a str,
        response: &'a StoredResponse,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), LimitError>> {
        Box::pin(async move {
            query("UPDATE telar_idempotency SET response = $2, expires_at = $3 WHERE key = $1")
                .bind(key)
                .bind(
                    serde_json::to_string(response)
                        .map_err(|e| LimitError::Store(e.to_string()))?,
                )
                .bind(now_ms() + ms(ttl))
                .execute(&self.db)
                .await
                .map_err(LimitError::from)?;
            Ok(())
        })
    }

    fn abandon<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), LimitError>> {
        Box::pin(async move {
            query("DELETE FROM telar_idempotency WHERE key = $1 AND response IS NULL")
                .bind(key)
                .execute(&self.db)
                .await
                .map_err(LimitError::from)?;
            Ok(())
        })
    }
}

/// Keys in Redis: `<prefix>:idem:<key>` holds `{fingerprint, response}` and expires.
#[derive(Clone)]
pub struct RedisIdempotency {
    connection: redis::aio::ConnectionManager,
    prefix: String,
}

#[derive(Serialize, Deserialize)]
struct Claim {
    fingerprint: String,
    response: Option<StoredResponse>,
}

impl RedisIdempotency {
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, LimitError> {
        Ok(RedisIdempotency {
            connection: redis_connection(url).await?,
            prefix: prefix.to_owned(),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}:idem:{key}", self.prefix)
    }
}

impl IdempotencyStore for RedisIdempotency {
    fn begin<'a>(
        &'a self,
        key: &'a str,
        fingerprint: &'a str,
        running_for: Duration,
    ) -> BoxFuture<'a, Result<Begin, LimitError>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let claim = serde_json::to_string(&Claim {
                fingerprint: fingerprint.to_owned(),
                response: None,
            })
            .map_err(|e| LimitError::Store(e.to_string()))?;
            let set: Option<String> = redis::cmd("SET")
                .arg(self.key(key))
                .arg(claim)
                .arg("NX")
                .arg("PX")
                .arg(ms(running_for).max(1))
                .query_async(&mut connection)
                .await
                .map_err(LimitError::from)?;
            if set.is_some() {
                return Ok(Begin::Started);
            }
            let stored: Option<String> = redis::cmd("GET")
                .arg(self.key(key))
                .query_async(&mut connection)
                .await
                .map_err(LimitError::from)?;
            Ok(
                match stored.and_then(|text| serde_json::from_str::<Claim>(&text).ok()) {
                    None => Begin::InProgress,
                    Some(claim) if claim.fingerprint != fingerprint => Begin::Mismatch,
                    Some(Claim {
                        response: Some(response),
                        ..
                    }) => Begin::Replay(response),
                    Some(_) => Begin::InProgress,
                },
            )
        })
    }

    fn complete<'a>(
        &'a self,
        key: &'a str,
        response: &'a StoredResponse,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), LimitError>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let stored: Option<String> = redis::cmd("GET")
                .arg(self.key(key))
                .query_async(&mut connection)
                .await
                .map_err(LimitError::from)?;
            let fingerprint = stored
                .and_then(|text| serde_json::from_str::<Claim>(&text).ok())
                .map(|claim| claim.fingerprint)
                .unwrap_or_default();
            let claim = serde_json::to_string(&Claim {
                fingerprint,
                response: Some(response.clone()),
            })
            .map_err(|e| LimitError::Store(e.to_string()))?;
            redis::cmd("SET")
                .arg(self.key(key))
                .arg(claim)
                .arg("PX")
                .arg(ms(ttl).max(1))
                .query_async::<()>(&mut connection)
                .await
                .map_err(LimitError::from)
        })
    }

    fn abandon<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), LimitError>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            redis::cmd("DEL")
                .arg(self.key(key))
                .query_async::<()>(&mut connection)
                .await
                .map_err(LimitError::from)
        })
    }
}
