//! The operator's signing key: Ed25519, created at first start and kept in the service's
//! database. A signature is over the 32 bytes of the document's SHA-256.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};
use telar_sql::{Db, Migration, query};

pub(crate) const MIGRATION: Migration = Migration {
    version: 1,
    name: "signature key and receipts",
    sqlite: "
CREATE TABLE signature_key (singleton INTEGER PRIMARY KEY CHECK (singleton = 1), pkcs8 TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE signatures (
    document_id TEXT PRIMARY KEY, owner TEXT NOT NULL, title TEXT NOT NULL, sha256 TEXT NOT NULL,
    signature TEXT NOT NULL, key_id TEXT NOT NULL, status TEXT NOT NULL, hub_call INTEGER,
    hub_message TEXT NOT NULL DEFAULT '', signed_at TEXT NOT NULL, authenticated_at TEXT);",
    postgres: "
CREATE TABLE signature_key (singleton BIGINT PRIMARY KEY CHECK (singleton = 1), pkcs8 TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE signatures (
    document_id TEXT PRIMARY KEY, owner TEXT NOT NULL, title TEXT NOT NULL, sha256 TEXT NOT NULL,
    signature TEXT NOT NULL, key_id TEXT NOT NULL, status TEXT NOT NULL, hub_call BIGINT,
    hub_message TEXT NOT NULL DEFAULT '', signed_at TEXT NOT NULL, authenticated_at TEXT);",
};

pub(crate) struct SigningKey {
    pair: Ed25519KeyPair,
    pub key_id: String,
}

impl SigningKey {
    /// The stored key, or a new one stored now (one wins if two instances start at once).
    pub async fn load_or_create(db: &Db) -> Result<Self, String> {
        let existing = query("SELECT pkcs8 FROM signature_key WHERE singleton = 1")
            .fetch_optional(db)
            .await
            .map_err(|e| e.to_string())?;
        let pkcs8 = match existing {
            Some(row) => row.get::<String>("pkcs8").map_err(|e| e.to_string())?,
            None => {
                let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                    .map_err(|e| e.to_string())?;
                let encoded = STANDARD.encode(document.as_ref());
                query("INSERT INTO signature_key (singleton, pkcs8, created_at) VALUES (1, $1, $2) ON CONFLICT (singleton) DO NOTHING")
                    .bind(encoded)
                    .bind(crate::shared::now_rfc3339())
                    .execute(db)
                    .await
                    .map_err(|e| e.to_string())?;
                query("SELECT pkcs8 FROM signature_key WHERE singleton = 1")
                    .fetch_one(db)
                    .await
                    .and_then(|row| row.get::<String>("pkcs8"))
                    .map_err(|e| e.to_string())?
            }
        };
        let bytes = STANDARD.decode(pkcs8).map_err(|e| e.to_string())?;
        let pair = Ed25519KeyPair::from_pkcs8(&bytes).map_err(|e| e.to_string())?;
        let key_id = hex::encode(&Sha256::digest(pair.public_key().as_ref())[..8]);
        Ok(SigningKey { pair, key_id })
    }

    /// Base64 signature of the digest `sha256_hex`.
    pub fn sign(&self, sha256_hex: &str) -> Result<String, String> {
        let digest = hex::decode(sha256_hex).map_err(|e| e.to_string())?;
        Ok(STANDARD.encode(self.pair.sign(&digest).as_ref()))
    }

    pub fn public_key(&self) -> String {
        STANDARD.encode(self.pair.public_key().as_ref())
    }

    /// Whether `signature` (base64) is this key's over `sha256_hex`.
    pub fn verify(&self, sha256_hex: &str, signature: &str) -> bool {
        let (Ok(digest), Ok(signature)) =
            (hex::decode(sha256_hex), STANDARD.decode(signature.trim()))
        else {
            return false;
        };
        UnparsedPublicKey::new(&ED25519, self.pair.public_key().as_ref())
            .verify(&digest, &signature)
            .is_ok()
    }
}
