//! A small world for Carpeta tests: a token issuer, an embedded bus, hub-sim, and services
//! started on loopback ports.

use std::time::Duration;

use serde_json::Value;
use telar_auth::{Claims, KeyRing, Verifier, VerifierConfig};
use telar_bus::{Bus, EmbeddedBus, EmbeddedConfig};
use telar_carpeta::shared::App;
use telar_kit::KitConfig;
use telar_testkit::Shutdown;

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub struct World {
    pub keys: KeyRing,
    pub bus: Bus,
    pub hub: telar_testkit::TestServer,
    pub http: reqwest::Client,
    pub dirs: Vec<tempfile::TempDir>,
    pub running: Vec<Shutdown>,
}

pub struct Running {
    pub base: String,
    /// Stops this service alone (as a crash would, but letting in-flight work settle).
    pub shutdown: Shutdown,
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl World {
    pub async fn new() -> World {
        let bus_dir = tempfile::tempdir().unwrap();
        let bus = Bus::new(
            EmbeddedBus::open(&EmbeddedConfig {
                path: bus_dir.path().join("bus.db"),
                ..EmbeddedConfig::default()
            })
            .await
            .unwrap(),
        );
        let (hub_db, hub_dir) = telar_testkit::sqlite_db("hub-sim").await;
        let hub_service = telar_carpeta_hub_sim::build(
            hub_db,
            telar_carpeta_hub_sim::HubSimConfig::default(),
            KitConfig::default(),
        )
        .await
        .unwrap();
        let hub = telar_testkit::serve(hub_service).await;
        World {
            keys: KeyRing::generate(now(), 3600).unwrap(),
            bus,
            hub,
            http: telar_testkit::client(),
            dirs: vec![bus_dir, hub_dir],
            running: Vec::new(),
        }
    }

    pub fn verifier(&self) -> Verifier {
        Verifier::new(VerifierConfig::new("telar", "telar")).with_keys(&self.keys.jwks(now()))
    }

    pub fn token(&self, sub: &str, roles: &[&str]) -> String {
        self.keys
            .sign(&Claims {
                sub: sub.into(),
                roles: roles.iter().map(|r| (*r).to_owned()).collect(),
                permissions: Vec::new(),
                org_id: None,
                iss: "telar".into(),
                aud: "telar".into(),
                exp: now() + 3600,
                iat: now() - 1,
                jti: uuid_like(),
            })
            .unwrap()
    }

    /// A token endpoint answering client-credentials requests with a service token signed by
    /// this world's keys (the identity service's contract, without its Argon2 cost in tests).
    pub async fn tokens(&mut self) -> telar_carpeta::shared::TokenSource {
        let token = self.service_token();
        let router = axum::Router::new().route(
            "/token",
            axum::routing::post(move || {
                let token = token.clone();
                async move { axum::Json(serde_json::json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600})) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/token", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        telar_carpeta::shared::TokenSource::new(&url, "carpeta-services", "secret")
    }

    /// The iam service with Carpeta's built-in policies.
    pub async fn iam(&mut self) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let config = telar_carpeta::iam::IamConfig {
            builtin_dir: dir.path().display().to_string(),
            ..Default::default()
        };
        self.dirs.push(dir);
        let app =
            telar_carpeta::iam::build(&config, self.verifier(), KitConfig::default()).unwrap();
        self.run(app).await
    }

    pub fn service_token(&self) -> String {
        self.token("carpeta-services", &["service"])
    }

    pub async fn db(&mut self, name: &str) -> telar_sql::Db {
        let (db, dir) = telar_testkit::sqlite_db(name).await;
        self.dirs.push(dir);
        db
    }

    /// Runs `app` on a loopback port until the world is dropped.
    pub async fn run(&mut self, app: App) -> Running {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.run_on(app, listener)
    }

    /// A port bound now, for a service that must know its own URL before it is built.
    pub async fn port() -> (tokio::net::TcpListener, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        (listener, base)
    }

    pub fn run_on(&mut self, app: App, listener: tokio::net::TcpListener) -> Running {
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = Shutdown::new();
        tokio::spawn(app.run(listener, shutdown.signal()));
        self.running.push(shutdown.clone());
        Running { base, shutdown }
    }

    pub async fn hub_state(&self) -> Value {
        self.http
            .get(self.hub.url("/control/state"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn hub_faults(&self, faults: Value) {
        let status = self
            .http
            .put(self.hub.url("/control/faults"))
            .json(&faults)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200, "faults accepted");
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for running in &self.running {
            running.trigger();
        }
        self.hub.shutdown.trigger();
    }
}

fn uuid_like() -> String {
    format!("{:032x}", rand_u128())
}

fn rand_u128() -> u128 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now() as u64);
    u128::from(h.finish()) << 64 | u128::from(h.finish().rotate_left(17))
}

/// Polls `check` every 20 ms until it returns `Some` or `within` passes.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of `name{...}` whose labels include every `key="value"` of `labels`.
pub fn metric(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|line| {
            line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} "))
        })
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .find_map(|line| line.rsplit_once(' ').and_then(|(_, v)| v.parse().ok()))
}

/// Opens the sealed personal fields of an event's `data` with keys from `citizen` (as
/// read-models and notification do); a field whose key is forgotten reads `[redacted]`.
pub async fn open_pii(world: &World, citizen: &Running, mut data: Value) -> Value {
    use base64::Engine;
    let mut keys = std::collections::HashMap::new();
    for kid in telar_store::sealed_key_ids(&data) {
        let response = world
            .http
            .get(citizen.url(&format!("/citizens/pii-keys/{kid}")))
            .bearer_auth(world.service_token())
            .send()
            .await
            .unwrap();
        let key = match response.status().as_u16() {
            200 => {
                let body: Value = response.json().await.unwrap();
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(body["key"].as_str().unwrap())
                    .unwrap();
                Some(<[u8; 32]>::try_from(bytes.as_slice()).unwrap())
            }
            410 => None,
            other => panic!("key {kid}: {other}"),
        };
        keys.insert(kid, key);
    }
    telar_store::open_sealed(&mut data, &keys);
    data
}

/// Every envelope published on `topic` from now on, as a test-only consumer group sees them.
pub async fn capture(
    bus: &Bus,
    topic: &str,
    group: &str,
) -> (
    telar_bus::Subscription,
    tokio::sync::mpsc::UnboundedReceiver<telar_types::Envelope>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let subscription = bus
        .subscribe(
            topic,
            telar_bus::SubscribeOptions::group(group),
            move |d: telar_bus::Delivery| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(d.envelope);
                    telar_bus::Outcome::Ack
                }
            },
        )
        .await
        .unwrap();
    (subscription, rx)
}
