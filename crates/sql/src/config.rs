use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Which engine holds the services' data (`[database]`).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DbConfig {
    pub backend: Backend,
    pub sqlite: SqliteConfig,
    pub postgres: PostgresConfig,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// One SQLite file per service under the data dir.
    #[default]
    Sqlite,
    /// One schema per service in one PostgreSQL database.
    Postgres,
}

/// SQLite durability: `full` fsyncs every commit; `normal` (WAL) may lose the last commits on a
/// power loss, never on a process crash, and never corrupts.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    #[default]
    Full,
    Normal,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqliteConfig {
    /// Directory of the `<service>.db` files.
    pub dir: PathBuf,
    pub synchronous: Synchronous,
    /// How long a writer waits for the lock before answering `Unavailable`.
    pub busy_timeout_ms: u64,
    pub max_connections: u32,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        SqliteConfig {
            dir: PathBuf::from("data"),
            synchronous: Synchronous::Full,
            busy_timeout_ms: 5_000,
            max_connections: 8,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    /// Connection URL; a password in it is redacted by `telar config check`.
    pub url: String,
    pub max_connections: u32,
    pub min_connections: u32,
    /// How long a query waits for a free connection before answering `Unavailable`.
    pub acquire_timeout_ms: u64,
    /// Prefix of every service schema (`<prefix><service>`), to share one database.
    pub schema_prefix: String,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            url: "postgres://postgres@127.0.0.1:5432/telar".to_owned(),
            max_connections: 10,
            min_connections: 0,
            acquire_timeout_ms: 5_000,
            schema_prefix: String::new(),
        }
    }
}
