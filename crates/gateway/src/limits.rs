//! Per-role limits at the edge: a signed-in user is counted in the bucket of their most generous
//! role (`ciudadano:<sub>`), a caller without a token by client address (`anon:<ip>`); all on a
//! sliding window, with bans after repeated violations and an allowlist of networks. Memory for
//! one gateway, Redis when several share the budget.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use telar_resilience::{
    Allowlist, Guard, KeyStatus, LimitError, Limiter, MemoryLimiter, MemoryPenalties,
    PenaltyPolicy, PenaltyStore, RedisLimiter, RedisPenalties, Rule, Verdict,
};

use crate::config::{LimitBackend, LimitsConfig};

const ANONYMOUS: &str = "anon";
/// Bucket name of a signed-in user with none of the configured roles.
const DEFAULT_ROLE: &str = "user";

/// Which rule applies to whom.
#[derive(Debug, Clone)]
pub struct RoleRules {
    roles: HashMap<String, Rule>,
    default: Rule,
    anonymous: Rule,
}

impl RoleRules {
    pub fn new(config: &LimitsConfig) -> Self {
        let window = Duration::from_secs(config.window_secs.max(1));
        let rule = |limit: u32| Rule::sliding(limit.max(1), window);
        RoleRules {
            roles: config
                .roles
                .iter()
                .map(|(role, limit)| (role.clone(), rule(*limit)))
                .collect(),
            default: rule(config.default_limit),
            anonymous: rule(config.anonymous_limit),
        }
    }

    /// The bucket and rule of a user: their role with the largest limit.
    pub fn for_user(&self, sub: &str, roles: &[String]) -> (String, Rule) {
        let best = roles
            .iter()
            .filter_map(|role| self.roles.get(role).map(|rule| (role.as_str(), *rule)))
            .max_by_key(|(_, rule)| rule.limit);
        let (role, rule) = best.unwrap_or((DEFAULT_ROLE, self.default));
        (format!("{role}:{sub}"), rule)
    }

    pub fn for_address(&self, client: IpAddr) -> (String, Rule) {
        (format!("{ANONYMOUS}:{client}"), self.anonymous)
    }

    /// The rule of a bucket, from its name.
    fn of_bucket(&self, bucket: &str) -> Rule {
        match bucket.split_once(':').map(|(role, _)| role) {
            Some(ANONYMOUS) => self.anonymous,
            Some(role) => self.roles.get(role).copied().unwrap_or(self.default),
            None => self.default,
        }
    }
}

/// The limits of one gateway (or of several, through Redis).
#[derive(Clone)]
pub struct EdgeLimits {
    guard: Guard,
    pub rules: Arc<RoleRules>,
    backend: LimitBackend,
    summary: BTreeMap<String, u32>,
    window_secs: u64,
}

impl EdgeLimits {
    pub async fn new(config: &LimitsConfig, rules: Arc<RoleRules>) -> Result<Self, String> {
        let (limiter, store): (Arc<dyn Limiter>, Arc<dyn PenaltyStore>) = match config.backend {
            LimitBackend::Memory => (
                Arc::new(MemoryLimiter::new()),
                Arc::new(MemoryPenalties::new()),
            ),
            LimitBackend::Redis => {
                let url = &config.redis_url;
                let limiter = RedisLimiter::connect(url, "telar:gw:limit")
                    .await
                    .map_err(|e| format!("limits backend redis at {url}: {e}"))?;
                let store = RedisPenalties::connect(url, "telar:gw:penalty")
                    .await
                    .map_err(|e| format!("limits backend redis at {url}: {e}"))?;
                (Arc::new(limiter), Arc::new(store))
            }
        };
        let networks: Vec<&str> = config.allowlist.iter().map(String::as_str).collect();
        let allowlist = Allowlist::new(&[], &networks).map_err(|e| format!("allowlist: {e}"))?;
        let policy = PenaltyPolicy {
            violations: config.ban_after.max(1),
            within: Duration::from_secs(config.ban_window_secs.max(1)),
            ban: Duration::from_secs(config.ban_secs),
            escalation: 2.0,
            max_ban: Duration::from_secs(config.max_ban_secs.max(config.ban_secs)),
        };
        let mut summary: BTreeMap<String, u32> = config.roles.clone();
        summary.insert(DEFAULT_ROLE.into(), config.default_limit);
        summary.insert(ANONYMOUS.into(), config.anonymous_limit);
        Ok(EdgeLimits {
            guard: Guard::new(limiter, store, policy, allowlist),
            rules,
            backend: config.backend,
            summary,
            window_secs: config.window_secs,
        })
    }

    /// Decides one request. A limits store that does not answer lets the request through (the
    /// system stays up when Redis does not) and is counted in `gateway_limit_store_errors`.
    pub async fn check(&self, bucket: &str, rule: Rule, client: IpAddr) -> Verdict {
        match self.guard.check(bucket, rule, Some(client)).await {
            Ok(verdict) => verdict,
            Err(error) => {
                metrics::counter!("gateway_limit_store_errors").increment(1);
                tracing::warn!(%error, "rate limit store unavailable; request let through");
                Verdict::Exempt
            }
        }
    }

    pub async fn status(&self) -> Result<LimitStatus, LimitError> {
        let rules = self.rules.clone();
        let keys = self
            .guard
            .status_by(move |key| rules.of_bucket(key))
            .await?;
        Ok(LimitStatus {
            backend: match self.backend {
                LimitBackend::Memory => "memory",
                LimitBackend::Redis => "redis",
            },
            window_secs: self.window_secs,
            limits: self.summary.clone(),
            keys: keys.into_iter().map(KeyView::from).collect(),
        })
    }
}

/// `GET /ops/ratelimit/status`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LimitStatus {
    pub backend: &'static str,
    pub window_secs: u64,
    /// Requests per window by bucket (role, `user` for other signed-in users, `anon` per address).
    pub limits: BTreeMap<String, u32>,
    /// Buckets banned or refused lately.
    pub keys: Vec<KeyView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyView {
    /// `<role>:<user>` or `anon:<address>`.
    pub key: String,
    pub violations: u32,
    pub banned_for_secs: Option<u64>,
    pub bans: u32,
    pub remaining: u32,
}

impl From<KeyStatus> for KeyView {
    fn from(status: KeyStatus) -> Self {
        KeyView {
            key: status.key,
            violations: status.violations,
            banned_for_secs: status.banned_for.map(|d| d.as_secs().max(1)),
            bans: status.bans,
            remaining: status.remaining,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_get_their_most_generous_role() {
        let rules = RoleRules::new(&LimitsConfig::default());
        let roles = |list: &[&str]| list.iter().map(|r| (*r).to_owned()).collect::<Vec<_>>();
        let (bucket, rule) = rules.for_user("7", &roles(&["ciudadano", "operador"]));
        assert_eq!((bucket.as_str(), rule.limit), ("operador:7", 200));
        let (bucket, rule) = rules.for_user("7", &roles(&["transfer"]));
        assert_eq!((bucket.as_str(), rule.limit), ("transfer:7", 400));
        let (bucket, rule) = rules.for_user("7", &roles(&["auditor"]));
        assert_eq!((bucket.as_str(), rule.limit), ("user:7", 60));
        assert_eq!(rules.of_bucket("operador:7").limit, 200);
        let (bucket, _) = rules.for_address("10.1.2.3".parse().unwrap_or(IpAddr::from([0; 4])));
        assert_eq!(bucket, "anon:10.1.2.3");
        assert_eq!(rules.of_bucket(&bucket).limit, 60);
    }
}
