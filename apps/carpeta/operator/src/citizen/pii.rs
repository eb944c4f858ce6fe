//! Crypto-shredding of citizens' personal data in events. The citizen service keeps one key per
//! citizen (`telar_store::Shredder`, wrapped with a master key); the personal fields of every
//! event it publishes (`name`, `email`, `address`) are sealed with it, and so are those it hands
//! the signature service for its events. Readers that need the values (read-models,
//! notification) fetch keys by id from `GET /citizens/pii-keys/{kid}`. When a citizen leaves
//! for another operator their keys are deleted: every copy of their events — the bus log, the
//! audit log, a backup — keeps only ciphertext that nobody can open any more.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use telar_sql::{Db, Migration, query};
use telar_store::{Shredder, seal_fields};
use telar_types::Envelope;

/// The top-level fields sealed in Carpeta's events.
pub const PII_FIELDS: &[&str] = &["name", "email", "address"];

const MASTER_MIGRATION: Migration = Migration {
    version: 100,
    name: "citizen pii master key (embedded mode)",
    sqlite: "CREATE TABLE pii_master (id INTEGER PRIMARY KEY CHECK (id = 1), key TEXT NOT NULL);",
    postgres: "CREATE TABLE pii_master (id INTEGER PRIMARY KEY CHECK (id = 1), key TEXT NOT NULL);",
};

/// One citizen's current key, fetched before a transaction (sealing inside it then needs no
/// database access of its own).
pub struct PiiKey {
    kid: String,
    key: [u8; 32],
}

impl PiiKey {
    /// `envelope` with its personal fields sealed.
    pub fn seal(&self, mut envelope: Envelope) -> Result<Envelope, String> {
        if let Some(data) = envelope.data.as_mut() {
            self.seal_value(data)?;
        }
        Ok(envelope)
    }

    pub fn seal_value(&self, data: &mut Value) -> Result<(), String> {
        seal_fields(&self.key, &self.kid, data, PII_FIELDS)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// The keys of this operator's citizens.
#[derive(Clone)]
pub struct PiiVault {
    shredder: Shredder,
}

impl PiiVault {
    /// `master_key`: base64 of 32 bytes. Empty (embedded mode): one generated at first start
    /// and kept in this database — a copy of it then opens the keys too, so set one in
    /// production.
    pub async fn open(db: &Db, master_key: &str) -> Result<Self, String> {
        let master = if master_key.is_empty() {
            if db.dialect() == telar_sql::Dialect::Postgres {
                tracing::warn!(
                    "services.citizen.settings.pii_master_key is empty: the key that wraps citizens' keys is kept in the same database — set it"
                );
            }
            db.migrate(&[MASTER_MIGRATION])
                .await
                .map_err(|e| e.to_string())?;
            let generated = STANDARD.encode(rand::random::<[u8; 32]>());
            query("INSERT INTO pii_master (id, key) VALUES (1, $1) ON CONFLICT (id) DO NOTHING")
                .bind(generated)
                .execute(db)
                .await
                .map_err(|e| e.to_string())?;
            let row = query("SELECT key FROM pii_master WHERE id = 1")
                .fetch_one(db)
                .await
                .map_err(|e| e.to_string())?;
            row.get::<String>("key").map_err(|e| e.to_string())?
        } else {
            master_key.to_owned()
        };
        let master = STANDARD
            .decode(master.trim())
            .map_err(|_| "services.citizen.settings.pii_master_key: not base64".to_owned())?;
        if master.len() != 32 {
            return Err("services.citizen.settings.pii_master_key: must be 32 bytes".into());
        }
        let shredder = Shredder::open(db.clone(), &master)
            .await
            .map_err(|e| e.to_string())?;
        Ok(PiiVault { shredder })
    }

    /// `citizen`'s key, created inside `tx` if they have none (committed with the caller's
    /// rows: no write transaction of its own).
    pub async fn key_in(&self, tx: &mut telar_sql::Tx, citizen: &str) -> Result<PiiKey, String> {
        let (kid, key) = self
            .shredder
            .subject_key_in(tx, citizen)
            .await
            .map_err(|e| e.to_string())?;
        Ok(PiiKey { kid, key })
    }

    pub async fn key_for(&self, citizen: &str) -> Result<PiiKey, String> {
        let (kid, key) = self
            .shredder
            .subject_key(citizen)
            .await
            .map_err(|e| e.to_string())?;
        Ok(PiiKey { kid, key })
    }

    /// A key by id, base64; `None` once its citizen was forgotten.
    pub async fn key_by_id(&self, kid: &str) -> Result<Option<String>, String> {
        Ok(self
            .shredder
            .key_by_id(kid)
            .await
            .map_err(|e| e.to_string())?
            .map(|key| STANDARD.encode(key)))
    }

    /// Deletes every key of `citizen`: their sealed fields read as `[redacted]` everywhere.
    pub async fn forget(&self, citizen: &str) -> Result<u64, String> {
        self.shredder
            .forget(citizen)
            .await
            .map_err(|e| e.to_string())
    }
}

/// `GET /citizens/pii-keys/{kid}` and `GET /citizens/{id}/sealed-contact` (services only).
pub(crate) fn router(state: super::State) -> telar_kit::OpenApiRouter {
    telar_kit::OpenApiRouter::new()
        .routes(telar_kit::routes!(key))
        .routes(telar_kit::routes!(sealed_contact))
        .with_state(state)
}

#[derive(serde::Serialize, utoipa::ToSchema)]
struct KeyAnswer {
    kid: String,
    /// base64 of the 32-byte AES-256-GCM key.
    key: String,
}

/// A citizen key by id, for services that read sealed fields; 410 once the citizen left.
#[utoipa::path(get, path = "/citizens/pii-keys/{kid}", tag = "citizen", params(("kid" = String, Path)),
    responses((status = 200, body = KeyAnswer), (status = 410, body = telar_kit::Problem)))]
async fn key(
    axum::extract::State(state): axum::extract::State<super::State>,
    telar_auth::Authenticated(claims): telar_auth::Authenticated,
    axum::extract::Path(kid): axum::extract::Path<String>,
) -> Result<axum::Json<KeyAnswer>, telar_kit::ApiError> {
    crate::shared::require_any(&claims, &[crate::shared::SERVICE_ROLE])?;
    match state
        .pii
        .key_by_id(&kid)
        .await
        .map_err(telar_kit::ApiError::internal)?
    {
        Some(key) => Ok(axum::Json(KeyAnswer { kid, key })),
        None => Err(telar_kit::ApiError::with_status(
            http::StatusCode::GONE,
            "forgotten",
            format!("key {kid} does not exist or its citizen's data was shredded"),
        )),
    }
}

/// A citizen's name and email sealed with their key, for another service's events (the
/// signature service's `carpeta.document.authenticated`).
#[utoipa::path(get, path = "/citizens/{id}/sealed-contact", tag = "citizen", params(("id" = String, Path)),
    responses((status = 200), (status = 404, body = telar_kit::Problem)))]
async fn sealed_contact(
    axum::extract::State(state): axum::extract::State<super::State>,
    telar_auth::Authenticated(claims): telar_auth::Authenticated,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<axum::Json<Value>, telar_kit::ApiError> {
    crate::shared::require_any(&claims, &[crate::shared::SERVICE_ROLE])?;
    let citizen = state
        .citizens
        .get(&id)
        .await
        .map_err(telar_kit::ApiError::internal)?
        .ok_or_else(|| {
            telar_kit::ApiError::not_found(format!("no citizen {id} with this operator"))
        })?;
    let key = state
        .pii
        .key_for(&id)
        .await
        .map_err(telar_kit::ApiError::internal)?;
    let mut contact = serde_json::json!({"name": citizen.name, "email": citizen.email});
    key.seal_value(&mut contact)
        .map_err(telar_kit::ApiError::internal)?;
    Ok(axum::Json(contact))
}
