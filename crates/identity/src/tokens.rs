//! Access tokens (EdDSA, short-lived) and refresh tokens (opaque, stored hashed, rotated on every
//! use; a reused one revokes its family — someone holds a stolen copy).

use std::sync::RwLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use sha2::{Digest, Sha256};
use telar_auth::{Claims, JwkSet, KeyRing};
use telar_sql::{Db, query};
use utoipa::ToSchema;

use crate::IdentityConfig;
use crate::accounts::Account;
use crate::keystore;

/// The token endpoint's answer (RFC 6749 §5.1).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

pub(crate) struct Tokens {
    db: Db,
    ring: RwLock<KeyRing>,
    cipher: Option<aes_gcm::Aes256Gcm>,
    rotate_after: i64,
    issuer: String,
    audience: String,
    access_ttl: i64,
    refresh_ttl: i64,
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn digest(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn keys_error(error: telar_auth::AuthError) -> telar_sql::Error {
    telar_sql::Error::Database(error.to_string())
}

impl Tokens {
    /// Loads the signing keys, creating them on first start.
    pub(crate) async fn open(db: Db, config: &IdentityConfig) -> Result<Self, telar_sql::Error> {
        let cipher = keystore::secret(config.keys_secret.as_deref())?;
        if cipher.is_none() {
            tracing::warn!("identity signing keys are stored unencrypted (set keys_secret)");
        }
        let stored = query("SELECT ring FROM identity_keys WHERE id = 1")
            .fetch_optional(&db)
            .await?;
        let ring = match stored.and_then(|row| row.get::<String>("ring").ok()) {
            Some(text) => serde_json::from_str(&keystore::open(cipher.as_ref(), &text)?)
                .map_err(|e| telar_sql::Error::Database(e.to_string()))?,
            None => {
                let ring = KeyRing::generate(now(), config.access_ttl_secs).map_err(keys_error)?;
                let sealed = keystore::seal(
                    cipher.as_ref(),
                    &serde_json::to_string(&ring).unwrap_or_default(),
                )?;
                query("INSERT INTO identity_keys (id, ring) VALUES (1, $1) ON CONFLICT (id) DO NOTHING")
                    .bind(sealed)
                    .execute(&db)
                    .await?;
                ring
            }
        };
        Ok(Tokens {
            db,
            ring: RwLock::new(ring),
            cipher,
            rotate_after: config.rotate_keys_after_secs,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            access_ttl: config.access_ttl_secs,
            refresh_ttl: config.refresh_ttl_secs,
        })
    }

    /// Rotates the signing key once it is older than `rotate_keys_after_secs` (checked when a
    /// token is issued); the old key stays published until its tokens expire.
    async fn rotate_if_due(&self) -> Result<(), telar_sql::Error> {
        let now = now();
        let rotated = {
            let mut ring = self
                .ring
                .write()
                .map_err(|_| telar_sql::Error::Database("key ring lock".into()))?;
            if ring
                .current_age(now)
                .is_none_or(|age| age < self.rotate_after)
            {
                return Ok(());
            }
            ring.rotate(now).map_err(keys_error)?;
            ring.prune(now);
            ring.clone()
        };
        tracing::info!(
            kid = rotated.current_kid().unwrap_or_default(),
            "identity signing key rotated"
        );
        let sealed = keystore::seal(
            self.cipher.as_ref(),
            &serde_json::to_string(&rotated).unwrap_or_default(),
        )?;
        query("UPDATE identity_keys SET ring = $1 WHERE id = 1")
            .bind(sealed)
            .execute(&self.db)
            .await?;
        Ok(())
    }

    pub(crate) fn jwks(&self) -> JwkSet {
        self.ring
            .read()
            .map(|ring| ring.jwks(now()))
            .unwrap_or(JwkSet { keys: Vec::new() })
    }

    /// Signs arbitrary claims with the current key.
    pub(crate) fn sign(&self, claims: &Claims) -> Result<String, telar_sql::Error> {
        let ring = self
            .ring
            .read()
            .map_err(|_| telar_sql::Error::Database("key ring lock".into()))?;
        ring.sign(claims).map_err(keys_error)
    }

    fn access(&self, account: &Account) -> Result<String, telar_sql::Error> {
        let issued = now();
        let claims = Claims {
            sub: account.id.clone(),
            roles: account.roles.clone(),
            permissions: account.permissions.clone(),
            org_id: account.org_id.clone(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            exp: issued + self.access_ttl,
            iat: issued,
            jti: telar_types::new_id().to_string(),
        };
        let ring = self
            .ring
            .read()
            .map_err(|_| telar_sql::Error::Database("key ring lock".into()))?;
        ring.sign(&claims).map_err(keys_error)
    }

    /// An access token, and a refresh token opening a new family when `with_refresh`.
    pub(crate) async fn issue(
        &self,
        account: &Account,
        with_refresh: bool,
    ) -> Result<TokenResponse, telar_sql::Error> {
        self.rotate_if_due().await?;
        let refresh_token = if with_refresh {
            Some(
                self.new_refresh(&account.id, &telar_types::new_id().to_string())
                    .await?,
            )
        } else {
            None
        };
        Ok(TokenResponse {
            access_token: self.access(account)?,
            token_type: "Bearer",
            expires_in: self.access_ttl,
            refresh_token,
        })
    }

    async fn new_refresh(
        &self,
        account_id: &str,
        family: &str,
    ) -> Result<String, telar_sql::Error> {
        let token = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        query(
            "INSERT INTO identity_refresh (token_hash, family, account_id, expires_at, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(digest(&token))
        .bind(family)
        .bind(account_id)
        .bind(now() + self.refresh_ttl)
        .bind(now().to_string())
        .execute(&self.db)
        .await?;
        Ok(token)
    }

    /// Rotates a refresh token: `Ok(None)` when it is unknown, expired, revoked or already used —
    /// the last also revokes its family.
    pub(crate) async fn refresh(
        &self,
        token: &str,
    ) -> Result<Option<(String, String)>, telar_sql::Error> {
        let hashed = digest(token);
        let Some(row) = query(
            "SELECT family, account_id, revoked, expires_at FROM identity_refresh WHERE token_hash = $1",
        )
        .bind(&hashed)
        .fetch_optional(&self.db)
        .await?
        else {
            return Ok(None);
        };
        let family: String = row.get("family")?;
        if row.get::<i64>("revoked")? != 0 || row.get::<i64>("expires_at")? <= now() {
            return Ok(None);
        }
        // Exactly one use wins, even for two concurrent refreshes of one token.
        let won = query("UPDATE identity_refresh SET used = 1 WHERE token_hash = $1 AND used = 0")
            .bind(&hashed)
            .execute(&self.db)
            .await?;
        if won != 1 {
            tracing::warn!(%family, "refresh token reused: revoking its family");
            self.revoke_family(&family).await?;
            return Ok(None);
        }
        let account_id: String = row.get("account_id")?;
        let next = self.new_refresh(&account_id, &family).await?;
        Ok(Some((account_id, next)))
    }

    pub(crate) async fn revoke(&self, token: &str) -> Result<(), telar_sql::Error> {
        let family = query("SELECT family FROM identity_refresh WHERE token_hash = $1")
            .bind(digest(token))
            .fetch_optional(&self.db)
            .await?;
        if let Some(row) = family {
            self.revoke_family(&row.get::<String>("family")?).await?;
        }
        Ok(())
    }

    async fn revoke_family(&self, family: &str) -> Result<(), telar_sql::Error> {
        query("UPDATE identity_refresh SET revoked = 1 WHERE family = $1")
            .bind(family)
            .execute(&self.db)
            .await?;
        Ok(())
    }

    pub(crate) fn access_for(&self, account: &Account) -> Result<String, telar_sql::Error> {
        self.access(account)
    }

    pub(crate) fn access_ttl(&self) -> i64 {
        self.access_ttl
    }
}
