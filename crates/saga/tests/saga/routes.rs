//! The saga admin routes and `GET /saga/logs`, on a kit service (SQLite).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use telar_kit::Service;
use telar_saga::{
    Choreography, RetryPolicy, Saga, SagaAdmin, SagaEngine, SagaStatus, Step, StepContext,
    StepError, Tracker, saga_log_routes, saga_routes,
};
use telar_types::Envelope;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sagas_are_listed_shown_retried_and_aborted_over_http() {
    let (db, _dir) = telar_testkit::sqlite_db("saga-routes").await;
    let healthy = Arc::new(AtomicBool::new(false));
    let flag = healthy.clone();
    let quick =
        RetryPolicy::attempts(1).backoff(Duration::from_millis(1), Duration::from_millis(1));
    let saga = Saga::new("transfer")
        .step(
            Step::new("reserve", |_c: StepContext| async { Ok(json!(1)) })
                .compensate(move |_c: StepContext| {
                    let flag = flag.clone();
                    async move {
                        if flag.load(Ordering::SeqCst) {
                            Ok(())
                        } else {
                            Err(StepError::transient("registry down"))
                        }
                    }
                })
                .compensation_retry(quick),
        )
        .step(Step::new("confirm", |_c: StepContext| async {
            Err::<Value, _>(StepError::permanent("refused"))
        }));
    let engine = SagaEngine::open(db.clone(), "test", [saga])
        .await
        .expect("engine");
    let id = engine.start("transfer", json!({})).await.expect("start");
    assert_eq!(
        engine
            .wait(&id, Duration::from_secs(15))
            .await
            .expect("wait")
            .status,
        SagaStatus::NeedsAttention
    );
    let tracker = Tracker::open(
        db.clone(),
        [Choreography::new("clinic")
            .allow("clinic.user.created", ["clinic.notification.sent"])
            .allow("clinic.notification.sent", [])
            .completes("clinic.notification.sent")],
    )
    .await
    .expect("tracker");
    let mut created = Envelope::new(
        "/clinic/users",
        "clinic.user.created",
        json!({"user_id": 1}),
    );
    created.correlationid = Some("u1".into());
    tracker.track(&created).await.expect("track");

    let server = telar_testkit::serve(
        Service::new("saga-admin")
            .api(saga_routes(SagaAdmin::new(db.clone())))
            .api(saga_log_routes(tracker)),
    )
    .await;
    let client = telar_testkit::client();
    let parked: Value = client
        .get(server.url("/admin/sagas?status=NeedsAttention"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(parked[0]["id"], json!(id));
    let shown: Value = client
        .get(server.url(&format!("/admin/sagas/{id}")))
        .send()
        .await
        .expect("show")
        .json()
        .await
        .expect("json");
    assert_eq!(shown["saga"]["status"], "NeedsAttention");
    assert!(
        shown["log"].as_array().is_some_and(|l| l.len() >= 2),
        "{shown}"
    );
    let missing = client
        .get(server.url("/admin/sagas/nope"))
        .send()
        .await
        .expect("show missing");
    assert_eq!(missing.status(), 404);
    let abort_parked = client
        .post(server.url(&format!("/admin/sagas/{id}/abort")))
        .send()
        .await
        .expect("abort");
    assert_eq!(
        abort_parked.status(),
        409,
        "only a running saga can be aborted"
    );

    healthy.store(true, Ordering::SeqCst);
    let retried = client
        .post(server.url(&format!("/admin/sagas/{id}/retry")))
        .send()
        .await
        .expect("retry");
    assert_eq!(retried.status(), 202);
    // The engine in this process picks the change up at its next scan.
    let scanner = engine.clone();
    let stop = Arc::new(tokio::sync::Notify::new());
    let halt = stop.clone();
    let scanning =
        tokio::spawn(scanner.run(
            Duration::from_millis(20),
            async move { halt.notified().await },
        ));
    assert_eq!(
        engine
            .wait(&id, Duration::from_secs(15))
            .await
            .expect("wait")
            .status,
        SagaStatus::Compensated
    );
    stop.notify_one();
    scanning.await.expect("scanner");

    let logs: Value = client
        .get(server.url("/saga/logs?saga_id=u1&status=PROCESSED"))
        .send()
        .await
        .expect("saga logs")
        .json()
        .await
        .expect("json");
    assert_eq!(logs[0]["event_type"], "clinic.user.created");
    assert_eq!(logs[0]["data"]["user_id"], 1);
    assert_eq!(logs[0]["topic"], "clinic.user");
    assert_eq!(logs[0]["status"], "PROCESSED");
    let bad = client
        .get(server.url("/saga/logs?colour=red"))
        .send()
        .await
        .expect("bad query");
    assert_eq!(bad.status(), 400, "unknown filters are refused");
    server.shutdown.trigger();
}
