//! The append-only log: appends under one lock (the chain has one head), idempotent by event id;
//! queries with filters and paging; verification from the first record to the head.

use serde::{Deserialize, Serialize};
use telar_sql::{Db, Dialect, Row, Tx, query};

use crate::record::{AuditRecord, GENESIS, NewRecord, chain_hash};

/// Which records to list (every filter optional; `after` and `limit` page).
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    /// Records at or after this time (RFC 3339).
    pub from: Option<String>,
    /// Records before this time (RFC 3339).
    pub to: Option<String>,
    /// Records after this `seq` (the previous page's `next_after`).
    pub after: Option<i64>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<u32>,
}

/// What verification found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Verification {
    pub ok: bool,
    pub records: i64,
    /// The head's hash: keep it elsewhere to prove later that nothing before it changed.
    pub head_hash: String,
    pub first_broken: Option<Broken>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Broken {
    pub seq: i64,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Sql(#[from] telar_sql::Error),
    #[error("invalid `{field}`: {reason}")]
    Invalid { field: &'static str, reason: String },
}

/// The audit log of one system. Cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    db: Db,
}

fn to_record(row: &Row) -> Result<AuditRecord, telar_sql::Error> {
    let data: String = row.get("data")?;
    Ok(AuditRecord {
        seq: row.get("seq")?,
        id: row.get("id")?,
        at: row.get("at")?,
        actor: row.get("actor")?,
        action: row.get("action")?,
        entity_type: row.get("entity_type")?,
        entity_id: row.get("entity_id")?,
        source: row.get("source")?,
        data: serde_json::from_str(&data).unwrap_or(serde_json::Value::String(data)),
        prev_hash: row.get("prev_hash")?,
        hash: row.get("hash")?,
    })
}

fn parse_ms(field: &'static str, text: &str) -> Result<i64, AuditError> {
    let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| AuditError::Invalid {
            field,
            reason: format!("`{text}` is not an RFC 3339 time: {e}"),
        })?;
    Ok(i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX))
}

impl AuditLog {
    pub async fn open(db: Db) -> Result<Self, AuditError> {
        db.migrate(crate::schema::MIGRATIONS).await?;
        Ok(AuditLog { db })
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Appends `record` at the head of the chain; an id already in the log is not appended
    /// again (its `seq` is returned). Appends are serialized: SQLite's write lock, PostgreSQL's
    /// transaction advisory lock.
    pub async fn append(&self, record: &NewRecord) -> Result<i64, AuditError> {
        let mut tx = self.db.begin().await?;
        let seq = append_in(&mut tx, record).await?;
        tx.commit().await?;
        Ok(seq)
    }

    /// The records matching `filter`, oldest first.
    pub async fn list(&self, filter: &Filter) -> Result<Vec<AuditRecord>, AuditError> {
        let from = filter
            .from
            .as_deref()
            .map(|t| parse_ms("from", t))
            .transpose()?;
        let to = filter
            .to
            .as_deref()
            .map(|t| parse_ms("to", t))
            .transpose()?;
        let limit = i64::from(filter.limit.unwrap_or(100).clamp(1, 1000));
        // One statement for every combination: an absent filter binds NULL and matches all.
        let rows = query(
            "SELECT seq, id, at, actor, action, entity_type, entity_id, source, data, prev_hash, hash
             FROM audit_records
             WHERE seq > $1
               AND ($2 IS NULL OR actor = $2)
               AND ($3 IS NULL OR action = $3)
               AND ($4 IS NULL OR entity_type = $4)
               AND ($5 IS NULL OR entity_id = $5)
               AND ($6 IS NULL OR at_ms >= $6)
               AND ($7 IS NULL OR at_ms < $7)
             ORDER BY seq LIMIT $8",
        )
        .bind(filter.after.unwrap_or(0))
        .bind(filter.actor.clone())
        .bind(filter.action.clone())
        .bind(filter.entity_type.clone())
        .bind(filter.entity_id.clone())
        .bind(from)
        .bind(to)
        .bind(limit)
        .fetch_all(&self.db)
        .await?;
        rows.iter()
            .map(|row| to_record(row).map_err(AuditError::from))
            .collect()
    }

    /// Records after `seq`, up to 1000 at a time (for export).
    pub async fn page(&self, after: i64, limit: u32) -> Result<Vec<AuditRecord>, AuditError> {
        self.list(&Filter {
            after: Some(after),
            limit: Some(limit),
            ..Filter::default()
        })
        .await
    }

    /// Recomputes every hash from the first record to the head; names the first record that
    /// does not match (edited), is missing (a gap in `seq`), or the head if records after it
    /// were removed.
    pub async fn verify(&self) -> Result<Verification, AuditError> {
        let mut prev_hash = GENESIS.to_owned();
        let mut expected = 1;
        let mut records = 0;
        let broken = |seq: i64, reason: String| Some(Broken { seq, reason });
        let mut first_broken = None;
        'pages: loop {
            let rows = query(
                "SELECT seq, id, at, at_ms, actor, action, entity_type, entity_id, source, data, prev_hash, hash
                 FROM audit_records WHERE seq >= $1 ORDER BY seq LIMIT 1000",
            )
                .bind(expected)
                .fetch_all(&self.db)
                .await?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                let seq: i64 = row.get("seq")?;
                if seq != expected {
                    first_broken = broken(expected, format!("record {expected} is missing"));
                    break 'pages;
                }
                let stored = NewRecord {
                    id: row.get("id")?,
                    at: row.get("at")?,
                    at_ms: row.get("at_ms")?,
                    actor: row.get("actor")?,
                    action: row.get("action")?,
                    entity_type: row.get("entity_type")?,
                    entity_id: row.get("entity_id")?,
                    source: row.get("source")?,
                    data: row.get("data")?,
                };
                let stored_prev: String = row.get("prev_hash")?;
                let stored_hash: String = row.get("hash")?;
                if stored_prev != prev_hash {
                    first_broken =
                        broken(seq, "its link to the previous record does not match".into());
                    break 'pages;
                }
                let hash = chain_hash(&prev_hash, seq, &stored);
                if hash != stored_hash {
                    first_broken =
                        broken(seq, "its content does not match its hash (edited)".into());
                    break 'pages;
                }
                prev_hash = hash;
                expected += 1;
                records += 1;
            }
        }
        if first_broken.is_none() {
            let head = query("SELECT seq, hash FROM audit_head WHERE one = 1")
                .fetch_optional(&self.db)
                .await?;
            let (head_seq, head_hash) = match head {
                Some(row) => (row.get::<i64>("seq")?, row.get::<String>("hash")?),
                None => (0, GENESIS.to_owned()),
            };
            if head_seq != records || head_hash != prev_hash {
                first_broken = broken(
                    records + 1,
                    format!(
                        "the head says {head_seq} records; the chain ends at {records} (newest records removed)"
                    ),
                );
            }
        }
        Ok(Verification {
            ok: first_broken.is_none(),
            records,
            head_hash: prev_hash,
            first_broken,
        })
    }
}

/// Appends inside the caller's transaction.
pub async fn append_in(tx: &mut Tx, record: &NewRecord) -> Result<i64, AuditError> {
    if tx.dialect() == Dialect::Postgres {
        // One chain, one head: appends from every process take turns.
        query("SELECT pg_advisory_xact_lock(7244301)")
            .execute(&mut *tx)
            .await?;
    }
    if let Some(row) = query("SELECT seq FROM audit_records WHERE id = $1")
        .bind(record.id.clone())
        .fetch_optional(&mut *tx)
        .await?
    {
        return Ok(row.get("seq")?);
    }
    let head = query("SELECT seq, hash FROM audit_head WHERE one = 1")
        .fetch_optional(&mut *tx)
        .await?;
    let (prev_seq, prev_hash) = match head {
        Some(row) => (row.get::<i64>("seq")?, row.get::<String>("hash")?),
        None => (0, GENESIS.to_owned()),
    };
    let seq = prev_seq + 1;
    let hash = chain_hash(&prev_hash, seq, record);
    query(
        "INSERT INTO audit_records (seq, id, at, at_ms, actor, action, entity_type, entity_id, source, data, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(seq)
    .bind(record.id.clone())
    .bind(record.at.clone())
    .bind(record.at_ms)
    .bind(record.actor.clone())
    .bind(record.action.clone())
    .bind(record.entity_type.clone())
    .bind(record.entity_id.clone())
    .bind(record.source.clone())
    .bind(record.data.clone())
    .bind(prev_hash)
    .bind(hash.clone())
    .execute(&mut *tx)
    .await?;
    query(
        "INSERT INTO audit_head (one, seq, hash) VALUES (1, $1, $2)
         ON CONFLICT (one) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
    )
    .bind(seq)
    .bind(hash)
    .execute(&mut *tx)
    .await?;
    metrics::counter!("audit_records_appended").increment(1);
    Ok(seq)
}
