//! Users and service accounts: Argon2id hashes, roles, permissions, organisation.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use telar_sql::{Db, query};

/// An account to create.
#[derive(Debug, Clone)]
pub struct NewAccount {
    /// The username (users) or client id (service accounts).
    pub name: String,
    pub secret: String,
    pub roles: Vec<String>,
    pub permissions: Vec<String>,
    pub org_id: Option<String>,
}

/// An account as stored (without its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Account {
    pub id: String,
    pub name: String,
    pub roles: Vec<String>,
    pub permissions: Vec<String>,
    pub org_id: Option<String>,
}

#[derive(Clone)]
pub struct Accounts {
    db: Db,
}

/// Argon2id with the OWASP parameters (the `argon2` crate's defaults: m = 19 456 KiB, t = 2,
/// p = 1).
fn hasher() -> Argon2<'static> {
    Argon2::default()
}

fn hash(secret: &str) -> Result<String, telar_sql::Error> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|e| telar_sql::Error::Database(e.to_string()))?;
    hasher()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| telar_sql::Error::Database(e.to_string()))
}

/// A hash no secret matches: an unknown name is checked against it, so it costs the same time as
/// a wrong password.
fn decoy() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash("no account has this secret").unwrap_or_default())
}

impl Accounts {
    pub(crate) fn new(db: Db) -> Self {
        Accounts { db }
    }

    /// A user (password grant).
    pub async fn create_user(&self, account: NewAccount) -> Result<String, telar_sql::Error> {
        self.create("user", account).await
    }

    /// A service account (client-credentials grant).
    pub async fn create_client(&self, account: NewAccount) -> Result<String, telar_sql::Error> {
        self.create("client", account).await
    }

    /// Creates the service account, or gives an existing one of that name this secret and these
    /// roles (a process that generates its services' secret at start calls this every start).
    pub async fn ensure_client(&self, account: NewAccount) -> Result<String, telar_sql::Error> {
        let existing =
            query("SELECT id FROM identity_accounts WHERE kind = 'client' AND name = $1")
                .bind(&account.name)
                .fetch_optional(&self.db)
                .await?;
        let Some(row) = existing else {
            return self.create("client", account).await;
        };
        let id: String = row.get("id")?;
        query(
            "UPDATE identity_accounts SET secret_hash = $1, roles = $2, permissions = $3 WHERE id = $4",
        )
        .bind(hash(&account.secret)?)
        .bind(serde_json::to_string(&account.roles).unwrap_or_default())
        .bind(serde_json::to_string(&account.permissions).unwrap_or_default())
        .bind(&id)
        .execute(&self.db)
        .await?;
        Ok(id)
    }

    async fn create(&self, kind: &str, account: NewAccount) -> Result<String, telar_sql::Error> {
        let id = telar_types::new_id().to_string();
        let secret_hash = hash(&account.secret)?;
        query(
            "INSERT INTO identity_accounts (id, name, kind, secret_hash, roles, permissions, org_id, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&id)
        .bind(&account.name)
        .bind(kind)
        .bind(secret_hash)
        .bind(serde_json::to_string(&account.roles).unwrap_or_default())
        .bind(serde_json::to_string(&account.permissions).unwrap_or_default())
        .bind(account.org_id)
        .bind(time::OffsetDateTime::now_utc().unix_timestamp().to_string())
        .execute(&self.db)
        .await?;
        Ok(id)
    }

    /// The account if `name` exists with `kind` and `secret` matches. Unknown names and wrong
    /// secrets take the same time (both verify an Argon2id hash).
    pub(crate) async fn check(
        &self,
        kind: &str,
        name: &str,
        secret: &str,
    ) -> Result<Option<Account>, telar_sql::Error> {
        let row = query(
            "SELECT id, name, secret_hash, roles, permissions, org_id FROM identity_accounts WHERE name = $1 AND kind = $2",
        )
        .bind(name)
        .bind(kind)
        .fetch_optional(&self.db)
        .await?;
        let stored = match &row {
            Some(row) => row.get::<String>("secret_hash")?,
            None => decoy().to_owned(),
        };
        let secret = secret.to_owned();
        // Argon2 is deliberately slow: off the async threads.
        let matches = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&stored)
                .map(|parsed| hasher().verify_password(secret.as_bytes(), &parsed).is_ok())
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        match (row, matches) {
            (Some(row), true) => Ok(Some(account(&row)?)),
            _ => Ok(None),
        }
    }

    pub(crate) async fn get(&self, id: &str) -> Result<Option<Account>, telar_sql::Error> {
        let row = query(
            "SELECT id, name, roles, permissions, org_id FROM identity_accounts WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.db)
        .await?;
        row.as_ref().map(account).transpose()
    }
}

fn account(row: &telar_sql::Row) -> Result<Account, telar_sql::Error> {
    let roles: String = row.get("roles")?;
    let permissions: String = row.get("permissions")?;
    Ok(Account {
        id: row.get("id")?,
        name: row.get("name")?,
        roles: serde_json::from_str(&roles).unwrap_or_default(),
        permissions: serde_json::from_str(&permissions).unwrap_or_default(),
        org_id: row.get("org_id")?,
    })
}
