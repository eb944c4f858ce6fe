use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use telar_resilience::{
    Bulkhead, Retry, RetryBudget, TimedOut, Transient, fallback, status_is_transient, with_timeout,
};

#[derive(Debug, PartialEq)]
struct Status(u16);

impl Transient for Status {
    fn is_transient(&self) -> bool {
        status_is_transient(self.0)
    }
}

#[tokio::test(start_paused = true)]
async fn transient_errors_are_retried_up_to_the_limit_others_never() {
    let retry = Retry::attempts(4).backoff(Duration::from_millis(10), Duration::from_millis(100));
    let calls = AtomicU32::new(0);
    let result: Result<(), Status> = retry
        .run(|_| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Status(503))
        })
        .await;
    assert_eq!(result, Err(Status(503)));
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    for status in [400, 404, 422, 501] {
        let calls = AtomicU32::new(0);
        let _: Result<(), Status> = retry
            .run(|_| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(Status(status))
            })
            .await;
        assert_eq!(calls.load(Ordering::SeqCst), 1, "{status} is not retried");
    }
    let attempts: Result<u32, Status> = retry
        .run(|attempt| async move {
            if attempt < 3 {
                Err(Status(502))
            } else {
                Ok(attempt)
            }
        })
        .await;
    assert_eq!(attempts, Ok(3));
}

#[tokio::test(start_paused = true)]
async fn the_budget_keeps_retries_a_fraction_of_calls() {
    let budget = RetryBudget::new(0.1, 2);
    let retry = Retry::attempts(5)
        .backoff(Duration::from_millis(1), Duration::from_millis(1))
        .budget(budget);
    let calls = Arc::new(AtomicU32::new(0));
    for _ in 0..100 {
        let calls = calls.clone();
        let _: Result<(), Status> = retry
            .run(move |_| {
                let calls = calls.clone();
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err(Status(503))
                }
            })
            .await;
    }
    let retries = calls.load(Ordering::SeqCst) - 100;
    // 2 to start with, plus 0.1 per call: at most 12 retries for 100 failing calls (not 400).
    assert!(retries <= 12, "{retries} retries");
    assert!(
        retries >= 10,
        "{retries} retries: the budget is spent, not ignored"
    );
}

#[tokio::test(start_paused = true)]
async fn timeouts_are_transient_and_fallbacks_answer_instead() {
    let slow = with_timeout(
        Duration::from_millis(50),
        tokio::time::sleep(Duration::from_secs(1)),
    )
    .await;
    assert_eq!(slow, Err(TimedOut(Duration::from_millis(50))));
    assert!(slow.err().is_some_and(|e| e.is_transient()));
    let cached = fallback(
        async { Err::<&str, Status>(Status(503)) },
        |_| "cached answer",
    )
    .await;
    assert_eq!(cached, "cached answer");
}

#[tokio::test(start_paused = true)]
async fn a_full_bulkhead_refuses_at_once() {
    let bulkhead = Bulkhead::new("hub", 2, 1);
    let first = bulkhead.acquire().await.expect("slot 1");
    let second = bulkhead.acquire().await.expect("slot 2");
    let queued = {
        let bulkhead = bulkhead.clone();
        tokio::spawn(async move { bulkhead.acquire().await.map(|_| ()) })
    };
    tokio::task::yield_now().await;
    assert!(bulkhead.acquire().await.is_err(), "queue of one is full");
    drop(first);
    queued.await.expect("task").expect("the queued call ran");
    drop(second);
    assert!(bulkhead.call(async { 42 }).await.is_ok_and(|v| v == 42));
}
