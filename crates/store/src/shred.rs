//! Crypto-shredding: personal fields of event payloads encrypted with a per-subject key
//! (AES-256-GCM), so that deleting the subject's keys makes the data unreadable wherever the
//! events are kept, while the streams stay replayable — a shredded field reads as `"[redacted]"`.
//!
//! Keys live in their own table (`es_keys`), each wrapped (AES-256-GCM) with the master key the
//! process is given: a copy of the database alone reveals nothing. A subject may have several
//! keys (rotation: new events use the newest, old ones still decrypt); `forget` deletes them all.
//! An encrypted field is `{"$enc": base64(nonce ‖ ciphertext), "kid": key id}`; the event's
//! metadata names the subject, key and fields under `shredding`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use telar_sql::{Db, Migration, Tx, query};

use crate::event::{NewEvent, RecordedEvent};
use crate::{Error, Result};

/// A subject's newest key.
const NEWEST_KEY: &str = "SELECT key_id, wrapped FROM es_keys WHERE subject = $1 ORDER BY created_at DESC, key_id DESC LIMIT 1";

/// What a shredded field reads as.
pub const REDACTED: &str = "[redacted]";

/// How long another process's `forget` may take to be seen here (this process: at once).
const CACHE_TTL: Duration = Duration::from_secs(30);

pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    version: 1_000_103,
    name: "telar event store keys",
    sqlite: "CREATE TABLE es_keys (key_id TEXT PRIMARY KEY, subject TEXT NOT NULL, wrapped BLOB NOT NULL, created_at TEXT NOT NULL);
             CREATE INDEX es_keys_by_subject ON es_keys (subject, created_at);",
    postgres: "CREATE TABLE es_keys (key_id TEXT PRIMARY KEY, subject TEXT NOT NULL, wrapped BYTEA NOT NULL, created_at TEXT NOT NULL);
               CREATE INDEX es_keys_by_subject ON es_keys (subject, created_at);",
}];

/// key id → key (None: forgotten), with when it was read.
type KeyCache = HashMap<String, (Option<[u8; 32]>, Instant)>;

/// Per-subject keys. Cheap to clone.
#[derive(Clone)]
pub struct Shredder {
    db: Db,
    master: Arc<Aes256Gcm>,
    cache: Arc<Mutex<KeyCache>>,
}

impl Shredder {
    /// `master_key`: 32 bytes, from the service's secret configuration.
    pub async fn open(db: Db, master_key: &[u8]) -> Result<Self> {
        let master = Aes256Gcm::new_from_slice(master_key)
            .map_err(|_| Error::Invalid("the master key must be 32 bytes".into()))?;
        db.migrate(MIGRATIONS).await?;
        Ok(Shredder {
            db,
            master: Arc::new(master),
            cache: Arc::default(),
        })
    }

    /// Encrypts `fields` (top-level keys of the payload) of `event` with `subject`'s newest key
    /// (created on first use).
    pub async fn encrypt(
        &self,
        subject: &str,
        event: &mut NewEvent,
        fields: &[&str],
    ) -> Result<()> {
        let (kid, encrypted) = self.seal_json(subject, &mut event.data, fields).await?;
        event.metadata.extra.insert(
            "shredding".into(),
            json!({"subject": subject, "kid": kid, "fields": encrypted}),
        );
        Ok(())
    }

    /// Decrypts the encrypted fields of a stored event; those whose key was forgotten read as
    /// [`REDACTED`].
    pub async fn decrypt(&self, event: &mut RecordedEvent) -> Result<()> {
        if !event.metadata.extra.contains_key("shredding") {
            return Ok(());
        }
        let mut keys = HashMap::new();
        for kid in sealed_key_ids(&event.data) {
            let key = self.key(&kid).await?;
            keys.insert(kid, key);
        }
        open_sealed(&mut event.data, &keys);
        Ok(())
    }

    /// Encrypts the top-level `fields` of the JSON object `data` (any payload: an event's, an
    /// envelope's) with `subject`'s newest key, created on first use. Returns the key id and
    /// the fields that were there.
    pub async fn seal_json<'f>(
        &self,
        subject: &str,
        data: &mut Value,
        fields: &[&'f str],
    ) -> Result<(String, Vec<&'f str>)> {
        let (kid, key) = self.current_key(subject).await?;
        let encrypted = seal_fields(&key, &kid, data, fields)?;
        Ok((kid, encrypted))
    }

    /// The key `kid`, or `None` once its subject was forgotten (or it never existed) — for a
    /// service that hands keys to the readers of its events.
    pub async fn key_by_id(&self, kid: &str) -> Result<Option<[u8; 32]>> {
        self.key(kid).await
    }

    /// A new key for `subject`: later events use it, earlier ones still decrypt.
    pub async fn rotate(&self, subject: &str) -> Result<String> {
        let mut tx = self.db.begin().await?;
        let (kid, key) = self.insert_key(&mut tx, subject).await?;
        tx.commit().await?;
        self.remember(&kid, Some(key));
        Ok(kid)
    }

    /// Deletes every key of `subject`: its encrypted fields are unreadable from now on, in
    /// every copy of the events. Returns how many keys were deleted.
    pub async fn forget(&self, subject: &str) -> Result<u64> {
        let kids: Vec<String> = query("SELECT key_id FROM es_keys WHERE subject = $1")
            .bind(subject)
            .fetch_all(&self.db)
            .await?
            .iter()
            .filter_map(|row| row.get("key_id").ok())
            .collect();
        let deleted = query("DELETE FROM es_keys WHERE subject = $1")
            .bind(subject)
            .execute(&self.db)
            .await?;
        for kid in kids {
            self.remember(&kid, None);
        }
        Ok(deleted)
    }

    /// `subject`'s newest key and its id (created on first use): to seal with
    /// [`seal_fields`] inside a transaction that must not wait on this one's writes.
    pub async fn subject_key(&self, subject: &str) -> Result<(String, [u8; 32])> {
        self.current_key(subject).await
    }

    /// `subject`'s newest key, created inside `tx` when it has none (no write of its own: the
    /// key is committed with the caller's rows, or not at all).
    pub async fn subject_key_in(&self, tx: &mut Tx, subject: &str) -> Result<(String, [u8; 32])> {
        let row = query(NEWEST_KEY)
            .bind(subject)
            .fetch_optional(&mut *tx)
            .await?;
        match row {
            Some(row) => self.decode(&row),
            None => self.insert_key(tx, subject).await,
        }
    }

    /// The newest key, read without a transaction; the first one is created in one (which
    /// reads again, so two first uses agree on one key).
    async fn current_key(&self, subject: &str) -> Result<(String, [u8; 32])> {
        let row = query(NEWEST_KEY)
            .bind(subject)
            .fetch_optional(&self.db)
            .await?;
        if let Some(row) = row {
            return self.decode(&row);
        }
        let mut tx = self.db.begin().await?;
        let (kid, key) = self.subject_key_in(&mut tx, subject).await?;
        tx.commit().await?;
        self.remember(&kid, Some(key));
        Ok((kid, key))
    }

    async fn insert_key(&self, tx: &mut Tx, subject: &str) -> Result<(String, [u8; 32])> {
        let key: [u8; 32] = rand::random();
        let kid = telar_types::new_id().to_string();
        query("INSERT INTO es_keys (key_id, subject, wrapped, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&kid)
            .bind(subject)
            .bind(seal(&self.master, &key)?.into_bytes())
            .bind(crate::store::now_rfc3339())
            .execute(&mut *tx)
            .await?;
        Ok((kid, key))
    }

    fn decode(&self, row: &telar_sql::Row) -> Result<(String, [u8; 32])> {
        let kid: String = row.get("key_id")?;
        let wrapped: Vec<u8> = row.get("wrapped")?;
        Ok((kid, self.unwrap_key(&wrapped)?))
    }

    async fn key(&self, kid: &str) -> Result<Option<[u8; 32]>> {
        if let Ok(cache) = self.cache.lock()
            && let Some((key, at)) = cache.get(kid)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(*key);
        }
        let row = query("SELECT wrapped FROM es_keys WHERE key_id = $1")
            .bind(kid)
            .fetch_optional(&self.db)
            .await?;
        let key = match row {
            Some(row) => Some(self.unwrap_key(&row.get::<Vec<u8>>("wrapped")?)?),
            None => None,
        };
        self.remember(kid, key);
        Ok(key)
    }

    fn unwrap_key(&self, wrapped: &[u8]) -> Result<[u8; 32]> {
        let text = std::str::from_utf8(wrapped).unwrap_or_default();
        open(&self.master, text)
            .and_then(|bytes| <[u8; 32]>::try_from(bytes.as_slice()).ok())
            .ok_or_else(|| Error::Invalid("a stored key does not open with this master key".into()))
    }

    fn remember(&self, kid: &str, key: Option<[u8; 32]>) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(kid.to_owned(), (key, Instant::now()));
        }
    }
}

/// Encrypts the top-level `fields` of `data` with `key` (id `kid`) in place; returns those
/// present.
pub fn seal_fields<'f>(
    key: &[u8; 32],
    kid: &str,
    data: &mut Value,
    fields: &[&'f str],
) -> Result<Vec<&'f str>> {
    let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| Error::Invalid("key".into()))?;
    let mut encrypted = Vec::new();
    for field in fields {
        let Some(value) = data.get_mut(*field) else {
            continue;
        };
        let plain = serde_json::to_vec(value).map_err(|e| Error::Invalid(e.to_string()))?;
        *value = json!({"$enc": seal(&cipher, &plain)?, "kid": kid});
        encrypted.push(*field);
    }
    Ok(encrypted)
}

/// The key ids the encrypted top-level fields of `data` need.
pub fn sealed_key_ids(data: &Value) -> Vec<String> {
    let mut kids: Vec<String> = data
        .as_object()
        .into_iter()
        .flat_map(|fields| fields.values())
        .filter(|value| value.get("$enc").is_some())
        .filter_map(|value| value.get("kid").and_then(Value::as_str).map(str::to_owned))
        .collect();
    kids.sort();
    kids.dedup();
    kids
}

/// Decrypts the encrypted top-level fields of `data` with `keys` (key id → key, `None` when
/// forgotten); a field whose key is forgotten, missing or wrong reads as [`REDACTED`].
pub fn open_sealed(data: &mut Value, keys: &HashMap<String, Option<[u8; 32]>>) {
    let Value::Object(fields) = data else {
        return;
    };
    for value in fields.values_mut() {
        let (Some(sealed), Some(kid)) = (
            value.get("$enc").and_then(Value::as_str),
            value.get("kid").and_then(Value::as_str),
        ) else {
            continue;
        };
        let plain = keys
            .get(kid)
            .copied()
            .flatten()
            .and_then(|key| Aes256Gcm::new_from_slice(&key).ok())
            .and_then(|cipher| open(&cipher, sealed))
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        *value = plain.unwrap_or_else(|| Value::String(REDACTED.into()));
    }
}

/// base64(nonce ‖ ciphertext) with a fresh random 96-bit nonce.
fn seal(cipher: &Aes256Gcm, plain: &[u8]) -> Result<String> {
    let nonce_bytes: [u8; 12] = rand::random();
    let nonce = Nonce::from(nonce_bytes);
    let sealed = cipher
        .encrypt(&nonce, plain)
        .map_err(|_| Error::Invalid("encryption failed".into()))?;
    let mut out = nonce_bytes.to_vec();
    out.extend_from_slice(&sealed);
    Ok(STANDARD.encode(out))
}

fn open(cipher: &Aes256Gcm, sealed: &str) -> Option<Vec<u8>> {
    let bytes = STANDARD.decode(sealed).ok()?;
    if bytes.len() < 12 {
        return None;
    }
    let (nonce, body) = bytes.split_at(12);
    let nonce = Nonce::try_from(nonce).ok()?;
    cipher.decrypt(&nonce, body).ok()
}
