//! An upstream service: its instances, each behind its own circuit breaker, picked round-robin
//! among those whose breaker lets a call through; its timeout and retry budget.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use std::sync::Arc;

use http::HeaderValue;
use http::uri::{Authority, Scheme};
use telar_resilience::{BreakerConfig, CircuitBreaker, Permit, Retry, RetryBudget};

use crate::config::UpstreamConfig;
use crate::pool::InstancePool;

pub struct Instance {
    pub authority: Authority,
    /// Path the instance is mounted under, without a trailing slash (usually empty).
    pub base_path: String,
    /// The `Host` header upstream requests carry.
    pub host: HeaderValue,
    pub breaker: CircuitBreaker,
    /// Keep-alive connections, per gateway worker.
    pub pool: Arc<InstancePool>,
}

pub struct Upstream {
    pub name: String,
    pub config: UpstreamConfig,
    pub instances: Vec<Instance>,
    next: AtomicUsize,
    pub timeout: Duration,
    pub retry: Retry,
    pub budget: RetryBudget,
}

impl Upstream {
    pub fn new(name: &str, config: &UpstreamConfig, workers: usize) -> Result<Self, String> {
        if config.instances.is_empty() {
            return Err(format!("upstream `{name}` has no instances"));
        }
        let breaker = BreakerConfig {
            consecutive_failures: config.breaker.consecutive_failures,
            failure_rate: config.breaker.failure_rate,
            window: Duration::from_secs(config.breaker.window_secs),
            min_calls: config.breaker.min_calls,
            open_for: Duration::from_secs(config.breaker.open_secs),
            half_open_probes: config.breaker.half_open_probes.max(1),
        };
        let instances = config
            .instances
            .iter()
            .enumerate()
            .map(|(index, url)| {
                let uri: http::Uri = url
                    .parse()
                    .map_err(|e| format!("upstream `{name}`: instance `{url}`: {e}"))?;
                if uri.scheme() != Some(&Scheme::HTTP) {
                    return Err(format!(
                        "upstream `{name}`: instance `{url}` must be an http:// URL \
                         (TLS to upstreams is not supported; terminate it in front)"
                    ));
                }
                let authority = uri
                    .authority()
                    .cloned()
                    .ok_or_else(|| format!("upstream `{name}`: instance `{url}` has no host"))?;
                let port = authority.port_u16().unwrap_or(80);
                let address = format!("{}:{port}", authority.host());
                let host = HeaderValue::from_str(authority.as_str())
                    .map_err(|e| format!("upstream `{name}`: instance `{url}`: {e}"))?;
                let connect = Duration::from_millis(config.connect_timeout_ms);
                Ok(Instance {
                    pool: Arc::new(InstancePool::new(address, connect, workers)),
                    host,
                    authority,
                    base_path: uri.path().trim_end_matches('/').to_owned(),
                    breaker: CircuitBreaker::new(format!("gateway.{name}.{index}"), breaker),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let retry = Retry::attempts(config.attempts.max(1)).backoff(
            Duration::from_millis(config.retry_backoff_ms),
            Duration::from_millis(config.retry_backoff_ms.saturating_mul(8)),
        );
        Ok(Upstream {
            name: name.to_owned(),
            config: config.clone(),
            instances,
            next: AtomicUsize::new(0),
            timeout: Duration::from_millis(config.timeout_ms),
            retry,
            budget: RetryBudget::new(config.retry_budget.max(0.0), 3),
        })
    }

    /// The next instance whose breaker lets a call through, or how long until one might. A
    /// retry starts after the instance that just failed (`after`), without moving the shared
    /// round-robin: otherwise one dead instance among two would be every request's first pick.
    pub fn pick(&self, after: Option<usize>) -> Result<(usize, Permit<'_>), Duration> {
        let count = self.instances.len();
        let start = match after {
            Some(failed) => failed + 1,
            None => self.next.fetch_add(1, Ordering::Relaxed),
        };
        let mut soonest = Duration::MAX;
        for offset in 0..count {
            let index = (start + offset) % count;
            match self.instances[index].breaker.try_acquire() {
                Ok(permit) => return Ok((index, permit)),
                Err(open) => soonest = soonest.min(open.retry_after),
            }
        }
        Err(soonest)
    }
}
