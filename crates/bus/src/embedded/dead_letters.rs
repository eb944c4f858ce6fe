//! Listing, replaying and purging the embedded bus's dead letters.

use telar_sql::{Db, query};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::writer::now_ms;
use crate::Result;
use crate::dead_letter::{DeadLetter, DeadLetterFilter};

/// Binds `$1`, `$2`, `$3` of the dead-letter filter clause
/// `($1 IS NULL OR id = $1) AND ($2 IS NULL OR grp = $2) AND ($3 IS NULL OR topic = $3)`.
trait Filtered {
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

/// Moves matching dead letters back to their group's deliveries, with fresh attempts, in one
/// transaction. Returns how many, and the groups to wake.
pub(crate) async fn replay(db: &Db, filter: DeadLetterFilter) -> Result<(u64, Vec<String>)> {
    let mut tx = db.begin().await?;
    let groups: Vec<String> = query(
        "SELECT DISTINCT grp FROM bus_dead_letters
         WHERE ($1 IS NULL OR id = $1) AND ($2 IS NULL OR grp = $2) AND ($3 IS NULL OR topic = $3)",
    )
    .filtered(&filter)
    .fetch_all(&mut tx)
    .await?
    .iter()
    .filter_map(|row| row.get("grp").ok())
    .collect();
    // The log may have dropped the message since (retention): put it back from the dead
    // letter's copy before queueing the delivery again.
    query(
        "INSERT INTO bus_messages (seq, id, topic, subject, envelope, published_at)
         SELECT seq, message_id, topic, subject, envelope, $4 FROM bus_dead_letters
         WHERE ($1 IS NULL OR id = $1) AND ($2 IS NULL OR grp = $2) AND ($3 IS NULL OR topic = $3)
         ON CONFLICT DO NOTHING",
    )
    .filtered(&filter)
    .bind(now_ms())
    .execute(&mut tx)
    .await?;
    query(
        "INSERT INTO bus_deliveries (grp, seq, subject, available_at)
         SELECT grp, seq, subject, $4 FROM bus_dead_letters
         WHERE ($1 IS NULL OR id = $1) AND ($2 IS NULL OR grp = $2) AND ($3 IS NULL OR topic = $3)
         ON CONFLICT (grp, seq) DO NOTHING",
    )
    .filtered(&filter)
    .bind(now_ms())
    .execute(&mut tx)
    .await?;
    let moved = query(
        "DELETE FROM bus_dead_letters
         WHERE ($1 IS NULL OR id = $1) AND ($2 IS NULL OR grp = $2) AND ($3 IS NULL OR topic = $3)",
    )
    .filtered(&filter)
    .execute(&mut tx)
    .await?;
    tx.commit().await?;
    refresh_gauge(db).await;
    Ok((moved, groups))
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
