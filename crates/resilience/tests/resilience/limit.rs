//! The limiter conformance suite, on memory and on the running Redis, plus accuracy under
//! concurrent load (±1 % of the limit in memory, ±2 % in Redis).

use std::sync::Arc;
use std::time::Duration;

use telar_resilience::{Limiter, MemoryLimiter, RedisLimiter, Rule};

async fn memory() -> Arc<dyn Limiter> {
    Arc::new(MemoryLimiter::new())
}

async fn redis() -> Arc<dyn Limiter> {
    let url =
        std::env::var("TELAR_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("t{}", rand::random::<u64>());
    match RedisLimiter::connect(&url, &prefix).await {
        Ok(limiter) => Arc::new(limiter),
        Err(error) => panic!("Redis at {url} is required for this test: {error}"),
    }
}

async fn sliding_window_allows_exactly_the_limit(limiter: Arc<dyn Limiter>) {
    let rule = Rule::sliding(5, Duration::from_secs(2));
    let mut remaining = Vec::new();
    for _ in 0..5 {
        let decision = limiter.check("ana", rule).await.expect("check");
        assert!(decision.allowed);
        remaining.push(decision.remaining);
    }
    assert_eq!(remaining, [4, 3, 2, 1, 0]);
    assert_eq!(limiter.remaining("ana", rule).await.expect("peek"), 0);
    assert_eq!(limiter.remaining("nobody", rule).await.expect("peek"), 5);
    let refused = limiter.check("ana", rule).await.expect("check");
    assert!(!refused.allowed);
    assert!(refused.retry_after > Duration::ZERO && refused.retry_after <= Duration::from_secs(2));
    assert!(
        limiter.check("luis", rule).await.expect("check").allowed,
        "keys are separate"
    );
}

async fn gcra_allows_a_burst_then_the_rate(limiter: Arc<dyn Limiter>) {
    let rule = Rule::gcra(5, Duration::from_millis(500));
    assert_eq!(limiter.remaining("burst", rule).await.expect("peek"), 5);
    for _ in 0..5 {
        assert!(limiter.check("burst", rule).await.expect("check").allowed);
    }
    assert_eq!(limiter.remaining("burst", rule).await.expect("peek"), 0);
    let refused = limiter.check("burst", rule).await.expect("check");
    assert!(!refused.allowed);
    assert!(
        refused.retry_after > Duration::ZERO && refused.retry_after <= Duration::from_millis(100),
        "one call every 100 ms: {:?}",
        refused.retry_after
    );
    // The rate refills: after the advertised wait, one more call passes.
    tokio::time::sleep(refused.retry_after + Duration::from_millis(5)).await;
    assert!(limiter.check("burst", rule).await.expect("check").allowed);
}

async fn concurrent_callers_get_the_limit(limiter: Arc<dyn Limiter>, tolerance: f64) {
    for rule in [
        Rule::sliding(1_000, Duration::from_secs(30)),
        // 1 000 per 100 s: the burst is 1 000 and the refill during the test is negligible.
        Rule::gcra(1_000, Duration::from_secs(100)),
    ] {
        let key = format!("hot-{:?}", rule.algorithm);
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (limiter, key) = (limiter.clone(), key.clone());
                tokio::spawn(async move {
                    let mut allowed = 0u32;
                    for _ in 0..250 {
                        if limiter.check(&key, rule).await.expect("check").allowed {
                            allowed += 1;
                        }
                    }
                    allowed
                })
            })
            .collect();
        let mut allowed = 0;
        for task in tasks {
            allowed += task.await.expect("task");
        }
        let error = (f64::from(allowed) - 1_000.0).abs() / 1_000.0;
        assert!(
            error <= tolerance,
            "{:?}: {allowed} allowed of 4 000 for a limit of 1 000",
            rule.algorithm
        );
    }
}

macro_rules! conformance {
    ($backend:ident, $tolerance:expr) => {
        mod $backend {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sliding_window_allows_exactly_the_limit() {
                super::sliding_window_allows_exactly_the_limit(super::$backend().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn gcra_allows_a_burst_then_the_rate() {
                super::gcra_allows_a_burst_then_the_rate(super::$backend().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_callers_get_the_limit() {
                super::concurrent_callers_get_the_limit(super::$backend().await, $tolerance).await;
            }
        }
    };
}

conformance!(memory, 0.01);
conformance!(redis, 0.02);

/// Random arrival patterns on the paused clock (memory): the sliding window never lets more than
/// `limit` calls into any span of `window`; GCRA never more than `limit` plus what its rate
/// refills over the span.
#[tokio::test(start_paused = true)]
async fn random_arrivals_never_exceed_the_rule() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for round in 0..50 {
        let limiter = MemoryLimiter::new();
        let window = Duration::from_millis(1_000);
        for rule in [Rule::sliding(10, window), Rule::gcra(10, window)] {
            let key = format!("r{round}-{:?}", rule.algorithm);
            let start = tokio::time::Instant::now();
            let mut allowed = Vec::new();
            for _ in 0..300 {
                tokio::time::advance(Duration::from_millis(rng.random_range(0..40))).await;
                if limiter.check(&key, rule).await.expect("check").allowed {
                    allowed.push(tokio::time::Instant::now().duration_since(start));
                }
            }
            for (i, at) in allowed.iter().enumerate() {
                let in_span = allowed[i..]
                    .iter()
                    .take_while(|later| **later - *at < window)
                    .count();
                let ceiling = match rule.algorithm {
                    telar_resilience::Algorithm::SlidingWindow => 10,
                    // The burst, plus one per 100 ms of the span.
                    telar_resilience::Algorithm::Gcra => 10 + 10,
                };
                assert!(
                    in_span <= ceiling,
                    "{:?}: {in_span} calls within one window",
                    rule.algorithm
                );
            }
        }
    }
}
