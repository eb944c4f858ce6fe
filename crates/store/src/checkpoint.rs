//! Checkpoints of projections and relays: the position up to which a consumer of `read_all`
//! is done, kept in the consumer's own database and moved in the same transaction as its
//! writes.

use telar_sql::{Db, Migration, Tx, query};

use crate::{Error, Result};

pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    version: 1_000_102,
    name: "telar event store checkpoints",
    sqlite: "CREATE TABLE es_checkpoints (name TEXT PRIMARY KEY, position INTEGER NOT NULL, updated_at TEXT NOT NULL);",
    postgres: "CREATE TABLE es_checkpoints (name TEXT PRIMARY KEY, position BIGINT NOT NULL, updated_at TEXT NOT NULL);",
}];

pub(crate) async fn prepare(db: &Db, name: &str) -> Result<()> {
    db.migrate(MIGRATIONS).await?;
    query("INSERT INTO es_checkpoints (name, position, updated_at) VALUES ($1, 0, $2) ON CONFLICT (name) DO NOTHING")
        .bind(name)
        .bind(crate::store::now_rfc3339())
        .execute(db)
        .await?;
    Ok(())
}

pub(crate) async fn read(db: &Db, name: &str) -> Result<i64> {
    Ok(query("SELECT position FROM es_checkpoints WHERE name = $1")
        .bind(name)
        .fetch_one(db)
        .await?
        .get("position")?)
}

/// Moves the checkpoint from `from` to `to` inside `tx`. Fails if it is no longer at `from`
/// (another runner of the same name moved it): the caller rolls back, so no effect is applied
/// twice.
pub(crate) async fn advance(tx: &mut Tx, name: &str, from: i64, to: i64) -> Result<()> {
    let moved = query(
        "UPDATE es_checkpoints SET position = $3, updated_at = $4 WHERE name = $1 AND position = $2",
    )
    .bind(name)
    .bind(from)
    .bind(to)
    .bind(crate::store::now_rfc3339())
    .execute(&mut *tx)
    .await?;
    if moved == 1 {
        Ok(())
    } else {
        Err(Error::Conflict {
            stream: format!("checkpoint {name}"),
            expected: from.to_string(),
            actual: -1,
        })
    }
}

/// Where one consumer of `read_all` stands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Checkpoint {
    pub name: String,
    pub position: i64,
    pub updated_at: String,
}

/// Every checkpoint kept in `db` (projections, and relays as `relay:NAME`).
pub async fn checkpoints(db: &Db) -> Result<Vec<Checkpoint>> {
    db.migrate(MIGRATIONS).await?;
    let rows = query("SELECT name, position, updated_at FROM es_checkpoints ORDER BY name")
        .fetch_all(db)
        .await?;
    rows.iter()
        .map(|row| {
            Ok(Checkpoint {
                name: row.get("name")?,
                position: row.get("position")?,
                updated_at: row.get("updated_at")?,
            })
        })
        .collect()
}
