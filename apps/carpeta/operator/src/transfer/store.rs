//! The transfers this operator took part in, one row per saga. Writes go through the citizen's
//! fence: a saga whose lock expired (another took the citizen) cannot write any more.

use serde::{Deserialize, Serialize};
use telar_resilience::Fences;
use telar_sql::{Db, Migration, Row, query};

pub(crate) const MIGRATION: Migration = Migration {
    version: 1,
    name: "transfers",
    sqlite: "
CREATE TABLE transfers (
    id TEXT PRIMARY KEY, citizen TEXT NOT NULL, direction TEXT NOT NULL, peer TEXT NOT NULL,
    status TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '', token INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE INDEX transfers_by_citizen ON transfers (citizen, created_at);",
    postgres: "
CREATE TABLE transfers (
    id TEXT PRIMARY KEY, citizen TEXT NOT NULL, direction TEXT NOT NULL, peer TEXT NOT NULL,
    status TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '', token BIGINT NOT NULL DEFAULT 0, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE INDEX transfers_by_citizen ON transfers (citizen, created_at);",
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Transfer {
    /// The saga's id.
    pub id: String,
    pub citizen: String,
    /// `out` (sent to another operator) or `in` (received).
    pub direction: String,
    /// The other operator (its id, or its confirm URL when receiving).
    pub peer: String,
    /// `running`, `completed` or `failed`.
    pub status: String,
    pub detail: String,
    pub created_at: String,
    pub updated_at: String,
}

fn to_transfer(row: &Row) -> telar_sql::Result<Transfer> {
    Ok(Transfer {
        id: row.get("id")?,
        citizen: row.get("citizen")?,
        direction: row.get("direction")?,
        peer: row.get("peer")?,
        status: row.get("status")?,
        detail: row.get("detail")?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
    })
}

pub(crate) async fn get(db: &Db, id: &str) -> telar_sql::Result<Option<Transfer>> {
    query("SELECT * FROM transfers WHERE id = $1")
        .bind(id.to_owned())
        .fetch_optional(db)
        .await?
        .as_ref()
        .map(to_transfer)
        .transpose()
}

pub(crate) async fn of_citizen(db: &Db, citizen: &str) -> telar_sql::Result<Vec<Transfer>> {
    let rows = query("SELECT * FROM transfers WHERE citizen = $1 ORDER BY created_at DESC, id")
        .bind(citizen.to_owned())
        .fetch_all(db)
        .await?;
    rows.iter().map(to_transfer).collect()
}

/// The running outgoing transfer of a citizen (the one a confirmation is for).
pub(crate) async fn running_out(db: &Db, citizen: &str) -> telar_sql::Result<Option<Transfer>> {
    query("SELECT * FROM transfers WHERE citizen = $1 AND direction = 'out' AND status = 'running' ORDER BY created_at DESC LIMIT 1")
        .bind(citizen.to_owned())
        .fetch_optional(db)
        .await?
        .as_ref()
        .map(to_transfer)
        .transpose()
}

/// Records or moves a transfer under the citizen's fence. `Ok(false)`: the fence refused (this
/// saga no longer holds the citizen).
pub(crate) async fn record(db: &Db, transfer: &Transfer, token: u64) -> Result<bool, String> {
    let mut tx = db.begin().await.map_err(|e| e.to_string())?;
    if !Fences::admit(&mut tx, &format!("citizen:{}", transfer.citizen), token)
        .await
        .map_err(|e| e.to_string())?
    {
        return Ok(false);
    }
    query(
        "INSERT INTO transfers (id, citizen, direction, peer, status, detail, token, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $8, $7, $7)
         ON CONFLICT (id) DO UPDATE SET status = excluded.status, detail = excluded.detail, updated_at = excluded.updated_at",
    )
    .bind(transfer.id.clone())
    .bind(transfer.citizen.clone())
    .bind(transfer.direction.clone())
    .bind(transfer.peer.clone())
    .bind(transfer.status.clone())
    .bind(transfer.detail.clone())
    .bind(transfer.updated_at.clone())
    .bind(i64::try_from(token).unwrap_or(i64::MAX))
    .execute(&mut tx)
    .await
    .map_err(|e| e.to_string())?;
    tx.commit().await.map_err(|e| e.to_string())?;
    Ok(true)
}

/// The lock token a saga recorded with its transfer (to resume after a crash).
pub(crate) async fn token_of(db: &Db, id: &str) -> telar_sql::Result<Option<u64>> {
    Ok(query("SELECT token FROM transfers WHERE id = $1")
        .bind(id.to_owned())
        .fetch_optional(db)
        .await?
        .map(|row| row.get::<i64>("token"))
        .transpose()?
        .and_then(|t| u64::try_from(t).ok()))
}
