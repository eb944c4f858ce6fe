//! Retries for errors that say they are transient (5xx but 501, timeouts — never 4xx), with
//! exponential backoff and full jitter, a maximum of attempts and a retry budget that keeps
//! retries a fraction of calls (so a struggling upstream is not hit by a retry storm); timeouts
//! and fallbacks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Whether an error is worth another attempt.
pub trait Transient {
    fn is_transient(&self) -> bool;
}

/// An HTTP status worth retrying: 5xx except 501 Not Implemented.
pub fn status_is_transient(status: u16) -> bool {
    (500..600).contains(&status) && status != 501
}

impl Transient for crate::breaker::Open {
    /// Retrying at once cannot help: the breaker says when to come back.
    fn is_transient(&self) -> bool {
        false
    }
}

/// Retries are allowed while they stay under `ratio` of calls (plus a small floor, so a quiet
/// service can still retry). Shared by every caller of one upstream.
#[derive(Clone)]
pub struct RetryBudget {
    ratio: f64,
    cap: f64,
    tokens: Arc<Mutex<f64>>,
}

impl RetryBudget {
    /// `ratio`: retries per call (0.2: at most one retry per five calls); `floor`: retries
    /// always available when calls are few.
    pub fn new(ratio: f64, floor: u32) -> Self {
        let floor = f64::from(floor);
        RetryBudget {
            ratio,
            cap: floor + 100.0 * ratio,
            tokens: Arc::new(Mutex::new(floor)),
        }
    }

    /// Counts one call: earns `ratio` of a retry.
    pub fn deposit(&self) {
        if let Ok(mut tokens) = self.tokens.lock() {
            *tokens = (*tokens + self.ratio).min(self.cap);
        }
    }

    /// Takes one retry if the budget has one.
    pub fn withdraw(&self) -> bool {
        match self.tokens.lock() {
            Ok(mut tokens) if *tokens >= 1.0 => {
                *tokens -= 1.0;
                true
            }
            _ => false,
        }
    }
}

/// The retry policy of one kind of call.
#[derive(Clone)]
pub struct Retry {
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub budget: Option<RetryBudget>,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            budget: None,
        }
    }
}

impl Retry {
    pub fn attempts(max_attempts: u32) -> Self {
        Retry {
            max_attempts: max_attempts.max(1),
            ..Retry::default()
        }
    }

    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max;
        self
    }

    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Delay before attempt `attempt + 1`: uniform in `[0, min(max, initial · 2^(attempt-1))]`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self
            .initial_backoff
            .saturating_mul(1 << attempt.saturating_sub(1).min(20))
            .min(self.max_backoff);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::random_range(0..=millis))
    }

    /// Runs `call(attempt)` until it succeeds, fails for good, or the attempts or the budget run
    /// out; returns the last error then.
    pub async fn run<T, E, Fut>(&self, mut call: impl FnMut(u32) -> Fut) -> Result<T, E>
    where
        E: Transient,
        Fut: Future<Output = Result<T, E>>,
    {
        if let Some(budget) = &self.budget {
            budget.deposit();
        }
        let mut attempt = 1;
        loop {
            let error = match call(attempt).await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            let allowed = error.is_transient()
                && attempt < self.max_attempts
                && self.budget.as_ref().is_none_or(RetryBudget::withdraw);
            if !allowed {
                return Err(error);
            }
            metrics::counter!("retry_attempts").increment(1);
            tokio::time::sleep(self.delay(attempt)).await;
            attempt += 1;
        }
    }
}

/// A call that took longer than its timeout (transient: worth a retry).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("timed out after {} ms", .0.as_millis())]
pub struct TimedOut(pub Duration);

impl Transient for TimedOut {
    fn is_transient(&self) -> bool {
        true
    }
}

/// `call`, or `TimedOut` after `limit`.
pub async fn with_timeout<T>(
    limit: Duration,
    call: impl Future<Output = T>,
) -> Result<T, TimedOut> {
    tokio::time::timeout(limit, call)
        .await
        .map_err(|_| TimedOut(limit))
}

/// The call's value, or `instead(error)` when it fails.
pub async fn fallback<T, E>(
    call: impl Future<Output = Result<T, E>>,
    instead: impl FnOnce(E) -> T,
) -> T {
    match call.await {
        Ok(value) => value,
        Err(error) => instead(error),
    }
}
