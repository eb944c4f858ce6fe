//! The audit service of a telar system. It consumes the events the system marks auditable (type
//! patterns from config) and explicit `audit.log` events, and keeps them in an append-only log
//! where each record carries the hash of the one before: editing or deleting any record breaks
//! the chain at that record, and `GET /audit/verify` (or `telar audit verify`) names it.

mod consume;
mod log;
mod record;
mod routes;
mod schema;

use serde::{Deserialize, Serialize};
use telar_kit::{KitConfig, ReadyCheck, Service};
use telar_sql::Db;

pub use consume::{GROUP, subscribe};
pub use log::{AuditError, AuditLog, Broken, Filter, Verification, append_in};
pub use record::{AuditRecord, GENESIS, NewRecord, chain_hash};

pub const NAME: &str = "audit";

/// `[services.audit.settings]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Event types audited besides `audit.log` (topic patterns: `carpeta.>`, `*.document.*`).
    pub topics: Vec<String>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            topics: vec![">".into()],
        }
    }
}

/// The service (routes, readiness) and its log. Subscribe the log to the bus with
/// [`subscribe`].
pub async fn build(db: Db, kit: KitConfig) -> Result<(Service, AuditLog), AuditError> {
    let log = AuditLog::open(db.clone()).await?;
    let ready = ReadyCheck::new("database", move || {
        let db = db.clone();
        async move { db.ping().await.map_err(|e| e.to_string()) }
    });
    let service = Service::new(NAME)
        .config(kit)
        .api(routes::router(log.clone()))
        .ready_check(ready);
    Ok((service, log))
}
