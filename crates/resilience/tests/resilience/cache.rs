//! The cache conformance suite: memory and the running Redis.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use telar_resilience::{Cache, CacheStore, LimitError, MemoryCache, RedisCache};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Citizen {
    id: String,
    operator: String,
}

async fn memory() -> Arc<dyn CacheStore> {
    Arc::new(MemoryCache::new(100))
}

async fn redis() -> Arc<dyn CacheStore> {
    let url =
        std::env::var("TELAR_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    Arc::new(
        RedisCache::connect(&url, &format!("t{}", rand::random::<u64>()))
            .await
            .expect("Redis is required"),
    )
}

fn citizen(id: &str) -> Citizen {
    Citizen {
        id: id.into(),
        operator: "op-1".into(),
    }
}

async fn values_round_trip_and_expire(store: Arc<dyn CacheStore>) {
    let cache = Cache::new("citizens", store);
    assert_eq!(cache.get::<Citizen>("1032456789").await.expect("get"), None);
    cache
        .set(
            "1032456789",
            &citizen("1032456789"),
            Duration::from_millis(150),
        )
        .await
        .expect("set");
    assert_eq!(
        cache.get::<Citizen>("1032456789").await.expect("get"),
        Some(citizen("1032456789"))
    );
    assert_eq!(
        cache.get::<u64>("1032456789").await.expect("get"),
        None,
        "a value of another shape is a miss"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        cache.get::<Citizen>("1032456789").await.expect("get"),
        None,
        "expired"
    );
}

async fn invalidation_by_key_and_prefix(store: Arc<dyn CacheStore>) {
    let cache = Cache::new("docs", store.clone());
    let other = Cache::new("other", store);
    let ttl = Duration::from_secs(60);
    for key in ["c1:a", "c1:b", "c2:a"] {
        cache.set(key, &key, ttl).await.expect("set");
    }
    other.set("c1:a", &"keep", ttl).await.expect("set");
    assert!(cache.invalidate("c2:a").await.expect("invalidate"));
    assert!(!cache.invalidate("c2:a").await.expect("invalidate again"));
    assert_eq!(cache.invalidate_prefix("c1:").await.expect("prefix"), 2);
    assert_eq!(cache.get::<String>("c1:a").await.expect("get"), None);
    assert_eq!(
        other.get::<String>("c1:a").await.expect("get").as_deref(),
        Some("keep"),
        "another cache's keys are untouched"
    );
    let loaded: Result<String, LimitError> = cache
        .get_or_load("c3", ttl, || async { Ok("from the hub".to_owned()) })
        .await;
    assert_eq!(loaded.expect("load"), "from the hub");
    let cached: Result<String, LimitError> = cache
        .get_or_load("c3", ttl, || async { Ok("loaded twice".to_owned()) })
        .await;
    assert_eq!(cached.expect("cached"), "from the hub");
}

#[tokio::test]
async fn the_memory_cache_is_bounded() {
    let cache = Cache::new("bounded", Arc::new(MemoryCache::new(3)));
    for n in 0..5 {
        cache
            .set(&format!("k{n}"), &n, Duration::from_secs(60))
            .await
            .expect("set");
    }
    assert_eq!(
        cache.get::<i32>("k0").await.expect("get"),
        None,
        "the oldest went first"
    );
    assert_eq!(cache.get::<i32>("k1").await.expect("get"), None);
    assert_eq!(cache.get::<i32>("k4").await.expect("get"), Some(4));
}

macro_rules! conformance {
    ($backend:ident) => {
        mod $backend {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn values_round_trip_and_expire() {
                super::values_round_trip_and_expire(super::$backend().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn invalidation_by_key_and_prefix() {
                super::invalidation_by_key_and_prefix(super::$backend().await).await;
            }
        }
    };
}

conformance!(memory);
conformance!(redis);
