//! The inbox: a consumer records each processed event id per group in the same transaction as
//! its own writes, so a redelivered message has no second effect.

use telar_sql::{Migration, Tx, query};

use crate::Result;

pub struct Inbox;

impl Inbox {
    /// The inbox table; add it to the service's migrations.
    pub const MIGRATION: Migration = Migration {
        version: 1_000_002,
        name: "telar inbox",
        sqlite: "CREATE TABLE telar_inbox (grp TEXT NOT NULL, event_id TEXT NOT NULL, processed_at TEXT NOT NULL, PRIMARY KEY (grp, event_id));",
        postgres: "CREATE TABLE telar_inbox (grp TEXT NOT NULL, event_id TEXT NOT NULL, processed_at TEXT NOT NULL, PRIMARY KEY (grp, event_id));",
    };

    /// Records that `group` processes `event_id` in `tx`. `false`: it already did (skip the
    /// work, acknowledge the message). Concurrent deliveries of one id: exactly one gets `true`.
    pub async fn first_time(tx: &mut Tx, group: &str, event_id: &str) -> Result<bool> {
        let inserted = query(
            "INSERT INTO telar_inbox (grp, event_id, processed_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(group)
        .bind(event_id)
        .bind(crate::dead_letter_sql::now_rfc3339())
        .execute(tx)
        .await?;
        Ok(inserted == 1)
    }
}
