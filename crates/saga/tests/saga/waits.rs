//! Steps that wait for a signal or a durable timer.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use telar_saga::{Saga, SagaEngine, SagaStatus, Step};
use telar_sql::Db;

use super::{WAIT, ledger, recording};

fn scanning(engine: &SagaEngine) -> (Arc<tokio::sync::Notify>, tokio::task::JoinHandle<()>) {
    let stop = Arc::new(tokio::sync::Notify::new());
    let halt = stop.clone();
    let task = tokio::spawn(engine.clone().run(Duration::from_millis(20), async move {
        halt.notified().await
    }));
    (stop, task)
}

pub async fn a_step_waits_for_its_signal(db: Db) {
    let saga = Saga::new("transfer")
        .step(recording(&db, "reserve"))
        .step(Step::wait_for(
            "await-ack",
            "transfer.acknowledged",
            Duration::from_secs(60),
        ))
        .step(recording(&db, "confirm"));
    let engine = SagaEngine::open(db.clone(), "test", [saga])
        .await
        .expect("engine");
    let id = engine.start("transfer", json!({})).await.expect("start");
    // It stops at the wait: still running, nothing after it done.
    let waiting = engine
        .wait(&id, Duration::from_millis(300))
        .await
        .expect("wait");
    assert_eq!(waiting.status, SagaStatus::Running);
    assert_eq!(ledger(&db, &id).await, ["reserve"]);
    engine
        .signal(&id, "transfer.acknowledged", json!({"operator": "op-2"}))
        .await
        .expect("signal");
    let done = engine.wait(&id, WAIT).await.expect("wait");
    assert_eq!(done.status, SagaStatus::Completed);
    assert_eq!(done.outputs["await-ack"], json!({"operator": "op-2"}));
    assert_eq!(ledger(&db, &id).await, ["reserve", "confirm"]);
}

pub async fn no_signal_before_the_deadline_compensates(db: Db) {
    let saga = Saga::new("transfer")
        .step(recording(&db, "reserve"))
        .step(Step::wait_for(
            "await-ack",
            "transfer.acknowledged",
            Duration::from_millis(50),
        ));
    let engine = SagaEngine::open(db.clone(), "test", [saga])
        .await
        .expect("engine");
    let (stop, task) = scanning(&engine);
    let id = engine.start("transfer", json!({})).await.expect("start");
    let done = engine.wait(&id, WAIT).await.expect("wait");
    stop.notify_one();
    task.await.expect("scanner");
    assert_eq!(done.status, SagaStatus::Compensated);
    assert!(
        done.reason
            .as_deref()
            .is_some_and(|r| r.contains("no transfer.acknowledged within 50 ms")),
        "{:?}",
        done.reason
    );
    assert_eq!(ledger(&db, &id).await, ["reserve", "undo reserve"]);
}

pub async fn a_durable_timer_fires_after_a_restart(db: Db) {
    let definition = |db: &Db| {
        Saga::new("cool-off")
            .step(recording(db, "reserve"))
            .step(Step::sleep("cool-off", Duration::from_millis(150)))
            .step(recording(db, "release"))
    };
    let first = SagaEngine::open(db.clone(), "node-1", [definition(&db)])
        .await
        .expect("engine");
    let id = first.start("cool-off", json!({})).await.expect("start");
    assert_eq!(
        first
            .wait(&id, Duration::from_millis(100))
            .await
            .expect("wait")
            .status,
        SagaStatus::Running
    );
    drop(first);
    // The process restarts: a new engine of the same instance finds the stored deadline.
    let second = SagaEngine::open(db.clone(), "node-1", [definition(&db)])
        .await
        .expect("engine");
    let (stop, task) = scanning(&second);
    let done = second.wait(&id, WAIT).await.expect("wait");
    stop.notify_one();
    task.await.expect("scanner");
    assert_eq!(done.status, SagaStatus::Completed);
    assert_eq!(ledger(&db, &id).await, ["reserve", "release"]);
}
