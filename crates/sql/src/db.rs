use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool, Postgres, Sqlite, SqlitePool};

use crate::config::{Backend, DbConfig, PostgresConfig, SqliteConfig, Synchronous};
use crate::migrate::{self, Migration};
use crate::query::{Executor, Target};
use crate::{Error, Result};

/// The SQL dialect behind a `Db`, for the rare query that must differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A service's database: a pool over its SQLite file or its PostgreSQL schema. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    pool: Pool,
    location: Arc<str>,
}

#[derive(Clone, Debug)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// An open transaction; dropped without `commit` it rolls back.
#[derive(Debug)]
pub struct Tx(TxInner);

#[derive(Debug)]
enum TxInner {
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    Postgres(sqlx::Transaction<'static, Postgres>),
}

impl Db {
    /// Opens the database of `service` as configured: `<dir>/<service>.db` or schema
    /// `<prefix><service>` (dashes become underscores).
    pub async fn connect(config: &DbConfig, service: &str) -> Result<Db> {
        match config.backend {
            Backend::Sqlite => {
                let path = config.sqlite.dir.join(format!("{service}.db"));
                Db::sqlite(&path, &config.sqlite).await
            }
            Backend::Postgres => {
                let schema = format!(
                    "{}{}",
                    config.postgres.schema_prefix,
                    service.replace('-', "_")
                );
                Db::postgres(&config.postgres, &schema).await
            }
        }
    }

    /// Opens (creating if missing) a SQLite file in WAL mode.
    pub async fn sqlite(path: &Path, config: &SqliteConfig) -> Result<Db> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| Error::Config(format!("cannot create {}: {e}", parent.display())))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match config.synchronous {
                Synchronous::Full => SqliteSynchronous::Full,
                Synchronous::Normal => SqliteSynchronous::Normal,
            })
            .busy_timeout(Duration::from_millis(config.busy_timeout_ms))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .acquire_timeout(Duration::from_millis(config.busy_timeout_ms))
            .connect_with(options)
            .await?;
        Ok(Db {
            pool: Pool::Sqlite(pool),
            location: path.display().to_string().into(),
        })
    }

    /// Connects to PostgreSQL with `search_path` set to `schema`, creating the schema if needed.
    pub async fn postgres(config: &PostgresConfig, schema: &str) -> Result<Db> {
        validate_schema_name(schema)?;
        let base = PgConnectOptions::from_str(&config.url)
            .map_err(|e| Error::Config(format!("database.postgres.url: {e}")))?;
        let connect_timeout = Duration::from_millis(config.acquire_timeout_ms);
        let mut admin = tokio::time::timeout(connect_timeout, PgConnection::connect_with(&base))
            .await
            .map_err(|_| Error::Unavailable("timed out connecting to postgres".into()))??;
        let create = format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"");
        match sqlx::raw_sql(AssertSqlSafe(create))
            .execute(&mut admin)
            .await
        {
            Ok(_) => {}
            // Two services racing to create the same schema: the loser sees a duplicate.
            Err(sqlx::Error::Database(db))
                if db.is_unique_violation() || db.code().as_deref() == Some("42P06") => {}
            Err(other) => return Err(other.into()),
        }
        let _ = admin.close().await;
        let options = base.options([("search_path", schema)]);
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .min_connections(config.min_connections)
            .acquire_timeout(connect_timeout)
            .connect_with(options)
            .await?;
        Ok(Db {
            pool: Pool::Postgres(pool),
            location: format!("postgres schema {schema}").into(),
        })
    }

    pub fn dialect(&self) -> Dialect {
        match self.pool {
            Pool::Sqlite(_) => Dialect::Sqlite,
            Pool::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Where the data lives (file path or schema), for startup output.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Starts a transaction. On SQLite it takes the write lock up front (`BEGIN IMMEDIATE`) so
    /// two writers queue on the busy timeout instead of failing at their first write.
    pub async fn begin(&self) -> Result<Tx> {
        let inner = match &self.pool {
            Pool::Sqlite(pool) => TxInner::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
            Pool::Postgres(pool) => TxInner::Postgres(pool.begin().await?),
        };
        Ok(Tx(inner))
    }

    /// Applies the migrations not yet applied, in version order, in one transaction.
    pub async fn migrate(&self, migrations: &[Migration]) -> Result<usize> {
        migrate::apply(self, migrations).await
    }

    /// A round trip to the engine, for readiness checks.
    pub async fn ping(&self) -> Result<()> {
        crate::query("SELECT 1").execute(self).await.map(|_| ())
    }

    /// Closes every connection; later queries fail.
    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite(pool) => pool.close().await,
            Pool::Postgres(pool) => pool.close().await,
        }
    }
}

impl Tx {
    pub fn dialect(&self) -> Dialect {
        match self.0 {
            TxInner::Sqlite(_) => Dialect::Sqlite,
            TxInner::Postgres(_) => Dialect::Postgres,
        }
    }

    pub async fn commit(self) -> Result<()> {
        match self.0 {
            TxInner::Sqlite(tx) => tx.commit().await?,
            TxInner::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }

    pub async fn rollback(self) -> Result<()> {
        match self.0 {
            TxInner::Sqlite(tx) => tx.rollback().await?,
            TxInner::Postgres(tx) => tx.rollback().await?,
        }
        Ok(())
    }

    /// Runs a multi-statement script (migrations).
    pub(crate) async fn execute_script(&mut self, script: &str) -> Result<()> {
        let script = AssertSqlSafe(script.to_owned());
        match &mut self.0 {
            TxInner::Sqlite(tx) => sqlx::raw_sql(script).execute(&mut **tx).await.map(|_| ())?,
            TxInner::Postgres(tx) => sqlx::raw_sql(script).execute(&mut **tx).await.map(|_| ())?,
        };
        Ok(())
    }
}

impl<'c> Executor<'c> for &'c Db {
    fn target(self) -> Target<'c> {
        match &self.pool {
            Pool::Sqlite(pool) => Target::SqlitePool(pool),
            Pool::Postgres(pool) => Target::PgPool(pool),
        }
    }
}

impl<'c> Executor<'c> for &'c mut Tx {
    fn target(self) -> Target<'c> {
        match &mut self.0 {
            TxInner::Sqlite(tx) => Target::SqliteConn(tx),
            TxInner::Postgres(tx) => Target::PgConn(tx),
        }
    }
}

fn validate_schema_name(schema: &str) -> Result<()> {
    let valid = !schema.is_empty()
        && schema.len() <= 63
        && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "schema name `{schema}` must be 1-63 lowercase letters, digits or underscores"
        )))
    }
}
