//! A `Db` handle over SQLite (embedded mode, one file per service) and PostgreSQL (distributed
//! mode, one schema per service). Service code writes each query once, in the portable subset
//! both engines share (`$1` placeholders, `RETURNING`, `ON CONFLICT`); migrations are written per
//! dialect. See `docs/adr/0002-sql-strategy.md`.

mod config;
mod db;
mod error;
mod migrate;
mod query;
mod value;

pub use config::{Backend, DbConfig, PostgresConfig, SqliteConfig, Synchronous};
pub use db::{Db, Dialect, Tx};
pub use error::{Error, Result};
pub use migrate::Migration;
pub use query::{Executor, Query, Row, generated_query, placeholders, query};
pub use value::{Decodable, Value};
