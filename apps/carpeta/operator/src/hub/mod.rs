//! hub-client: the only caller of the hub (`shared/systems/carpeta.md`, hub-client row and "The
//! hub contract"). PII minimised by construction (`calls`), a tolerant reading of every answer
//! (`wire`), 10 calls a minute and a breaker per endpoint (`protect`), a durable queue for what
//! cannot go now (`queue`), final answers remembered 15 minutes by idempotency key (`client`).

mod calls;
mod client;
mod protect;
mod queue;
mod routes;
mod wire;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use telar_auth::Verifier;
use telar_bus::{Bus, Outbox};
use telar_kit::KitConfig;
use telar_resilience::{BreakerConfig, Cache, Rule};
use telar_sql::Db;

pub use calls::HubCall;
pub use client::{HubClient, HubError, Reply};
pub use queue::QueuedCall;
pub use routes::HubReply;
pub use wire::{HubAnswer, Operator, is_duplicate, read_body, read_operators};

use crate::shared::{App, SharedStore};

pub const NAME: &str = "hub-client";

/// `[services.hub-client.settings]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubClientConfig {
    /// The hub (`service://hub-sim` in embedded mode; the real hub's base URL otherwise).
    pub hub_url: String,
    pub timeout_ms: u64,
    /// Calls per hub endpoint per window (a sliding window of `window_ms`, a minute by default).
    pub calls_per_minute: u32,
    pub window_ms: u64,
    /// How long a final answer is remembered by idempotency key.
    pub answer_cache_secs: u64,
    /// Failures in a row that open an endpoint's breaker, and how long it stays open.
    pub breaker_failures: u32,
    pub breaker_open_secs: u64,
    pub queue: QueueConfig,
    /// Where the limits and remembered answers live: `memory` (one instance) or `redis`.
    pub store: SharedStore,
    pub operator: OperatorSettings,
}

impl Default for HubClientConfig {
    fn default() -> Self {
        HubClientConfig {
            hub_url: "service://hub-sim".into(),
            timeout_ms: 10_000,
            calls_per_minute: 10,
            window_ms: 60_000,
            answer_cache_secs: 900,
            breaker_failures: 5,
            breaker_open_secs: 30,
            queue: QueueConfig::default(),
            store: SharedStore::default(),
            operator: OperatorSettings::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Failed attempts (5xx, timeouts) before a queued call is given up (`carpeta.hub.call_failed`).
    pub max_attempts: u32,
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// How often due calls are looked for when nothing wakes the worker.
    pub poll_ms: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            max_attempts: 12,
            initial_backoff_ms: 2_000,
            max_backoff_ms: 300_000,
            poll_ms: 1_000,
        }
    }
}

/// Who this operator is at the hub.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OperatorSettings {
    /// The hub's id for this operator when already known; empty: registered at start (by name).
    pub id: String,
    pub name: String,
    pub address: String,
    pub contact_mail: String,
    pub participants: Vec<String>,
    /// Where other operators send citizens (registered as `transferAPIURL`); empty: none.
    pub transfer_url: String,
    /// Where they confirm (sent as `endPointConfirm`; the hub does not keep it).
    pub confirm_url: String,
}

impl Default for OperatorSettings {
    fn default() -> Self {
        OperatorSettings {
            id: String::new(),
            name: "Operador Telar".into(),
            address: "Calle 26 # 13-19, Bogotá".into(),
            contact_mail: "contacto@telar.co".into(),
            participants: vec!["telar".into()],
            transfer_url: String::new(),
            confirm_url: String::new(),
        }
    }
}

/// This operator at the hub.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Registration {
    pub id: String,
    pub name: String,
    pub transfer_url: String,
}

/// Migrates `db` and builds hub-client: its API, its queue worker, its outbox relay and the
/// operator's registration at the hub (retried in the background until it holds).
pub async fn build(
    db: Db,
    bus: Bus,
    config: HubClientConfig,
    verifier: Verifier,
    kit: KitConfig,
) -> Result<(App, HubClient), String> {
    db.migrate(&[queue::MIGRATION, Outbox::MIGRATION])
        .await
        .map_err(|e| e.to_string())?;
    let wire = wire::Wire::new(&config.hub_url, Duration::from_millis(config.timeout_ms))?;
    let (limiter, cache_store) = config.store.open(NAME).await?;
    let breaker = BreakerConfig {
        consecutive_failures: config.breaker_failures.max(1),
        open_for: Duration::from_secs(config.breaker_open_secs),
        ..BreakerConfig::default()
    };
    let protected = protect::Protected::new(
        wire,
        limiter,
        Rule::sliding(
            config.calls_per_minute.max(1),
            Duration::from_millis(config.window_ms.max(1)),
        ),
        breaker,
    );
    let outbox = Outbox::new();
    let queue = queue::Queue::new(
        db.clone(),
        outbox.clone(),
        format!("carpeta/{NAME}"),
        queue::Backoff {
            max_attempts: config.queue.max_attempts.max(1),
            initial: Duration::from_millis(config.queue.initial_backoff_ms),
            max: Duration::from_millis(config.queue.max_backoff_ms),
        },
    );
    let client = HubClient::new(
        protected,
        queue,
        Cache::new("hub-answers", cache_store),
        Duration::from_secs(config.answer_cache_secs),
        db.clone(),
        config.operator.clone(),
        Duration::from_millis(config.queue.poll_ms.max(10)),
    );
    let service = crate::shared::service(NAME, kit, verifier, routes::router(client.clone()), &db);
    let relay = outbox.relay(db, bus);
    let worker = client.clone();
    let registrar = client.clone();
    let app = App::new(service)
        .task(move |stop| relay.run(stop))
        .task(move |stop| worker.work_queue(stop))
        .task(move |stop| registrar.register_in_background(stop));
    Ok((app, client))
}
