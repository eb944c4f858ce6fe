//! sharing (8011): short links to a document with an expiry and an access counter. `GET
//! /s/{code}` needs no token: it counts the access and redirects to a fresh 15-minute download
//! link; an expired, revoked or used-up link is 410 Gone.

mod routes;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use telar_auth::Verifier;
use telar_bus::{Bus, Outbox};
use telar_kit::KitConfig;
use telar_sql::{Db, Migration};

use crate::iam::Authorizer;
use crate::shared::{App, ServiceClient, TokenSource};

pub const NAME: &str = "sharing";

pub(crate) const MIGRATION: Migration = Migration {
    version: 1,
    name: "shares",
    sqlite: "
CREATE TABLE shares (
    code TEXT PRIMARY KEY, document_id TEXT NOT NULL, owner TEXT NOT NULL, expires_at INTEGER NOT NULL,
    max_accesses INTEGER, accesses INTEGER NOT NULL DEFAULT 0, revoked_at TEXT, created_by TEXT NOT NULL,
    created_at TEXT NOT NULL);
CREATE INDEX shares_by_document ON shares (document_id);",
    postgres: "
CREATE TABLE shares (
    code TEXT PRIMARY KEY, document_id TEXT NOT NULL, owner TEXT NOT NULL, expires_at BIGINT NOT NULL,
    max_accesses BIGINT, accesses BIGINT NOT NULL DEFAULT 0, revoked_at TEXT, created_by TEXT NOT NULL,
    created_at TEXT NOT NULL);
CREATE INDEX shares_by_document ON shares (document_id);",
};

/// `[services.sharing.settings]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SharingConfig {
    /// Where `/s/{code}` is reached (the gateway in `telar up`).
    pub public_url: String,
    pub default_expiry_secs: u64,
    pub max_expiry_secs: u64,
    pub ingestion_url: String,
    pub iam_url: String,
    pub timeout_ms: u64,
}

impl Default for SharingConfig {
    fn default() -> Self {
        SharingConfig {
            public_url: "service://gateway".into(),
            default_expiry_secs: 7 * 24 * 3600,
            max_expiry_secs: 30 * 24 * 3600,
            ingestion_url: "service://ingestion".into(),
            iam_url: "service://iam".into(),
            timeout_ms: 10_000,
        }
    }
}

#[derive(Clone)]
pub(crate) struct State {
    pub db: Db,
    pub outbox: Outbox,
    pub ingestion: ServiceClient,
    pub authorizer: Authorizer,
    pub config: std::sync::Arc<SharingConfig>,
}

pub async fn build(
    db: Db,
    bus: Bus,
    config: SharingConfig,
    verifier: Verifier,
    tokens: TokenSource,
    kit: KitConfig,
) -> Result<App, String> {
    db.migrate(&[MIGRATION, Outbox::MIGRATION])
        .await
        .map_err(|e| e.to_string())?;
    let timeout = Duration::from_millis(config.timeout_ms);
    let outbox = Outbox::new();
    let state = State {
        db: db.clone(),
        outbox: outbox.clone(),
        ingestion: ServiceClient::new(&config.ingestion_url, timeout, tokens.clone()),
        authorizer: Authorizer::new(ServiceClient::new(&config.iam_url, timeout, tokens)),
        config: std::sync::Arc::new(config),
    };
    let service = crate::shared::service(NAME, kit, verifier, routes::router(state), &db);
    let relay = outbox.relay(db, bus);
    Ok(App::new(service).task(move |stop| relay.run(stop)))
}
