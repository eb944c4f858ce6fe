use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use telar_bus::{DeadLetterFilter, Outcome, RetryPolicy};
use tokio::sync::{Notify, mpsc};

use crate::helpers::{TestBus, dead_letters, event, eventually, n_of, next, options};

async fn publish_then_consume(t: TestBus) {
    let (seen, mut received) = mpsc::unbounded_channel();
    let sub = t
        .bus
        .subscribe(
            "carpeta.citizen.*",
            options("read-models"),
            move |d: telar_bus::Delivery| {
                let seen = seen.clone();
                async move {
                    let _ = seen.send((d.envelope.ty.clone(), n_of(&d.envelope), d.attempt));
                    Outcome::Ack
                }
            },
        )
        .await
        .expect("subscribe");
    for n in 0..3 {
        t.bus
            .publish(event("carpeta.citizen.registered", &format!("c{n}"), n))
            .await
            .expect("publish");
    }
    t.bus
        .publish(event("carpeta.document.uploaded", "d", 9))
        .await
        .expect("publish");
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(next(&mut received).await.expect("delivery"));
    }
    got.sort();
    assert_eq!(got.iter().map(|g| g.1).collect::<Vec<_>>(), [0, 1, 2]);
    assert!(
        got.iter()
            .all(|g| g.0 == "carpeta.citizen.registered" && g.2 == 1)
    );
    sub.stop().await;
    assert!(
        received.try_recv().is_err(),
        "the non-matching topic was not delivered"
    );
}

async fn groups_fan_out_and_consumers_share(t: TestBus) {
    let total = 60u64;
    let in_a: Arc<Mutex<Vec<(usize, u64)>>> = Arc::default();
    let second_got_one = Arc::new(Notify::new());
    let held = Arc::new(AtomicBool::new(false));
    let mut subs = Vec::new();
    for consumer in 0..2usize {
        let in_a = in_a.clone();
        let second_got_one = second_got_one.clone();
        let held = held.clone();
        subs.push(
            t.bus
                .subscribe(
                    "t.fan",
                    options("a").max_in_flight(1),
                    move |d: telar_bus::Delivery| {
                        let in_a = in_a.clone();
                        let second_got_one = second_got_one.clone();
                        let held = held.clone();
                        async move {
                            in_a.lock()
                                .map(|mut v| v.push((consumer, n_of(&d.envelope))))
                                .ok();
                            if consumer == 0 {
                                // Consumer 0 holds its first message until consumer 1 has worked:
                                // the group must hand the rest to consumer 1. Later messages
                                // pass straight through.
                                if !held.swap(true, Ordering::SeqCst) {
                                    second_got_one.notified().await;
                                }
                            } else {
                                second_got_one.notify_waiters();
                                second_got_one.notify_one();
                            }
                            Outcome::Ack
                        }
                    },
                )
                .await
                .expect("subscribe a"),
        );
    }
    let in_b: Arc<Mutex<Vec<u64>>> = Arc::default();
    let sink = in_b.clone();
    subs.push(
        t.bus
            .subscribe("t.fan", options("b"), move |d: telar_bus::Delivery| {
                let sink = sink.clone();
                async move {
                    sink.lock().map(|mut v| v.push(n_of(&d.envelope))).ok();
                    Outcome::Ack
                }
            })
            .await
            .expect("subscribe b"),
    );
    let batch = (0..total)
        .map(|n| event("t.fan", &format!("s{n}"), n))
        .collect();
    t.bus.publish_batch(batch).await.expect("publish");
    eventually("both groups have everything", || {
        let a = in_a.lock().map(|v| v.len()).unwrap_or(0);
        let b = in_b.lock().map(|v| v.len()).unwrap_or(0);
        async move { a as u64 >= total && b as u64 >= total }
    })
    .await;
    for sub in subs {
        sub.stop().await;
    }
    let a = in_a.lock().map(|v| v.clone()).unwrap_or_default();
    let unique: BTreeSet<u64> = a.iter().map(|(_, n)| *n).collect();
    assert_eq!(a.len() as u64, total, "each message once per group");
    assert_eq!(unique.len() as u64, total);
    assert!(
        a.iter().any(|(c, _)| *c == 1) && a.iter().any(|(c, _)| *c == 0),
        "both consumers worked"
    );
    let b: BTreeSet<u64> = in_b
        .lock()
        .map(|v| v.iter().copied().collect())
        .unwrap_or_default();
    assert_eq!(
        b.len() as u64,
        total,
        "the other group got every message too"
    );
}

async fn order_per_subject_under_concurrent_publishers(t: TestBus) {
    let seen: Arc<Mutex<HashMap<String, Vec<u64>>>> = Arc::default();
    let mut subs = Vec::new();
    for _ in 0..2 {
        let seen = seen.clone();
        subs.push(
            t.bus
                .subscribe(
                    "t.order",
                    options("ordered").max_in_flight(8),
                    move |d: telar_bus::Delivery| {
                        let seen = seen.clone();
                        async move {
                            // Uneven handler times would reorder anything not ordered by design.
                            // Uneven handler times would reorder anything not ordered by design.
                            let pause = rand::random_range(0..3u64);
                            tokio::time::sleep(Duration::from_millis(pause)).await;
                            let subject = d.envelope.subject.clone().unwrap_or_default();
                            seen.lock()
                                .map(|mut m| m.entry(subject).or_default().push(n_of(&d.envelope)))
                                .ok();
                            Outcome::Ack
                        }
                    },
                )
                .await
                .expect("subscribe"),
        );
    }
    let publishers = (0..4).map(|p| {
        let bus = t.bus.clone();
        tokio::spawn(async move {
            // Batches of 8: each subject has a backlog the consumers must not reorder.
            for first in (0..40).step_by(8) {
                let batch = (first..first + 8)
                    .map(|n| event("t.order", &format!("subject-{p}"), n))
                    .collect();
                bus.publish_batch(batch).await.expect("publish");
            }
        })
    });
    for publisher in futures::future::join_all(publishers).await {
        publisher.expect("publisher");
    }
    eventually("all 160 delivered", || {
        let count: usize = seen
            .lock()
            .map(|m| m.values().map(Vec::len).sum())
            .unwrap_or(0);
        async move { count >= 160 }
    })
    .await;
    for sub in subs {
        sub.stop().await;
    }
    let seen = seen.lock().map(|m| m.clone()).unwrap_or_default();
    for (subject, ns) in seen {
        assert_eq!(
            ns,
            (0..40).collect::<Vec<_>>(),
            "{subject} delivered in publish order"
        );
    }
}

async fn unacked_messages_are_redelivered_after_the_lease(t: TestBus) {
    let lease_options = || {
        options("g")
            .lease(Duration::from_millis(300))
            .handler_timeout(Duration::from_millis(250))
    };
    let (first, mut got_first) = mpsc::unbounded_channel();
    let crashed = t
        .bus
        .subscribe("t.lease", lease_options(), move |d: telar_bus::Delivery| {
            let first = first.clone();
            async move {
                let _ = first.send(d.attempt);
                // Never finishes: the consumer "crashes" while holding the message.
                std::future::pending::<Outcome>().await
            }
        })
        .await
        .expect("subscribe");
    t.bus
        .publish(event("t.lease", "s", 1))
        .await
        .expect("publish");
    assert_eq!(next(&mut got_first).await, Some(1));
    crashed.abort();

    // The same service restarted: same group, same settings.
    let (again, mut got_again) = mpsc::unbounded_channel();
    let sub = t
        .bus
        .subscribe("t.lease", lease_options(), move |d: telar_bus::Delivery| {
            let again = again.clone();
            async move {
                let _ = again.send((n_of(&d.envelope), d.attempt));
                Outcome::Ack
            }
        })
        .await
        .expect("subscribe again");
    assert_eq!(
        next(&mut got_again).await,
        Some((1, 2)),
        "same message, second attempt"
    );
    sub.stop().await;
}

async fn retries_then_dead_letters_with_history(t: TestBus) {
    let attempts = Arc::new(AtomicUsize::new(0));
    let counter = attempts.clone();
    let policy = RetryPolicy {
        max_attempts: 3,
        initial_backoff_ms: 10,
        max_backoff_ms: 20,
    };
    let sub = t
        .bus
        .subscribe(
            "t.retry",
            options("flaky").policy(policy),
            move |_d: telar_bus::Delivery| {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    Outcome::retry("hub answered 503")
                }
            },
        )
        .await
        .expect("subscribe");
    let envelope = event("t.retry", "s", 7);
    let id = envelope.id.clone();
    t.bus.publish(envelope).await.expect("publish");
    eventually("the message is dead-lettered", || {
        let bus = t.bus.clone();
        async move { !dead_letters(&bus, "flaky").await.is_empty() }
    })
    .await;
    sub.stop().await;
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        3,
        "exactly max_attempts deliveries"
    );
    let letters = dead_letters(&t.bus, "flaky").await;
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.message_id, id);
    assert_eq!(letter.attempts, 3);
    assert!(
        letter.last_error.contains("hub answered 503"),
        "{}",
        letter.last_error
    );
    assert_eq!(
        letter.history.iter().map(|a| a.attempt).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(letter.envelope["data"]["n"], 7);
    let shown = t.bus.dead_letter(letter.id).await.expect("show");
    assert_eq!(shown.id, letter.id);
}

async fn dead_letters_replay_and_purge(t: TestBus) {
    let healthy = Arc::new(AtomicBool::new(false));
    let (done, mut delivered) = mpsc::unbounded_channel();
    let flag = healthy.clone();
    let sub = t
        .bus
        .subscribe("t.replay", options("r"), move |d: telar_bus::Delivery| {
            let flag = flag.clone();
            let done = done.clone();
            async move {
                if flag.load(Ordering::SeqCst) {
                    let _ = done.send((n_of(&d.envelope), d.attempt));
                    Outcome::Ack
                } else {
                    Outcome::reject("downstream refused")
                }
            }
        })
        .await
        .expect("subscribe");
    for n in 0..3 {
        t.bus
            .publish(event("t.replay", &format!("s{n}"), n))
            .await
            .expect("publish");
    }
    eventually("three dead letters", || {
        let bus = t.bus.clone();
        async move { dead_letters(&bus, "r").await.len() == 3 }
    })
    .await;
    let letters = dead_letters(&t.bus, "r").await;
    assert_eq!(letters[0].attempts, 1, "a rejection is not retried");
    healthy.store(true, Ordering::SeqCst);
    assert_eq!(
        t.bus
            .replay(DeadLetterFilter::one(letters[0].id))
            .await
            .expect("replay one"),
        1
    );
    let n_of_letter = |i: usize| {
        letters[i].envelope["data"]["n"]
            .as_u64()
            .unwrap_or(u64::MAX)
    };
    assert_eq!(
        next(&mut delivered).await,
        Some((n_of_letter(0), 1)),
        "replayed with fresh attempts"
    );
    assert_eq!(
        t.bus
            .purge(DeadLetterFilter::one(letters[1].id))
            .await
            .expect("purge"),
        1
    );
    assert_eq!(
        t.bus
            .replay(DeadLetterFilter::group("r"))
            .await
            .expect("replay rest"),
        1
    );
    assert_eq!(
        next(&mut delivered).await,
        Some((n_of_letter(2), 1)),
        "the purged one stays gone"
    );
    assert!(dead_letters(&t.bus, "r").await.is_empty());
    sub.stop().await;
}

async fn published_messages_survive_a_restart(t: TestBus) {
    let sub = t
        .bus
        .subscribe(
            "t.durable",
            // Short lease: if the dying consumer managed to claim before it was aborted, the
            // messages come back quickly after the restart (as they would after a crash).
            options("d")
                .lease(Duration::from_millis(500))
                .handler_timeout(Duration::from_millis(400)),
            |_d: telar_bus::Delivery| async { Outcome::retry("not now") },
        )
        .await
        .expect("register");
    sub.abort();
    for n in 0..5 {
        t.bus
            .publish(event("t.durable", "s", n))
            .await
            .expect("publish");
    }
    // A real restart: the first bus (and its writer) is gone before the file is reopened.
    t.bus.close().await;
    let reopened = (t.reopen)().await;
    let (sub, mut received) = crate::helpers::ack_all(&reopened, "t.durable", options("d")).await;
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(next(&mut received).await.expect("delivery after restart"));
    }
    assert_eq!(got, [0, 1, 2, 3, 4]);
    sub.stop().await;
}

async fn poison_messages_go_to_dead_letters_and_the_consumer_goes_on(t: TestBus) {
    let (ok, mut acked) = mpsc::unbounded_channel();
    let sub = t
        .bus
        .subscribe("t.poison", options("p"), move |d: telar_bus::Delivery| {
            let ok = ok.clone();
            async move {
                let n = n_of(&d.envelope);
                assert!(n != 13, "unlucky number");
                let _ = ok.send(n);
                Outcome::Ack
            }
        })
        .await
        .expect("subscribe");
    t.bus
        .publish(event("t.poison", "a", 13))
        .await
        .expect("publish");
    t.bus
        .publish(event("t.poison", "b", 14))
        .await
        .expect("publish");
    assert_eq!(next(&mut acked).await, Some(14), "the consumer kept going");
    eventually("the panicking message is dead-lettered", || {
        let bus = t.bus.clone();
        async move { dead_letters(&bus, "p").await.len() == 1 }
    })
    .await;
    let letter = &dead_letters(&t.bus, "p").await[0];
    assert!(
        letter.last_error.contains("panicked") && letter.last_error.contains("unlucky"),
        "{}",
        letter.last_error
    );
    sub.stop().await;
}

async fn duplicate_publishes_are_delivered_once(t: TestBus) {
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    let (done, mut finished) = mpsc::unbounded_channel();
    let sub = t
        .bus
        .subscribe("t.dup", options("once"), move |d: telar_bus::Delivery| {
            let counter = counter.clone();
            let done = done.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                let _ = done.send(n_of(&d.envelope));
                Outcome::Ack
            }
        })
        .await
        .expect("subscribe");
    let envelope = event("t.dup", "s", 1);
    t.bus.publish(envelope.clone()).await.expect("publish");
    t.bus.publish(envelope).await.expect("publish again");
    t.bus
        .publish(event("t.dup", "s", 2))
        .await
        .expect("publish marker");
    assert_eq!(next(&mut finished).await, Some(1));
    assert_eq!(
        next(&mut finished).await,
        Some(2),
        "the marker comes right after: no duplicate in between"
    );
    sub.stop().await;
    assert_eq!(count.load(Ordering::SeqCst), 2);
}

async fn in_flight_is_bounded(t: TestBus) {
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let handled = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (started, mut starts) = mpsc::unbounded_channel();
    let (r, p, h, g) = (running.clone(), peak.clone(), handled.clone(), gate.clone());
    let sub = t
        .bus
        .subscribe(
            "t.slow",
            options("slow").max_in_flight(4),
            move |_d: telar_bus::Delivery| {
                let (running, peak, handled, gate, started) =
                    (r.clone(), p.clone(), h.clone(), g.clone(), started.clone());
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    let _ = started.send(());
                    if let Ok(permit) = gate.acquire().await {
                        permit.forget();
                    }
                    running.fetch_sub(1, Ordering::SeqCst);
                    handled.fetch_add(1, Ordering::SeqCst);
                    Outcome::Ack
                }
            },
        )
        .await
        .expect("subscribe");
    t.bus
        .publish_batch(
            (0..20)
                .map(|n| event("t.slow", &format!("s{n}"), n))
                .collect(),
        )
        .await
        .expect("publish");
    for _ in 0..4 {
        next(&mut starts).await.expect("a handler started");
    }
    // The window is full and every handler is blocked: nothing else may start.
    tokio::task::yield_now().await;
    assert_eq!(running.load(Ordering::SeqCst), 4);
    gate.add_permits(20);
    eventually("all 20 handled", || {
        let handled = handled.load(Ordering::SeqCst);
        async move { handled == 20 }
    })
    .await;
    sub.stop().await;
    assert_eq!(
        peak.load(Ordering::SeqCst),
        4,
        "never more than max_in_flight at once"
    );
}

macro_rules! conformance {
    ($backend:ident: $($test:ident),* $(,)?) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let mut bus = crate::helpers::$backend().await;
                    let cleanup = bus.cleanup.take();
                    super::$test(bus).await;
                    if let Some(cleanup) = cleanup {
                        cleanup().await;
                    }
                }
            )*
        }
    };
}

/// Every conformance test, for one backend.
macro_rules! suite {
    ($backend:ident) => {
        conformance!($backend:
            publish_then_consume,
            groups_fan_out_and_consumers_share,
            order_per_subject_under_concurrent_publishers,
            unacked_messages_are_redelivered_after_the_lease,
            retries_then_dead_letters_with_history,
            dead_letters_replay_and_purge,
            published_messages_survive_a_restart,
            poison_messages_go_to_dead_letters_and_the_consumer_goes_on,
            duplicate_publishes_are_delivered_once,
            in_flight_is_bounded,
        );
    };
}

suite!(embedded);
suite!(nats);
suite!(rabbitmq);

#[tokio::test]
async fn options_that_would_double_deliver_are_refused() {
    let t = crate::helpers::embedded().await;
    let handler = |_d: telar_bus::Delivery| async { Outcome::Ack };
    let slow = options("g")
        .lease(Duration::from_secs(1))
        .handler_timeout(Duration::from_secs(2));
    let error = t
        .bus
        .subscribe("t.x", slow, handler)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("handler_timeout"), "{error}");
    let unnamed = t
        .bus
        .subscribe("t.x", options(" "), handler)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(unnamed.contains("group"), "{unnamed}");
    let dotted = t
        .bus
        .subscribe("t.x", options("read.models"), handler)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(dotted.contains("read.models"), "{dotted}");
    let pattern = t
        .bus
        .subscribe("t..x", options("g"), handler)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(pattern.contains("t..x"), "{pattern}");
}

/// An envelope that does not decode (written by something other than telar) is dead-lettered
/// with the reason, and the consumer goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_envelopes_are_dead_lettered() {
    let t = crate::helpers::embedded().await;
    let (sub, mut acked) = crate::helpers::ack_all(&t.bus, "t.raw", options("raw")).await;
    let path = t.path.clone().expect("embedded bus file");
    let db = telar_sql::Db::sqlite(&path, &telar_sql::SqliteConfig::default())
        .await
        .expect("open file");
    telar_sql::query("INSERT INTO bus_messages (id, topic, subject, envelope, published_at) VALUES ('garbage-1', 't.raw', 'g', X'7B6E6F74', 0)")
        .execute(&db)
        .await
        .expect("insert message");
    t.bus
        .publish(event("t.raw", "h", 5))
        .await
        .expect("publish");
    assert_eq!(next(&mut acked).await, Some(5), "the consumer kept going");
    eventually("the garbage is dead-lettered", || {
        let bus = t.bus.clone();
        async move { dead_letters(&bus, "raw").await.len() == 1 }
    })
    .await;
    let letter = &dead_letters(&t.bus, "raw").await[0];
    assert!(
        letter.last_error.contains("undecodable"),
        "{}",
        letter.last_error
    );
    assert_eq!(
        letter.envelope,
        serde_json::Value::String("{not".into()),
        "raw bytes kept for inspection"
    );
    sub.stop().await;
}

async fn messages_in_log(t: &TestBus) -> i64 {
    let path = t.path.clone().expect("embedded bus file");
    let db = telar_sql::Db::sqlite(&path, &telar_sql::SqliteConfig::default())
        .await
        .expect("open file");
    telar_sql::query("SELECT COUNT(*) AS n FROM bus_messages")
        .fetch_one(&db)
        .await
        .and_then(|row| row.get("n"))
        .expect("count")
}

/// Finished messages leave the log after the retention; pending ones and dead letters stay, and
/// a dead letter whose message was collected still replays with its envelope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_forgets_finished_messages_but_not_dead_letters() {
    let t = crate::helpers::embedded_with(|config| {
        config.retention_secs = 0;
        config.gc_interval_secs = 0;
    })
    .await;
    let fail = Arc::new(AtomicBool::new(true));
    let flag = fail.clone();
    let (seen, mut received) = mpsc::unbounded_channel();
    let sub = t
        .bus
        .subscribe("t.gc", options("gc"), move |d: telar_bus::Delivery| {
            let (flag, seen) = (flag.clone(), seen.clone());
            async move {
                let n = n_of(&d.envelope);
                if n == 0 && flag.load(Ordering::SeqCst) {
                    return Outcome::reject("not yet");
                }
                let _ = seen.send(n);
                Outcome::Ack
            }
        })
        .await
        .expect("subscribe");
    for n in 0..5 {
        t.bus
            .publish(event("t.gc", &format!("s{n}"), n))
            .await
            .expect("publish");
    }
    for _ in 0..4 {
        next(&mut received).await.expect("delivered");
    }
    eventually("message 0 is dead-lettered", || {
        let bus = t.bus.clone();
        async move { dead_letters(&bus, "gc").await.len() == 1 }
    })
    .await;
    // Each later batch runs the collector (interval 0): publish once more to trigger it.
    t.bus
        .publish(event("t.gc", "s9", 9))
        .await
        .expect("publish");
    assert_eq!(next(&mut received).await, Some(9));
    t.bus
        .publish(event("t.gc", "s10", 10))
        .await
        .expect("publish");
    assert_eq!(next(&mut received).await, Some(10));
    eventually("finished messages are collected", || {
        let t = &t;
        async move { messages_in_log(t).await <= 1 }
    })
    .await;
    fail.store(false, Ordering::SeqCst);
    assert_eq!(
        t.bus
            .replay(DeadLetterFilter::group("gc"))
            .await
            .expect("replay"),
        1
    );
    assert_eq!(
        next(&mut received).await,
        Some(0),
        "replayed from the dead letter's copy"
    );
    sub.stop().await;
}

/// `telar dlq replay` runs in its own process, on the same file: the running consumers pick the
/// replayed messages up (within about a second) without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_from_another_process_reaches_the_running_consumers() {
    let t = crate::helpers::embedded().await;
    let healthy = Arc::new(AtomicBool::new(false));
    let (done, mut delivered) = mpsc::unbounded_channel();
    let flag = healthy.clone();
    let sub = t
        .bus
        .subscribe("t.cli", options("cli"), move |d: telar_bus::Delivery| {
            let (flag, done) = (flag.clone(), done.clone());
            async move {
                if flag.load(Ordering::SeqCst) {
                    let _ = done.send(n_of(&d.envelope));
                    Outcome::Ack
                } else {
                    Outcome::reject("not yet")
                }
            }
        })
        .await
        .expect("subscribe");
    t.bus
        .publish(event("t.cli", "s", 42))
        .await
        .expect("publish");
    eventually("dead-lettered", || {
        let bus = t.bus.clone();
        async move { dead_letters(&bus, "cli").await.len() == 1 }
    })
    .await;
    healthy.store(true, Ordering::SeqCst);
    let path = t.path.clone().expect("embedded bus file");
    let other = telar_bus::Bus::new(
        telar_bus::EmbeddedBus::open(&telar_bus::EmbeddedConfig {
            path,
            ..telar_bus::EmbeddedConfig::default()
        })
        .await
        .expect("a second process opens the file"),
    );
    assert_eq!(
        other
            .replay(DeadLetterFilter::group("cli"))
            .await
            .expect("replay"),
        1
    );
    other.close().await;
    assert_eq!(next(&mut delivered).await, Some(42));
    sub.stop().await;
}

/// On NATS, where anything may publish to the stream: a message that is not JSON, and one that
/// is JSON with a subject but no envelope, are both dead-lettered with the reason, and the
/// consumer goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_messages_that_are_not_envelopes_are_dead_lettered() {
    let name = telar_testkit::unique_name("t");
    let url =
        std::env::var("TELAR_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let config = telar_bus::NatsConfig {
        url: url.clone(),
        stream: name.to_uppercase(),
        subject_prefix: name.clone(),
        max_age_secs: 600,
        ..telar_bus::NatsConfig::default()
    };
    let store = telar_testkit::postgres_db("bus_nats").await;
    let nats = telar_bus::NatsBus::open(&config, store)
        .await
        .expect("open NATS bus");
    let bus = telar_bus::Bus::new(nats.clone());
    let (sub, mut acked) = crate::helpers::ack_all(&bus, "t.raw", options("raw")).await;
    let client = async_nats::connect(&url).await.expect("connect");
    let jetstream = async_nats::jetstream::new(client);
    for garbage in [&b"{not"[..], &br#"{"subject":"g","specversion":"1.0"}"#[..]] {
        jetstream
            .publish(format!("{name}.events.t.raw"), garbage.to_vec().into())
            .await
            .expect("publish")
            .await
            .expect("stored");
    }
    bus.publish(event("t.raw", "h", 5)).await.expect("publish");
    assert_eq!(next(&mut acked).await, Some(5), "the consumer kept going");
    eventually("both are dead-lettered", || {
        let bus = bus.clone();
        async move { dead_letters(&bus, "raw").await.len() == 2 }
    })
    .await;
    for letter in dead_letters(&bus, "raw").await {
        assert!(
            letter.last_error.contains("undecodable envelope"),
            "{}",
            letter.last_error
        );
    }
    sub.stop().await;
    let _ = nats.remove_topology().await;
}
