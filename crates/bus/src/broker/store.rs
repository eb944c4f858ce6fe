//! The dead-letter store of the broker backends: a table in a SQL database (the service's
//! PostgreSQL, or a SQLite file), because operators list, filter, show and purge dead letters —
//! queries a broker queue cannot answer. Failed attempts are recorded here too, so a dead letter
//! carries its whole history even though the broker redelivers the same message.

use telar_sql::{Db, Migration, query};

use crate::Result;
use crate::dead_letter::{Attempt, DeadLetter, DeadLetterFilter};
use crate::dead_letter_sql::{self, Filtered, now_rfc3339};

const SQLITE: &str = "
CREATE TABLE bus_groups (name TEXT PRIMARY KEY, pattern TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE bus_dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    grp TEXT NOT NULL,
    message_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    subject TEXT,
    envelope BLOB NOT NULL,
    last_error TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    history TEXT NOT NULL,
    dead_at TEXT NOT NULL
);
CREATE INDEX bus_dead_letters_by_group ON bus_dead_letters (grp, id);
CREATE TABLE bus_attempts (
    grp TEXT NOT NULL, message_id TEXT NOT NULL, attempt INTEGER NOT NULL,
    at TEXT NOT NULL, error TEXT NOT NULL,
    PRIMARY KEY (grp, message_id, attempt)
);
";

const POSTGRES: &str = "
CREATE TABLE bus_groups (name TEXT PRIMARY KEY, pattern TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE bus_dead_letters (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    grp TEXT NOT NULL,
    message_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    subject TEXT,
    envelope BYTEA NOT NULL,
    last_error TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    history TEXT NOT NULL,
    dead_at TEXT NOT NULL
);
CREATE INDEX bus_dead_letters_by_group ON bus_dead_letters (grp, id);
CREATE TABLE bus_attempts (
    grp TEXT NOT NULL, message_id TEXT NOT NULL, attempt BIGINT NOT NULL,
    at TEXT NOT NULL, error TEXT NOT NULL,
    PRIMARY KEY (grp, message_id, attempt)
);
";

/// A message a group gives up on, on its way to the store.
pub(crate) struct Burial<'a> {
    pub group: &'a str,
    pub message_id: &'a str,
    pub topic: &'a str,
    pub subject: Option<&'a str>,
    pub envelope: &'a [u8],
    pub attempt: u32,
    pub error: &'a str,
}

#[derive(Clone)]
pub(crate) struct DeadLetterStore {
    db: Db,
}

impl DeadLetterStore {
    pub(crate) const MIGRATIONS: &'static [Migration] = &[Migration {
        version: 1_000_010,
        name: "telar bus dead letters",
        sqlite: SQLITE,
        postgres: POSTGRES,
    }];

    pub(crate) async fn open(db: Db) -> Result<Self> {
        db.migrate(Self::MIGRATIONS).await?;
        Ok(DeadLetterStore { db })
    }

    pub(crate) async fn register(&self, group: &str, pattern: &str) -> Result<()> {
        query(
            "INSERT INTO bus_groups (name, pattern, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET pattern = excluded.pattern",
        )
        .bind(group)
        .bind(pattern)
        .bind(now_rfc3339())
        .execute(&self.db)
        .await?;
        dead_letter_sql::refresh_gauge(&self.db).await;
        Ok(())
    }

    /// Every registered group.
    pub(crate) async fn groups(&self) -> Result<Vec<String>> {
        let rows = query("SELECT name FROM bus_groups ORDER BY name")
            .fetch_all(&self.db)
            .await?;
        rows.iter().map(|row| Ok(row.get("name")?)).collect()
    }

    /// The pattern `group` was registered with, if any.
    pub(crate) async fn pattern(&self, group: &str) -> Result<Option<String>> {
        let row = query("SELECT pattern FROM bus_groups WHERE name = $1")
            .bind(group)
            .fetch_optional(&self.db)
            .await?;
        Ok(match row {
            Some(row) => Some(row.get("pattern")?),
            None => None,
        })
    }

    /// Records a failed attempt that will be retried.
    pub(crate) async fn record_attempt(
        &self,
        group: &str,
        message_id: &str,
        attempt: u32,
        error: &str,
    ) -> Result<()> {
        query(
            "INSERT INTO bus_attempts (grp, message_id, attempt, at, error) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT DO NOTHING",
        )
        .bind(group)
        .bind(message_id)
        .bind(i64::from(attempt))
        .bind(now_rfc3339())
        .bind(error)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    /// Forgets the attempts of a message that finally succeeded.
    pub(crate) async fn forget(&self, group: &str, message_id: &str) -> Result<()> {
        query("DELETE FROM bus_attempts WHERE grp = $1 AND message_id = $2")
            .bind(group)
            .bind(message_id)
            .execute(&self.db)
            .await?;
        Ok(())
    }

    /// Moves a message to the dead letters with its recorded attempts plus this last one, in
    /// one transaction.
    pub(crate) async fn bury(&self, dead: Burial<'_>) -> Result<()> {
        let mut tx = self.db.begin().await?;
        let mut history: Vec<Attempt> = Vec::new();
        for row in query(
            "SELECT attempt, at, error FROM bus_attempts WHERE grp = $1 AND message_id = $2 ORDER BY attempt",
        )
        .bind(dead.group)
        .bind(dead.message_id)
        .fetch_all(&mut tx)
        .await?
        {
            let attempt: i64 = row.get("attempt")?;
            if attempt < i64::from(dead.attempt) {
                history.push(Attempt {
                    attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
                    at: row.get("at")?,
                    error: row.get("error")?,
                });
            }
        }
        history.push(Attempt {
            attempt: dead.attempt,
            at: now_rfc3339(),
            error: dead.error.to_owned(),
        });
        query(
            "INSERT INTO bus_dead_letters
               (grp, message_id, topic, subject, envelope, last_error, attempts, history, dead_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(dead.group)
        .bind(dead.message_id)
        .bind(dead.topic)
        .bind(dead.subject.map(str::to_owned))
        .bind(dead.envelope.to_vec())
        .bind(dead.error)
        .bind(i64::from(dead.attempt))
        .bind(serde_json::to_string(&history).unwrap_or_else(|_| "[]".into()))
        .bind(now_rfc3339())
        .execute(&mut tx)
        .await?;
        query("DELETE FROM bus_attempts WHERE grp = $1 AND message_id = $2")
            .bind(dead.group)
            .bind(dead.message_id)
            .execute(&mut tx)
            .await?;
        tx.commit().await?;
        dead_letter_sql::refresh_gauge(&self.db).await;
        Ok(())
    }

    pub(crate) async fn list(&self, filter: DeadLetterFilter) -> Result<Vec<DeadLetter>> {
        dead_letter_sql::list(&self.db, filter).await
    }

    pub(crate) async fn purge(&self, filter: DeadLetterFilter) -> Result<u64> {
        dead_letter_sql::purge(&self.db, filter).await
    }

    /// Removes one dead letter once its message is back in its group's queue.
    pub(crate) async fn remove(&self, id: i64) -> Result<()> {
        query("DELETE FROM bus_dead_letters WHERE id = $1")
            .bind(id)
            .execute(&self.db)
            .await?;
        Ok(())
    }

    /// The raw envelope bytes of the matching dead letters (for replay), oldest first.
    pub(crate) async fn matching(
        &self,
        filter: &DeadLetterFilter,
    ) -> Result<Vec<(i64, String, Vec<u8>)>> {
        let rows = query(
            "SELECT id, grp, envelope FROM bus_dead_letters
             WHERE ($1 IS NULL OR id = $1) AND ($2 IS NULL OR grp = $2) AND ($3 IS NULL OR topic = $3)
             ORDER BY id",
        )
        .filtered(filter)
        .fetch_all(&self.db)
        .await?;
        rows.iter()
            .map(|row| Ok((row.get("id")?, row.get("grp")?, row.get("envelope")?)))
            .collect()
    }

    /// Puts matching dead letters back: `republish(group, envelope)` hands each to the broker
    /// (confirmed), then the dead letter is removed. Returns how many.
    pub(crate) async fn replay_with<F, Fut>(
        &self,
        filter: &DeadLetterFilter,
        mut republish: F,
    ) -> Result<u64>
    where
        F: FnMut(String, Vec<u8>) -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        let mut replayed = 0;
        for (id, group, envelope) in self.matching(filter).await? {
            republish(group, envelope).await?;
            self.remove(id).await?;
            replayed += 1;
        }
        self.refresh_gauge().await;
        Ok(replayed)
    }

    pub(crate) async fn refresh_gauge(&self) {
        dead_letter_sql::refresh_gauge(&self.db).await;
    }
}
