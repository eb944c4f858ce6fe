//! Replaying the embedded bus's dead letters into its log (listing and purging are shared:
//! `crate::dead_letter_sql`).

use telar_sql::{Db, query};

use super::writer::now_ms;
use crate::Result;
use crate::dead_letter::DeadLetterFilter;
use crate::dead_letter_sql::{Filtered, refresh_gauge};

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
