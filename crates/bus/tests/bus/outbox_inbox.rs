//! The outbox and inbox on a service's own database (SQLite here; PostgreSQL below).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use telar_bus::{Bus, Inbox, Outbox, Outcome};
use telar_sql::{Db, Migration, query};
use telar_testkit::Shutdown;
use tokio::sync::mpsc;

use crate::helpers::{Flaky, embedded, event, eventually, n_of, next, options};

const SERVICE_TABLES: Migration = Migration {
    version: 1,
    name: "counters",
    sqlite: "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL); INSERT INTO counters VALUES ('effects', 0);",
    postgres: "CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL); INSERT INTO counters VALUES ('effects', 0);",
};

async fn service_db(db: Db) -> Db {
    db.migrate(&[SERVICE_TABLES, Outbox::MIGRATION, Inbox::MIGRATION])
        .await
        .expect("migrate");
    db
}

async fn outbox_survives_a_broker_outage(db: Db) {
    let db = service_db(db).await;
    let t = embedded().await;
    let down = Arc::new(AtomicBool::new(true));
    let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let flaky = Bus::new(Flaky {
        inner: t.bus.clone(),
        down: down.clone(),
        refused: refused.clone(),
    });
    let (seen, mut received) = mpsc::unbounded_channel();
    let sub = t
        .bus
        .subscribe(
            "t.outbox",
            options("reader"),
            move |d: telar_bus::Delivery| {
                let seen = seen.clone();
                async move {
                    let _ = seen.send(n_of(&d.envelope));
                    Outcome::Ack
                }
            },
        )
        .await
        .expect("subscribe");
    let outbox = Outbox::new();
    let shutdown = Shutdown::new();
    let relay = tokio::spawn(outbox.relay(db.clone(), flaky).run(shutdown.signal()));

    for n in 0..10 {
        let mut tx = db.begin().await.expect("begin");
        query("UPDATE counters SET value = value + 1 WHERE name = 'effects'")
            .execute(&mut tx)
            .await
            .expect("write");
        outbox
            .append(&mut tx, &event("t.outbox", "s", n))
            .await
            .expect("append");
        outbox.commit(tx).await.expect("commit");
    }
    let mut rolled_back = db.begin().await.expect("begin");
    outbox
        .append(&mut rolled_back, &event("t.outbox", "s", 99))
        .await
        .expect("append");
    rolled_back.rollback().await.expect("rollback");

    eventually("the relay has tried and been refused", || {
        let refused = refused.load(Ordering::SeqCst);
        async move { refused >= 2 }
    })
    .await;
    let pending: i64 = query("SELECT COUNT(*) AS n FROM telar_outbox")
        .fetch_one(&db)
        .await
        .and_then(|r| r.get("n"))
        .expect("count");
    assert_eq!(
        pending, 10,
        "every committed event waits in the outbox, the rolled-back one is not there"
    );
    assert!(
        received.try_recv().is_err(),
        "nothing delivered while the broker is down"
    );
    down.store(false, Ordering::SeqCst);
    let mut got = Vec::new();
    for _ in 0..10 {
        got.push(
            next(&mut received)
                .await
                .expect("delivered after the outage"),
        );
    }
    assert_eq!(
        got,
        (0..10).collect::<Vec<_>>(),
        "all, in order, and not the rolled-back one"
    );
    eventually("the outbox is drained", || {
        let db = db.clone();
        async move {
            query("SELECT COUNT(*) AS n FROM telar_outbox")
                .fetch_one(&db)
                .await
                .and_then(|r| r.get::<i64>("n"))
                .unwrap_or(-1)
                == 0
        }
    })
    .await;
    shutdown.trigger();
    relay.await.expect("relay stops");
    sub.stop().await;
}

async fn inbox_makes_redelivery_harmless(db: Db) {
    let db = service_db(db).await;
    let t = embedded().await;
    let (done, mut finished) = mpsc::unbounded_channel();
    let handler_db = db.clone();
    let sub = t
        .bus
        .subscribe(
            "t.inbox",
            options("effects"),
            move |d: telar_bus::Delivery| {
                let db = handler_db.clone();
                let done = done.clone();
                async move {
                    let Ok(mut tx) = db.begin().await else {
                        return Outcome::retry("db");
                    };
                    match Inbox::first_time(&mut tx, &d.group, &d.envelope.id).await {
                        Ok(true) => {
                            if query("UPDATE counters SET value = value + 1 WHERE name = 'effects'")
                                .execute(&mut tx)
                                .await
                                .is_err()
                            {
                                return Outcome::retry("db");
                            }
                        }
                        Ok(false) => {}
                        Err(_) => return Outcome::retry("db"),
                    }
                    if tx.commit().await.is_err() {
                        return Outcome::retry("db");
                    }
                    let _ = done.send(d.attempt);
                    // The first time, "crash" after committing but before acknowledging.
                    if d.attempt == 1 {
                        Outcome::retry_after("lost ack", std::time::Duration::from_millis(5))
                    } else {
                        Outcome::Ack
                    }
                }
            },
        )
        .await
        .expect("subscribe");
    t.bus
        .publish(event("t.inbox", "s", 1))
        .await
        .expect("publish");
    assert_eq!(next(&mut finished).await, Some(1));
    assert_eq!(next(&mut finished).await, Some(2), "delivered again");
    sub.stop().await;
    let effects: i64 = query("SELECT value FROM counters WHERE name = 'effects'")
        .fetch_one(&db)
        .await
        .and_then(|r| r.get("value"))
        .expect("counter");
    assert_eq!(effects, 1, "the second delivery had no effect");
}

mod sqlite {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn outbox_survives_a_broker_outage() {
        let (db, _dir) = telar_testkit::sqlite_db("service").await;
        super::outbox_survives_a_broker_outage(db).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn inbox_makes_redelivery_harmless() {
        let (db, _dir) = telar_testkit::sqlite_db("service").await;
        super::inbox_makes_redelivery_harmless(db).await;
    }
}

mod postgres {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn outbox_survives_a_broker_outage() {
        super::outbox_survives_a_broker_outage(telar_testkit::postgres_db("outbox").await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn inbox_makes_redelivery_harmless() {
        super::inbox_makes_redelivery_harmless(telar_testkit::postgres_db("inbox").await).await;
    }
}
