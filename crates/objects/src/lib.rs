//! Object storage for telar services: one API over local files (embedded mode) and S3-compatible
//! storage (distributed mode), both through `object_store`. Clients upload and download through
//! expiring signed URLs: native presigned URLs on S3; on local files, HMAC-signed URLs served by
//! the owning service's own routes ([`Objects::routes`]), with range requests, the content type
//! and size limit fixed by the signature. A confirm step checks size and SHA-256 of what arrived.

mod key;
mod routes;
mod sign;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{GetOptions, ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use key::{MAX_KEY_BYTES, ObjectKey};
pub use sign::{Grant, UrlSigner};

/// `[objects]` of a service that keeps files.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectsConfig {
    pub backend: ObjectsBackend,
    /// Local backend: where the files live.
    pub dir: String,
    /// Local backend: the base URL signed links point to (the owning service's URL).
    pub public_url: String,
    /// Local backend: the HMAC key of signed links (any length; keep it secret).
    pub url_secret: String,
    pub s3: S3Config,
    /// Largest object accepted through a signed upload.
    pub max_object_bytes: u64,
}

impl Default for ObjectsConfig {
    fn default() -> Self {
        ObjectsConfig {
            backend: ObjectsBackend::Local,
            dir: "data/objects".into(),
            public_url: "http://127.0.0.1:8002".into(),
            url_secret: String::new(),
            s3: S3Config::default(),
            max_object_bytes: 100 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ObjectsBackend {
    #[default]
    Local,
    S3,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    pub bucket: String,
    /// Empty: AWS itself; else an S3-compatible endpoint (MinIO, moto, …), path-style.
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Every request to the store gives up after this long.
    pub timeout_ms: u64,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            bucket: "telar".into(),
            endpoint: String::new(),
            region: "us-east-1".into(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            timeout_ms: 30_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ObjectsError {
    #[error("invalid key `{key}`: {reason}")]
    InvalidKey { key: String, reason: String },
    #[error("object `{0}` does not exist")]
    NotFound(String),
    #[error("object `{key}` is {actual} bytes, expected {expected}")]
    SizeMismatch {
        key: String,
        expected: u64,
        actual: u64,
    },
    #[error("object `{key}` does not have the expected SHA-256")]
    HashMismatch { key: String },
    #[error("object storage: {0}")]
    Store(String),
    #[error("objects configuration: {0}")]
    Config(String),
}

impl From<object_store::Error> for ObjectsError {
    fn from(error: object_store::Error) -> Self {
        match error {
            object_store::Error::NotFound { path, .. } => ObjectsError::NotFound(path),
            other => ObjectsError::Store(other.to_string()),
        }
    }
}

impl telar_types::Classify for ObjectsError {
    fn code(&self) -> telar_types::ErrorCode {
        use telar_types::ErrorCode;
        match self {
            ObjectsError::InvalidKey { .. } => ErrorCode::InvalidArgument,
            ObjectsError::NotFound(_) => ErrorCode::NotFound,
            ObjectsError::SizeMismatch { .. } | ObjectsError::HashMismatch { .. } => {
                ErrorCode::Conflict
            }
            ObjectsError::Store(_) => ErrorCode::Unavailable,
            ObjectsError::Config(_) => ErrorCode::Internal,
        }
    }
}

/// A link a client can use without credentials until `expires_at` (Unix seconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedUrl {
    pub url: String,
    pub method: String,
    pub expires_at: i64,
    /// Headers the client must send with it (the content type of an upload).
    pub headers: Vec<(String, String)>,
}

/// What is stored under a key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    /// Hex SHA-256 of the content (computed by `confirm` and `sha256`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

enum Backend {
    Local {
        signer: Box<UrlSigner>,
        public_url: String,
    },
    S3(Arc<AmazonS3>),
}

/// Object storage of one service. Cheap to clone.
#[derive(Clone)]
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    backend: Arc<Backend>,
    pub(crate) max_object_bytes: u64,
}

pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Objects {
    pub fn open(config: &ObjectsConfig) -> Result<Self, ObjectsError> {
        let (store, backend): (Arc<dyn ObjectStore>, Backend) = match config.backend {
            ObjectsBackend::Local => {
                if config.url_secret.len() < 16 {
                    return Err(ObjectsError::Config(
                        "url_secret: at least 16 characters are needed to sign links".into(),
                    ));
                }
                std::fs::create_dir_all(&config.dir)
                    .map_err(|e| ObjectsError::Config(format!("dir {}: {e}", config.dir)))?;
                let store = LocalFileSystem::new_with_prefix(&config.dir)?;
                (
                    Arc::new(store),
                    Backend::Local {
                        signer: Box::new(UrlSigner::new(config.url_secret.as_bytes())),
                        public_url: config.public_url.trim_end_matches('/').to_owned(),
                    },
                )
            }
            ObjectsBackend::S3 => {
                let s3 = &config.s3;
                let mut builder = AmazonS3Builder::new()
                    .with_bucket_name(&s3.bucket)
                    .with_region(&s3.region)
                    .with_access_key_id(&s3.access_key_id)
                    .with_secret_access_key(&s3.secret_access_key)
                    .with_client_options(
                        object_store::ClientOptions::new()
                            .with_timeout(Duration::from_millis(s3.timeout_ms))
                            .with_connect_timeout(Duration::from_secs(5)),
                    );
                if !s3.endpoint.is_empty() {
                    builder = builder
                        .with_endpoint(&s3.endpoint)
                        .with_allow_http(s3.endpoint.starts_with("http://"))
                        .with_virtual_hosted_style_request(false);
                }
                let store = Arc::new(builder.build()?);
                (store.clone(), Backend::S3(store))
            }
        };
        Ok(Objects {
            store,
            backend: Arc::new(backend),
            max_object_bytes: config.max_object_bytes,
        })
    }

    pub fn key(text: &str) -> Result<ObjectKey, ObjectsError> {
        ObjectKey::parse(text).map_err(|reason| ObjectsError::InvalidKey {
            key: text.chars().take(80).collect(),
            reason,
        })
    }

    fn path(key: &ObjectKey) -> Path {
        Path::from(key.as_str())
    }

    pub async fn put(&self, key: &ObjectKey, bytes: bytes::Bytes) -> Result<(), ObjectsError> {
        self.store.put(&Self::path(key), bytes.into()).await?;
        Ok(())
    }

    pub async fn get(&self, key: &ObjectKey) -> Result<bytes::Bytes, ObjectsError> {
        Ok(self.store.get(&Self::path(key)).await?.bytes().await?)
    }

    /// Size of the object, if there is one.
    pub async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectInfo>, ObjectsError> {
        let options = GetOptions {
            head: true,
            ..GetOptions::default()
        };
        match self.store.get_opts(&Self::path(key), options).await {
            Ok(result) => Ok(Some(ObjectInfo {
                key: key.to_string(),
                size: result.meta.size,
                sha256: None,
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// Deleting what is not there is not an error.
    pub async fn delete(&self, key: &ObjectKey) -> Result<(), ObjectsError> {
        match self.store.delete(&Self::path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Hex SHA-256 of the object, streamed.
    pub async fn sha256(&self, key: &ObjectKey) -> Result<ObjectInfo, ObjectsError> {
        let result = self.store.get(&Self::path(key)).await?;
        let mut stream = result.into_stream();
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            size += chunk.len() as u64;
            hasher.update(&chunk);
        }
        Ok(ObjectInfo {
            key: key.to_string(),
            size,
            sha256: Some(hex::encode(hasher.finalize())),
        })
    }

    /// Checks that what a client uploaded is what it announced: the object exists, has
    /// `size` bytes (when given) and the SHA-256 `sha256` (hex, any case).
    pub async fn confirm(
        &self,
        key: &ObjectKey,
        size: Option<u64>,
        sha256: &str,
    ) -> Result<ObjectInfo, ObjectsError> {
        let info = self.sha256(key).await?;
        if let Some(expected) = size
            && expected != info.size
        {
            return Err(ObjectsError::SizeMismatch {
                key: key.to_string(),
                expected,
                actual: info.size,
            });
        }
        if !info
            .sha256
            .as_deref()
            .is_some_and(|actual| actual.eq_ignore_ascii_case(sha256.trim()))
        {
            return Err(ObjectsError::HashMismatch {
                key: key.to_string(),
            });
        }
        Ok(info)
    }

    /// A link to upload `key` with `content_type`, up to `max_bytes` (capped by the configured
    /// maximum), valid for `expires_in`. On S3 the size is not part of a presigned PUT: check it
    /// with [`Objects::confirm`].
    pub async fn presign_put(
        &self,
        key: &ObjectKey,
        content_type: &str,
        max_bytes: u64,
        expires_in: Duration,
    ) -> Result<SignedUrl, ObjectsError> {
        let max_bytes = max_bytes.min(self.max_object_bytes);
        self.presign("put", key, content_type, max_bytes, expires_in)
            .await
    }

    /// A link to download `key`, answered with `content_type`, valid for `expires_in`.
    pub async fn presign_get(
        &self,
        key: &ObjectKey,
        content_type: &str,
        expires_in: Duration,
    ) -> Result<SignedUrl, ObjectsError> {
        self.presign("get", key, content_type, 0, expires_in).await
    }

    async fn presign(
        &self,
        op: &str,
        key: &ObjectKey,
        content_type: &str,
        max_bytes: u64,
        expires_in: Duration,
    ) -> Result<SignedUrl, ObjectsError> {
        let expires_at = now_secs() + i64::try_from(expires_in.as_secs()).unwrap_or(i64::MAX / 2);
        let (method, headers) = if op == "put" {
            (
                "PUT",
                vec![("content-type".to_owned(), content_type.to_owned())],
            )
        } else {
            ("GET", Vec::new())
        };
        let url = match &*self.backend {
            Backend::Local { signer, public_url } => {
                let grant = Grant {
                    op: op.to_owned(),
                    key: key.to_string(),
                    expires: expires_at,
                    content_type: content_type.to_owned(),
                    max_bytes,
                };
                let signature = signer.sign(&grant);
                format!(
                    "{public_url}/objects/{key}?op={op}&exp={expires_at}&ct={}&max={max_bytes}&sig={signature}",
                    encode_component(content_type)
                )
            }
            Backend::S3(s3) => {
                let method = if op == "put" {
                    http::Method::PUT
                } else {
                    http::Method::GET
                };
                s3.signed_url(method, &Self::path(key), expires_in)
                    .await?
                    .to_string()
            }
        };
        Ok(SignedUrl {
            url,
            method: method.to_owned(),
            expires_at,
            headers,
        })
    }

    /// The signer of local links, when the backend is local (the routes need it).
    pub(crate) fn signer(&self) -> Option<&UrlSigner> {
        match &*self.backend {
            Backend::Local { signer, .. } => Some(signer),
            Backend::S3(_) => None,
        }
    }

    pub(crate) fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The routes serving local signed links (`PUT`/`GET /objects/{key}`), for the owning
    /// service to mount. On S3 they answer 404: links go to the store itself.
    pub fn routes(&self) -> axum::Router {
        routes::router(self.clone())
    }
}

/// Percent-encodes a query component (content types carry `/`, `+`, `;`).
fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
