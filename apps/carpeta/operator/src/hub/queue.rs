//! The durable queue of hub calls that could not be made now (limit spent, breaker open, the hub
//! failing). A worker sends them again — per citizen in the order they were queued, with
//! backoff — and publishes the outcome (`carpeta.hub.call_completed` / `_failed`) through the
//! outbox. A finished call keeps its answer but no longer the request (no PII at rest).

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use telar_bus::Outbox;
use telar_sql::{Db, Migration, Row, Tx, query};
use telar_types::Envelope;
use tokio::sync::Notify;

use super::calls::HubCall;
use super::wire::HubAnswer;
use crate::domain::events;
use crate::shared::{now_ms, now_rfc3339};

pub(crate) const MIGRATION: Migration = Migration {
    version: 1,
    name: "hub calls",
    sqlite: "
CREATE TABLE hub_calls (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    idem_key TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    subject TEXT NOT NULL,
    call TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_until INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    answer_status INTEGER,
    answer_body TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE UNIQUE INDEX hub_calls_one_queued_per_key ON hub_calls (idem_key) WHERE status = 'queued';
CREATE INDEX hub_calls_due ON hub_calls (status, next_attempt_at);
CREATE TABLE hub_operator (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    transfer_url TEXT NOT NULL DEFAULT '',
    registered_at TEXT NOT NULL
);",
    postgres: "
CREATE TABLE hub_calls (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    idem_key TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    subject TEXT NOT NULL,
    call TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_until BIGINT NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    answer_status BIGINT,
    answer_body TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE UNIQUE INDEX hub_calls_one_queued_per_key ON hub_calls (idem_key) WHERE status = 'queued';
CREATE INDEX hub_calls_due ON hub_calls (status, next_attempt_at);
CREATE TABLE hub_operator (
    singleton BIGINT PRIMARY KEY CHECK (singleton = 1),
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    transfer_url TEXT NOT NULL DEFAULT '',
    registered_at TEXT NOT NULL
);",
};

/// A queued call as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct QueuedCall {
    pub id: i64,
    pub endpoint: String,
    /// `queued`, `done` or `failed`.
    pub status: String,
    pub attempts: i64,
    /// When the next attempt is due (ms since the epoch), while queued.
    pub next_attempt_at: i64,
    pub last_error: String,
    /// The hub's final status code, once done.
    pub answer_status: Option<i64>,
    /// The hub's final answer, once done.
    pub answer: Option<serde_json::Value>,
    pub created_at: String,
}

fn to_call(row: &Row) -> telar_sql::Result<QueuedCall> {
    let answer: Option<String> = row.get("answer_body")?;
    Ok(QueuedCall {
        id: row.get("seq")?,
        endpoint: row.get("endpoint")?,
        status: row.get("status")?,
        attempts: row.get("attempts")?,
        next_attempt_at: row.get("next_attempt_at")?,
        last_error: row.get("last_error")?,
        answer_status: row.get("answer_status")?,
        answer: answer.and_then(|a| serde_json::from_str(&a).ok()),
        created_at: row.get("created_at")?,
    })
}

/// Backoff of the queue's retries.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub max_attempts: u32,
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// Exponential with full jitter, never under a quarter of the step.
    pub(crate) fn after(&self, attempts: u32) -> Duration {
        let step = self
            .initial
            .saturating_mul(1u32 << attempts.min(20))
            .min(self.max);
        let jitter = rand::random_range(0.25..=1.0);
        step.mul_f64(jitter)
    }
}

#[derive(Clone)]
pub struct Queue {
    db: Db,
    outbox: Outbox,
    wake: Arc<Notify>,
    source: String,
    pub(crate) backoff: Backoff,
}

/// A claimed call, for the worker.
pub(crate) struct Claimed {
    pub seq: i64,
    pub key: String,
    pub call: HubCall,
    pub attempts: u32,
}

impl Queue {
    pub fn new(db: Db, outbox: Outbox, source: String, backoff: Backoff) -> Self {
        Queue {
            db,
            outbox,
            wake: Arc::new(Notify::new()),
            source,
            backoff,
        }
    }

    pub(crate) fn woken(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    fn envelope(&self, ty: &str, call: &HubCall, data: serde_json::Value) -> Envelope {
        let envelope = Envelope::new(self.source.clone(), ty, data);
        match call.citizen() {
            Some(id) => envelope.with_subject(id.to_string()),
            None => envelope.with_subject(call.endpoint()),
        }
    }

    /// Queues `call` (due at once unless `after`), or returns the call already queued under
    /// `key`. `carpeta.hub.call_queued` is published with it.
    pub async fn enqueue(
        &self,
        key: &str,
        call: &HubCall,
        reason: &str,
        after: Duration,
    ) -> Result<QueuedCall, telar_bus::Error> {
        if let Some(existing) = self.queued_by_key(key).await? {
            return Ok(existing);
        }
        let now = now_ms();
        let due = now + i64::try_from(after.as_millis()).unwrap_or(0);
        let mut tx = self.db.begin().await?;
        let inserted = query(
            "INSERT INTO hub_calls (idem_key, endpoint, subject, call, status, next_attempt_at, last_error, created_at, updated_at)
             VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7, $7) RETURNING seq",
        )
        .bind(key.to_owned())
        .bind(call.endpoint())
        .bind(call.citizen().map_or_else(|| call.endpoint().to_owned(), |id| id.to_string()))
        .bind(serde_json::to_string(call).unwrap_or_default())
        .bind(due)
        .bind(reason.to_owned())
        .bind(now_rfc3339())
        .fetch_one(&mut tx)
        .await;
        let seq: i64 = match inserted {
            Ok(row) => row.get("seq")?,
            // Another request queued the same key first: that call is this one.
            Err(telar_sql::Error::UniqueViolation(_)) => {
                drop(tx);
                return self
                    .queued_by_key(key)
                    .await?
                    .ok_or(telar_bus::Error::Sql(telar_sql::Error::NotFound));
            }
            Err(error) => return Err(error.into()),
        };
        let event = self.envelope(
            events::HUB_CALL_QUEUED,
            call,
            json!({"call_id": seq, "endpoint": call.endpoint(), "reason": reason}),
        );
        self.outbox.append(&mut tx, &event).await?;
        self.outbox.commit(tx).await?;
        metrics::counter!("hub_calls", "endpoint" => call.endpoint(), "outcome" => "queued")
            .increment(1);
        self.wake.notify_one();
        Ok(self.get(seq).await?.ok_or(telar_sql::Error::NotFound)?)
    }

    async fn queued_by_key(&self, key: &str) -> telar_sql::Result<Option<QueuedCall>> {
        query(
            "SELECT seq, endpoint, status, attempts, next_attempt_at, last_error, answer_status, answer_body, created_at
             FROM hub_calls WHERE idem_key = $1 AND status = 'queued'",
        )
        .bind(key.to_owned())
        .fetch_optional(&self.db)
        .await?
        .as_ref()
        .map(to_call)
        .transpose()
    }

    pub async fn get(&self, seq: i64) -> telar_sql::Result<Option<QueuedCall>> {
        query(
            "SELECT seq, endpoint, status, attempts, next_attempt_at, last_error, answer_status, answer_body, created_at
             FROM hub_calls WHERE seq = $1",
        )
        .bind(seq)
        .fetch_optional(&self.db)
        .await?
        .as_ref()
        .map(to_call)
        .transpose()
    }

    pub async fn list(
        &self,
        status: Option<String>,
        limit: i64,
    ) -> telar_sql::Result<Vec<QueuedCall>> {
        let rows = query(
            "SELECT seq, endpoint, status, attempts, next_attempt_at, last_error, answer_status, answer_body, created_at
             FROM hub_calls WHERE ($1 IS NULL OR status = $1) ORDER BY seq DESC LIMIT $2",
        )
        .bind(status)
        .bind(limit)
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(to_call).collect()
    }

    /// Whether a call about `subject` is waiting.
    pub async fn has_queued_for(&self, subject: &str) -> telar_sql::Result<bool> {
        Ok(
            query("SELECT seq FROM hub_calls WHERE subject = $1 AND status = 'queued' LIMIT 1")
                .bind(subject.to_owned())
                .fetch_optional(&self.db)
                .await?
                .is_some(),
        )
    }

    pub async fn queued_count(&self) -> telar_sql::Result<i64> {
        query("SELECT COUNT(*) AS n FROM hub_calls WHERE status = 'queued'")
            .fetch_one(&self.db)
            .await?
            .get("n")
    }

    /// Claims up to `limit` due calls: for each citizen only its oldest queued call, so a
    /// citizen's calls reach the hub in the order they were made.
    pub(crate) async fn claim_due(
        &self,
        limit: i64,
        lease: Duration,
    ) -> telar_sql::Result<Vec<Claimed>> {
        let now = now_ms();
        let rows = query(
            "SELECT c.seq, c.idem_key, c.call, c.attempts FROM hub_calls c
             WHERE c.status = 'queued' AND c.next_attempt_at <= $1 AND c.lease_until <= $1
               AND NOT EXISTS (SELECT 1 FROM hub_calls o
                               WHERE o.subject = c.subject AND o.status = 'queued' AND o.seq < c.seq)
             ORDER BY c.seq LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.db)
        .await?;
        let until = now + i64::try_from(lease.as_millis()).unwrap_or(60_000);
        let mut claimed = Vec::new();
        for row in rows {
            let seq: i64 = row.get("seq")?;
            let won = query(
                "UPDATE hub_calls SET lease_until = $1 WHERE seq = $2 AND status = 'queued' AND lease_until <= $3",
            )
            .bind(until)
            .bind(seq)
            .bind(now)
            .execute(&self.db)
            .await?;
            if won != 1 {
                continue;
            }
            let text: String = row.get("call")?;
            match serde_json::from_str::<HubCall>(&text) {
                Ok(call) => claimed.push(Claimed {
                    seq,
                    key: row.get("idem_key")?,
                    call,
                    attempts: u32::try_from(row.get::<i64>("attempts")?).unwrap_or(u32::MAX),
                }),
                Err(error) => {
                    let mut tx = self.db.begin().await?;
                    self.finish_in(
                        &mut tx,
                        seq,
                        "failed",
                        None,
                        &format!("unreadable call: {error}"),
                    )
                    .await?;
                    tx.commit().await?;
                }
            }
        }
        Ok(claimed)
    }

    /// Not now: due again after `after`, the attempt counted only when `failed`.
    pub(crate) async fn reschedule(
        &self,
        claimed: &Claimed,
        after: Duration,
        failed: bool,
        error: &str,
    ) -> telar_sql::Result<()> {
        let due = now_ms() + i64::try_from(after.as_millis()).unwrap_or(0);
        query(
            "UPDATE hub_calls SET next_attempt_at = $1, lease_until = 0, attempts = attempts + $2,
                    last_error = $3, updated_at = $4 WHERE seq = $5",
        )
        .bind(due)
        .bind(i64::from(failed))
        .bind(error.to_owned())
        .bind(now_rfc3339())
        .bind(claimed.seq)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    async fn finish_in(
        &self,
        tx: &mut Tx,
        seq: i64,
        status: &str,
        answer: Option<&HubAnswer>,
        error: &str,
    ) -> telar_sql::Result<()> {
        query(
            "UPDATE hub_calls SET status = $1, call = '', lease_until = 0, last_error = $2,
                    answer_status = $3, answer_body = $4, updated_at = $5 WHERE seq = $6",
        )
        .bind(status.to_owned())
        .bind(error.to_owned())
        .bind(answer.map(|a| i64::from(a.status)))
        .bind(answer.map(|a| a.body.to_string()))
        .bind(now_rfc3339())
        .bind(seq)
        .execute(tx)
        .await?;
        Ok(())
    }

    /// The hub gave a final answer (or the attempts ran out): record it, publish the outcome.
    pub(crate) async fn finish(
        &self,
        claimed: &Claimed,
        answer: Option<&HubAnswer>,
        error: &str,
    ) -> Result<(), telar_bus::Error> {
        let (status, ty) = match answer {
            Some(_) => ("done", events::HUB_CALL_COMPLETED),
            None => ("failed", events::HUB_CALL_FAILED),
        };
        let mut tx = self.db.begin().await?;
        self.finish_in(&mut tx, claimed.seq, status, answer, error)
            .await?;
        let event = self.envelope(
            ty,
            &claimed.call,
            json!({
                "call_id": claimed.seq,
                "endpoint": claimed.call.endpoint(),
                "key": claimed.key,
                "status": answer.map(|a| a.status),
                "message": answer.map(HubAnswer::message),
                "error": error,
            }),
        );
        self.outbox.append(&mut tx, &event).await?;
        self.outbox.commit(tx).await
    }
}
