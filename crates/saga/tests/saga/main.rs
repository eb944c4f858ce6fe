//! Orchestrated and choreographed sagas on SQLite and on the running PostgreSQL.

mod choreography;
mod routes;
mod waits;

use waits::{
    a_durable_timer_fires_after_a_restart, a_step_waits_for_its_signal,
    no_signal_before_the_deadline_compensates,
};

use choreography::{
    a_transition_the_rules_forbid_is_flagged, redelivered_events_change_nothing,
    sagas_past_their_deadline_are_flagged_stuck, the_alpes_rules_track_every_ending,
};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use telar_saga::{RetryPolicy, Saga, SagaEngine, SagaStatus, Step, StepContext, StepError};
use telar_sql::{Db, Migration, query};

const LEDGER: Migration = Migration {
    version: 1,
    name: "ledger",
    sqlite: "CREATE TABLE ledger (id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE, saga TEXT NOT NULL, entry TEXT NOT NULL);",
    postgres: "CREATE TABLE ledger (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, key TEXT NOT NULL UNIQUE, saga TEXT NOT NULL, entry TEXT NOT NULL);",
};

struct Backend {
    db: Db,
    _dir: Option<tempfile::TempDir>,
}

async fn sqlite() -> Backend {
    let (db, dir) = telar_testkit::sqlite_db("saga").await;
    db.migrate(&[LEDGER]).await.expect("ledger");
    Backend {
        db,
        _dir: Some(dir),
    }
}

async fn postgres() -> Backend {
    let db = telar_testkit::postgres_db("saga").await;
    db.migrate(&[LEDGER]).await.expect("ledger");
    Backend { db, _dir: None }
}

/// Records an effect once per key (the step's idempotency key): a re-run has no second effect.
async fn effect(db: &Db, key: &str, saga: &str, entry: &str) -> Result<(), StepError> {
    query("INSERT INTO ledger (key, saga, entry) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING")
        .bind(key)
        .bind(saga)
        .bind(entry)
        .execute(db)
        .await
        .map(|_| ())
        .map_err(|e| StepError::transient(e.to_string()))
}

pub async fn ledger(db: &Db, saga: &str) -> Vec<String> {
    query("SELECT entry FROM ledger WHERE saga = $1 ORDER BY id")
        .bind(saga)
        .fetch_all(db)
        .await
        .expect("ledger")
        .iter()
        .map(|r| r.get("entry").expect("entry"))
        .collect()
}

/// A step that records `name` and returns `{name: n}`; its compensation records `undo name`.
pub fn recording(db: &Db, name: &'static str) -> Step {
    let (act, undo) = (db.clone(), db.clone());
    Step::new(name, move |c: StepContext| {
        let db = act.clone();
        async move {
            effect(&db, &c.idempotency_key, &c.saga_id, name).await?;
            Ok(json!({"done": name, "seen": c.outputs.keys().cloned().collect::<Vec<_>>()}))
        }
    })
    .compensate(move |c: StepContext| {
        let db = undo.clone();
        async move {
            effect(
                &db,
                &format!("undo:{}", c.idempotency_key),
                &c.saga_id,
                &format!("undo {name}"),
            )
            .await
        }
    })
    .retry(RetryPolicy::attempts(3).backoff(Duration::from_millis(1), Duration::from_millis(5)))
    .compensation_retry(
        RetryPolicy::attempts(3).backoff(Duration::from_millis(1), Duration::from_millis(5)),
    )
}

fn failing(name: &'static str, error: StepError) -> Step {
    Step::new(name, move |_c: StepContext| {
        let error = error.clone();
        async move { Err::<Value, _>(error) }
    })
    .retry(RetryPolicy::attempts(2).backoff(Duration::from_millis(1), Duration::from_millis(5)))
}

pub const WAIT: Duration = Duration::from_secs(15);

async fn a_saga_runs_its_steps_in_order(db: Db) {
    let saga = Saga::new("transfer")
        .step(recording(&db, "reserve"))
        .step(recording(&db, "notify-hub"))
        .step(recording(&db, "confirm"));
    let engine = SagaEngine::open(db.clone(), "test", [saga])
        .await
        .expect("engine");
    let id = engine
        .start("transfer", json!({"citizen": "1032456789"}))
        .await
        .expect("start");
    let done = engine.wait(&id, WAIT).await.expect("wait");
    assert_eq!(done.status, SagaStatus::Completed);
    assert_eq!(ledger(&db, &id).await, ["reserve", "notify-hub", "confirm"]);
    assert_eq!(
        done.outputs["confirm"]["seen"],
        json!(["reserve", "notify-hub"]),
        "later steps see earlier outputs"
    );
    let log = engine.log(&id).await.expect("log");
    assert_eq!(
        log.iter()
            .map(|l| (l.step.as_str(), l.outcome.as_str()))
            .collect::<Vec<_>>(),
        [
            ("reserve", "succeeded"),
            ("notify-hub", "succeeded"),
            ("confirm", "succeeded")
        ]
    );
}

async fn a_failed_step_compensates_the_completed_ones_in_reverse(db: Db) {
    let saga = Saga::new("transfer")
        .step(recording(&db, "reserve"))
        .step(recording(&db, "notify-hub"))
        .step(failing(
            "confirm",
            StepError::permanent("the other operator refused"),
        ));
    let engine = SagaEngine::open(db.clone(), "test", [saga])
        .await
        .expect("engine");
    let id = engine.start("transfer", json!({})).await.expect("start");
    let done = engine.wait(&id, WAIT).await.expect("wait");
    assert_eq!(done.status, SagaStatus::Compensated);
    assert!(
        done.reason
            .as_deref()
            .is_some_and(|r| r.contains("refused")),
        "{:?}",
        done.reason
    );
    assert_eq!(
        ledger(&db, &id).await,
        ["reserve", "notify-hub", "undo notify-hub", "undo reserve"]
    );
    let log = engine.log(&id).await.expect("log");
    assert_eq!(
        log.iter().filter(|l| l.step == "confirm").count(),
        1,
        "a permanent error is not retried"
    );
}

async fn transient_errors_are_retried_within_the_budget(db: Db) {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let flaky = Step::new("call-hub", move |_c: StepContext| {
        let counter = counter.clone();
        async move {
            if counter.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(StepError::transient("hub answered 503"))
            } else {
                Ok(json!("ok"))
            }
        }
    })
    .retry(RetryPolicy::attempts(3).backoff(Duration::from_millis(1), Duration::from_millis(5)));
    let engine = SagaEngine::open(db.clone(), "test", [Saga::new("s").step(flaky)])
        .await
        .expect("engine");
    let id = engine.start("s", json!({})).await.expect("start");
    assert_eq!(
        engine.wait(&id, WAIT).await.expect("wait").status,
        SagaStatus::Completed
    );
    let outcomes: Vec<(u32, String)> = engine
        .log(&id)
        .await
        .expect("log")
        .into_iter()
        .map(|l| (l.attempt, l.outcome))
        .collect();
    assert_eq!(
        outcomes,
        [
            (1, "failed".into()),
            (2, "failed".into()),
            (3, "succeeded".into())
        ]
    );
}

async fn a_compensation_that_keeps_failing_parks_the_saga_until_retried(db: Db) {
    let healthy = Arc::new(AtomicBool::new(false));
    let flag = healthy.clone();
    let (act, undo) = (db.clone(), db.clone());
    let stubborn = Step::new("reserve", move |c: StepContext| {
        let db = act.clone();
        async move {
            effect(&db, &c.idempotency_key, &c.saga_id, "reserve").await?;
            Ok(json!(null))
        }
    })
    .compensate(move |c: StepContext| {
        let (db, flag) = (undo.clone(), flag.clone());
        async move {
            if !flag.load(Ordering::SeqCst) {
                return Err(StepError::transient("the registry is down"));
            }
            effect(
                &db,
                &format!("undo:{}", c.idempotency_key),
                &c.saga_id,
                "undo reserve",
            )
            .await
        }
    })
    .compensation_retry(
        RetryPolicy::attempts(2).backoff(Duration::from_millis(1), Duration::from_millis(5)),
    );
    let saga = Saga::new("s")
        .step(stubborn)
        .step(failing("confirm", StepError::permanent("no")));
    let engine = SagaEngine::open(db.clone(), "test", [saga])
        .await
        .expect("engine");
    let id = engine.start("s", json!({})).await.expect("start");
    let parked = engine.wait(&id, WAIT).await.expect("wait");
    assert_eq!(parked.status, SagaStatus::NeedsAttention);
    let reason = parked.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("reserve")
            && reason.contains("registry is down")
            && reason.contains("2 attempts"),
        "{reason}"
    );
    assert_eq!(
        engine
            .list(Some(SagaStatus::NeedsAttention), 10)
            .await
            .expect("list")
            .len(),
        1
    );
    healthy.store(true, Ordering::SeqCst);
    engine.retry(&id).await.expect("retry");
    let done = engine.wait(&id, WAIT).await.expect("wait");
    assert_eq!(done.status, SagaStatus::Compensated);
    assert_eq!(ledger(&db, &id).await, ["reserve", "undo reserve"]);
    assert!(
        engine.retry(&id).await.is_err(),
        "only a parked saga can be retried"
    );
}

async fn an_unfinished_saga_resumes_from_its_last_recorded_step(db: Db) {
    let saga = Saga::new("transfer")
        .step(recording(&db, "reserve"))
        .step(recording(&db, "notify-hub"))
        .step(recording(&db, "confirm"));
    let engine = SagaEngine::open(db.clone(), "test", [saga])
        .await
        .expect("engine");
    // As a killed process left it: step 0 recorded, step 1 not.
    query("INSERT INTO saga_instances (id, saga_type, status, input, outputs, step, runner, lease_until, created_at, updated_at)
           VALUES ('crashed', 'transfer', 'Running', '{}', '{\"reserve\": {\"done\": \"reserve\"}}', 1, 'test', 0, '2026-11-23T00:00:00Z', '2026-11-23T00:00:00Z')")
        .execute(&db)
        .await
        .expect("a saga left behind");
    effect(&db, "crashed:reserve", "crashed", "reserve")
        .await
        .expect("its first effect");
    assert_eq!(engine.recover().await.expect("recover"), 1);
    let done = engine.wait("crashed", WAIT).await.expect("wait");
    assert_eq!(done.status, SagaStatus::Completed);
    assert_eq!(
        ledger(&db, "crashed").await,
        ["reserve", "notify-hub", "confirm"]
    );
    let log = engine.log("crashed").await.expect("log");
    assert!(
        log.iter().all(|l| l.step != "reserve"),
        "the recorded step did not run again"
    );
}

async fn an_aborted_saga_compensates_after_its_current_step(db: Db) {
    let gate = Arc::new(tokio::sync::Notify::new());
    let entered = Arc::new(tokio::sync::Notify::new());
    let (g, e, act) = (gate.clone(), entered.clone(), db.clone());
    let slow = Step::new("notify-hub", move |c: StepContext| {
        let (gate, entered, db) = (g.clone(), e.clone(), act.clone());
        async move {
            entered.notify_one();
            gate.notified().await;
            effect(&db, &c.idempotency_key, &c.saga_id, "notify-hub").await?;
            Ok(json!(null))
        }
    })
    .compensate({
        let db = db.clone();
        move |c: StepContext| {
            let db = db.clone();
            async move {
                effect(
                    &db,
                    &format!("undo:{}", c.idempotency_key),
                    &c.saga_id,
                    "undo notify-hub",
                )
                .await
            }
        }
    });
    let saga = Saga::new("transfer")
        .step(recording(&db, "reserve"))
        .step(slow)
        .step(recording(&db, "confirm"));
    let engine = SagaEngine::open(db.clone(), "test", [saga])
        .await
        .expect("engine");
    let id = engine.start("transfer", json!({})).await.expect("start");
    entered.notified().await;
    engine.abort(&id).await.expect("abort");
    gate.notify_one();
    let done = engine.wait(&id, WAIT).await.expect("wait");
    assert_eq!(done.status, SagaStatus::Compensated);
    assert_eq!(done.reason.as_deref(), Some("aborted by an operator"));
    assert_eq!(
        ledger(&db, &id).await,
        ["reserve", "notify-hub", "undo notify-hub", "undo reserve"]
    );
}

async fn many_sagas_run_at_once_each_in_order(db: Db) {
    let saga = Saga::new("transfer")
        .step(recording(&db, "reserve"))
        .step(recording(&db, "notify-hub"))
        .step(recording(&db, "confirm"));
    let engine = SagaEngine::open(db.clone(), "test", [saga])
        .await
        .expect("engine");
    let mut ids = Vec::new();
    for n in 0..40 {
        ids.push(
            engine
                .start_with_id("transfer", &format!("t{n}"), json!({"n": n}))
                .await
                .expect("start"),
        );
    }
    // The id is the idempotency key of the saga itself.
    engine
        .start_with_id("transfer", "t0", json!({}))
        .await
        .expect("start again");
    for id in &ids {
        assert_eq!(
            engine.wait(id, WAIT).await.expect("wait").status,
            SagaStatus::Completed
        );
        assert_eq!(ledger(&db, id).await, ["reserve", "notify-hub", "confirm"]);
    }
    assert_eq!(engine.list(None, 100).await.expect("list").len(), 40);
}

macro_rules! conformance {
    ($backend:ident: $($test:ident),* $(,)?) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let backend = crate::$backend().await;
                    super::$test(backend.db.clone()).await;
                }
            )*
        }
    };
}

macro_rules! suite {
    ($backend:ident) => {
        conformance!($backend:
            a_saga_runs_its_steps_in_order,
            a_failed_step_compensates_the_completed_ones_in_reverse,
            transient_errors_are_retried_within_the_budget,
            a_compensation_that_keeps_failing_parks_the_saga_until_retried,
            an_unfinished_saga_resumes_from_its_last_recorded_step,
            an_aborted_saga_compensates_after_its_current_step,
            many_sagas_run_at_once_each_in_order,
            the_alpes_rules_track_every_ending,
            a_transition_the_rules_forbid_is_flagged,
            redelivered_events_change_nothing,
            sagas_past_their_deadline_are_flagged_stuck,
            a_step_waits_for_its_signal,
            no_signal_before_the_deadline_compensates,
            a_durable_timer_fires_after_a_restart,
        );
    };
}

suite!(sqlite);
suite!(postgres);
