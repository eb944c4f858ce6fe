use std::time::Duration;

use telar_resilience::{BreakerConfig, BreakerState, Breakers, CircuitBreaker};

fn config() -> BreakerConfig {
    BreakerConfig {
        consecutive_failures: 3,
        failure_rate: 0.5,
        window: Duration::from_secs(10),
        min_calls: 10,
        open_for: Duration::from_secs(5),
        half_open_probes: 2,
    }
}

fn fail(breaker: &CircuitBreaker, times: u32) {
    for _ in 0..times {
        breaker.try_acquire().expect("admitted").failure();
    }
}

fn succeed(breaker: &CircuitBreaker, times: u32) {
    for _ in 0..times {
        breaker.try_acquire().expect("admitted").success();
    }
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_open_it_and_it_says_when_to_come_back() {
    let breaker = CircuitBreaker::new("hub", config());
    let mut events = breaker.events();
    fail(&breaker, 2);
    succeed(&breaker, 1);
    fail(&breaker, 2);
    assert_eq!(
        breaker.state(),
        BreakerState::Closed,
        "a success resets the streak"
    );
    fail(&breaker, 1);
    assert_eq!(breaker.state(), BreakerState::Open);
    let refused = breaker.try_acquire().err().expect("refused while open");
    assert_eq!(refused.retry_after, Duration::from_secs(5));
    let event = events.recv().await.expect("an event");
    assert_eq!(
        (event.from, event.to),
        (BreakerState::Closed, BreakerState::Open)
    );
    assert!(
        event.reason.contains("3 failures in a row"),
        "{}",
        event.reason
    );
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(
        breaker.try_acquire().err().map(|o| o.retry_after),
        Some(Duration::from_secs(3))
    );
}

#[tokio::test(start_paused = true)]
async fn a_failure_rate_opens_it_only_past_the_minimum_calls() {
    let breaker = CircuitBreaker::new(
        "rate",
        BreakerConfig {
            consecutive_failures: 0,
            ..config()
        },
    );
    for _ in 0..4 {
        fail(&breaker, 1);
        succeed(&breaker, 1);
    }
    assert_eq!(
        breaker.state(),
        BreakerState::Closed,
        "8 calls: below the minimum"
    );
    fail(&breaker, 1);
    succeed(&breaker, 1);
    assert_eq!(breaker.state(), BreakerState::Open, "5 of 10 failed");
}

#[tokio::test(start_paused = true)]
async fn failures_older_than_the_window_do_not_count() {
    let breaker = CircuitBreaker::new(
        "window",
        BreakerConfig {
            consecutive_failures: 0,
            ..config()
        },
    );
    fail(&breaker, 5);
    tokio::time::advance(Duration::from_secs(11)).await;
    succeed(&breaker, 5);
    assert_eq!(
        breaker.state(),
        BreakerState::Closed,
        "the old failures slid out"
    );
}

#[tokio::test(start_paused = true)]
async fn half_open_lets_limited_probes_through_and_accounts_every_one() {
    let breaker = CircuitBreaker::new("probe", config());
    fail(&breaker, 3);
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    let first = breaker.try_acquire().expect("probe 1");
    let second = breaker.try_acquire().expect("probe 2");
    assert!(breaker.try_acquire().is_err(), "only two probes at once");
    // A cancelled probe frees its slot without counting as an outcome.
    drop(second);
    let second = breaker.try_acquire().expect("the slot came back");
    first.success();
    assert_eq!(
        breaker.state(),
        BreakerState::HalfOpen,
        "one success of two"
    );
    second.success();
    assert_eq!(breaker.state(), BreakerState::Closed);

    fail(&breaker, 3);
    tokio::time::advance(Duration::from_secs(5)).await;
    breaker.try_acquire().expect("probe").failure();
    assert_eq!(
        breaker.state(),
        BreakerState::Open,
        "a failed probe opens it again"
    );
    assert!(breaker.try_acquire().is_err());
}

#[tokio::test(start_paused = true)]
async fn which_errors_count_is_the_callers_choice() {
    let breaker = CircuitBreaker::new("hub", config());
    let counts = |status: &u16| *status >= 500;
    for _ in 0..10 {
        let result = breaker
            .call(|| async { Err::<(), u16>(404) }, counts)
            .await
            .expect("admitted");
        assert_eq!(result, Err(404));
    }
    assert_eq!(
        breaker.state(),
        BreakerState::Closed,
        "404s are not the upstream failing"
    );
    for _ in 0..3 {
        let _ = breaker.call(|| async { Err::<(), u16>(503) }, counts).await;
    }
    assert_eq!(breaker.state(), BreakerState::Open);
    assert!(
        breaker
            .call(|| async { Ok::<(), u16>(()) }, counts)
            .await
            .is_err()
    );
}

#[tokio::test(start_paused = true)]
async fn breakers_are_per_key() {
    let breakers = Breakers::new("hub", config());
    fail(&breakers.get("registerCitizen"), 3);
    assert_eq!(breakers.get("registerCitizen").state(), BreakerState::Open);
    assert_eq!(
        breakers.get("authenticateDocument").state(),
        BreakerState::Closed
    );
    assert_eq!(
        breakers.states(),
        [
            ("hub:authenticateDocument".to_owned(), BreakerState::Closed),
            ("hub:registerCitizen".to_owned(), BreakerState::Open),
        ]
    );
}

/// Random outcomes, cancellations and clock jumps (200 seeded histories of 100 steps); after
/// every step the invariants hold: an open breaker admits nothing, and half-open never has more
/// probes out than allowed.
#[tokio::test(start_paused = true)]
async fn random_histories_keep_the_invariants() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for round in 0..200 {
        let breaker = CircuitBreaker::new(format!("r{round}"), config());
        let mut out = Vec::new();
        for _ in 0..100 {
            match rng.random_range(0..10) {
                0..=3 => {
                    if let Ok(permit) = breaker.try_acquire() {
                        out.push(permit);
                    }
                }
                4 | 5 => {
                    if let Some(permit) = out.pop() {
                        permit.success();
                    }
                }
                6 | 7 => {
                    if let Some(permit) = out.pop() {
                        permit.failure();
                    }
                }
                8 => drop(out.pop()),
                _ => tokio::time::advance(Duration::from_millis(rng.random_range(0..7_000))).await,
            }
            let state = breaker.state();
            if state == BreakerState::Open {
                assert!(breaker.try_acquire().is_err(), "open admits nothing");
            }
            if state == BreakerState::HalfOpen {
                let mut extra = Vec::new();
                while let Ok(permit) = breaker.try_acquire() {
                    extra.push(permit);
                    assert!(extra.len() <= 2, "never more than two probes out");
                }
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_layer_breaks_per_key_on_5xx_and_transport_errors() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use telar_resilience::{BreakerError, BreakerLayer};
    use tower::{Layer, ServiceExt};

    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let upstream = tower::service_fn(move |request: http::Request<()>| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            let status = match request.uri().path() {
                "/down" => 503,
                "/missing" => 404,
                "/broken" => return Err("connection refused"),
                _ => 200,
            };
            Ok(http::Response::builder()
                .status(status)
                .body(())
                .expect("response"))
        }
    });
    let breakers = Breakers::new("upstream", config());
    let service = BreakerLayer::new(breakers, |request: &http::Request<()>| {
        request.uri().path().to_owned()
    })
    .layer(upstream);
    let call = |path: &'static str| {
        let request = http::Request::get(path).body(()).expect("request");
        let service = service.clone();
        async move { service.oneshot(request).await }
    };
    for _ in 0..5 {
        assert_eq!(call("/missing").await.expect("404 passes").status(), 404);
    }
    for _ in 0..3 {
        assert_eq!(call("/down").await.expect("503 passes").status(), 503);
    }
    let before = calls.load(Ordering::SeqCst);
    assert!(matches!(call("/down").await, Err(BreakerError::Open(_))));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        before,
        "an open breaker does not call upstream"
    );
    assert_eq!(call("/fine").await.expect("other keys pass").status(), 200);
    for _ in 0..3 {
        assert!(matches!(call("/broken").await, Err(BreakerError::Inner(_))));
    }
    assert!(matches!(call("/broken").await, Err(BreakerError::Open(_))));
}
