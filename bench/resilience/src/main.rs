//! `telar-bench-resilience [--quick]`: see `bench/resilience/run.sh`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use telar_resilience::{
    BreakerConfig, CircuitBreaker, Limiter, MemoryLimiter, RedisLimiter, Retry, Rule, Transient,
    with_timeout,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug)]
struct Never;

impl Transient for Never {
    fn is_transient(&self) -> bool {
        false
    }
}

async fn the_call(n: u64) -> Result<u64, Never> {
    Ok(black_box(n.wrapping_mul(31)))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let quick = std::env::args().any(|a| a == "--quick");
    let n: u64 = if quick { 200_000 } else { 2_000_000 };
    let redis_n: u64 = if quick { 5_000 } else { 50_000 };

    // Layers around a trivial call vs the bare call.
    let started = Instant::now();
    for i in 0..n {
        black_box(the_call(i).await.ok());
    }
    let bare_ns = started.elapsed().as_nanos() as f64 / n as f64;
    let breaker = CircuitBreaker::new("bench", BreakerConfig::default());
    let retry = Retry::attempts(3);
    let started = Instant::now();
    for i in 0..n {
        let result = retry
            .run(|_| async {
                breaker
                    .call(
                        || with_timeout(Duration::from_secs(1), the_call(i)),
                        |_: &telar_resilience::TimedOut| true,
                    )
                    .await
                    .map_err(|_| Never)
            })
            .await;
        black_box(result.ok());
    }
    let layered_ns = started.elapsed().as_nanos() as f64 / n as f64;
    println!(
        "layers breaker+retry+timeout ns_per_call={layered_ns:.0} bare_ns_per_call={bare_ns:.0} added_ns={:.0}",
        layered_ns - bare_ns
    );

    // Memory limiter decisions.
    let memory = MemoryLimiter::new();
    for rule in [
        Rule::gcra(1_000_000, Duration::from_secs(1)),
        Rule::sliding(100, Duration::from_secs(1)),
    ] {
        let started = Instant::now();
        for i in 0..n {
            black_box(memory.check(&format!("k{}", i % 1_000), rule).await?);
        }
        let per_s = n as f64 / started.elapsed().as_secs_f64();
        println!(
            "limiter memory {:?} decisions_per_s={per_s:.0}",
            rule.algorithm
        );
    }

    // Redis: our script vs a bare INCR round trip, 16 concurrent callers each.
    let url =
        std::env::var("TELAR_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let limiter = RedisLimiter::connect(&url, "bench").await?;
    let client = redis::Client::open(url.as_str())?;
    let bare = redis::aio::ConnectionManager::new(client).await?;
    let started = Instant::now();
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let mut connection = bare.clone();
            tokio::spawn(async move {
                for i in 0..redis_n / 16 {
                    let _: i64 = redis::cmd("INCR")
                        .arg(format!("bench:bare:{}", (t * 1_000 + i) % 1_000))
                        .query_async(&mut connection)
                        .await?;
                }
                Ok::<_, redis::RedisError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let bare_per_s = redis_n as f64 / started.elapsed().as_secs_f64();
    let mut gcra_per_s = 0.0;
    for rule in [
        Rule::gcra(1_000_000, Duration::from_secs(1)),
        Rule::sliding(100, Duration::from_secs(1)),
    ] {
        let started = Instant::now();
        let tasks: Vec<_> = (0..16)
            .map(|t| {
                let limiter = limiter.clone();
                tokio::spawn(async move {
                    for i in 0..redis_n / 16 {
                        limiter
                            .check(&format!("k{}", (t * 1_000 + i) % 1_000), rule)
                            .await?;
                    }
                    Ok::<_, telar_resilience::LimitError>(())
                })
            })
            .collect();
        for task in tasks {
            task.await??;
        }
        let per_s = redis_n as f64 / started.elapsed().as_secs_f64();
        if rule.algorithm == telar_resilience::Algorithm::Gcra {
            gcra_per_s = per_s;
        }
        println!(
            "limiter redis {:?} decisions_per_s={per_s:.0} bare_incr_per_s={bare_per_s:.0} ratio={:.3}",
            rule.algorithm,
            per_s / bare_per_s
        );
    }
    println!(
        "RESULT name=resilience value={gcra_per_s:.0} reference={bare_per_s:.0} ratio={:.3} unit=redis_decisions/s",
        gcra_per_s / bare_per_s
    );
    Ok(())
}
