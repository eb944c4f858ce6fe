//! Helpers for telar's own tests and for teams testing services built on telar: where the real
//! engines are (`TELAR_TEST_*_URL`), a fresh database per test, and a shutdown trigger.
//!
//! Real-engine tests never skip: an unreachable server fails the test with the URL it tried.

use std::future::Future;

use telar_sql::{Db, PostgresConfig, SqliteConfig};
use tokio::sync::watch;

/// PostgreSQL used by tests (`TELAR_TEST_POSTGRES_URL`, default the local trust-auth server).
pub fn postgres_url() -> String {
    std::env::var("TELAR_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A lowercase name unique to this call, e.g. for a schema.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// PostgreSQL settings pointing at the test server.
pub fn postgres_config() -> PostgresConfig {
    PostgresConfig {
        url: postgres_url(),
        max_connections: 5,
        ..PostgresConfig::default()
    }
}

/// A database in a fresh PostgreSQL schema. Panics with the URL if the server is unreachable.
pub async fn postgres_db(prefix: &str) -> Db {
    let schema = unique_name(prefix);
    match Db::postgres(&postgres_config(), &schema).await {
        Ok(db) => db,
        Err(error) => panic!(
            "PostgreSQL at {} is required for this test: {error}",
            postgres_url()
        ),
    }
}

/// A fresh SQLite database in a temporary directory (kept alive by the returned guard).
pub async fn sqlite_db(name: &str) -> (Db, tempfile::TempDir) {
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(error) => panic!("cannot create a temporary directory: {error}"),
    };
    let db = match Db::sqlite(
        &dir.path().join(format!("{name}.db")),
        &SqliteConfig::default(),
    )
    .await
    {
        Ok(db) => db,
        Err(error) => panic!("cannot open sqlite: {error}"),
    };
    (db, dir)
}

/// A shutdown signal for `run(listener, shutdown)`: call `trigger()` to stop the component.
#[derive(Clone)]
pub struct Shutdown {
    sender: watch::Sender<bool>,
}

impl Shutdown {
    pub fn new() -> Self {
        Shutdown {
            sender: watch::channel(false).0,
        }
    }

    pub fn trigger(&self) {
        let _ = self.sender.send(true);
    }

    /// A future that resolves once `trigger` was called.
    pub fn signal(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut receiver = self.sender.subscribe();
        async move {
            let _ = receiver.wait_for(|stopped| *stopped).await;
        }
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

/// A service running on a loopback port for the length of a test.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub shutdown: Shutdown,
    pub server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// Serves `service` on a free loopback port until `shutdown` is triggered.
pub async fn serve(service: telar_kit::Service) -> TestServer {
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(listener) => listener,
        Err(error) => panic!("cannot bind a loopback port: {error}"),
    };
    serve_on(service, listener)
}

/// Serves `service` on `listener` (bound beforehand when the service must know its own URL).
pub fn serve_on(service: telar_kit::Service, listener: tokio::net::TcpListener) -> TestServer {
    let base = match listener.local_addr() {
        Ok(address) => format!("http://{address}"),
        Err(error) => panic!("no local address: {error}"),
    };
    let shutdown = Shutdown::new();
    let server = tokio::spawn(service.run(listener, shutdown.signal()));
    TestServer {
        base,
        shutdown,
        server,
    }
}

/// An HTTP client with a 10 s timeout: a hung server fails the test instead of stalling it.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap_or_default()
}
