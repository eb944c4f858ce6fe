//! transfer (8004): moving a citizen between operators over the agreed protocol, both ways, as
//! durable sagas (telar-saga) under a per-citizen fenced lock. Sending: lock → mark the citizen
//! `transferring` → collect download links → (optionally unregister at the hub first) → POST to
//! the destination's `transferAPIURL` → wait for `req_status` (before or after the 2xx, never
//! forever) → delete the citizen's documents and data → make sure the hub no longer lists them
//! with this operator. `req_status: 0` or no answer in time compensates: everything restored.
//! Receiving: lock → store the citizen → download, verify and store every document → confirm
//! with `req_status: 1` → register at the hub once the origin has let go; a failure removes what
//! was stored and confirms `req_status: 0`.

mod protocol;
mod receive;
mod routes;
mod send;
mod steps;
mod store;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use telar_auth::Verifier;
use telar_bus::{Bus, Inbox, Outbox};
use telar_kit::KitConfig;
use telar_resilience::{Locks, SqlLocks};
use telar_saga::SagaEngine;
use telar_sql::Db;
use telar_types::Envelope;

pub use protocol::{Incoming, read_confirm, read_incoming};

use crate::shared::{App, ServiceClient, TokenSource};

pub const NAME: &str = "transfer";
/// The path peers send citizens to, and the one they confirm at.
pub const RECEIVE_PATH: &str = "/api/transferCitizen";
pub const CONFIRM_PATH: &str = "/api/transferCitizenConfirm";

/// `[services.transfer.settings]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransferConfig {
    /// Where peers reach this operator (the gateway): `confirmAPI` is built from it.
    pub public_url: String,
    pub hub_client_url: String,
    pub citizen_url: String,
    pub ingestion_url: String,
    /// How long an origin waits for `req_status` before it restores the citizen.
    pub confirm_timeout_secs: u64,
    /// Unregister at the hub before sending (for destinations that refuse a citizen the hub
    /// still lists); otherwise after the confirmation.
    pub unregister_before_send: bool,
    /// Calls to peers (transfer, confirm, downloads) give up after this long.
    pub peer_timeout_ms: u64,
    pub timeout_ms: u64,
    /// This instance's stable name (a pod name): sagas it started resume under it.
    pub runner: String,
    /// How long a destination keeps trying to register the citizen at the hub while the origin
    /// still holds them there.
    pub register_within_secs: u64,
}

impl Default for TransferConfig {
    fn default() -> Self {
        TransferConfig {
            public_url: "service://gateway".into(),
            hub_client_url: "service://hub-client".into(),
            citizen_url: "service://citizen".into(),
            ingestion_url: "service://ingestion".into(),
            confirm_timeout_secs: 3_600,
            unregister_before_send: false,
            peer_timeout_ms: 30_000,
            timeout_ms: 15_000,
            runner: "transfer-1".into(),
            register_within_secs: 3_600,
        }
    }
}

/// What the saga steps use.
pub(crate) struct Deps {
    pub db: Db,
    pub outbox: Outbox,
    pub hub: ServiceClient,
    pub citizens: ServiceClient,
    pub ingestion: ServiceClient,
    /// Peers: no token, a timeout, no redirects followed blindly beyond reqwest's default.
    pub peers: reqwest::Client,
    pub locks: Locks,
    pub config: TransferConfig,
}

impl Deps {
    pub fn confirm_url(&self) -> String {
        format!(
            "{}{CONFIRM_PATH}",
            self.config.public_url.trim_end_matches('/')
        )
    }

    /// Publishes `envelope` once, however often the step that publishes it runs: its id is
    /// derived from the saga and step, and recorded in the same transaction.
    pub async fn publish_once(&self, envelope: Envelope) -> Result<(), String> {
        let mut tx = self.db.begin().await.map_err(|e| e.to_string())?;
        if Inbox::first_time(&mut tx, "transfer-events", &envelope.id)
            .await
            .map_err(|e| e.to_string())?
        {
            self.outbox
                .append(&mut tx, &envelope)
                .await
                .map_err(|e| e.to_string())?;
        }
        self.outbox.commit(tx).await.map_err(|e| e.to_string())
    }
}

#[derive(Clone)]
pub(crate) struct State {
    pub deps: Arc<Deps>,
    pub engine: SagaEngine,
}

pub async fn build(
    db: Db,
    bus: Bus,
    config: TransferConfig,
    verifier: Verifier,
    tokens: TokenSource,
    kit: KitConfig,
) -> Result<App, String> {
    db.migrate(&[store::MIGRATION, Outbox::MIGRATION, Inbox::MIGRATION])
        .await
        .map_err(|e| e.to_string())?;
    let locks = Locks::new(Arc::new(
        SqlLocks::open(db.clone())
            .await
            .map_err(|e| e.to_string())?,
    ));
    let timeout = Duration::from_millis(config.timeout_ms);
    let client = |url: &str| ServiceClient::new(url, timeout, tokens.clone());
    let outbox = Outbox::new();
    let peers = reqwest::Client::builder()
        .timeout(Duration::from_millis(config.peer_timeout_ms))
        .build()
        .map_err(|e| e.to_string())?;
    let deps = Arc::new(Deps {
        db: db.clone(),
        outbox: outbox.clone(),
        hub: client(&config.hub_client_url),
        citizens: client(&config.citizen_url),
        ingestion: client(&config.ingestion_url),
        peers,
        locks,
        config: config.clone(),
    });
    let engine = SagaEngine::open(
        db.clone(),
        &config.runner,
        [send::saga(deps.clone()), receive::saga(deps.clone())],
    )
    .await
    .map_err(|e| e.to_string())?;
    engine.recover().await.map_err(|e| e.to_string())?;
    let state = State {
        deps,
        engine: engine.clone(),
    };
    // The saga admin routes (`/admin/sagas`): the operator's staff only.
    let admin = telar_saga::saga_routes(engine.admin())
        .layer(axum::middleware::from_fn(crate::shared::require_staff))
        .layer(axum::middleware::from_fn_with_state(
            verifier.clone(),
            telar_auth::authenticate,
        ));
    let service = crate::shared::service(NAME, kit, verifier, routes::router(state.clone()), &db)
        .api(admin)
        .routes(routes::aliases(state));
    let relay = outbox.relay(db, bus);
    Ok(App::new(service)
        .task(move |stop| relay.run(stop))
        .task(move |stop| engine.run(Duration::from_secs(2), stop)))
}
