//! Hub protection around one exchange: 10 calls a minute per endpoint (a sliding window, shared
//! by every hub-client instance when the limiter is Redis), a breaker per endpoint, and the
//! metrics the seed's hub-protection dashboard reads.

use std::sync::Arc;
use std::time::Duration;

use telar_resilience::{BreakerConfig, BreakerState, Breakers, Limiter, Rule};

use super::calls::HubCall;
use super::wire::{HubAnswer, Wire, WireError};
use crate::domain::mask_id;

/// One protected attempt.
#[derive(Debug, Clone)]
pub enum Attempt {
    /// The hub answered with something final: 2xx, 204, 4xx or 501.
    Terminal(HubAnswer),
    /// 5xx (not 501), a timeout or no connection: worth another try later.
    Transient(String),
    /// This endpoint's budget of calls is spent for now.
    Limited(Duration),
    /// This endpoint's breaker is open.
    Open(Duration),
}

#[derive(Clone)]
pub struct Protected {
    wire: Wire,
    limiter: Arc<dyn Limiter>,
    rule: Rule,
    breakers: Arc<Breakers>,
}

pub const ENDPOINTS: &[&str] = &[
    "validateCitizen",
    "registerCitizen",
    "unregisterCitizen",
    "authenticateDocument",
    "registerOperator",
    "registerTransferEndPoint",
    "getOperators",
];

impl Protected {
    pub fn new(wire: Wire, limiter: Arc<dyn Limiter>, rule: Rule, breaker: BreakerConfig) -> Self {
        Protected {
            wire,
            limiter,
            rule,
            breakers: Arc::new(Breakers::new("hub", breaker)),
        }
    }

    fn limit_key(endpoint: &str) -> String {
        format!("hub:{endpoint}")
    }

    pub async fn attempt(&self, call: &HubCall) -> Attempt {
        let endpoint = call.endpoint();
        let breaker = self.breakers.get(endpoint);
        let permit = match breaker.try_acquire() {
            Ok(permit) => permit,
            Err(open) => {
                self.publish_breaker(endpoint, breaker.state());
                return Attempt::Open(open.retry_after);
            }
        };
        match self
            .limiter
            .check(&Self::limit_key(endpoint), self.rule)
            .await
        {
            Ok(decision) => {
                metrics::gauge!("hub_rate_limit_remaining", "endpoint" => endpoint)
                    .set(f64::from(decision.remaining));
                if !decision.allowed {
                    metrics::counter!("hub_rate_limit_exceeded", "endpoint" => endpoint)
                        .increment(1);
                    // Dropped without an outcome: the breaker counts nothing.
                    drop(permit);
                    return Attempt::Limited(decision.retry_after.max(Duration::from_millis(100)));
                }
            }
            Err(error) => {
                // Without the shared budget, calling anyway could overrun the hub: wait instead.
                tracing::warn!(%error, endpoint, "hub rate limit store unavailable");
                drop(permit);
                return Attempt::Limited(Duration::from_secs(5));
            }
        }
        let citizen = call.citizen().map(|id| mask_id(&id.to_string()));
        let result = self.wire.send(call).await;
        let attempt = match result {
            Ok((answer, took)) => {
                metrics::histogram!("hub_latency", "endpoint" => endpoint)
                    .record(took.as_secs_f64());
                metrics::counter!("hub_status_codes", "endpoint" => endpoint, "code" => answer.status.to_string())
                    .increment(1);
                tracing::info!(
                    endpoint,
                    status = answer.status,
                    citizen,
                    took_ms = took.as_millis() as u64,
                    "hub call"
                );
                if answer.is_transient() {
                    permit.failure();
                    Attempt::Transient(format!("the hub answered {}", answer.status))
                } else {
                    permit.success();
                    Attempt::Terminal(answer)
                }
            }
            Err(error) => {
                permit.failure();
                let kind = match error {
                    WireError::Timeout(_) => "timeout",
                    WireError::Connect(_) => "unreachable",
                };
                metrics::counter!("hub_status_codes", "endpoint" => endpoint, "code" => kind)
                    .increment(1);
                tracing::warn!(endpoint, citizen, %error, "hub call failed");
                Attempt::Transient(error.to_string())
            }
        };
        let outcome = match &attempt {
            Attempt::Terminal(answer) if answer.is_success() => "success",
            Attempt::Terminal(_) => "refused",
            Attempt::Transient(_) => "failed",
            Attempt::Limited(_) | Attempt::Open(_) => "deferred",
        };
        metrics::counter!("hub_calls", "endpoint" => endpoint, "outcome" => outcome).increment(1);
        self.publish_breaker(endpoint, breaker.state());
        attempt
    }

    fn publish_breaker(&self, endpoint: &'static str, state: BreakerState) {
        metrics::gauge!("hub_cb_open", "endpoint" => endpoint).set(
            if state == BreakerState::Open {
                1.0
            } else {
                0.0
            },
        );
    }

    /// Every endpoint's breaker state and calls left now (the status view; refreshes gauges).
    pub async fn status(&self) -> Vec<(String, String, u32)> {
        let mut out = Vec::new();
        for endpoint in ENDPOINTS {
            let state = self.breakers.get(endpoint).state();
            self.publish_breaker(endpoint, state);
            let remaining = self
                .limiter
                .remaining(&Self::limit_key(endpoint), self.rule)
                .await
                .unwrap_or(0);
            metrics::gauge!("hub_rate_limit_remaining", "endpoint" => *endpoint)
                .set(f64::from(remaining));
            let state = match state {
                BreakerState::Closed => "closed",
                BreakerState::Open => "open",
                BreakerState::HalfOpen => "half_open",
            };
            out.push(((*endpoint).to_owned(), state.to_owned(), remaining));
        }
        out
    }
}
