//! Saga operations that need only the database: what `telar saga` and the admin routes use.
//! A retry or an abort changes the saga's state; the owning service's engine acts on it (at
//! once in-process, or at its next scan — `SagaEngine::run`).

use telar_sql::{Db, query};

use crate::engine::{load, now_rfc3339};
use crate::state::{SagaRecord, SagaStatus, StepLogEntry};
use crate::{Error, Result};

#[derive(Clone)]
pub struct SagaAdmin {
    db: Db,
}

impl SagaAdmin {
    pub fn new(db: Db) -> Self {
        SagaAdmin { db }
    }

    /// Creates the saga tables if needed (for a CLI opening a service's database).
    pub async fn prepare(&self) -> Result<()> {
        self.db.migrate(crate::schema::MIGRATIONS).await?;
        Ok(())
    }

    pub async fn get(&self, id: &str) -> Result<SagaRecord> {
        load(&self.db, id).await
    }

    /// The step log, oldest first.
    pub async fn log(&self, id: &str) -> Result<Vec<StepLogEntry>> {
        let rows = query(
            "SELECT step, phase, outcome, attempt, detail, duration_ms, at FROM saga_steps
             WHERE saga_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(StepLogEntry::from_row).collect()
    }

    /// Sagas, newest first, optionally of one status.
    pub async fn list(&self, status: Option<SagaStatus>, limit: u32) -> Result<Vec<SagaRecord>> {
        let rows = query(
            "SELECT id, saga_type, status, step, input, outputs, reason, created_at, updated_at
             FROM saga_instances WHERE ($1 IS NULL OR status = $1)
             ORDER BY created_at DESC, id DESC LIMIT $2",
        )
        .bind(status.map(|s| s.as_str().to_owned()))
        .bind(i64::from(limit))
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(SagaRecord::from_row).collect()
    }

    /// Resumes the compensation of a parked saga (after fixing what made it fail).
    pub async fn retry(&self, id: &str) -> Result<()> {
        let moved = query(
            "UPDATE saga_instances SET status = 'Compensating', reason = NULL, updated_at = $2
             WHERE id = $1 AND status = 'NeedsAttention'",
        )
        .bind(id)
        .bind(now_rfc3339())
        .execute(&self.db)
        .await?;
        self.expect_moved(id, moved, "only a saga that needs attention can be retried")
            .await
    }

    /// Stops a running saga after its current step and compensates what it did.
    pub async fn abort(&self, id: &str) -> Result<()> {
        let moved = query(
            "UPDATE saga_instances SET abort_requested = 1, updated_at = $2 WHERE id = $1 AND status = 'Running'",
        )
        .bind(id)
        .bind(now_rfc3339())
        .execute(&self.db)
        .await?;
        self.expect_moved(id, moved, "only a running saga can be aborted")
            .await
    }

    async fn expect_moved(&self, id: &str, moved: u64, reason: &str) -> Result<()> {
        if moved == 1 {
            return Ok(());
        }
        let record = self.get(id).await?;
        Err(Error::State {
            id: id.to_owned(),
            status: record.status.as_str().to_owned(),
            reason: reason.to_owned(),
        })
    }
}
