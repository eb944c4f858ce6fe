//! The platform's own projection: one row per stream (`es_stream_index`: version, last event
//! type and position, last update) — what an operator lists to see a service's aggregates. Every
//! service with a store can run and rebuild it (`telar projections rebuild stream-index`).

use futures::future::BoxFuture;
use telar_sql::{Db, Migration, Tx, query};

use crate::Result;
use crate::event::RecordedEvent;
use crate::projection::Projection;

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1_000_104,
    name: "telar stream index",
    sqlite: "CREATE TABLE es_stream_index (stream TEXT PRIMARY KEY, version INTEGER NOT NULL, last_type TEXT NOT NULL, last_position INTEGER NOT NULL, updated_at TEXT NOT NULL);",
    postgres: "CREATE TABLE es_stream_index (stream TEXT PRIMARY KEY, version BIGINT NOT NULL, last_type TEXT NOT NULL, last_position BIGINT NOT NULL, updated_at TEXT NOT NULL);",
}];

pub struct StreamIndex;

impl StreamIndex {
    pub const NAME: &'static str = "stream-index";

    /// Creates its table in `db` (the projection's target) if needed.
    pub async fn prepare(db: &Db) -> Result<Self> {
        db.migrate(MIGRATIONS).await?;
        Ok(StreamIndex)
    }
}

impl Projection for StreamIndex {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut Tx,
        event: &'a RecordedEvent,
    ) -> BoxFuture<'a, std::result::Result<(), String>> {
        Box::pin(async move {
            query(
                "INSERT INTO es_stream_index (stream, version, last_type, last_position, updated_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (stream) DO UPDATE SET version = excluded.version,
                   last_type = excluded.last_type, last_position = excluded.last_position,
                   updated_at = excluded.updated_at",
            )
            .bind(&event.stream)
            .bind(event.version)
            .bind(&event.ty)
            .bind(event.position)
            .bind(&event.recorded_at)
            .execute(tx)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
        })
    }

    fn reset<'a>(&'a self, tx: &'a mut Tx) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            query("DELETE FROM es_stream_index").execute(tx).await?;
            Ok(())
        })
    }
}
