//! Fenced locks: memory, Redis and PostgreSQL (and SQLite), one conformance suite.

use std::sync::Arc;
use std::time::Duration;

use telar_resilience::{
    Fences, LOCK_MIGRATION, LockStore, Locks, MemoryLocks, RedisLocks, SqlLocks,
};

async fn memory() -> Arc<dyn LockStore> {
    Arc::new(MemoryLocks::new())
}

async fn redis() -> Arc<dyn LockStore> {
    let url =
        std::env::var("TELAR_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    Arc::new(
        RedisLocks::connect(&url, &format!("t{}", rand::random::<u64>()))
            .await
            .expect("Redis is required"),
    )
}

async fn postgres() -> Arc<dyn LockStore> {
    let db = telar_testkit::postgres_db("locks").await;
    Arc::new(SqlLocks::open(db).await.expect("locks"))
}

async fn one_holder_at_a_time_with_growing_tokens(store: Arc<dyn LockStore>) {
    let locks = Locks::new(store);
    let ttl = Duration::from_secs(30);
    let first = locks
        .try_acquire("transfer:1032456789", ttl)
        .await
        .expect("acquire")
        .expect("free");
    assert!(
        locks
            .try_acquire("transfer:1032456789", ttl)
            .await
            .expect("acquire")
            .is_none(),
        "held"
    );
    assert!(
        locks
            .try_acquire("transfer:other", ttl)
            .await
            .expect("acquire")
            .is_some(),
        "per name"
    );
    let token = first.token;
    assert!(first.release().await.expect("release"));
    let second = locks
        .try_acquire("transfer:1032456789", ttl)
        .await
        .expect("acquire")
        .expect("free again");
    assert!(second.token > token, "fencing tokens only grow");

    // Competing takers: exactly one wins.
    let winners = futures::future::join_all((0..12).map(|_| {
        let locks = locks.clone();
        async move {
            locks
                .try_acquire("contended", ttl)
                .await
                .expect("acquire")
                .map(|l| l.token)
        }
    }))
    .await;
    assert_eq!(winners.iter().flatten().count(), 1);
}

async fn only_the_holder_extends_or_releases_and_leases_expire(store: Arc<dyn LockStore>) {
    let locks = Locks::new(store.clone());
    let stale = locks
        .try_acquire("job", Duration::from_millis(100))
        .await
        .expect("acquire")
        .expect("free");
    assert!(
        !store
            .release("job", stale.token + 1)
            .await
            .expect("release"),
        "not the holder"
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    // The lease ran out while its holder was "paused": someone else takes it.
    let fresh = locks
        .acquire("job", Duration::from_secs(30), Duration::from_secs(5))
        .await
        .expect("acquire")
        .expect("expired lease taken");
    assert!(fresh.token > stale.token);
    assert!(
        !stale.extend(Duration::from_secs(30)).await.expect("extend"),
        "the old holder lost it"
    );
    assert!(!stale.release().await.expect("release"));
    assert!(fresh.extend(Duration::from_secs(60)).await.expect("extend"));
    assert!(
        locks
            .try_acquire("job", Duration::from_secs(1))
            .await
            .expect("acquire")
            .is_none()
    );
    assert!(fresh.release().await.expect("release"));
}

macro_rules! conformance {
    ($backend:ident) => {
        mod $backend {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn one_holder_at_a_time_with_growing_tokens() {
                super::one_holder_at_a_time_with_growing_tokens(super::$backend().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn only_the_holder_extends_or_releases_and_leases_expire() {
                super::only_the_holder_extends_or_releases_and_leases_expire(
                    super::$backend().await,
                )
                .await;
            }
        }
    };
}

conformance!(memory);
conformance!(redis);
conformance!(postgres);

/// A resource refuses the write of a holder whose lease expired once a newer holder wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_token_cannot_write() {
    let (sqlite, _dir) = telar_testkit::sqlite_db("fences").await;
    for db in [telar_testkit::postgres_db("fences").await, sqlite] {
        db.migrate(&[LOCK_MIGRATION]).await.expect("migrate");
        let write = |token: u64| {
            let db = db.clone();
            async move {
                let mut tx = db.begin().await.expect("begin");
                let admitted = Fences::admit(&mut tx, "citizen:1032456789", token)
                    .await
                    .expect("fence");
                tx.commit().await.expect("commit");
                admitted
            }
        };
        assert!(write(7).await, "first writer");
        assert!(write(9).await, "a newer holder");
        assert!(!write(7).await, "the paused old holder is refused");
        assert!(write(9).await, "the current holder writes again");
    }
}
