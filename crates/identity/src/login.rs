//! Login protection: attempts limited per client address, and a growing lockout of a username
//! (and of an address) after repeated failures. A locked unknown username gets the same answer as
//! a locked real one.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use telar_resilience::{Limiter, MemoryLimiter, MemoryPenalties, PenaltyStore, Rule};

/// `[services.identity.settings.login]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoginPolicy {
    /// Password attempts per client address per minute, whatever the usernames.
    pub attempts_per_minute: u32,
    /// Failures (per username, and per address) that lock it…
    pub failures: u32,
    /// …within this window.
    pub within_secs: u64,
    /// The first lockout; each further one doubles, up to `max_lockout_ms`.
    pub lockout_ms: u64,
    pub max_lockout_ms: u64,
}

impl Default for LoginPolicy {
    fn default() -> Self {
        LoginPolicy {
            attempts_per_minute: 30,
            failures: 5,
            within_secs: 15 * 60,
            lockout_ms: 60_000,
            max_lockout_ms: 3_600_000,
        }
    }
}

pub(crate) struct LoginProtection {
    policy: LoginPolicy,
    limiter: Arc<dyn Limiter>,
    penalties: Arc<dyn PenaltyStore>,
}

fn user_key(username: &str) -> String {
    format!("login-user:{}", username.to_lowercase())
}

fn address_key(address: IpAddr) -> String {
    format!("login-addr:{address}")
}

impl LoginProtection {
    /// In this process (one identity instance; several instances would share Redis stores).
    pub(crate) fn in_memory(policy: LoginPolicy) -> Self {
        LoginProtection {
            policy,
            limiter: Arc::new(MemoryLimiter::new()),
            penalties: Arc::new(MemoryPenalties::new()),
        }
    }

    /// `Err(retry_after)` while the username or the address is locked, or the address is over
    /// its attempts.
    pub(crate) async fn before(&self, username: &str, address: IpAddr) -> Result<(), Duration> {
        for key in [user_key(username), address_key(address)] {
            if let Ok(Some(left)) = self.penalties.banned(&key).await {
                return Err(left);
            }
        }
        let rule = Rule::sliding(
            self.policy.attempts_per_minute.max(1),
            Duration::from_secs(60),
        );
        match self
            .limiter
            .check(&format!("login-attempts:{address}"), rule)
            .await
        {
            Ok(decision) if !decision.allowed => Err(decision.retry_after),
            _ => Ok(()),
        }
    }

    /// A wrong password (or unknown username): counts toward both lockouts.
    pub(crate) async fn failed(&self, username: &str, address: IpAddr) {
        let within = Duration::from_secs(self.policy.within_secs);
        let policy = self.policy.clone();
        let length = move |lockout: u32| {
            let factor = 2f64.powi(
                i32::try_from(lockout.saturating_sub(1))
                    .unwrap_or(30)
                    .min(30),
            );
            Duration::from_millis(policy.lockout_ms)
                .mul_f64(factor)
                .min(Duration::from_millis(policy.max_lockout_ms))
        };
        for key in [user_key(username), address_key(address)] {
            if let Ok(count) = self.penalties.violation(&key, within).await
                && count >= self.policy.failures.max(1)
            {
                let _ = self.penalties.ban(&key, &length).await;
                tracing::warn!(%key, "login locked after repeated failures");
            }
        }
    }
}
