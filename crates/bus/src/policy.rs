use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a consumer group retries: attempts before the dead letters, and exponential backoff with
/// full jitter between them (a `Retry` outcome may also name its own delay).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Deliveries before the message goes to the dead letters (first delivery included).
    pub max_attempts: u32,
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff_ms: 200,
            max_backoff_ms: 60_000,
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1`: uniform in `[0, min(max, initial · 2^(attempt-1))]`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(30);
        let ceiling = self
            .initial_backoff_ms
            .saturating_mul(1u64 << exponent)
            .min(self.max_backoff_ms);
        Duration::from_millis(rand::random_range(0..=ceiling))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_within_the_cap() {
        let policy = RetryPolicy {
            max_attempts: 10,
            initial_backoff_ms: 100,
            max_backoff_ms: 1_000,
        };
        for _ in 0..200 {
            assert!(policy.backoff(1) <= Duration::from_millis(100));
            assert!(policy.backoff(3) <= Duration::from_millis(400));
            assert!(policy.backoff(20) <= Duration::from_millis(1_000));
        }
        let spread: std::collections::BTreeSet<_> = (0..50).map(|_| policy.backoff(5)).collect();
        assert!(spread.len() > 10, "full jitter spreads retries");
    }
}
