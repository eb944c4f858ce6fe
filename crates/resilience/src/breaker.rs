//! The circuit breaker: closed → open on consecutive failures or on a failure rate over a
//! sliding window (with a minimum number of calls); open → half-open after a pause; half-open
//! lets a limited number of probes through — all succeed: closed; one fails: open again.
//!
//! Every outcome is accounted, in every state: a permit that is dropped without an outcome
//! (the caller was cancelled) frees its probe slot and counts as nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::calls::CallLog;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    /// Opens after this many failures in a row (0: never on a streak).
    pub consecutive_failures: u32,
    /// Opens when failures / calls over `window` reach this (with at least `min_calls`).
    pub failure_rate: f64,
    pub window: Duration,
    pub min_calls: u32,
    /// How long it stays open before letting probes through.
    pub open_for: Duration,
    /// Probes let through at once while half-open; this many successes close it.
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            consecutive_failures: 5,
            failure_rate: 0.5,
            window: Duration::from_secs(30),
            min_calls: 10,
            open_for: Duration::from_secs(30),
            half_open_probes: 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    /// The value of the `circuit_breaker_state` gauge: 0 closed, 1 open, 2 half-open.
    pub fn gauge(self) -> f64 {
        match self {
            BreakerState::Closed => 0.0,
            BreakerState::Open => 1.0,
            BreakerState::HalfOpen => 2.0,
        }
    }
}

/// A state change, for whoever listens (`CircuitBreaker::events`).
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerEvent {
    pub breaker: String,
    pub from: BreakerState,
    pub to: BreakerState,
    pub reason: String,
}

/// Refused: the breaker is open (or half-open with every probe slot taken).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker `{breaker}` is open; retry in {} ms", retry_after.as_millis())]
pub struct Open {
    pub breaker: String,
    pub retry_after: Duration,
}

/// The breaker's calls within its window, in 10 ms slots.
const BREAKER_SLOT: Duration = Duration::from_millis(10);

struct Window(CallLog);

impl Window {
    fn new() -> Self {
        Window(CallLog::new(BREAKER_SLOT))
    }

    fn push(&mut self, now: Instant, failed: bool, span: Duration) {
        self.0.push(now, failed);
        self.0.expire(now, span);
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

struct State {
    state: BreakerState,
    streak: u32,
    window: Window,
    opened_at: Instant,
    probes: u32,
    probe_successes: u32,
}

/// One breaker (one upstream, one hub endpoint). Cheap to share behind an `Arc`.
pub struct CircuitBreaker {
    name: String,
    config: BreakerConfig,
    state: Mutex<State>,
    events: broadcast::Sender<BreakerEvent>,
}

/// Leave to make one call; report its outcome. Dropping it without an outcome counts nothing.
pub struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    probe: bool,
    settled: bool,
}

impl Permit<'_> {
    pub fn success(mut self) {
        self.settled = true;
        self.breaker.settle(self.probe, false);
    }

    pub fn failure(mut self) {
        self.settled = true;
        self.breaker.settle(self.probe, true);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.settled
            && self.probe
            && let Ok(mut state) = self.breaker.state.lock()
        {
            state.probes = state.probes.saturating_sub(1);
        }
    }
}

impl CircuitBreaker {
    pub fn new(name: impl Into<String>, config: BreakerConfig) -> Self {
        let name = name.into();
        metrics::gauge!("circuit_breaker_state", "breaker" => name.clone()).set(0.0);
        CircuitBreaker {
            name,
            config,
            state: Mutex::new(State {
                state: BreakerState::Closed,
                streak: 0,
                window: Window::new(),
                opened_at: Instant::now(),
                probes: 0,
                probe_successes: 0,
            }),
            events: broadcast::channel(64).0,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn state(&self) -> BreakerState {
        let Ok(mut state) = self.state.lock() else {
            return BreakerState::Open;
        };
        self.advance(&mut state, Instant::now());
        state.state
    }

    /// State changes from now on.
    pub fn events(&self) -> broadcast::Receiver<BreakerEvent> {
        self.events.subscribe()
    }

    /// Leave to call, or why not.
    pub fn try_acquire(&self) -> Result<Permit<'_>, Open> {
        let now = Instant::now();
        let Ok(mut state) = self.state.lock() else {
            return Err(self.open_error(Duration::ZERO));
        };
        self.advance(&mut state, now);
        match state.state {
            BreakerState::Closed => Ok(Permit {
                breaker: self,
                probe: false,
                settled: false,
            }),
            BreakerState::Open => {
                let left = self
                    .config
                    .open_for
                    .saturating_sub(now.duration_since(state.opened_at));
                Err(self.open_error(left))
            }
            BreakerState::HalfOpen if state.probes < self.config.half_open_probes.max(1) => {
                state.probes += 1;
                Ok(Permit {
                    breaker: self,
                    probe: true,
                    settled: false,
                })
            }
            BreakerState::HalfOpen => Err(self.open_error(Duration::ZERO)),
        }
    }

    /// Runs `call` through the breaker; `counts` decides which errors are failures (a 404 is
    /// not the upstream's fault; a 503 or a timeout is).
    pub async fn call<T, E, Fut>(
        &self,
        call: impl FnOnce() -> Fut,
        counts: impl Fn(&E) -> bool,
    ) -> Result<Result<T, E>, Open>
    where
        Fut: Future<Output = Result<T, E>>,
    {
        let permit = self.try_acquire()?;
        let result = call().await;
        match &result {
            Err(error) if counts(error) => permit.failure(),
            _ => permit.success(),
        }
        Ok(result)
    }

    fn open_error(&self, retry_after: Duration) -> Open {
        Open {
            breaker: self.name.clone(),
            retry_after,
        }
    }

    /// Open → half-open once the pause is over.
    fn advance(&self, state: &mut State, now: Instant) {
        if state.state == BreakerState::Open
            && now.duration_since(state.opened_at) >= self.config.open_for
        {
            state.probes = 0;
            state.probe_successes = 0;
            self.transition(state, BreakerState::HalfOpen, "pause over: probing".into());
        }
    }

    fn settle(&self, probe: bool, failed: bool) {
        let now = Instant::now();
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let state = &mut *state;
        if probe {
            state.probes = state.probes.saturating_sub(1);
        }
        match state.state {
            BreakerState::HalfOpen if probe => {
                if failed {
                    state.opened_at = now;
                    self.transition(state, BreakerState::Open, "a probe failed".into());
                } else {
                    state.probe_successes += 1;
                    if state.probe_successes >= self.config.half_open_probes.max(1) {
                        state.streak = 0;
                        state.window.clear();
                        self.transition(state, BreakerState::Closed, "probes succeeded".into());
                    }
                }
            }
            BreakerState::Closed => {
                state.window.push(now, failed, self.config.window);
                state.streak = if failed { state.streak + 1 } else { 0 };
                let calls = state.window.0.calls();
                let failures = state.window.0.failures();
                let rate = f64::from(failures) / f64::from(calls.max(1));
                let reason = if self.config.consecutive_failures > 0
                    && state.streak >= self.config.consecutive_failures
                {
                    Some(format!("{} failures in a row", state.streak))
                } else if calls >= self.config.min_calls && rate >= self.config.failure_rate {
                    Some(format!(
                        "{} of {calls} calls failed in {} s",
                        failures,
                        self.config.window.as_secs()
                    ))
                } else {
                    None
                };
                if let Some(reason) = reason {
                    state.opened_at = now;
                    self.transition(state, BreakerState::Open, reason);
                }
            }
            // Outcomes of calls admitted before the breaker opened: already accounted for.
            _ => {}
        }
    }

    fn transition(&self, state: &mut State, to: BreakerState, reason: String) {
        let from = state.state;
        if from == to {
            return;
        }
        state.state = to;
        metrics::gauge!("circuit_breaker_state", "breaker" => self.name.clone()).set(to.gauge());
        tracing::info!(breaker = %self.name, ?from, ?to, %reason, "circuit breaker");
        let _ = self.events.send(BreakerEvent {
            breaker: self.name.clone(),
            from,
            to,
            reason,
        });
    }
}

/// Breakers by key (per upstream, per hub endpoint), created on first use with one config.
#[derive(Clone)]
pub struct Breakers {
    config: BreakerConfig,
    prefix: String,
    map: Arc<Mutex<HashMap<String, Arc<CircuitBreaker>>>>,
}

impl Breakers {
    pub fn new(prefix: impl Into<String>, config: BreakerConfig) -> Self {
        Breakers {
            config,
            prefix: prefix.into(),
            map: Arc::default(),
        }
    }

    /// The breaker of `key` (named `prefix:key`).
    pub fn get(&self, key: &str) -> Arc<CircuitBreaker> {
        let Ok(mut map) = self.map.lock() else {
            return Arc::new(CircuitBreaker::new(key, self.config));
        };
        map.entry(key.to_owned())
            .or_insert_with(|| {
                Arc::new(CircuitBreaker::new(
                    format!("{}:{key}", self.prefix),
                    self.config,
                ))
            })
            .clone()
    }

    /// Every breaker and its state.
    pub fn states(&self) -> Vec<(String, BreakerState)> {
        let breakers: Vec<Arc<CircuitBreaker>> = self
            .map
            .lock()
            .map(|map| map.values().cloned().collect())
            .unwrap_or_default();
        let mut states: Vec<_> = breakers
            .iter()
            .map(|b| (b.name().to_owned(), b.state()))
            .collect();
        states.sort_by(|a, b| a.0.cmp(&b.0));
        states
    }
}
