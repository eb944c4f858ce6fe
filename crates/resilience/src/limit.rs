//! Keyed rate limiters — GCRA (a smooth token bucket) and an exact sliding window — in memory
//! and in Redis (atomic Lua scripts on the server's clock, so every gateway instance shares one
//! budget). One trait, one conformance suite.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;

use crate::calls::CallLog;

/// Calls of one key within a millisecond share an entry of its sliding window (see `calls.rs`).
const LIMIT_SLOT: Duration = Duration::from_millis(1);

/// How a key is limited: at most `limit` calls per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub limit: u32,
    pub window: Duration,
    pub algorithm: Algorithm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Generic cell rate: a burst of `limit`, then one call every `window / limit`.
    Gcra,
    /// At most `limit` calls in any `window` (a log of the window's calls, to the millisecond).
    SlidingWindow,
}

impl Rule {
    pub fn per_minute(limit: u32) -> Self {
        Rule {
            limit,
            window: Duration::from_secs(60),
            algorithm: Algorithm::SlidingWindow,
        }
    }

    pub fn gcra(limit: u32, window: Duration) -> Self {
        Rule {
            limit,
            window,
            algorithm: Algorithm::Gcra,
        }
    }

    pub fn sliding(limit: u32, window: Duration) -> Self {
        Rule {
            limit,
            window,
            algorithm: Algorithm::SlidingWindow,
        }
    }
}

/// The answer for one call (and what `RateLimit-*` headers say).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    /// Calls still allowed right now.
    pub remaining: u32,
    /// When a refused call may come back (zero when allowed).
    pub retry_after: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("rate limit store: {0}")]
    Store(String),
}

impl From<redis::RedisError> for LimitError {
    fn from(error: redis::RedisError) -> Self {
        LimitError::Store(error.to_string())
    }
}

impl From<telar_sql::Error> for LimitError {
    fn from(error: telar_sql::Error) -> Self {
        LimitError::Store(error.to_string())
    }
}

/// The entry of `key`, allocating the key only the first time it is seen (this runs on every
/// request a gateway limits).
fn entry_of<'a>(
    state: &'a mut HashMap<String, Entry>,
    key: &str,
    new: impl FnOnce() -> Entry,
) -> &'a mut Entry {
    if !state.contains_key(key) {
        state.insert(key.to_owned(), new());
    }
    match state.get_mut(key) {
        Some(entry) => entry,
        None => unreachable!("inserted above"),
    }
}

/// The wall clock in milliseconds since the epoch (SQL stores keep lease ends in it).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A keyed limiter.
pub trait Limiter: Send + Sync + 'static {
    fn check<'a>(&'a self, key: &'a str, rule: Rule)
    -> BoxFuture<'a, Result<Decision, LimitError>>;
    /// Calls `key` could make right now, without using one (for status views).
    fn remaining<'a>(&'a self, key: &'a str, rule: Rule) -> BoxFuture<'a, Result<u32, LimitError>>;
}

/// In this process (one gateway instance, tests, the embedded mode). Time is tokio's clock.
#[derive(Clone, Default)]
pub struct MemoryLimiter {
    state: Arc<Mutex<HashMap<String, Entry>>>,
}

enum Entry {
    /// Theoretical arrival time.
    Gcra(Instant),
    Window(CallLog),
}

impl MemoryLimiter {
    pub fn new() -> Self {
        Self::default()
    }

    fn decide(&self, key: &str, rule: Rule, now: Instant) -> Decision {
        let Ok(mut state) = self.state.lock() else {
            return refused(rule, Duration::from_secs(1));
        };
        let limit = rule.limit.max(1);
        match rule.algorithm {
            Algorithm::Gcra => {
                let interval = rule.window / limit;
                let tolerance = rule.window.saturating_sub(interval);
                let entry = entry_of(&mut state, key, || Entry::Gcra(now));
                let Entry::Gcra(tat) = entry else {
                    *entry = Entry::Gcra(now);
                    return self_retry(rule);
                };
                let tat_now = (*tat).max(now);
                let allow_at = tat_now.checked_sub(tolerance).unwrap_or(now);
                if now < allow_at {
                    return refused(rule, allow_at - now);
                }
                *tat = tat_now + interval;
                let used = (*tat - now).as_nanos() / interval.as_nanos().max(1);
                Decision {
                    allowed: true,
                    limit,
                    remaining: limit.saturating_sub(u32::try_from(used).unwrap_or(u32::MAX)),
                    retry_after: Duration::ZERO,
                }
            }
            Algorithm::SlidingWindow => {
                let entry = entry_of(&mut state, key, || Entry::Window(CallLog::new(LIMIT_SLOT)));
                let Entry::Window(calls) = entry else {
                    *entry = Entry::Window(CallLog::new(LIMIT_SLOT));
                    return self_retry(rule);
                };
                calls.expire(now, rule.window);
                if calls.calls() >= limit {
                    let oldest = calls.oldest().unwrap_or(now);
                    return refused(rule, rule.window.saturating_sub(now.duration_since(oldest)));
                }
                calls.push(now, false);
                Decision {
                    allowed: true,
                    limit,
                    remaining: limit - calls.calls(),
                    retry_after: Duration::ZERO,
                }
            }
        }
    }
}

fn refused(rule: Rule, retry_after: Duration) -> Decision {
    Decision {
        allowed: false,
        limit: rule.limit,
        remaining: 0,
        retry_after,
    }
}

/// A key switched algorithms: start it over (refusing this one call is the safe side).
fn self_retry(rule: Rule) -> Decision {
    refused(rule, Duration::from_millis(1))
}

impl Limiter for MemoryLimiter {
    fn check<'a>(
        &'a self,
        key: &'a str,
        rule: Rule,
    ) -> BoxFuture<'a, Result<Decision, LimitError>> {
        Box::pin(async move { Ok(self.decide(key, rule, Instant::now())) })
    }

    fn remaining<'a>(&'a self, key: &'a str, rule: Rule) -> BoxFuture<'a, Result<u32, LimitError>> {
        Box::pin(async move {
            let now = Instant::now();
            let limit = rule.limit.max(1);
            let state = self
                .state
                .lock()
                .map_err(|_| LimitError::Store("poisoned".into()))?;
            Ok(match state.get(key) {
                None => limit,
                Some(Entry::Gcra(tat)) => {
                    let interval = (rule.window / limit).as_nanos().max(1);
                    let ahead = tat.saturating_duration_since(now).as_nanos();
                    let used = u32::try_from(ahead.div_ceil(interval)).unwrap_or(u32::MAX);
                    limit.saturating_sub(used)
                }
                Some(Entry::Window(calls)) => {
                    let mut live = calls.clone();
                    live.expire(now, rule.window);
                    limit.saturating_sub(live.calls())
                }
            })
        })
    }
}

/// GCRA in one round trip: the TAT lives in a key that expires with it.
const GCRA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat - tolerance
if now < allow_at then
  return {0, 0, allow_at - now}
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, math.floor((tolerance + interval - (new_tat - now)) / interval), 0}
"#;

/// An exact sliding window: a sorted set of the window's calls, scored by server time.
const SLIDING: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, 0, tonumber(oldest[2]) + window - now}
end
redis.call('ZADD', KEYS[1], now, now .. '-' .. ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1)
return {1, limit - count - 1, 0}
"#;

/// A self-reconnecting Redis connection with 2 s connection and response timeouts.
pub(crate) async fn redis_connection(
    url: &str,
) -> Result<redis::aio::ConnectionManager, LimitError> {
    let client = redis::Client::open(url).map_err(|e| LimitError::Store(e.to_string()))?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)));
    redis::aio::ConnectionManager::new_with_config(client, config)
        .await
        .map_err(|e| LimitError::Store(format!("cannot connect to Redis at {url}: {e}")))
}

const GCRA_PEEK: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
return tonumber(ARGV[2]) - math.ceil((tat - now) / interval)
"#;

const SLIDING_PEEK: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
return tonumber(ARGV[2]) - redis.call('ZCOUNT', KEYS[1], '(' .. (now - tonumber(ARGV[1])), '+inf')
"#;

/// Shared by every instance through Redis. Keys are `<prefix>:<algorithm>:<key>`.
#[derive(Clone)]
pub struct RedisLimiter {
    connection: redis::aio::ConnectionManager,
    prefix: String,
    gcra: Arc<redis::Script>,
    sliding: Arc<redis::Script>,
}

impl RedisLimiter {
    /// Connects (with a 2 s connection and response timeout).
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, LimitError> {
        let connection = redis_connection(url).await?;
        Ok(RedisLimiter {
            connection,
            prefix: prefix.to_owned(),
            gcra: Arc::new(redis::Script::new(GCRA)),
            sliding: Arc::new(redis::Script::new(SLIDING)),
        })
    }
}

impl Limiter for RedisLimiter {
    fn check<'a>(
        &'a self,
        key: &'a str,
        rule: Rule,
    ) -> BoxFuture<'a, Result<Decision, LimitError>> {
        Box::pin(async move {
            let limit = rule.limit.max(1);
            let window_us = u64::try_from(rule.window.as_micros()).unwrap_or(u64::MAX);
            let mut connection = self.connection.clone();
            let (allowed, remaining, retry_us): (i64, i64, i64) = match rule.algorithm {
                Algorithm::Gcra => {
                    let interval = window_us / u64::from(limit);
                    self.gcra
                        .key(format!("{}:gcra:{key}", self.prefix))
                        .arg(interval)
                        .arg(window_us.saturating_sub(interval))
                        .invoke_async(&mut connection)
                        .await
                }
                Algorithm::SlidingWindow => {
                    self.sliding
                        .key(format!("{}:window:{key}", self.prefix))
                        .arg(window_us)
                        .arg(limit)
                        .arg(rand::random::<u64>())
                        .invoke_async(&mut connection)
                        .await
                }
            }
            .map_err(|e| LimitError::Store(e.to_string()))?;
            Ok(Decision {
                allowed: allowed == 1,
                limit,
                remaining: u32::try_from(remaining.max(0)).unwrap_or(0),
                retry_after: Duration::from_micros(u64::try_from(retry_us.max(0)).unwrap_or(0)),
            })
        })
    }

    fn remaining<'a>(&'a self, key: &'a str, rule: Rule) -> BoxFuture<'a, Result<u32, LimitError>> {
        Box::pin(async move {
            let limit = rule.limit.max(1);
            let window_us = u64::try_from(rule.window.as_micros()).unwrap_or(u64::MAX);
            let mut connection = self.connection.clone();
            let left: i64 = match rule.algorithm {
                Algorithm::Gcra => {
                    redis::Script::new(GCRA_PEEK)
                        .key(format!("{}:gcra:{key}", self.prefix))
                        .arg(window_us / u64::from(limit))
                        .arg(limit)
                        .invoke_async(&mut connection)
                        .await
                }
                Algorithm::SlidingWindow => {
                    redis::Script::new(SLIDING_PEEK)
                        .key(format!("{}:window:{key}", self.prefix))
                        .arg(window_us)
                        .arg(limit)
                        .invoke_async(&mut connection)
                        .await
                }
            }
            .map_err(|e| LimitError::Store(e.to_string()))?;
            Ok(u32::try_from(left.max(0)).unwrap_or(0))
        })
    }
}
