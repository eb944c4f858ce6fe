//! metadata (8003): a citizen's documents and Spanish full-text search over title, file name
//! and tags (tantivy in embedded mode, PostgreSQL full-text when the service's database is
//! PostgreSQL). Kept from `carpeta.document.*` events (inbox: one effect per event). Search
//! answers are cached 120 s and dropped for an owner whenever one of their documents changes.

mod consume;
mod routes;
mod store;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use telar_auth::Verifier;
use telar_bus::{Bus, Inbox};
use telar_kit::KitConfig;
use telar_resilience::Cache;
use telar_search::{PostgresIndex, SearchIndex, TantivyIndex};
use telar_sql::{Db, Dialect};

pub use store::DocumentMeta;

use crate::iam::Authorizer;
use crate::shared::{App, ServiceClient, SharedStore, TokenSource};

pub const NAME: &str = "metadata";

/// `[services.metadata.settings]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetadataConfig {
    /// The tantivy index (when the database is SQLite).
    pub index_dir: String,
    pub cache_secs: u64,
    /// Where cached search answers live: `memory` or `redis` (shared by instances).
    pub store: SharedStore,
    pub iam_url: String,
    pub timeout_ms: u64,
}

impl Default for MetadataConfig {
    fn default() -> Self {
        MetadataConfig {
            index_dir: "data/metadata-index".into(),
            cache_secs: 120,
            store: SharedStore::default(),
            iam_url: "service://iam".into(),
            timeout_ms: 10_000,
        }
    }
}

#[derive(Clone)]
pub(crate) struct State {
    pub metas: store::Metas,
    pub index: Arc<dyn SearchIndex>,
    pub cache: Cache,
    pub cache_ttl: Duration,
    pub authorizer: Authorizer,
}

/// How long a generation marker lives (far longer than any cached answer).
const GENERATION_TTL: Duration = Duration::from_secs(24 * 3600);

impl State {
    /// The current generation of `scope`'s cached searches (an owner, or `*` for staff's
    /// searches across owners). Cached answers are keyed by it.
    pub async fn generation(&self, scope: &str) -> String {
        self.cache
            .get::<String>(&format!("gen:{scope}"))
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| "0".into())
    }

    /// Makes every cached search of `owner` (and staff's across owners) unreachable: their
    /// generation moves on. Unlike deleting keys, this also defeats a search that read the index
    /// before the change and stores its answer after it.
    pub async fn invalidate(&self, owner: &str) {
        for scope in [owner, "*"] {
            let next = telar_types::new_id().to_string();
            if let Err(error) = self
                .cache
                .set(&format!("gen:{scope}"), &next, GENERATION_TTL)
                .await
            {
                tracing::warn!(%error, "search cache not invalidated");
            }
            let _ = self.cache.invalidate_prefix(&format!("{scope}:")).await;
        }
    }
}

pub async fn build(
    db: Db,
    bus: Bus,
    config: MetadataConfig,
    verifier: Verifier,
    tokens: TokenSource,
    kit: KitConfig,
) -> Result<App, String> {
    db.migrate(&[store::MIGRATION, Inbox::MIGRATION])
        .await
        .map_err(|e| e.to_string())?;
    let index: Arc<dyn SearchIndex> = match db.dialect() {
        Dialect::Postgres => Arc::new(
            PostgresIndex::open(db.clone())
                .await
                .map_err(|e| e.to_string())?,
        ),
        Dialect::Sqlite => {
            let dir = PathBuf::from(&config.index_dir);
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("index_dir {}: {e}", dir.display()))?;
            Arc::new(TantivyIndex::open(&dir).map_err(|e| e.to_string())?)
        }
    };
    let (_, cache_store) = config.store.open(NAME).await?;
    let state = State {
        metas: store::Metas { db: db.clone() },
        index,
        cache: Cache::new("metadata-search", cache_store),
        cache_ttl: Duration::from_secs(config.cache_secs),
        authorizer: Authorizer::new(ServiceClient::new(
            &config.iam_url,
            Duration::from_millis(config.timeout_ms),
            tokens,
        )),
    };
    let subscription = consume::subscribe(&bus, state.clone())
        .await
        .map_err(|e| e.to_string())?;
    let service = crate::shared::service(NAME, kit, verifier, routes::router(state), &db);
    Ok(App::new(service).subscription(subscription))
}
