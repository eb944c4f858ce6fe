//! The orchestrator: runs each saga in its own task, strictly step by step, writing every
//! outcome before going on; recovers unfinished sagas on start.

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use serde_json::{Map, Value};
use telar_sql::{Db, Dialect, query};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::{Notify, Semaphore};

use crate::admin::SagaAdmin;
use crate::definition::{Saga, Step, StepContext, StepError, Wait};
use crate::state::{SagaRecord, SagaStatus, StepLogEntry};
use crate::{Error, Result};

/// Sagas driven at once by one process.
const MAX_CONCURRENT: usize = 512;

/// Runs the sagas of the types it was given. Cheap to clone.
#[derive(Clone)]
pub struct SagaEngine {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    sagas: HashMap<String, Saga>,
    /// Who holds a saga's lease: stable across restarts of the same instance, so a restarted
    /// process takes its sagas back at once instead of waiting for the lease to expire.
    runner: String,
    lease_ms: i64,
    permits: Arc<Semaphore>,
    /// Sagas this process drives, and whether another drive was asked for meanwhile (a signal
    /// that arrived while the saga was stopping).
    active: Mutex<HashMap<String, bool>>,
    settled: Notify,
}

pub(crate) fn now_ms() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1_000_000
}

pub(crate) fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

impl SagaEngine {
    /// Opens the engine on the service's database. `runner` names this instance (e.g. the pod
    /// name); two live processes must not share one.
    pub async fn open(db: Db, runner: &str, sagas: impl IntoIterator<Item = Saga>) -> Result<Self> {
        let mut by_name = HashMap::new();
        let mut longest = Duration::ZERO;
        for saga in sagas {
            if saga.steps.is_empty() {
                return Err(Error::Invalid(format!("saga `{}` has no step", saga.name)));
            }
            let mut names = HashSet::new();
            for step in &saga.steps {
                if !names.insert(step.name.clone()) {
                    return Err(Error::Invalid(format!(
                        "saga `{}` has two steps named `{}`",
                        saga.name, step.name
                    )));
                }
                longest = longest.max(step.timeout);
            }
            if by_name.insert(saga.name.clone(), saga).is_some() {
                return Err(Error::Invalid("two sagas with one name".into()));
            }
        }
        db.migrate(crate::schema::MIGRATIONS).await?;
        let lease = longest * 2 + Duration::from_secs(30);
        Ok(SagaEngine {
            inner: Arc::new(Inner {
                db,
                sagas: by_name,
                runner: runner.to_owned(),
                lease_ms: i64::try_from(lease.as_millis()).unwrap_or(i64::MAX),
                permits: Arc::new(Semaphore::new(MAX_CONCURRENT)),
                active: Mutex::new(HashMap::new()),
                settled: Notify::new(),
            }),
        })
    }

    /// Starts a saga with a fresh id.
    pub async fn start(&self, saga_type: &str, input: Value) -> Result<String> {
        self.start_with_id(saga_type, &telar_types::new_id().to_string(), input)
            .await
    }

    /// Starts a saga with the caller's id; starting an existing id again starts nothing (the
    /// id is the saga's idempotency key).
    pub async fn start_with_id(&self, saga_type: &str, id: &str, input: Value) -> Result<String> {
        if !self.inner.sagas.contains_key(saga_type) {
            return Err(Error::UnknownType(saga_type.to_owned()));
        }
        let now = now_rfc3339();
        let inserted = query(
            // Created already leased to this runner: the first step runs without another write.
            "INSERT INTO saga_instances (id, saga_type, status, input, outputs, step, runner, lease_until, created_at, updated_at)
             VALUES ($1, $2, 'Running', $3, '{}', 0, $4, $5, $6, $6) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(saga_type)
        .bind(input.to_string())
        .bind(&self.inner.runner)
        .bind(now_ms() + self.inner.lease_ms)
        .bind(&now)
        .execute(&self.inner.db)
        .await?;
        if inserted == 1 {
            metrics::counter!("saga_started", "saga" => saga_type.to_owned()).increment(1);
        }
        // A saga created here starts from what was written: no claim, no read back.
        let fresh = (inserted == 1).then(|| SagaRecord {
            id: id.to_owned(),
            saga_type: saga_type.to_owned(),
            status: SagaStatus::Running,
            step: 0,
            input: input.clone(),
            outputs: Map::new(),
            reason: None,
            created_at: now.clone(),
            updated_at: now.clone(),
        });
        spawn(&self.inner, id, fresh);
        Ok(id.to_owned())
    }

    /// Resumes every unfinished saga this instance may run (its own, or ones whose lease
    /// expired). Call once at start. Returns how many were resumed.
    pub async fn recover(&self) -> Result<usize> {
        let rows = query(
            "SELECT id FROM saga_instances WHERE status IN ('Running', 'Compensating')
               AND (runner IS NULL OR runner = $1 OR lease_until < $2)
               AND (wake_at IS NULL OR wake_at <= $2)",
        )
        .bind(&self.inner.runner)
        .bind(now_ms())
        .fetch_all(&self.inner.db)
        .await?;
        let ids: Vec<String> = rows.iter().filter_map(|r| r.get("id").ok()).collect();
        for id in &ids {
            spawn(&self.inner, id, None);
        }
        Ok(ids.len())
    }

    /// Operations that need no saga definition (list, show, retry, abort).
    pub fn admin(&self) -> SagaAdmin {
        SagaAdmin::new(self.inner.db.clone())
    }

    pub async fn get(&self, id: &str) -> Result<SagaRecord> {
        self.admin().get(id).await
    }

    /// The step log, oldest first.
    pub async fn log(&self, id: &str) -> Result<Vec<StepLogEntry>> {
        self.admin().log(id).await
    }

    /// Sagas, newest first, optionally of one status.
    pub async fn list(&self, status: Option<SagaStatus>, limit: u32) -> Result<Vec<SagaRecord>> {
        self.admin().list(status, limit).await
    }

    /// Resumes the compensation of a parked saga (after fixing what made it fail).
    pub async fn retry(&self, id: &str) -> Result<()> {
        self.admin().retry(id).await?;
        spawn(&self.inner, id, None);
        Ok(())
    }

    /// Stops a running saga after its current step and compensates what it did.
    pub async fn abort(&self, id: &str) -> Result<()> {
        self.admin().abort(id).await?;
        spawn(&self.inner, id, None);
        Ok(())
    }

    /// Delivers `signal` to the saga (once per name; a second delivery changes nothing). A wait
    /// step for it completes with `payload` as its output.
    pub async fn signal(&self, id: &str, signal: &str, payload: Value) -> Result<()> {
        query(
            "INSERT INTO saga_signals (saga_id, name, payload, received_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (saga_id, name) DO NOTHING",
        )
        .bind(id)
        .bind(signal)
        .bind(payload.to_string())
        .bind(now_rfc3339())
        .execute(&self.inner.db)
        .await?;
        spawn(&self.inner, id, None);
        Ok(())
    }

    /// Picks up, every `every`, sagas changed by another process (`telar saga retry|abort`)
    /// and sagas whose runner died (expired lease), until `shutdown`.
    pub async fn run(
        self,
        every: Duration,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) {
        tokio::pin!(shutdown);
        loop {
            if let Err(error) = self.recover().await {
                tracing::warn!(%error, "saga recovery scan failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = &mut shutdown => return,
            }
        }
    }

    /// Waits until the saga is final (or `timeout`), and returns it.
    pub async fn wait(&self, id: &str, timeout: Duration) -> Result<SagaRecord> {
        let deadline = Instant::now() + timeout;
        loop {
            let settled = self.inner.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            let record = self.get(id).await?;
            if record.status.is_final() || Instant::now() >= deadline {
                return Ok(record);
            }
            let _ = tokio::time::timeout(
                deadline
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(500)),
                settled,
            )
            .await;
        }
    }
}

/// Drives the saga in a task of its own, unless this process already does. `fresh`: just
/// created, leased to this runner.
fn spawn(inner: &Arc<Inner>, id: &str, fresh: Option<SagaRecord>) {
    let newly_active = match inner.active.lock() {
        Ok(mut active) => match active.get_mut(id) {
            Some(rerun) => {
                *rerun = true;
                false
            }
            None => {
                active.insert(id.to_owned(), false);
                true
            }
        },
        Err(_) => false,
    };
    if !newly_active {
        return;
    }
    let (inner, id) = (inner.clone(), id.to_owned());
    tokio::spawn(async move {
        let permit = inner.permits.clone().acquire_owned().await;
        let mut fresh = fresh;
        loop {
            if let Err(error) = drive(&inner, &id, fresh.take()).await {
                // Left as it is: `recover` (or the next start) picks it up again.
                tracing::warn!(saga = %id, %error, "saga stopped on an error");
            }
            let again = match inner.active.lock() {
                Ok(mut active) => {
                    let again = active.get(&id).copied().unwrap_or(false);
                    if again {
                        active.insert(id.clone(), false);
                    } else {
                        active.remove(&id);
                    }
                    again
                }
                Err(_) => false,
            };
            if !again {
                break;
            }
        }
        drop(permit);
        inner.settled.notify_waiters();
    });
}

pub(crate) async fn load(db: &Db, id: &str) -> Result<SagaRecord> {
    let row = query(
        "SELECT id, saga_type, status, step, input, outputs, reason, created_at, updated_at
         FROM saga_instances WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or_else(|| Error::NotFound(id.to_owned()))?;
    SagaRecord::from_row(&row)
}

/// Takes (or renews) the saga's lease for this runner; `false`: another runner holds it.
async fn claim(inner: &Inner, id: &str) -> Result<bool> {
    let now = now_ms();
    let claimed = query(
        "UPDATE saga_instances SET runner = $2, lease_until = $3
         WHERE id = $1 AND (runner IS NULL OR runner = $2 OR lease_until < $4)",
    )
    .bind(id)
    .bind(&inner.runner)
    .bind(now + inner.lease_ms)
    .bind(now)
    .execute(&inner.db)
    .await?;
    Ok(claimed == 1)
}

/// A step log line: step, phase, outcome, attempt, detail, duration in ms.
type LogLine<'a> = (&'a str, &'a str, &'a str, u32, Option<&'a str>, i64);

/// A state change and its log line, in one transaction, only while this runner holds the
/// lease. `false`: the lease was lost (another runner took over) — stop.
#[allow(clippy::too_many_arguments)]
async fn record(
    inner: &Inner,
    id: &str,
    status: SagaStatus,
    step: i64,
    outputs: Option<&Map<String, Value>>,
    reason: Option<&str>,
    log: Option<LogLine<'_>>,
) -> Result<bool> {
    Ok(record_with(inner, id, status, step, outputs, reason, log)
        .await?
        .is_some())
}

/// [`record`], answering whether an operator asked to abort the saga meanwhile (`None`: the
/// lease was lost).
#[allow(clippy::too_many_arguments)]
async fn record_with(
    inner: &Inner,
    id: &str,
    status: SagaStatus,
    step: i64,
    outputs: Option<&Map<String, Value>>,
    reason: Option<&str>,
    log: Option<LogLine<'_>>,
) -> Result<Option<bool>> {
    let now = now_ms();
    let outputs = outputs.map(|o| Value::Object(o.clone()).to_string());
    let flag = |row: Option<telar_sql::Row>| -> Result<Option<bool>> {
        Ok(match row {
            Some(row) => Some(row.get::<i64>("abort_requested")? != 0),
            None => None,
        })
    };
    if inner.db.dialect() == Dialect::Postgres
        && let Some((name, phase, outcome, attempt, detail, duration_ms)) = log
    {
        // One statement, one round trip: the state change and its log line, atomically.
        let row = query(
            "WITH moved AS (
                 UPDATE saga_instances SET status = $3, step = $4,
                     outputs = COALESCE($5, outputs), reason = $6, lease_until = $7, updated_at = $8, wake_at = NULL
                 WHERE id = $1 AND runner = $2 RETURNING id, abort_requested),
             logged AS (
                 INSERT INTO saga_steps (saga_id, step, phase, outcome, attempt, detail, duration_ms, at)
                 SELECT id, $9, $10, $11, $12, $13, $14, $8 FROM moved)
             SELECT abort_requested FROM moved",
        )
        .bind(id)
        .bind(&inner.runner)
        .bind(status.as_str())
        .bind(step)
        .bind(outputs)
        .bind(reason.map(str::to_owned))
        .bind(now + inner.lease_ms)
        .bind(now_rfc3339())
        .bind(name)
        .bind(phase)
        .bind(outcome)
        .bind(i64::from(attempt))
        .bind(detail.map(str::to_owned))
        .bind(duration_ms)
        .fetch_optional(&inner.db)
        .await?;
        return flag(row);
    }
    let mut tx = inner.db.begin().await?;
    let row = query(
        "UPDATE saga_instances SET status = $3, step = $4,
             outputs = COALESCE($5, outputs), reason = $6, lease_until = $7, updated_at = $8, wake_at = NULL
         WHERE id = $1 AND runner = $2 RETURNING abort_requested",
    )
    .bind(id)
    .bind(&inner.runner)
    .bind(status.as_str())
    .bind(step)
    .bind(outputs)
    .bind(reason.map(str::to_owned))
    .bind(now + inner.lease_ms)
    .bind(now_rfc3339())
    .fetch_optional(&mut tx)
    .await?;
    let Some(abort) = flag(row)? else {
        return Ok(None);
    };
    if let Some(entry) = log {
        write_log(&mut tx, id, entry).await?;
    }
    tx.commit().await?;
    Ok(Some(abort))
}

async fn write_log(
    tx: &mut telar_sql::Tx,
    id: &str,
    (step, phase, outcome, attempt, detail, duration_ms): (
        &str,
        &str,
        &str,
        u32,
        Option<&str>,
        i64,
    ),
) -> Result<()> {
    query(
        "INSERT INTO saga_steps (saga_id, step, phase, outcome, attempt, detail, duration_ms, at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(id)
    .bind(step)
    .bind(phase)
    .bind(outcome)
    .bind(i64::from(attempt))
    .bind(detail.map(str::to_owned))
    .bind(duration_ms)
    .bind(now_rfc3339())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Failed attempts already logged for this step and phase (the retry budget survives restarts).
async fn failures(inner: &Inner, id: &str, step: &str, phase: &str) -> Result<u32> {
    let count: i64 = query(
        "SELECT COUNT(*) AS n FROM saga_steps WHERE saga_id = $1 AND step = $2 AND phase = $3 AND outcome = 'failed'",
    )
    .bind(id)
    .bind(step)
    .bind(phase)
    .fetch_one(&inner.db)
    .await?
    .get("n")?;
    Ok(u32::try_from(count).unwrap_or(u32::MAX))
}

async fn drive(inner: &Inner, id: &str, fresh: Option<SagaRecord>) -> Result<()> {
    if fresh.is_none() && !claim(inner, id).await? {
        return Ok(());
    }
    // Only the first step this run executes may have failed attempts logged by an earlier run.
    let mut resumed = true;
    let mut known: Option<(SagaRecord, bool)> = fresh.map(|record| (record, false));
    loop {
        let (saga_record, abort) = match known.take() {
            Some(state) => state,
            None => load_running(&inner.db, id).await?,
        };
        let Some(saga) = inner.sagas.get(&saga_record.saga_type) else {
            let reason = format!("no definition for saga type `{}`", saga_record.saga_type);
            record(
                inner,
                id,
                SagaStatus::NeedsAttention,
                saga_record.step,
                None,
                Some(&reason),
                None,
            )
            .await?;
            return Ok(());
        };
        let kind = saga.name.clone();
        let going_on = match saga_record.status {
            SagaStatus::Running if abort => {
                let reason = "aborted by an operator";
                record(
                    inner,
                    id,
                    SagaStatus::Compensating,
                    saga_record.step - 1,
                    None,
                    Some(reason),
                    None,
                )
                .await?
            }
            SagaStatus::Running => forward(inner, saga, &saga_record, resumed, &mut known).await?,
            SagaStatus::Compensating => backward(inner, saga, &saga_record, resumed).await?,
            _ => false,
        };
        resumed = false;
        if !going_on {
            let final_status = match known.take() {
                Some((record, _)) => record.status,
                None => load(&inner.db, id).await?.status,
            };
            let outcome = match final_status {
                SagaStatus::Completed => Some("saga_completed"),
                SagaStatus::Compensated => Some("saga_compensated"),
                SagaStatus::NeedsAttention => Some("saga_parked"),
                _ => None,
            };
            if let Some(name) = outcome {
                metrics::counter!(name, "saga" => kind).increment(1);
            }
            return Ok(());
        }
    }
}

fn context(saga: &SagaRecord, step: &Step, attempt: u32) -> StepContext {
    StepContext {
        saga_id: saga.id.clone(),
        step: step.name.clone(),
        idempotency_key: format!("{}:{}", saga.id, step.name),
        attempt,
        input: saga.input.clone(),
        outputs: saga.outputs.clone(),
    }
}

/// The saga and whether an operator asked to abort it, in one read.
async fn load_running(db: &Db, id: &str) -> Result<(SagaRecord, bool)> {
    let row = query(
        "SELECT id, saga_type, status, step, input, outputs, reason, created_at, updated_at, abort_requested
         FROM saga_instances WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or_else(|| Error::NotFound(id.to_owned()))?;
    Ok((
        SagaRecord::from_row(&row)?,
        row.get::<i64>("abort_requested")? != 0,
    ))
}

/// Runs one attempt of an action or compensation under the step's timeout, a panic becoming
/// `on_panic`. Returns the outcome and how long it took, in milliseconds.
async fn attempt_once<T>(
    step: &Step,
    call: impl Future<Output = Result<T, StepError>>,
    on_panic: StepError,
) -> (Result<T, StepError>, i64) {
    let started = Instant::now();
    let result =
        match tokio::time::timeout(step.timeout, AssertUnwindSafe(call).catch_unwind()).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(on_panic),
            Err(_) => Err(StepError::transient(format!(
                "timed out after {} ms",
                step.timeout.as_millis()
            ))),
        };
    (result, started.elapsed().as_millis() as i64)
}

/// Runs the next step. `false`: the saga is final, or this runner lost it.
async fn forward(
    inner: &Inner,
    saga: &Saga,
    current: &SagaRecord,
    resumed: bool,
    next: &mut Option<(SagaRecord, bool)>,
) -> Result<bool> {
    let index = usize::try_from(current.step).unwrap_or(0);

    let Some(step) = saga.steps.get(index) else {
        record(
            inner,
            &current.id,
            SagaStatus::Completed,
            current.step,
            None,
            None,
            None,
        )
        .await?;
        return Ok(false);
    };
    if let Some(wait) = &step.wait {
        return wait_step(inner, saga, current, index, wait, next).await;
    }
    let mut attempt = if resumed {
        failures(inner, &current.id, &step.name, "action").await? + 1
    } else {
        1
    };
    loop {
        let (result, millis) = attempt_once(
            step,
            (step.action)(context(current, step, attempt)),
            // A panicking action is a bug: retrying it will not help.
            StepError::permanent(format!("step {} panicked", step.name)),
        )
        .await;
        metrics::histogram!("saga_step_duration", "saga" => saga.name.clone(), "step" => step.name.clone())
            .record(millis as f64 / 1_000.0);
        match result {
            Ok(output) => {
                return complete_step(inner, saga, current, index, output, attempt, millis, next)
                    .await;
            }
            Err(error) => {
                let give_up =
                    matches!(error, StepError::Permanent(_)) || attempt >= step.retry.max_attempts;
                if give_up {
                    let reason = format!("step {} failed: {}", step.name, error.reason());
                    let log = (
                        step.name.as_str(),
                        "action",
                        "failed",
                        attempt,
                        Some(error.reason()),
                        millis,
                    );
                    // Compensate what completed before this step, newest first.
                    return record(
                        inner,
                        &current.id,
                        SagaStatus::Compensating,
                        current.step - 1,
                        None,
                        Some(&reason),
                        Some(log),
                    )
                    .await;
                }
                let log = (
                    step.name.as_str(),
                    "action",
                    "failed",
                    attempt,
                    Some(error.reason()),
                    millis,
                );
                if !record(
                    inner,
                    &current.id,
                    SagaStatus::Running,
                    current.step,
                    None,
                    None,
                    Some(log),
                )
                .await?
                {
                    return Ok(false);
                }
                tokio::time::sleep(step.retry.delay(attempt)).await;
                attempt += 1;
            }
        }
    }
}

/// Records a step's success (the last one completes the saga) and hands the caller the state
/// it wrote. `false`: final, or the lease was lost.
#[allow(clippy::too_many_arguments)]
async fn complete_step(
    inner: &Inner,
    saga: &Saga,
    current: &SagaRecord,
    index: usize,
    output: Value,
    attempt: u32,
    millis: i64,
    next: &mut Option<(SagaRecord, bool)>,
) -> Result<bool> {
    let step = &saga.steps[index];
    let mut outputs = current.outputs.clone();
    outputs.insert(step.name.clone(), output);
    let log = (
        step.name.as_str(),
        "action",
        "succeeded",
        attempt,
        None,
        millis,
    );
    // The last step's outcome completes the saga in the same write.
    let status = if index + 1 == saga.steps.len() {
        SagaStatus::Completed
    } else {
        SagaStatus::Running
    };
    let recorded = record_with(
        inner,
        &current.id,
        status,
        current.step + 1,
        Some(&outputs),
        None,
        Some(log),
    )
    .await?;
    let Some(abort) = recorded else {
        return Ok(false);
    };
    if status != SagaStatus::Running {
        // Completed: the caller learns it from here, without reading it back.
        *next = Some((
            SagaRecord {
                status,
                ..current.clone()
            },
            abort,
        ));
        return Ok(false);
    }
    // What was just written is the next state: no read back.
    *next = Some((
        SagaRecord {
            status,
            step: current.step + 1,
            outputs,
            ..current.clone()
        },
        abort,
    ));
    Ok(true)
}

/// A wait step: done when its signal has arrived (or, for a timer, its deadline passed);
/// failed when the deadline passes without the signal; otherwise its deadline is stored and the
/// saga stops until the signal or the engine's scan wakes it.
#[allow(clippy::too_many_arguments)]
async fn wait_step(
    inner: &Inner,
    saga: &Saga,
    current: &SagaRecord,
    index: usize,
    wait: &Wait,
    next: &mut Option<(SagaRecord, bool)>,
) -> Result<bool> {
    let step = &saga.steps[index];
    let row = query(
        "SELECT wake_at, (SELECT payload FROM saga_signals WHERE saga_id = $1 AND name = $2) AS payload
         FROM saga_instances WHERE id = $1",
    )
    .bind(&current.id)
    .bind(wait.signal.clone().unwrap_or_default())
    .fetch_one(&inner.db)
    .await?;
    let wake_at: Option<i64> = row.get("wake_at")?;
    let payload: Option<String> = row.get("payload")?;
    let now = now_ms();
    match (&wait.signal, payload, wake_at) {
        (Some(_), Some(payload), _) => {
            let output = serde_json::from_str(&payload).unwrap_or(Value::Null);
            complete_step(inner, saga, current, index, output, 1, 0, next).await
        }
        (_, _, None) => {
            let deadline = now + i64::try_from(wait.within.as_millis()).unwrap_or(i64::MAX / 2);
            query("UPDATE saga_instances SET wake_at = $3, updated_at = $4 WHERE id = $1 AND runner = $2")
                .bind(&current.id)
                .bind(&inner.runner)
                .bind(deadline)
                .bind(now_rfc3339())
                .execute(&inner.db)
                .await?;
            // A signal that arrives from now on drives the saga again (see `spawn`).
            Ok(false)
        }
        (None, _, Some(at)) if now >= at => {
            complete_step(inner, saga, current, index, Value::Null, 1, 0, next).await
        }
        (Some(signal), None, Some(at)) if now >= at => {
            let reason = format!(
                "step {}: no {signal} within {} ms",
                step.name,
                wait.within.as_millis()
            );
            let log = (
                step.name.as_str(),
                "action",
                "failed",
                1,
                Some(reason.as_str()),
                0,
            );
            record(
                inner,
                &current.id,
                SagaStatus::Compensating,
                current.step - 1,
                None,
                Some(&reason),
                Some(log),
            )
            .await
        }
        _ => Ok(false),
    }
}

/// Compensates the next completed step, newest first. `false`: final, or lost.
async fn backward(inner: &Inner, saga: &Saga, current: &SagaRecord, resumed: bool) -> Result<bool> {
    let reason = current.reason.as_deref();
    if current.step < 0 {
        record(
            inner,
            &current.id,
            SagaStatus::Compensated,
            -1,
            None,
            reason,
            None,
        )
        .await?;
        return Ok(false);
    }
    let index = usize::try_from(current.step).unwrap_or(0);
    let Some(step) = saga.steps.get(index) else {
        return record(
            inner,
            &current.id,
            SagaStatus::Compensating,
            current.step - 1,
            None,
            reason,
            None,
        )
        .await;
    };
    let Some(compensation) = &step.compensation else {
        let log = (step.name.as_str(), "compensation", "skipped", 0, None, 0);
        return record(
            inner,
            &current.id,
            SagaStatus::Compensating,
            current.step - 1,
            None,
            reason,
            Some(log),
        )
        .await;
    };
    let mut attempt = if resumed {
        failures(inner, &current.id, &step.name, "compensation").await? + 1
    } else {
        1
    };
    loop {
        let (result, millis) = attempt_once(
            step,
            compensation(context(current, step, attempt)),
            // A compensation is never abandoned on a panic alone: it is retried within its budget.
            StepError::transient(format!("compensation of {} panicked", step.name)),
        )
        .await;
        match result {
            Ok(()) => {
                metrics::counter!("saga_compensation_executed", "saga" => saga.name.clone(), "step" => step.name.clone())
                    .increment(1);
                let log = (
                    step.name.as_str(),
                    "compensation",
                    "succeeded",
                    attempt,
                    None,
                    millis,
                );
                return record(
                    inner,
                    &current.id,
                    SagaStatus::Compensating,
                    current.step - 1,
                    None,
                    reason,
                    Some(log),
                )
                .await;
            }
            Err(error) => {
                let log = (
                    step.name.as_str(),
                    "compensation",
                    "failed",
                    attempt,
                    Some(error.reason()),
                    millis,
                );
                // A compensation is never abandoned silently: past its budget the saga waits
                // for an operator, with the reason.
                if attempt >= step.compensation_retry.max_attempts {
                    let parked = format!(
                        "compensation of {} failed after {attempt} attempts: {}",
                        step.name,
                        error.reason()
                    );
                    record(
                        inner,
                        &current.id,
                        SagaStatus::NeedsAttention,
                        current.step,
                        None,
                        Some(&parked),
                        Some(log),
                    )
                    .await?;
                    return Ok(false);
                }
                if !record(
                    inner,
                    &current.id,
                    SagaStatus::Compensating,
                    current.step,
                    None,
                    reason,
                    Some(log),
                )
                .await?
                {
                    return Ok(false);
                }
                tokio::time::sleep(step.compensation_retry.delay(attempt)).await;
                attempt += 1;
            }
        }
    }
}
