//! citizen: register (validated, then registered at the hub through hub-client), get, search,
//! update. `carpeta.citizen.registered` / `carpeta.citizen.updated` leave through the outbox in
//! the same transaction as the row. A registration the hub could not take at once is stored as
//! `pending_hub` and settled when hub-client reports the queued call's outcome.

mod consume;
pub mod pii;
mod routes;
mod store;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use telar_auth::Verifier;
use telar_bus::{Bus, Inbox, Outbox};
use telar_kit::KitConfig;
use telar_sql::Db;

pub use store::Citizen;

use crate::shared::{App, ServiceClient, TokenSource};

pub const NAME: &str = "citizen";

/// `[services.citizen.settings]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CitizenConfig {
    /// hub-client's base URL (`service://hub-client` in `telar up`).
    pub hub_client_url: String,
    pub timeout_ms: u64,
    /// Wraps the per-citizen keys that seal personal fields in events (base64 of 32 bytes).
    /// Empty: generated at first start and kept in the citizen database (embedded mode).
    pub pii_master_key: String,
}

impl Default for CitizenConfig {
    fn default() -> Self {
        CitizenConfig {
            hub_client_url: "service://hub-client".into(),
            timeout_ms: 15_000,
            pii_master_key: String::new(),
        }
    }
}

/// `carpeta.citizen.registered`, with what the notification and the read models need, its
/// personal fields sealed with the citizen's `key`.
pub(crate) fn registered_event(
    citizen: &Citizen,
    key: &pii::PiiKey,
) -> Result<telar_types::Envelope, String> {
    key.seal(crate::shared::event(
        crate::domain::events::CITIZEN_REGISTERED,
        &citizen.id,
        serde_json::json!({"id": citizen.id, "email": citizen.email, "name": citizen.name}),
    ))
}

#[derive(Clone)]
pub(crate) struct State {
    pub citizens: store::Citizens,
    pub outbox: Outbox,
    pub hub: ServiceClient,
    pub pii: pii::PiiVault,
}

pub async fn build(
    db: Db,
    bus: Bus,
    config: CitizenConfig,
    verifier: Verifier,
    tokens: TokenSource,
    kit: KitConfig,
) -> Result<App, String> {
    db.migrate(&[store::MIGRATION, Outbox::MIGRATION, Inbox::MIGRATION])
        .await
        .map_err(|e| e.to_string())?;
    let outbox = Outbox::new();
    let pii = pii::PiiVault::open(&db, &config.pii_master_key).await?;
    let state = State {
        pii,
        citizens: store::Citizens { db: db.clone() },
        outbox: outbox.clone(),
        hub: ServiceClient::new(
            &config.hub_client_url,
            Duration::from_millis(config.timeout_ms),
            tokens,
        ),
    };
    let service = crate::shared::service(
        NAME,
        kit,
        verifier,
        routes::router(state.clone()).merge(pii::router(state.clone())),
        &db,
    );
    let subscription = consume::subscribe(&bus, state)
        .await
        .map_err(|e| e.to_string())?;
    let relay = outbox.relay(db, bus);
    Ok(App::new(service)
        .task(move |stop| relay.run(stop))
        .subscription(subscription))
}
