//! The reading side of crypto-shredding: opens the sealed personal fields of an event with keys
//! fetched from the citizen service (`GET /citizens/pii-keys/{kid}`), cached for a short while
//! (a forgotten key is remembered as forgotten too). A field whose key is gone reads as
//! `[redacted]`; an unreachable citizen service is an error (the consumer retries).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use telar_kit::SendTraced;
use telar_store::{open_sealed, sealed_key_ids};

use super::ServiceClient;

/// How long a fetched key (or its absence) is trusted; a citizen shredded meanwhile stays
/// readable here at most this long.
const CACHE_TTL: Duration = Duration::from_secs(30);

type Cache = HashMap<String, (Option<[u8; 32]>, Instant)>;

#[derive(Clone)]
pub struct PiiKeys {
    citizens: ServiceClient,
    cache: Arc<Mutex<Cache>>,
}

impl PiiKeys {
    pub fn new(citizens: ServiceClient) -> Self {
        PiiKeys {
            citizens,
            cache: Arc::default(),
        }
    }

    /// Opens every sealed top-level field of `data` in place.
    pub async fn open(&self, data: &mut Value) -> Result<(), String> {
        let kids = sealed_key_ids(data);
        if kids.is_empty() {
            return Ok(());
        }
        let mut keys = HashMap::with_capacity(kids.len());
        for kid in kids {
            let key = self.key(&kid).await?;
            keys.insert(kid, key);
        }
        open_sealed(data, &keys);
        Ok(())
    }

    async fn key(&self, kid: &str) -> Result<Option<[u8; 32]>, String> {
        if let Ok(cache) = self.cache.lock()
            && let Some((key, at)) = cache.get(kid)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(*key);
        }
        let response = self
            .citizens
            .request(http::Method::GET, &format!("/citizens/pii-keys/{kid}"))
            .await?
            .send_traced()
            .await
            .map_err(|e| format!("citizen unreachable for key {kid}: {e}"))?;
        let key = match response.status().as_u16() {
            200 => {
                let body: Value = response.json().await.map_err(|e| e.to_string())?;
                let bytes = STANDARD
                    .decode(body["key"].as_str().unwrap_or_default())
                    .map_err(|e| format!("key {kid}: {e}"))?;
                Some(
                    <[u8; 32]>::try_from(bytes.as_slice())
                        .map_err(|_| format!("key {kid}: not 32 bytes"))?,
                )
            }
            410 => None,
            status => return Err(format!("citizen answered {status} for key {kid}")),
        };
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(kid.to_owned(), (key, Instant::now()));
        }
        Ok(key)
    }
}
