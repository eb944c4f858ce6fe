//! ingestion (8002): a document's file, from upload link to deletion. Clients get signed links
//! (upload 1 h, download 15 min) and never credentials; `confirm` checks size and SHA-256 before
//! the document is `ready` and `carpeta.document.uploaded` goes out (outbox). Every action asks
//! iam first: a citizen reaches only their own documents.

mod routes;
mod store;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use telar_auth::Verifier;
use telar_bus::{Bus, Outbox};
use telar_kit::KitConfig;
use telar_objects::{Objects, ObjectsConfig};
use telar_sql::Db;

pub use store::Document;

use crate::iam::Authorizer;
use crate::shared::{App, ServiceClient, TokenSource};

pub const NAME: &str = "ingestion";

/// `[services.ingestion.settings]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestionConfig {
    /// Where files live and where links point (`public_url`: the gateway in `telar up`).
    pub objects: ObjectsConfig,
    pub upload_link_secs: u64,
    pub download_link_secs: u64,
    /// The iam service (`service://iam`).
    pub iam_url: String,
    pub timeout_ms: u64,
}

impl Default for IngestionConfig {
    fn default() -> Self {
        IngestionConfig {
            objects: ObjectsConfig::default(),
            upload_link_secs: 3_600,
            download_link_secs: 900,
            iam_url: "service://iam".into(),
            timeout_ms: 10_000,
        }
    }
}

#[derive(Clone)]
pub(crate) struct State {
    pub documents: store::Documents,
    pub objects: Objects,
    pub outbox: Outbox,
    pub authorizer: Authorizer,
    pub upload_link: Duration,
    pub download_link: Duration,
}

pub async fn build(
    db: Db,
    bus: Bus,
    config: IngestionConfig,
    verifier: Verifier,
    tokens: TokenSource,
    kit: KitConfig,
) -> Result<App, String> {
    db.migrate(&[store::MIGRATION, Outbox::MIGRATION])
        .await
        .map_err(|e| e.to_string())?;
    let objects = Objects::open(&config.objects).map_err(|e| e.to_string())?;
    let outbox = Outbox::new();
    let timeout = Duration::from_millis(config.timeout_ms);
    let state = State {
        documents: store::Documents { db: db.clone() },
        objects: objects.clone(),
        outbox: outbox.clone(),
        authorizer: Authorizer::new(ServiceClient::new(&config.iam_url, timeout, tokens)),
        upload_link: Duration::from_secs(config.upload_link_secs),
        download_link: Duration::from_secs(config.download_link_secs),
    };
    let service = crate::shared::service(NAME, kit, verifier, routes::router(state), &db)
        // Signed links are their own credential: no token on these.
        .routes(objects.routes());
    let relay = outbox.relay(db, bus);
    Ok(App::new(service).task(move |stop| relay.run(stop)))
}
