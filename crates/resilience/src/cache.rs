//! A typed JSON cache with TTL: in memory (bounded: the oldest entries go first when full) or in
//! Redis; invalidation by key and by prefix; `cache_hits`, `cache_misses`, `cache_evictions`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::limit::{LimitError, redis_connection};

/// Where cached bytes live.
pub trait CacheStore: Send + Sync + 'static {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, LimitError>>;
    fn set<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), LimitError>>;
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, LimitError>>;
    fn delete_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<u64, LimitError>>;
}

/// A named cache over a store (keys are `<name>:<key>`). Cheap to clone.
#[derive(Clone)]
pub struct Cache {
    name: String,
    store: Arc<dyn CacheStore>,
}

impl Cache {
    pub fn new(name: impl Into<String>, store: Arc<dyn CacheStore>) -> Self {
        Cache {
            name: name.into(),
            store,
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}:{key}", self.name)
    }

    /// The cached value; a value that no longer decodes as `T` counts as a miss.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, LimitError> {
        let value = self
            .store
            .get(&self.key(key))
            .await?
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        let counter = if value.is_some() {
            "cache_hits"
        } else {
            "cache_misses"
        };
        metrics::counter!(counter, "cache" => self.name.clone()).increment(1);
        Ok(value)
    }

    pub async fn set<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        ttl: Duration,
    ) -> Result<(), LimitError> {
        let bytes = serde_json::to_vec(value).map_err(|e| LimitError::Store(e.to_string()))?;
        self.store.set(&self.key(key), bytes, ttl).await
    }

    /// The cached value, or `load`'s (then cached for `ttl`).
    pub async fn get_or_load<T, E, Fut>(
        &self,
        key: &str,
        ttl: Duration,
        load: impl FnOnce() -> Fut,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        E: From<LimitError>,
        Fut: Future<Output = Result<T, E>>,
    {
        if let Some(value) = self.get(key).await? {
            return Ok(value);
        }
        let value = load().await?;
        self.set(key, &value, ttl).await?;
        Ok(value)
    }

    pub async fn invalidate(&self, key: &str) -> Result<bool, LimitError> {
        self.store.delete(&self.key(key)).await
    }

    /// Drops every key that starts with `prefix` (e.g. everything about one citizen).
    pub async fn invalidate_prefix(&self, prefix: &str) -> Result<u64, LimitError> {
        self.store.delete_prefix(&self.key(prefix)).await
    }
}

/// In this process, at most `capacity` entries.
#[derive(Clone)]
pub struct MemoryCache {
    capacity: usize,
    state: Arc<Mutex<MemoryState>>,
}

#[derive(Default)]
struct MemoryState {
    entries: HashMap<String, (Vec<u8>, Instant)>,
    /// Insertion order, for eviction (stale positions are skipped).
    order: VecDeque<String>,
}

impl MemoryCache {
    pub fn new(capacity: usize) -> Self {
        MemoryCache {
            capacity: capacity.max(1),
            state: Arc::default(),
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, MemoryState>, LimitError> {
        self.state
            .lock()
            .map_err(|_| LimitError::Store("cache lock poisoned".into()))
    }
}

impl CacheStore for MemoryCache {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, LimitError>> {
        Box::pin(async move {
            let mut state = self.lock()?;
            match state.entries.get(key) {
                Some((_, until)) if *until <= Instant::now() => {
                    state.entries.remove(key);
                    Ok(None)
                }
                Some((value, _)) => Ok(Some(value.clone())),
                None => Ok(None),
            }
        })
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), LimitError>> {
        Box::pin(async move {
            let mut state = self.lock()?;
            let fresh = state
                .entries
                .insert(key.to_owned(), (value, Instant::now() + ttl))
                .is_none();
            if fresh {
                state.order.push_back(key.to_owned());
            }
            while state.entries.len() > self.capacity {
                let Some(oldest) = state.order.pop_front() else {
                    break;
                };
                if state.entries.remove(&oldest).is_some() {
                    metrics::counter!("cache_evictions").increment(1);
                }
            }
            // Keep the order queue from growing with keys that were deleted meanwhile.
            if state.order.len() > self.capacity * 2 {
                let MemoryState { entries, order } = &mut *state;
                order.retain(|key| entries.contains_key(key));
            }
            Ok(())
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, LimitError>> {
        Box::pin(async move { Ok(self.lock()?.entries.remove(key).is_some()) })
    }

    fn delete_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<u64, LimitError>> {
        Box::pin(async move {
            let mut state = self.lock()?;
            let before = state.entries.len();
            state.entries.retain(|key, _| !key.starts_with(prefix));
            Ok((before - state.entries.len()) as u64)
        })
    }
}

/// In Redis (shared by every instance); values expire by Redis' own TTL.
#[derive(Clone)]
pub struct RedisCache {
    connection: redis::aio::ConnectionManager,
    prefix: String,
}

impl RedisCache {
    /// Keys are `<prefix>:<cache name>:<key>`.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, LimitError> {
        Ok(RedisCache {
            connection: redis_connection(url).await?,
            prefix: prefix.to_owned(),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}:{key}", self.prefix)
    }
}

impl CacheStore for RedisCache {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, LimitError>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            redis::cmd("GET")
                .arg(self.key(key))
                .query_async(&mut connection)
                .await
                .map_err(LimitError::from)
        })
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), LimitError>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            redis::cmd("SET")
                .arg(self.key(key))
                .arg(value)
                .arg("PX")
                .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1))
                .query_async(&mut connection)
                .await
                .map_err(LimitError::from)
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, LimitError>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let removed: u64 = redis::cmd("UNLINK")
                .arg(self.key(key))
                .query_async(&mut connection)
                .await
                .map_err(LimitError::from)?;
            Ok(removed > 0)
        })
    }

    fn delete_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<u64, LimitError>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            // Glob characters in the prefix are escaped: it is matched literally.
            let mut pattern = String::new();
            for c in self.key(prefix).chars() {
                if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                    pattern.push('\\');
                }
                pattern.push(c);
            }
            pattern.push('*');
            let mut cursor: u64 = 0;
            let mut removed = 0;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(500)
                    .query_async(&mut connection)
                    .await
                    .map_err(LimitError::from)?;
                if !keys.is_empty() {
                    let count: u64 = redis::cmd("UNLINK")
                        .arg(&keys)
                        .query_async(&mut connection)
                        .await
                        .map_err(LimitError::from)?;
                    removed += count;
                }
                if next == 0 {
                    return Ok(removed);
                }
                cursor = next;
            }
        })
    }
}
