//! Penalties, bans with escalation, allowlist and status — on memory and on Redis.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use telar_resilience::{
    Allowlist, Guard, MemoryLimiter, MemoryPenalties, PenaltyPolicy, RedisLimiter, RedisPenalties,
    Rule, Verdict,
};

fn policy() -> PenaltyPolicy {
    PenaltyPolicy {
        violations: 3,
        within: Duration::from_secs(60),
        ban: Duration::from_millis(200),
        escalation: 2.0,
        max_ban: Duration::from_secs(1),
    }
}

fn allowlist() -> Allowlist {
    Allowlist::new(&["ops-robot"], &["10.0.0.0/8", "::1"]).expect("allowlist")
}

async fn memory() -> Guard {
    Guard::new(
        Arc::new(MemoryLimiter::new()),
        Arc::new(MemoryPenalties::new()),
        policy(),
        allowlist(),
    )
}

async fn redis() -> Guard {
    let url =
        std::env::var("TELAR_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("t{}", rand::random::<u64>());
    let limiter = RedisLimiter::connect(&url, &prefix)
        .await
        .expect("Redis is required");
    let penalties = RedisPenalties::connect(&url, &prefix)
        .await
        .expect("Redis is required");
    Guard::new(
        Arc::new(limiter),
        Arc::new(penalties),
        policy(),
        allowlist(),
    )
}

async fn repeated_violations_earn_escalating_bans(guard: Guard) {
    let rule = Rule::sliding(2, Duration::from_secs(30));
    let check = || guard.check("user:1032456789", rule, None);
    assert!(matches!(check().await.expect("check"), Verdict::Allowed(_)));
    assert!(matches!(check().await.expect("check"), Verdict::Allowed(_)));
    assert!(
        matches!(check().await.expect("check"), Verdict::Limited(d) if d.retry_after > Duration::ZERO)
    );
    assert!(matches!(check().await.expect("check"), Verdict::Limited(_)));
    let Verdict::Banned { retry_after } = check().await.expect("check") else {
        panic!("the third violation bans");
    };
    assert!(retry_after <= Duration::from_millis(200) && retry_after > Duration::from_millis(100));
    assert!(
        matches!(check().await.expect("check"), Verdict::Banned { .. }),
        "banned meanwhile"
    );
    let status = guard.status(rule).await.expect("status");
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].key, "user:1032456789");
    assert_eq!(status[0].bans, 1);
    assert!(status[0].banned_for.is_some());
    assert_eq!(status[0].remaining, 0, "its two calls are used");

    // After the ban, three more violations earn a ban twice as long.
    tokio::time::sleep(retry_after + Duration::from_millis(20)).await;
    for _ in 0..2 {
        assert!(matches!(check().await.expect("check"), Verdict::Limited(_)));
    }
    let Verdict::Banned { retry_after } = check().await.expect("check") else {
        panic!("banned again");
    };
    assert!(
        retry_after > Duration::from_millis(300),
        "escalated: {retry_after:?}"
    );
    assert!(matches!(
        guard.check("user:other", rule, None).await.expect("check"),
        Verdict::Allowed(_)
    ));
}

async fn the_allowlist_is_never_limited(guard: Guard) {
    let rule = Rule::sliding(1, Duration::from_secs(30));
    for _ in 0..10 {
        assert_eq!(
            guard.check("ops-robot", rule, None).await.expect("check"),
            Verdict::Exempt
        );
        let internal: IpAddr = "10.20.30.40".parse().expect("ip");
        assert_eq!(
            guard
                .check("anon", rule, Some(internal))
                .await
                .expect("check"),
            Verdict::Exempt
        );
        let local: IpAddr = "::1".parse().expect("ip");
        assert_eq!(
            guard
                .check("anon6", rule, Some(local))
                .await
                .expect("check"),
            Verdict::Exempt
        );
    }
    let outside: IpAddr = "192.168.1.9".parse().expect("ip");
    assert!(matches!(
        guard
            .check("anon", rule, Some(outside))
            .await
            .expect("check"),
        Verdict::Allowed(_)
    ));
    assert!(matches!(
        guard
            .check("anon", rule, Some(outside))
            .await
            .expect("check"),
        Verdict::Limited(_)
    ));
}

#[test]
fn bad_networks_are_refused() {
    assert!(Allowlist::new(&[], &["10.0.0.0/33"]).is_err());
    assert!(Allowlist::new(&[], &["not-an-ip"]).is_err());
}

macro_rules! conformance {
    ($backend:ident) => {
        mod $backend {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn repeated_violations_earn_escalating_bans() {
                super::repeated_violations_earn_escalating_bans(super::$backend().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn the_allowlist_is_never_limited() {
                super::the_allowlist_is_never_limited(super::$backend().await).await;
            }
        }
    };
}

conformance!(memory);
conformance!(redis);
