//! The dead-letter table shared by every backend (`bus_dead_letters`: the embedded log's own
//! file, or the broker backends' dead-letter database): listing, purging, the gauge.

use telar_sql::{Db, query};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::Result;
use crate::dead_letter::{DeadLetter, DeadLetterFilter};

/// Binds `$1`, `$2`, `$3` of the dead-letter filter clause
/// `($1 IS NULL OR id = $1) AND ($2 IS NULL OR grp = $2) AND ($3 IS NULL OR topic = $3)`.
pub(crate) trait Filtered {
    fn filtered(self, filter: &DeadLetterFilter) -> Self;
}

impl Filtered for telar_sql::Query {
    fn filtered(self, filter: &DeadLetterFilter) -> Self {
        self.bind(filter.id)
            .bind(filter.group.clone())
            .bind(filter.topic.clone())
    }
}

pub(crate) fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

pub(crate) async fn list(db: &Db, filter: DeadLetterFilter) -> Result<Vec<DeadLetter>> {
    let rows = query(
        "SELECT id, grp, topic, message_id, envelope, last_error, attempts, history, dead_at
         FROM bus_dead_letters
         WHERE ($1 IS NULL OR id = $1) AND ($2 IS NULL OR grp = $2) AND ($3 IS NULL OR topic = $3)
         ORDER BY id LIMIT $4",
    )
    .filtered(&filter)
    .bind(filter.limit.map_or(i64::MAX, i64::from))
    .fetch_all(db)
    .await?;
    let mut letters = Vec::with_capacity(rows.len());
    for row in rows {
        let bytes: Vec<u8> = row.get("envelope")?;
        let envelope = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
        });
        let history: String = row.get("history")?;
        letters.push(DeadLetter {
            id: row.get("id")?,
            group: row.get("grp")?,
            topic: row.get("topic")?,
            message_id: row.get("message_id")?,
            envelope,
            last_error: row.get("last_error")?,
            attempts: u32::try_from(row.get::<i64>("attempts")?).unwrap_or(u32::MAX),
            history: serde_json::from_str(&history).unwrap_or_default(),
            dead_at: row.get("dead_at")?,
        });
    }
    Ok(letters)
}

pub(crate) async fn purge(db: &Db, filter: DeadLetterFilter) -> Result<u64> {
    let purged = query(
        "DELETE FROM bus_dead_letters
         WHERE ($1 IS NULL OR id = $1) AND ($2 IS NULL OR grp = $2) AND ($3 IS NULL OR topic = $3)",
    )
    .filtered(&filter)
    .execute(db)
    .await?;
    refresh_gauge(db).await;
    Ok(purged)
}

/// Sets `queue_dlq_length{group}` from the table (called after every change to it).
pub(crate) async fn refresh_gauge(db: &Db) {
    // Every known group, so a group whose dead letters were all replayed or purged reads 0.
    let Ok(rows) = query(
        "SELECT g.name AS grp, COUNT(d.id) AS n FROM bus_groups g
         LEFT JOIN bus_dead_letters d ON d.grp = g.name GROUP BY g.name",
    )
    .fetch_all(db)
    .await
    else {
        return;
    };
    for row in rows {
        if let (Ok(group), Ok(count)) = (row.get::<String>("grp"), row.get::<i64>("n")) {
            metrics::gauge!("queue_dlq_length", "group" => group).set(count as f64);
        }
    }
}
