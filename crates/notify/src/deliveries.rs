//! The delivery log: one row per attempt (event, channel, target, outcome, error). A channel that
//! succeeded for an event is never sent again, whatever the bus redelivers.

use serde::{Deserialize, Serialize};
use telar_sql::{Db, Migration, Row, query};

pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    version: 1_000_400,
    name: "telar notification deliveries",
    sqlite: "
CREATE TABLE notification_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    channel TEXT NOT NULL,
    target TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    status TEXT NOT NULL,
    detail TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX notification_deliveries_by_event ON notification_deliveries (event_id, channel, target);",
    postgres: "
CREATE TABLE notification_deliveries (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    channel TEXT NOT NULL,
    target TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    status TEXT NOT NULL,
    detail TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX notification_deliveries_by_event ON notification_deliveries (event_id, channel, target);",
}];

/// One attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Delivery {
    pub id: i64,
    pub event_id: String,
    pub event_type: String,
    /// `email` or `webhook`.
    pub channel: String,
    /// The recipient address or the webhook URL.
    pub target: String,
    pub attempt: i64,
    /// `sent`, `failed` or `skipped`.
    pub status: String,
    pub detail: String,
    pub at: String,
}

/// `GET /deliveries` filters.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeliveryFilter {
    pub event_id: Option<String>,
    pub event_type: Option<String>,
    pub channel: Option<String>,
    pub status: Option<String>,
    /// At most this many, newest first (default 100, at most 1000).
    pub limit: Option<u32>,
}

#[derive(Clone)]
pub struct DeliveryLog {
    db: Db,
}

fn to_delivery(row: &Row) -> Result<Delivery, telar_sql::Error> {
    Ok(Delivery {
        id: row.get("id")?,
        event_id: row.get("event_id")?,
        event_type: row.get("event_type")?,
        channel: row.get("channel")?,
        target: row.get("target")?,
        attempt: row.get("attempt")?,
        status: row.get("status")?,
        detail: row.get("detail")?,
        at: row.get("at")?,
    })
}

impl DeliveryLog {
    pub async fn open(db: Db) -> Result<Self, telar_sql::Error> {
        db.migrate(MIGRATIONS).await?;
        Ok(DeliveryLog { db })
    }

    /// Whether `channel` to `target` already succeeded for `event_id`.
    pub async fn sent(
        &self,
        event_id: &str,
        channel: &str,
        target: &str,
    ) -> Result<bool, telar_sql::Error> {
        Ok(query(
            "SELECT id FROM notification_deliveries
             WHERE event_id = $1 AND channel = $2 AND target = $3 AND status = 'sent' LIMIT 1",
        )
        .bind(event_id.to_owned())
        .bind(channel.to_owned())
        .bind(target.to_owned())
        .fetch_optional(&self.db)
        .await?
        .is_some())
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn record(
        &self,
        event_id: &str,
        event_type: &str,
        channel: &str,
        target: &str,
        attempt: u32,
        status: &str,
        detail: &str,
    ) -> Result<(), telar_sql::Error> {
        let at = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        query(
            "INSERT INTO notification_deliveries (event_id, event_type, channel, target, attempt, status, detail, at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(event_id.to_owned())
        .bind(event_type.to_owned())
        .bind(channel.to_owned())
        .bind(target.to_owned())
        .bind(i64::from(attempt))
        .bind(status.to_owned())
        .bind(detail.to_owned())
        .bind(at)
        .execute(&self.db)
        .await?;
        metrics::counter!("notification_deliveries", "channel" => channel.to_owned(), "status" => status.to_owned())
            .increment(1);
        Ok(())
    }

    pub async fn list(&self, filter: &DeliveryFilter) -> Result<Vec<Delivery>, telar_sql::Error> {
        let limit = i64::from(filter.limit.unwrap_or(100).clamp(1, 1000));
        let rows = query(
            "SELECT id, event_id, event_type, channel, target, attempt, status, detail, at
             FROM notification_deliveries
             WHERE ($1 IS NULL OR event_id = $1) AND ($2 IS NULL OR event_type = $2)
               AND ($3 IS NULL OR channel = $3) AND ($4 IS NULL OR status = $4)
             ORDER BY id DESC LIMIT $5",
        )
        .bind(filter.event_id.clone())
        .bind(filter.event_type.clone())
        .bind(filter.channel.clone())
        .bind(filter.status.clone())
        .bind(limit)
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(to_delivery).collect()
    }
}
