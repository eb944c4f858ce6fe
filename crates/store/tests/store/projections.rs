//! Projections and the store's relay, on both backends.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde_json::json;
use telar_sql::{Tx, query};
use telar_store::{
    EventStore, ExpectedVersion, NewEvent, OnError, Projection, ProjectionStatus, Projector,
    RecordedEvent, StoreRelay,
};

/// Documents per folder: `folder_counts(stream, documents)`.
struct Counts;

impl Projection for Counts {
    fn name(&self) -> &str {
        "folder-counts"
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut Tx,
        event: &'a RecordedEvent,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            if event.ty != "Uploaded" {
                return Ok(());
            }
            if event
                .data
                .get("document")
                .and_then(|d| d.as_str())
                .is_none()
            {
                return Err("Uploaded without a document".into());
            }
            query(
                "INSERT INTO folder_counts (stream, documents) VALUES ($1, 1)
                 ON CONFLICT (stream) DO UPDATE SET documents = folder_counts.documents + 1",
            )
            .bind(&event.stream)
            .execute(tx)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
        })
    }

    fn reset<'a>(&'a self, tx: &'a mut Tx) -> BoxFuture<'a, telar_store::Result<()>> {
        Box::pin(async move {
            query("DELETE FROM folder_counts").execute(tx).await?;
            Ok(())
        })
    }
}

async fn counts(store: &EventStore) -> Vec<(String, i64)> {
    query("SELECT stream, documents FROM folder_counts ORDER BY stream")
        .fetch_all(store.db())
        .await
        .expect("read model")
        .iter()
        .map(|r| {
            (
                r.get("stream").expect("stream"),
                r.get("documents").expect("documents"),
            )
        })
        .collect()
}

async fn prepare(store: &EventStore) {
    query("CREATE TABLE IF NOT EXISTS folder_counts (stream TEXT PRIMARY KEY, documents BIGINT NOT NULL)")
        .execute(store.db())
        .await
        .expect("read model table");
}

async fn upload(store: &EventStore, stream: &str, document: &str) {
    store
        .append(
            stream,
            ExpectedVersion::Any,
            vec![NewEvent::new("Uploaded", json!({"document": document}))],
        )
        .await
        .expect("append");
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub async fn a_projection_follows_live_and_rebuilds(store: EventStore) {
    prepare(&store).await;
    upload(&store, "folder-a", "cedula").await;
    let projector = Projector::new(store.clone(), store.db().clone(), Counts)
        .await
        .expect("projector");
    let stop = Arc::new(tokio::sync::Notify::new());
    let halt = stop.clone();
    let running = tokio::spawn(projector.clone().run(async move { halt.notified().await }));
    upload(&store, "folder-a", "diploma").await;
    upload(&store, "folder-b", "acta").await;
    eventually("the read model caught up", || {
        let store = store.clone();
        async move { counts(&store).await == [("folder-a".into(), 2), ("folder-b".into(), 1)] }
    })
    .await;
    stop.notify_one();
    running.await.expect("projector task");
    // Damage the read model; a rebuild starts from zero and gets it right.
    query("UPDATE folder_counts SET documents = 99")
        .execute(store.db())
        .await
        .expect("damage");
    let seen = Arc::new(AtomicUsize::new(0));
    let progress = seen.clone();
    let rebuilt = projector
        .rebuild(move |_| {
            progress.fetch_add(1, Ordering::SeqCst);
        })
        .await
        .expect("rebuild");
    assert_eq!(rebuilt.events, 3);
    assert!(seen.load(Ordering::SeqCst) >= 1, "progress reported");
    assert_eq!(
        counts(&store).await,
        [("folder-a".into(), 2), ("folder-b".into(), 1)]
    );
}

pub async fn two_runners_of_one_projection_apply_each_event_once(store: EventStore) {
    prepare(&store).await;
    for n in 0..40 {
        upload(&store, &format!("folder-{}", n % 4), &format!("d{n}")).await;
    }
    let first = Projector::new(store.clone(), store.db().clone(), Counts)
        .await
        .expect("projector");
    let second = first.clone();
    let (a, b) = tokio::join!(first.catch_up(|_| {}), second.catch_up(|_| {}));
    // One of them may lose the checkpoint race (a conflict): its transaction rolled back.
    assert!(a.is_ok() || b.is_ok());
    first.catch_up(|_| {}).await.expect("finish");
    let total: i64 = counts(&store).await.iter().map(|(_, n)| n).sum();
    assert_eq!(total, 40, "every event applied exactly once");
}

pub async fn a_bad_event_stops_the_projection_and_says_where(store: EventStore) {
    prepare(&store).await;
    upload(&store, "folder-x", "ok").await;
    let bad = store
        .append(
            "folder-x",
            ExpectedVersion::Any,
            vec![NewEvent::new("Uploaded", json!({"oops": true}))],
        )
        .await
        .expect("append");
    upload(&store, "folder-x", "after").await;
    let projector = Projector::new(store.clone(), store.db().clone(), Counts)
        .await
        .expect("projector");
    projector.catch_up(|_| {}).await.expect("catch up");
    assert_eq!(
        projector.status(),
        ProjectionStatus::Stopped {
            position: bad.position,
            reason: "Uploaded without a document".into()
        }
    );
    let ready = (projector.readiness())().await;
    assert!(
        ready
            .as_ref()
            .is_err_and(|e| e.contains(&bad.position.to_string())),
        "{ready:?}"
    );
    assert_eq!(
        counts(&store).await,
        [("folder-x".into(), 1)],
        "stopped before the bad event"
    );
    let skipping = projector.on_error(OnError::Skip);
    skipping.catch_up(|_| {}).await.expect("catch up, skipping");
    assert_eq!(counts(&store).await, [("folder-x".into(), 2)]);
    assert!(matches!(
        skipping.status(),
        ProjectionStatus::Running { .. }
    ));
}

pub async fn the_relay_publishes_in_order_and_survives_an_outage(store: EventStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let bus = telar_bus::Bus::new(
        telar_bus::EmbeddedBus::open(&telar_bus::EmbeddedConfig {
            path: dir.path().join("bus.db"),
            ..telar_bus::EmbeddedConfig::default()
        })
        .await
        .expect("bus"),
    );
    let (seen, mut received) = tokio::sync::mpsc::unbounded_channel();
    let sub = bus
        .subscribe(
            "Uploaded",
            telar_bus::SubscribeOptions::group("relay-test"),
            move |d: telar_bus::Delivery| {
                let seen = seen.clone();
                async move {
                    let _ = seen.send((
                        d.envelope.data.clone().unwrap_or_default()["document"].clone(),
                        d.envelope.extensions.get("position").cloned(),
                        d.envelope.subject.clone(),
                    ));
                    telar_bus::Outcome::Ack
                }
            },
        )
        .await
        .expect("subscribe");
    let down = Arc::new(AtomicBool::new(true));
    let refused = Arc::new(AtomicUsize::new(0));
    let relay_bus = bus.clone();
    let (flag, count) = (down.clone(), refused.clone());
    let relay = StoreRelay::new(
        store.clone(),
        "bus",
        "/test/folders",
        Box::new(move |batch| {
            let (bus, flag, count) = (relay_bus.clone(), flag.clone(), count.clone());
            Box::pin(async move {
                if flag.load(Ordering::SeqCst) {
                    count.fetch_add(1, Ordering::SeqCst);
                    return Err("bus unreachable".into());
                }
                bus.publish_batch(batch).await.map_err(|e| e.to_string())
            })
        }),
    )
    .await
    .expect("relay");
    let stop = Arc::new(tokio::sync::Notify::new());
    let halt = stop.clone();
    let running = tokio::spawn(relay.run(async move { halt.notified().await }));
    for n in 0..5 {
        upload(&store, "folder-r", &format!("d{n}")).await;
    }
    eventually("the relay tried while the bus was down", || {
        let refused = refused.load(Ordering::SeqCst);
        async move { refused >= 1 }
    })
    .await;
    down.store(false, Ordering::SeqCst);
    let mut positions = Vec::new();
    for n in 0..5 {
        let next = tokio::time::timeout(Duration::from_secs(15), received.recv())
            .await
            .expect("delivered after the outage")
            .expect("channel");
        assert_eq!(next.0, json!(format!("d{n}")), "in append order");
        assert_eq!(
            next.2.as_deref(),
            Some("folder-r"),
            "the stream is the subject"
        );
        positions.push(next.1.and_then(|p| p.as_i64()).expect("position extension"));
    }
    assert!(positions.windows(2).all(|w| w[0] < w[1]));
    stop.notify_one();
    running.await.expect("relay task");

    // A restart: events appended while no relay ran are published by the next one, and the
    // ones already published are not published again.
    for n in 5..8 {
        upload(&store, "folder-r", &format!("d{n}")).await;
    }
    let relay_bus = bus.clone();
    let restarted = StoreRelay::new(
        store.clone(),
        "bus",
        "/test/folders",
        Box::new(move |batch| {
            let bus = relay_bus.clone();
            Box::pin(async move { bus.publish_batch(batch).await.map_err(|e| e.to_string()) })
        }),
    )
    .await
    .expect("relay after a restart");
    assert_eq!(
        restarted.catch_up().await.expect("catch up"),
        3,
        "only what was not published"
    );
    for n in 5..8 {
        let next = tokio::time::timeout(Duration::from_secs(15), received.recv())
            .await
            .expect("delivered after the restart")
            .expect("channel");
        assert_eq!(next.0, json!(format!("d{n}")));
    }
    sub.stop().await;
}
