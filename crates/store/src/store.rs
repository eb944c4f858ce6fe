use serde_json::Value;
use telar_sql::{Db, Dialect, Row, Tx, generated_query, placeholders, query};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use std::sync::Arc;

use tokio::sync::Notify;

use crate::event::{ExpectedVersion, Metadata, NewEvent, RecordedEvent};
use crate::shred::Shredder;
use crate::upcast::Upcasters;
use crate::{Error, Result};

/// Columns of one appended row.
const COLUMNS: usize = 8;
/// Rows per INSERT statement (PostgreSQL allows 65 535 parameters).
const ROWS_PER_STATEMENT: usize = 500;

/// The event store of one service, on its own database. Cheap to clone.
#[derive(Clone)]
pub struct EventStore {
    db: Db,
    upcasters: Arc<Upcasters>,
    shredder: Option<Shredder>,
    /// Woken after every append this process commits (projections and relays follow live).
    appended: Arc<Notify>,
}

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The stream's version after the append (its last event's).
    pub version: i64,
    /// The global position of the last appended event.
    pub position: i64,
}

impl EventStore {
    /// Opens the store on `db`, creating its table if needed.
    pub async fn open(db: Db) -> Result<Self> {
        db.migrate(crate::schema::MIGRATIONS).await?;
        db.migrate(crate::snapshot::MIGRATIONS).await?;
        Ok(EventStore {
            db,
            upcasters: Arc::default(),
            shredder: None,
            appended: Arc::default(),
        })
    }

    /// Reads old event shapes through these upcasters (see [`Upcasters`]).
    pub fn with_upcasters(mut self, upcasters: Upcasters) -> Self {
        self.upcasters = Arc::new(upcasters);
        self
    }

    /// Decrypts shredding-encrypted fields on read (forgotten subjects read as redacted).
    pub fn with_shredder(mut self, shredder: Shredder) -> Self {
        self.shredder = Some(shredder);
        self
    }

    /// The version new events of `ty` are written at (past every upcaster of the type).
    pub fn current_version(&self, ty: &str) -> u32 {
        self.upcasters.current_version(ty)
    }

    /// The database the store lives in (for read models and checkpoints kept beside it).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Appends `events` to `stream` in one transaction, if the stream is at `expected`.
    pub async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended> {
        let mut tx = self.db.begin().await?;
        let appended = self.append_in(&mut tx, stream, expected, events).await?;
        self.commit(tx).await?;
        Ok(appended)
    }

    /// Commits a transaction that appended with [`EventStore::append_in`], and wakes the
    /// projections and relays that follow this store.
    pub async fn commit(&self, tx: Tx) -> Result<()> {
        tx.commit().await?;
        self.appended.notify_waiters();
        Ok(())
    }

    /// Resolves at the next append this process commits.
    pub(crate) fn appended(&self) -> Arc<Notify> {
        self.appended.clone()
    }

    /// Appends inside the caller's transaction (to write other rows atomically with the
    /// events). The transaction holds the store's append lock until it ends.
    pub async fn append_in(
        &self,
        tx: &mut Tx,
        stream: &str,
        expected: ExpectedVersion,
        mut events: Vec<NewEvent>,
    ) -> Result<Appended> {
        validate(stream, &events)?;
        stamp_trace(&mut events);
        if tx.dialect() == Dialect::Postgres {
            return append_postgres(tx, stream, expected, &events).await;
        }
        let current: i64 =
            query("SELECT COALESCE(MAX(version), 0) AS version FROM es_events WHERE stream = $1")
                .bind(stream)
                .fetch_one(&mut *tx)
                .await?
                .get("version")?;
        let matches = match expected {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => current == 0,
            ExpectedVersion::Exact(version) => current == version,
        };
        if !matches {
            return Err(Error::Conflict {
                stream: stream.to_owned(),
                expected: expected.to_string(),
                actual: current,
            });
        }
        let recorded_at = now_rfc3339();
        let mut version = current;
        let mut position = 0;
        for chunk in events.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO es_events (stream, version, event_id, type, type_version, data, metadata, recorded_at)
                 VALUES {}",
                placeholders(chunk.len(), COLUMNS, 1),
            );
            let mut insert = generated_query(sql);
            for event in chunk {
                version += 1;
                insert = insert
                    .bind(stream)
                    .bind(version)
                    .bind(&event.id)
                    .bind(&event.ty)
                    .bind(i64::from(event.type_version))
                    .bind(event.data.to_string())
                    .bind(serde_json::to_string(&event.metadata).unwrap_or_else(|_| "{}".into()))
                    .bind(&recorded_at);
            }
            insert.execute(&mut *tx).await?;
            // The last position, without a row per event.
            position = query("SELECT last_insert_rowid() AS position")
                .fetch_one(&mut *tx)
                .await?
                .get("position")?;
        }
        Ok(Appended { version, position })
    }

    /// The stream's events from version `from` (inclusive), at most `limit`.
    pub async fn read_stream(
        &self,
        stream: &str,
        from: i64,
        limit: u32,
    ) -> Result<Vec<RecordedEvent>> {
        let rows = query(
            "SELECT position, stream, version, event_id, type, type_version, data, metadata, recorded_at
             FROM es_events WHERE stream = $1 AND version >= $2 ORDER BY version LIMIT $3",
        )
        .bind(stream)
        .bind(from)
        .bind(i64::from(limit))
        .fetch_all(&self.db)
        .await?;
        self.decode_all(&rows, true).await
    }

    /// Every stream's events after position `after` (exclusive), in position order.
    pub async fn read_all(&self, after: i64, limit: u32) -> Result<Vec<RecordedEvent>> {
        self.read_all_as(after, limit, true).await
    }

    /// `read_all` without decrypting: the stored form, for copies that leave the service (the
    /// relay publishes personal fields encrypted, so forgetting a subject reaches them too).
    pub(crate) async fn read_all_as(
        &self,
        after: i64,
        limit: u32,
        decrypt: bool,
    ) -> Result<Vec<RecordedEvent>> {
        let rows = query(
            "SELECT position, stream, version, event_id, type, type_version, data, metadata, recorded_at
             FROM es_events WHERE position > $1 ORDER BY position LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.db)
        .await?;
        self.decode_all(&rows, decrypt).await
    }

    /// Decodes, decrypts (before upcasting: upcasters see the shape that was written), upcasts.
    async fn decode_all(&self, rows: &[Row], decrypt: bool) -> Result<Vec<RecordedEvent>> {
        let mut events = Vec::with_capacity(rows.len());
        for row in rows {
            let mut event = decode(row)?;
            if decrypt && let Some(shredder) = &self.shredder {
                shredder.decrypt(&mut event).await?;
            }
            events.push(self.upcasters.apply(event));
        }
        Ok(events)
    }

    /// The position of the last event (0: none).
    pub async fn head(&self) -> Result<i64> {
        Ok(
            query("SELECT COALESCE(MAX(position), 0) AS head FROM es_events")
                .fetch_one(&self.db)
                .await?
                .get("head")?,
        )
    }

    /// The stream's current version (0: no stream).
    pub async fn version(&self, stream: &str) -> Result<i64> {
        Ok(
            query("SELECT COALESCE(MAX(version), 0) AS version FROM es_events WHERE stream = $1")
                .bind(stream)
                .fetch_one(&self.db)
                .await?
                .get("version")?,
        )
    }
}

/// PostgreSQL: the append lock, then one statement that checks the expected version and inserts
/// (a round trip per step counts: the check and the insert share one).
async fn append_postgres(
    tx: &mut Tx,
    stream: &str,
    expected: ExpectedVersion,
    events: &[NewEvent],
) -> Result<Appended> {
    // Appends commit in position order: without this, a reader could see position n+1
    // committed before n and move its checkpoint past n for good. Taken in its own statement,
    // so the insert's snapshot sees every append committed before the lock was granted.
    query("SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.es_events'))")
        .execute(&mut *tx)
        .await?;
    let recorded_at = now_rfc3339();
    let mut expected = expected;
    let mut appended = Appended {
        version: 0,
        position: 0,
    };
    for chunk in events.chunks(ROWS_PER_STATEMENT) {
        let mut values = String::with_capacity(chunk.len() * 64);
        for index in 0..chunk.len() {
            let b = 4 + index * 6;
            if index > 0 {
                values.push_str(", ");
            }
            values.push_str(&format!(
                "(${b}::bigint, ${}::text, ${}::text, ${}::bigint, ${}::text, ${}::text)",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5
            ));
        }
        let sql = format!(
            "WITH cur AS (SELECT COALESCE(MAX(version), 0) AS v FROM es_events WHERE stream = $1)
             INSERT INTO es_events (stream, version, event_id, type, type_version, data, metadata, recorded_at)
             SELECT $1, cur.v + e.i, e.id, e.ty, e.tv, e.data, e.meta, $2
             FROM cur, (VALUES {values}) AS e(i, id, ty, tv, data, meta)
             WHERE $3::bigint = -1 OR cur.v = $3::bigint
             ORDER BY e.i
             RETURNING position, version"
        );
        let check = match expected {
            ExpectedVersion::Any => -1,
            ExpectedVersion::NoStream => 0,
            ExpectedVersion::Exact(version) => version,
        };
        let mut insert = generated_query(sql)
            .bind(stream)
            .bind(&recorded_at)
            .bind(check);
        for (index, event) in chunk.iter().enumerate() {
            insert = insert
                .bind(index as i64 + 1)
                .bind(&event.id)
                .bind(&event.ty)
                .bind(i64::from(event.type_version))
                .bind(event.data.to_string())
                .bind(serde_json::to_string(&event.metadata).unwrap_or_else(|_| "{}".into()));
        }
        let rows = insert.fetch_all(&mut *tx).await?;
        if rows.is_empty() {
            let actual = query(
                "SELECT COALESCE(MAX(version), 0) AS version FROM es_events WHERE stream = $1",
            )
            .bind(stream)
            .fetch_one(&mut *tx)
            .await?
            .get("version")?;
            return Err(Error::Conflict {
                stream: stream.to_owned(),
                expected: expected.to_string(),
                actual,
            });
        }
        for row in rows {
            appended.version = appended.version.max(row.get("version")?);
            appended.position = appended.position.max(row.get("position")?);
        }
        expected = ExpectedVersion::Exact(appended.version);
    }
    Ok(appended)
}

pub(crate) fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// Events appended while handling a request or a message carry its trace in their metadata,
/// so the envelope the relay publishes later joins that trace (see `relay::envelope`).
fn stamp_trace(events: &mut [NewEvent]) {
    if !telar_telemetry::in_hop() {
        return;
    }
    let Some(context) = telar_telemetry::outgoing(&tracing::Span::current()) else {
        return;
    };
    let header = serde_json::Value::String(context.to_header());
    for event in events {
        event
            .metadata
            .extra
            .insert("traceparent".to_owned(), header.clone());
    }
}

fn validate(stream: &str, events: &[NewEvent]) -> Result<()> {
    if stream.is_empty() || stream.len() > 200 {
        return Err(Error::Invalid("stream must be 1 to 200 characters".into()));
    }
    if events.is_empty() {
        return Err(Error::Invalid("events must not be empty".into()));
    }
    if let Some(event) = events.iter().find(|e| e.ty.is_empty() || e.id.is_empty()) {
        return Err(Error::Invalid(format!(
            "event `{}` needs a non-empty id and type",
            event.id
        )));
    }
    Ok(())
}

fn decode(row: &Row) -> Result<RecordedEvent> {
    let stream: String = row.get("stream")?;
    let position: i64 = row.get("position")?;
    let corrupt = |what: &str, error: serde_json::Error| Error::Corrupt {
        stream: stream.clone(),
        position,
        reason: format!("{what}: {error}"),
    };
    let data: String = row.get("data")?;
    let metadata: String = row.get("metadata")?;
    let data: Value = serde_json::from_str(&data).map_err(|e| corrupt("data", e))?;
    let metadata: Metadata = serde_json::from_str(&metadata).map_err(|e| corrupt("metadata", e))?;
    Ok(RecordedEvent {
        position,
        version: row.get("version")?,
        id: row.get("event_id")?,
        ty: row.get("type")?,
        type_version: u32::try_from(row.get::<i64>("type_version")?).unwrap_or(u32::MAX),
        data,
        metadata,
        recorded_at: row.get("recorded_at")?,
        stream,
    })
}
