//! Idempotency keys over HTTP, stored in SQLite, PostgreSQL and Redis.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use telar_resilience::{
    Idempotency, IdempotencyStore, RedisIdempotency, SqlIdempotency, idempotent,
};

async fn sqlite() -> (Arc<dyn IdempotencyStore>, Option<tempfile::TempDir>) {
    let (db, dir) = telar_testkit::sqlite_db("idem").await;
    (
        Arc::new(SqlIdempotency::open(db).await.expect("store")),
        Some(dir),
    )
}

async fn postgres() -> (Arc<dyn IdempotencyStore>, Option<tempfile::TempDir>) {
    let db = telar_testkit::postgres_db("idem").await;
    (
        Arc::new(SqlIdempotency::open(db).await.expect("store")),
        None,
    )
}

async fn redis() -> (Arc<dyn IdempotencyStore>, Option<tempfile::TempDir>) {
    let url =
        std::env::var("TELAR_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let store = RedisIdempotency::connect(&url, &format!("t{}", rand::random::<u64>()))
        .await
        .expect("Redis is required");
    (Arc::new(store), None)
}

struct App {
    base: String,
    runs: Arc<AtomicU32>,
    failing: Arc<AtomicBool>,
    gate: Arc<tokio::sync::Semaphore>,
}

async fn app(store: Arc<dyn IdempotencyStore>, ttl: Duration) -> App {
    let runs = Arc::new(AtomicU32::new(0));
    let failing = Arc::new(AtomicBool::new(false));
    let gate = Arc::new(tokio::sync::Semaphore::new(1_000));
    let (r, f, g) = (runs.clone(), failing.clone(), gate.clone());
    let router = Router::new()
        .route(
            "/citizens",
            post(move |body: String| {
                let (runs, failing, gate) = (r.clone(), f.clone(), g.clone());
                async move {
                    let _permit = gate.acquire().await;
                    if failing.load(Ordering::SeqCst) {
                        return (
                            http::StatusCode::SERVICE_UNAVAILABLE,
                            [("location", "-")],
                            "hub down".to_owned(),
                        );
                    }
                    let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
                    (
                        http::StatusCode::CREATED,
                        [("location", "/citizens/1")],
                        format!("{{\"run\":{n},\"body\":{body:?}}}"),
                    )
                }
            }),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            Idempotency::new(store, ttl),
            idempotent,
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    App {
        base,
        runs,
        failing,
        gate,
    }
}

async fn send(app: &App, key: Option<&str>, body: &str) -> (u16, String, bool) {
    let client = reqwest::Client::new();
    let mut request = client
        .post(format!("{}/citizens", app.base))
        .body(body.to_owned());
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.expect("send");
    let replayed = response.headers().contains_key("idempotent-replayed");
    (
        response.status().as_u16(),
        response.text().await.expect("body"),
        replayed,
    )
}

async fn a_repeated_request_gets_the_stored_response(store: Arc<dyn IdempotencyStore>) {
    let app = app(store, Duration::from_secs(60)).await;
    let first = send(&app, Some("k1"), "ana").await;
    let second = send(&app, Some("k1"), "ana").await;
    assert_eq!(first.0, 201);
    assert_eq!(
        (second.0, second.1.as_str(), second.2),
        (201, first.1.as_str(), true)
    );
    assert_eq!(app.runs.load(Ordering::SeqCst), 1, "ran once");
    let other = send(&app, Some("k1"), "luis").await;
    assert_eq!(other.0, 422, "same key, different request");
    send(&app, None, "ana").await;
    send(&app, None, "ana").await;
    assert_eq!(
        app.runs.load(Ordering::SeqCst),
        3,
        "no key: every request runs"
    );
}

async fn concurrent_twins_run_once(store: Arc<dyn IdempotencyStore>) {
    let app = Arc::new(app(store, Duration::from_secs(60)).await);
    let held = app.gate.acquire_many(1_000).await.expect("close the gate");
    let twins: Vec<_> = (0..2)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { send(&app, Some("twin"), "ana").await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(held);
    let mut answers = Vec::new();
    for twin in twins {
        answers.push(twin.await.expect("twin"));
    }
    assert_eq!(
        app.runs.load(Ordering::SeqCst),
        1,
        "the second waited for the first"
    );
    assert_eq!(answers[0].1, answers[1].1);
    assert_eq!(
        answers.iter().filter(|a| a.2).count(),
        1,
        "one of them is the replay"
    );
}

async fn server_errors_are_not_kept_and_keys_expire(store: Arc<dyn IdempotencyStore>) {
    let app = app(store, Duration::from_millis(150)).await;
    app.failing.store(true, Ordering::SeqCst);
    assert_eq!(send(&app, Some("retry-me"), "ana").await.0, 503);
    app.failing.store(false, Ordering::SeqCst);
    let retried = send(&app, Some("retry-me"), "ana").await;
    assert_eq!(
        (retried.0, retried.2),
        (201, false),
        "a 5xx is not replayed: the retry runs"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = send(&app, Some("retry-me"), "ana").await;
    assert_eq!((after.0, after.2), (201, false), "the key expired");
    assert_eq!(app.runs.load(Ordering::SeqCst), 2);
}

macro_rules! conformance {
    ($backend:ident) => {
        mod $backend {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_repeated_request_gets_the_stored_response() {
                let (store, _dir) = super::$backend().await;
                super::a_repeated_request_gets_the_stored_response(store).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_twins_run_once() {
                let (store, _dir) = super::$backend().await;
                super::concurrent_twins_run_once(store).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn server_errors_are_not_kept_and_keys_expire() {
                let (store, _dir) = super::$backend().await;
                super::server_errors_are_not_kept_and_keys_expire(store).await;
            }
        }
    };
}

conformance!(sqlite);
conformance!(postgres);
conformance!(redis);
