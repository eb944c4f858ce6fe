//! The identity service: users with Argon2id password hashes (OWASP parameters: m = 19 MiB,
//! t = 2, p = 1), service accounts, `POST /token` (password, client credentials and refresh
//! grants), refresh tokens stored hashed and rotated on every use — reusing a rotated one revokes
//! its whole family — `POST /revoke`, and the OpenID discovery document and JWKS.
//!
//! Every system runs one, on its own database: `telar_identity::build(db, config, kit).await`.

mod accounts;
mod keystore;
mod login;
mod routes;
mod schema;
mod tokens;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use telar_kit::{KitConfig, Service};
use telar_sql::Db;

pub use accounts::{Accounts, NewAccount};
pub use login::LoginPolicy;
pub use tokens::TokenResponse;

pub const NAME: &str = "identity";

/// `[services.identity.settings]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// The `iss` of every token and the base of the discovery document.
    pub issuer: String,
    /// The `aud` of every token.
    pub audience: String,
    pub access_ttl_secs: i64,
    pub refresh_ttl_secs: i64,
    /// A new signing key after this long (the old one stays published until its tokens expire).
    pub rotate_keys_after_secs: i64,
    /// Base64 of 32 bytes: encrypts the signing keys at rest (from the secrets, not the file).
    pub keys_secret: Option<String>,
    pub login: LoginPolicy,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            issuer: "http://127.0.0.1:8010".into(),
            audience: "telar".into(),
            access_ttl_secs: 900,
            refresh_ttl_secs: 14 * 24 * 3600,
            rotate_keys_after_secs: 30 * 24 * 3600,
            keys_secret: None,
            login: LoginPolicy::default(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct State {
    pub accounts: Accounts,
    pub tokens: Arc<tokens::Tokens>,
    pub login: Arc<login::LoginProtection>,
    pub config: Arc<IdentityConfig>,
}

/// Signs a token for `claims` with the identity service's current key, from its database (for
/// `telar token issue`: operators and tests). `iss`, `aud`, `iat` and `jti` are filled in here.
pub async fn issue_token(
    db: Db,
    config: &IdentityConfig,
    mut claims: telar_auth::Claims,
    ttl_secs: i64,
) -> Result<String, telar_sql::Error> {
    db.migrate(MIGRATIONS).await?;
    let tokens = tokens::Tokens::open(db, config).await?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    claims.iss = config.issuer.clone();
    claims.aud = config.audience.clone();
    claims.iat = now;
    claims.exp = now + ttl_secs;
    claims.jti = telar_types::new_id().to_string();
    tokens.sign(&claims)
}

/// The service's database migrations.
pub const MIGRATIONS: &[telar_sql::Migration] = schema::MIGRATIONS;

/// The identity service on `db` (migrated, its signing keys created on first start).
pub async fn build(
    db: Db,
    config: IdentityConfig,
    kit: KitConfig,
) -> Result<(Service, Accounts), telar_sql::Error> {
    db.migrate(MIGRATIONS).await?;
    let accounts = Accounts::new(db.clone());
    let tokens = Arc::new(tokens::Tokens::open(db.clone(), &config).await?);
    let state = State {
        accounts: accounts.clone(),
        tokens,
        login: Arc::new(login::LoginProtection::in_memory(config.login.clone())),
        config: Arc::new(config),
    };
    let service = Service::new(NAME)
        .config(kit)
        .ready_check(telar_kit::ReadyCheck::new("database", move || {
            let db = db.clone();
            async move { db.ping().await.map_err(|e| e.to_string()) }
        }))
        .api_fixed_format(routes::routes(state));
    Ok((service, accounts))
}
