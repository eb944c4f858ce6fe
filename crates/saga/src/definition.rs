//! What a saga is: named steps with actions, compensations, retry policies and timeouts.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{Map, Value};

/// What a step's action or compensation sees.
#[derive(Debug, Clone)]
pub struct StepContext {
    pub saga_id: String,
    pub step: String,
    /// `saga id:step` — the same on every attempt and after a restart: key the step's effects by
    /// it (e.g. as the hub's idempotency key, or a ledger's primary key).
    pub idempotency_key: String,
    /// 1 for the first attempt of this action (or compensation) in this run.
    pub attempt: u32,
    pub input: Value,
    /// Outputs of the steps that completed, by step name.
    pub outputs: Map<String, Value>,
}

/// Why a step did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepError {
    /// Worth retrying (timeouts, 5xx): retried per the step's policy, then treated as permanent.
    Transient(String),
    /// Retrying cannot help (a refusal, 4xx): the saga compensates at once.
    Permanent(String),
}

impl StepError {
    pub fn transient(reason: impl Into<String>) -> Self {
        StepError::Transient(reason.into())
    }
    pub fn permanent(reason: impl Into<String>) -> Self {
        StepError::Permanent(reason.into())
    }
    pub fn reason(&self) -> &str {
        match self {
            StepError::Transient(reason) | StepError::Permanent(reason) => reason,
        }
    }
}

/// Attempts and exponential backoff with full jitter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    pub fn attempts(max_attempts: u32) -> Self {
        RetryPolicy {
            max_attempts: max_attempts.max(1),
            ..Self::default()
        }
    }

    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max;
        self
    }

    /// Delay before attempt `attempt + 1`: uniform in `[0, min(max, initial · 2^(attempt-1))]`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(20);
        let ceiling = self
            .initial_backoff
            .saturating_mul(1 << exponent)
            .min(self.max_backoff);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::random_range(0..=millis))
    }
}

type Action =
    Arc<dyn Fn(StepContext) -> BoxFuture<'static, Result<Value, StepError>> + Send + Sync>;
type Compensation =
    Arc<dyn Fn(StepContext) -> BoxFuture<'static, Result<(), StepError>> + Send + Sync>;

/// What a wait step waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Wait {
    /// The signal's name (`None`: a durable timer that fires at the deadline).
    pub signal: Option<String>,
    pub within: Duration,
}

/// One step of a saga.
#[derive(Clone)]
pub struct Step {
    pub(crate) name: String,
    pub(crate) action: Action,
    pub(crate) wait: Option<Wait>,
    pub(crate) compensation: Option<Compensation>,
    pub(crate) retry: RetryPolicy,
    pub(crate) compensation_retry: RetryPolicy,
    pub(crate) timeout: Duration,
}

impl Step {
    /// A step whose action returns its output (given to later steps).
    pub fn new<F, Fut>(name: impl Into<String>, action: F) -> Self
    where
        F: Fn(StepContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, StepError>> + Send + 'static,
    {
        Step {
            name: name.into(),
            action: Arc::new(move |context| Box::pin(action(context))),
            wait: None,
            compensation: None,
            retry: RetryPolicy::default(),
            compensation_retry: RetryPolicy {
                max_attempts: 5,
                ..RetryPolicy::default()
            },
            timeout: Duration::from_secs(30),
        }
    }

    /// A step that waits for `signal` (delivered with [`crate::SagaEngine::signal`], correlated
    /// by saga id) for at most `within`; its payload becomes the step's output. No signal in
    /// time fails the step (the saga compensates). The deadline is stored: it survives restarts.
    pub fn wait_for(name: impl Into<String>, signal: impl Into<String>, within: Duration) -> Self {
        let mut step = Step::new(name, |_c: StepContext| async { Ok(Value::Null) });
        step.wait = Some(Wait {
            signal: Some(signal.into()),
            within,
        });
        step
    }

    /// A durable timer: the step completes `after` this long (also across restarts).
    pub fn sleep(name: impl Into<String>, after: Duration) -> Self {
        let mut step = Step::new(name, |_c: StepContext| async { Ok(Value::Null) });
        step.wait = Some(Wait {
            signal: None,
            within: after,
        });
        step
    }

    /// Undoes the action when a later step fails.
    pub fn compensate<F, Fut>(mut self, compensation: F) -> Self
    where
        F: Fn(StepContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), StepError>> + Send + 'static,
    {
        self.compensation = Some(Arc::new(move |context| Box::pin(compensation(context))));
        self
    }

    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The compensation's budget: past it the saga is parked as `NeedsAttention`.
    pub fn compensation_retry(mut self, policy: RetryPolicy) -> Self {
        self.compensation_retry = policy;
        self
    }

    /// An attempt running longer counts as a transient failure.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// A saga type: its name and ordered steps.
#[derive(Clone)]
pub struct Saga {
    pub(crate) name: String,
    pub(crate) steps: Vec<Step>,
}

impl Saga {
    pub fn new(name: impl Into<String>) -> Self {
        Saga {
            name: name.into(),
            steps: Vec::new(),
        }
    }

    pub fn step(mut self, step: Step) -> Self {
        self.steps.push(step);
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}
