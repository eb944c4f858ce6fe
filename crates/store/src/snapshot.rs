//! Snapshots: an aggregate's state every N events, so loading reads the snapshot and only the
//! events after it — load time stays flat however long the stream grows.

use telar_sql::{Db, Migration, query};

use crate::Result;

pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    version: 1_000_101,
    name: "telar event store snapshots",
    sqlite: "CREATE TABLE es_snapshots (stream TEXT PRIMARY KEY, version INTEGER NOT NULL, schema INTEGER NOT NULL, state TEXT NOT NULL, taken_at TEXT NOT NULL);",
    postgres: "CREATE TABLE es_snapshots (stream TEXT PRIMARY KEY, version BIGINT NOT NULL, schema BIGINT NOT NULL, state TEXT NOT NULL, taken_at TEXT NOT NULL);",
}];

/// The stored snapshot of `stream` if it was taken with `schema` (a snapshot of an older state
/// shape is ignored: the aggregate replays from the start and a fresh snapshot replaces it).
pub(crate) async fn read(db: &Db, stream: &str, schema: u32) -> Result<Option<(i64, String)>> {
    let row = query("SELECT version, state FROM es_snapshots WHERE stream = $1 AND schema = $2")
        .bind(stream)
        .bind(i64::from(schema))
        .fetch_optional(db)
        .await?;
    Ok(match row {
        Some(row) => Some((row.get("version")?, row.get("state")?)),
        None => None,
    })
}

pub(crate) async fn write(
    db: &Db,
    stream: &str,
    version: i64,
    schema: u32,
    state: String,
) -> Result<()> {
    query(
        "INSERT INTO es_snapshots (stream, version, schema, state, taken_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (stream) DO UPDATE SET version = excluded.version, schema = excluded.schema,
           state = excluded.state, taken_at = excluded.taken_at
         WHERE es_snapshots.version < excluded.version",
    )
    .bind(stream)
    .bind(version)
    .bind(i64::from(schema))
    .bind(state)
    .bind(crate::store::now_rfc3339())
    .execute(db)
    .await?;
    Ok(())
}
