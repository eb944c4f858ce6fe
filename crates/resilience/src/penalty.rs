//! Penalties on top of a limiter: a key that runs into its limit N times within a window is
//! banned for T, and each new ban of the same key lasts longer (escalation, capped). An
//! allowlist (keys and client networks) bypasses everything. Bans and violations live in the
//! same store as the limits (memory, or Redis for several gateway instances), and a status view
//! says who is banned or limited.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;

use crate::limit::{Decision, LimitError, Limiter, Rule};

/// When and for how long to ban.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PenaltyPolicy {
    /// Violations (refused calls) that earn a ban…
    pub violations: u32,
    /// …within this window.
    pub within: Duration,
    /// The first ban's length; each further ban multiplies it by `escalation`, up to `max_ban`.
    pub ban: Duration,
    pub escalation: f64,
    pub max_ban: Duration,
}

impl Default for PenaltyPolicy {
    fn default() -> Self {
        PenaltyPolicy {
            violations: 5,
            within: Duration::from_secs(60),
            ban: Duration::from_secs(300),
            escalation: 2.0,
            max_ban: Duration::from_secs(24 * 3600),
        }
    }
}

/// One key in the status view.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyStatus {
    pub key: String,
    /// Refused calls within the policy's window.
    pub violations: u32,
    /// How long the current ban still lasts.
    pub banned_for: Option<Duration>,
    /// How many bans this key earned (drives the escalation).
    pub bans: u32,
    /// Calls it could make right now under the rule asked about.
    pub remaining: u32,
}

/// Where violations and bans are kept.
pub trait PenaltyStore: Send + Sync + 'static {
    /// Records a violation; answers how many fall within `within`.
    fn violation<'a>(
        &'a self,
        key: &'a str,
        within: Duration,
    ) -> BoxFuture<'a, Result<u32, LimitError>>;
    /// Bans `key`: the ban number (1 for the first) decides its length through `length`.
    fn ban<'a>(
        &'a self,
        key: &'a str,
        length: &'a (dyn Fn(u32) -> Duration + Send + Sync),
    ) -> BoxFuture<'a, Result<Duration, LimitError>>;
    /// How long `key` is still banned.
    fn banned<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Duration>, LimitError>>;
    /// Keys with a ban or violations in `within`.
    fn status<'a>(&'a self, within: Duration) -> BoxFuture<'a, Result<Vec<KeyStatus>, LimitError>>;
}

/// What the guard decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Allowed(Decision),
    /// Over the limit: 429 with `Retry-After`.
    Limited(Decision),
    /// Banned: 429 (or 403) until `retry_after`.
    Banned {
        retry_after: Duration,
    },
    /// On the allowlist: no limit applies.
    Exempt,
}

/// Keys and client networks that are never limited.
#[derive(Debug, Clone, Default)]
pub struct Allowlist {
    keys: Vec<String>,
    networks: Vec<(IpAddr, u8)>,
}

impl Allowlist {
    /// Keys as given; networks as CIDR (`10.0.0.0/8`, `::1/128`, a bare address is /32 or /128).
    pub fn new(keys: &[&str], networks: &[&str]) -> Result<Self, String> {
        let networks = networks
            .iter()
            .map(|cidr| parse_cidr(cidr).ok_or_else(|| format!("invalid network `{cidr}`")))
            .collect::<Result<_, _>>()?;
        Ok(Allowlist {
            keys: keys.iter().map(|k| (*k).to_owned()).collect(),
            networks,
        })
    }

    pub fn allows(&self, key: &str, client: Option<IpAddr>) -> bool {
        self.keys.iter().any(|k| k == key)
            || client.is_some_and(|ip| self.networks.iter().any(|net| contains(*net, ip)))
    }
}

fn parse_cidr(text: &str) -> Option<(IpAddr, u8)> {
    let (address, bits) = match text.split_once('/') {
        Some((address, bits)) => (address.parse::<IpAddr>().ok()?, bits.parse::<u8>().ok()?),
        None => {
            let address = text.parse::<IpAddr>().ok()?;
            (address, if address.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if address.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((address, bits))
}

fn contains((network, bits): (IpAddr, u8), ip: IpAddr) -> bool {
    let (net, ip, width) = match (network, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => (u128::from(u32::from(n)), u128::from(u32::from(i)), 32),
        (IpAddr::V6(n), IpAddr::V6(i)) => (u128::from(n), u128::from(i), 128),
        _ => return false,
    };
    if bits == 0 {
        return true;
    }
    let shift = width - u32::from(bits);
    (net >> shift) == (ip >> shift)
}

/// A limiter with penalties and an allowlist.
#[derive(Clone)]
pub struct Guard {
    limiter: Arc<dyn Limiter>,
    store: Arc<dyn PenaltyStore>,
    policy: PenaltyPolicy,
    allowlist: Allowlist,
}

impl Guard {
    pub fn new(
        limiter: Arc<dyn Limiter>,
        store: Arc<dyn PenaltyStore>,
        policy: PenaltyPolicy,
        allowlist: Allowlist,
    ) -> Self {
        Guard {
            limiter,
            store,
            policy,
            allowlist,
        }
    }

    /// Decides one call by `key` (user, client address, …) from `client`.
    pub async fn check(
        &self,
        key: &str,
        rule: Rule,
        client: Option<IpAddr>,
    ) -> Result<Verdict, LimitError> {
        if self.allowlist.allows(key, client) {
            return Ok(Verdict::Exempt);
        }
        if let Some(retry_after) = self.store.banned(key).await? {
            return Ok(Verdict::Banned { retry_after });
        }
        let decision = self.limiter.check(key, rule).await?;
        if decision.allowed {
            return Ok(Verdict::Allowed(decision));
        }
        let violations = self.store.violation(key, self.policy.within).await?;
        if violations >= self.policy.violations.max(1) {
            let policy = self.policy;
            let length = move |ban: u32| {
                let factor = policy
                    .escalation
                    .max(1.0)
                    .powi(i32::try_from(ban.saturating_sub(1)).unwrap_or(i32::MAX));
                policy.ban.mul_f64(factor.min(1e6)).min(policy.max_ban)
            };
            let retry_after = self.store.ban(key, &length).await?;
            metrics::counter!("rate_limit_bans").increment(1);
            tracing::warn!(
                key,
                ban_secs = retry_after.as_secs(),
                "banned for repeated limit violations"
            );
            return Ok(Verdict::Banned { retry_after });
        }
        Ok(Verdict::Limited(decision))
    }

    /// Who is banned or was limited lately, with what `rule` still allows each of them.
    pub async fn status(&self, rule: Rule) -> Result<Vec<KeyStatus>, LimitError> {
        self.status_by(|_| rule).await
    }

    /// The same, for keys limited by different rules (a gateway's per-role buckets).
    pub async fn status_by(
        &self,
        rule_for: impl Fn(&str) -> Rule,
    ) -> Result<Vec<KeyStatus>, LimitError> {
        let mut statuses = self.store.status(self.policy.within).await?;
        for status in &mut statuses {
            let rule = rule_for(&status.key);
            status.remaining = self.limiter.remaining(&status.key, rule).await?;
        }
        Ok(statuses)
    }
}

/// Penalties in this process.
#[derive(Clone, Default)]
pub struct MemoryPenalties {
    state: Arc<Mutex<HashMap<String, Record>>>,
}

#[derive(Default)]
struct Record {
    violations: Vec<Instant>,
    banned_until: Option<Instant>,
    bans: u32,
}

impl MemoryPenalties {
    pub fn new() -> Self {
        Self::default()
    }
}

impl PenaltyStore for MemoryPenalties {
    fn violation<'a>(
        &'a self,
        key: &'a str,
        within: Duration,
    ) -> BoxFuture<'a, Result<u32, LimitError>> {
        Box::pin(async move {
            let now = Instant::now();
            let mut state = self
                .state
                .lock()
                .map_err(|_| LimitError::Store("poisoned".into()))?;
            let record = state.entry(key.to_owned()).or_default();
            record
                .violations
                .retain(|at| now.duration_since(*at) < within);
            record.violations.push(now);
            Ok(record.violations.len() as u32)
        })
    }

    fn ban<'a>(
        &'a self,
        key: &'a str,
        length: &'a (dyn Fn(u32) -> Duration + Send + Sync),
    ) -> BoxFuture<'a, Result<Duration, LimitError>> {
        Box::pin(async move {
            let mut state = self
                .state
                .lock()
                .map_err(|_| LimitError::Store("poisoned".into()))?;
            let record = state.entry(key.to_owned()).or_default();
            record.bans += 1;
            record.violations.clear();
            let duration = length(record.bans);
            record.banned_until = Some(Instant::now() + duration);
            Ok(duration)
        })
    }

    fn banned<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Duration>, LimitError>> {
        Box::pin(async move {
            let now = Instant::now();
            let state = self
                .state
                .lock()
                .map_err(|_| LimitError::Store("poisoned".into()))?;
            Ok(state
                .get(key)
                .and_then(|r| r.banned_until)
                .filter(|until| *until > now)
                .map(|until| until - now))
        })
    }

    fn status<'a>(&'a self, within: Duration) -> BoxFuture<'a, Result<Vec<KeyStatus>, LimitError>> {
        Box::pin(async move {
            let now = Instant::now();
            let state = self
                .state
                .lock()
                .map_err(|_| LimitError::Store("poisoned".into()))?;
            let mut keys: Vec<KeyStatus> = state
                .iter()
                .map(|(key, record)| KeyStatus {
                    key: key.clone(),
                    violations: record
                        .violations
                        .iter()
                        .filter(|at| now.duration_since(**at) < within)
                        .count() as u32,
                    banned_for: record.banned_until.filter(|u| *u > now).map(|u| u - now),
                    bans: record.bans,
                    remaining: 0,
                })
                .filter(|s| s.violations > 0 || s.banned_for.is_some())
                .collect();
            keys.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(keys)
        })
    }
}

/// Penalties shared through Redis: `<prefix>:pen:<key>:viol` (a sorted set of violations),
/// `:ban` (expires with the ban), `:bans` (how many, kept a week for the escalation).
#[derive(Clone)]
pub struct RedisPenalties {
    connection: redis::aio::ConnectionManager,
    prefix: String,
}

const VIOLATION: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local within = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - within)
redis.call('ZADD', KEYS[1], now, now .. '-' .. ARGV[2])
redis.call('PEXPIRE', KEYS[1], math.ceil(within / 1000) + 1)
return redis.call('ZCARD', KEYS[1])
"#;

const WEEK_MS: u64 = 7 * 24 * 3600 * 1000;

impl RedisPenalties {
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, LimitError> {
        let connection = crate::limit::redis_connection(url).await?;
        Ok(RedisPenalties {
            connection,
            prefix: prefix.to_owned(),
        })
    }

    fn key(&self, key: &str, part: &str) -> String {
        format!("{}:pen:{key}:{part}", self.prefix)
    }
}

impl PenaltyStore for RedisPenalties {
    fn violation<'a>(
        &'a self,
        key: &'a str,
        within: Duration,
    ) -> BoxFuture<'a, Result<u32, LimitError>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let count: u32 = redis::Script::new(VIOLATION)
                .key(self.key(key, "viol"))
                .arg(u64::try_from(within.as_micros()).unwrap_or(u64::MAX))
                .arg(rand::random::<u64>())
                .invoke_async(&mut connection)
                .await
                .map_err(LimitError::from)?;
            Ok(count)
        })
    }

    fn ban<'a>(
        &'a self,
        key: &'a str,
        length: &'a (dyn Fn(u32) -> Duration + Send + Sync),
    ) -> BoxFuture<'a, Result<Duration, LimitError>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let (bans, _): (u32, i64) = redis::pipe()
                .atomic()
                .cmd("INCR")
                .arg(self.key(key, "bans"))
                .cmd("PEXPIRE")
                .arg(self.key(key, "bans"))
                .arg(WEEK_MS)
                .query_async(&mut connection)
                .await
                .map_err(LimitError::from)?;
            let duration = length(bans);
            let millis = u64::try_from(duration.as_millis())
                .unwrap_or(u64::MAX)
                .max(1);
            let _: () = redis::pipe()
                .atomic()
                .cmd("SET")
                .arg(self.key(key, "ban"))
                .arg(bans)
                .arg("PX")
                .arg(millis)
                .ignore()
                .cmd("DEL")
                .arg(self.key(key, "viol"))
                .ignore()
                .query_async(&mut connection)
                .await
                .map_err(LimitError::from)?;
            Ok(duration)
        })
    }

    fn banned<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Duration>, LimitError>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let ttl: i64 = redis::cmd("PTTL")
                .arg(self.key(key, "ban"))
                .query_async(&mut connection)
                .await
                .map_err(LimitError::from)?;
            Ok((ttl > 0).then(|| Duration::from_millis(u64::try_from(ttl).unwrap_or(0))))
        })
    }

    fn status<'a>(&'a self, within: Duration) -> BoxFuture<'a, Result<Vec<KeyStatus>, LimitError>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let pattern = format!("{}:pen:*", self.prefix);
            let mut cursor: u64 = 0;
            let mut keys = std::collections::BTreeSet::new();
            loop {
                let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(500)
                    .query_async(&mut connection)
                    .await
                    .map_err(LimitError::from)?;
                for name in batch {
                    let inner = name
                        .strip_prefix(&format!("{}:pen:", self.prefix))
                        .and_then(|rest| rest.rsplit_once(':'))
                        .map(|(key, _)| key.to_owned());
                    if let Some(key) = inner {
                        keys.insert(key);
                    }
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
            let window = i64::try_from(within.as_micros()).unwrap_or(i64::MAX);
            let mut statuses = Vec::new();
            for key in keys {
                let (ttl, bans, violations): (i64, Option<u32>, u32) = redis::pipe()
                    .cmd("PTTL")
                    .arg(self.key(&key, "ban"))
                    .cmd("GET")
                    .arg(self.key(&key, "bans"))
                    .cmd("ZCOUNT")
                    .arg(self.key(&key, "viol"))
                    .arg(format!("({}", now_micros() - window))
                    .arg("+inf")
                    .query_async(&mut connection)
                    .await
                    .map_err(LimitError::from)?;
                let status = KeyStatus {
                    key,
                    violations,
                    banned_for: (ttl > 0)
                        .then(|| Duration::from_millis(u64::try_from(ttl).unwrap_or(0))),
                    bans: bans.unwrap_or(0),
                    remaining: 0,
                };
                if status.violations > 0 || status.banned_for.is_some() {
                    statuses.push(status);
                }
            }
            Ok(statuses)
        })
    }
}

/// This host's clock in µs (only for the status view's window; decisions use Redis' clock).
fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
