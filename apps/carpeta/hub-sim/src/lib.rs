//! hub-sim: a stand-in for the GovCarpeta hub (MinTIC) that reproduces what the real server
//! does — status codes, JSON-string bodies, validation quirks, the `Origin` rule — with its state
//! in its own database and a control API for fault injection. See `docs/hub-sim.md`.

mod api;
mod config;
mod control;
mod domain;
mod faults;
mod store;

use std::sync::Arc;

use telar_kit::{KitConfig, OpenApiRouter, ReadyCheck, Service};
use telar_sql::{Db, Migration};

pub use config::HubSimConfig;
pub use domain::{is_valid_citizen_id, is_valid_email};
pub use faults::Faults;

/// The service's name: its database file / schema and its `service` label.
pub const NAME: &str = "hub-sim";

/// Schema of the simulator's database.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "hub",
    sqlite: include_str!("../migrations/sqlite/0001_hub.sql"),
    postgres: include_str!("../migrations/postgres/0001_hub.sql"),
}];

/// Shared by the hub and control routes.
#[derive(Clone)]
pub(crate) struct AppState {
    pub store: store::Store,
    pub faults: Arc<faults::FaultState>,
    pub config: Arc<HubSimConfig>,
    /// The kit's request timeout: injected latency must stay below it.
    pub request_timeout_ms: u64,
}

/// Migrates `db` and builds the hub-sim service.
pub async fn build(db: Db, config: HubSimConfig, kit: KitConfig) -> telar_sql::Result<Service> {
    db.migrate(MIGRATIONS).await?;
    let state = AppState {
        store: store::Store::new(db.clone()),
        faults: Arc::new(faults::FaultState::default()),
        config: Arc::new(config),
        request_timeout_ms: kit.request_timeout_ms,
    };
    let hub: OpenApiRouter = api::router(state.clone());
    let control: OpenApiRouter = control::router(state);
    let kit = KitConfig {
        body_limit_bytes: kit.body_limit_bytes.min(100 * 1024),
        ..kit
    };
    Ok(Service::new(NAME)
        .config(kit)
        // The real hub answers JSON whatever `Accept` says; the control API negotiates.
        .api_fixed_format(hub)
        .api(control)
        .ready_check(ReadyCheck::new("database", move || {
            let db = db.clone();
            async move { db.ping().await.map_err(|e| e.to_string()) }
        })))
}
