//! The single writer: group commit of every bus write.

use std::collections::{BTreeSet, HashMap};
use std::sync::Weak;

use telar_sql::{Db, Tx, generated_query, placeholders, query};
use telar_types::Envelope;
use tokio::sync::{mpsc, oneshot};

use super::Inner;
use crate::dead_letter::Attempt;
use crate::topic::TopicPattern;
use crate::{Error, Result};

/// Commands applied per transaction, at most.
const MAX_BATCH: usize = 2048;

pub(crate) enum Command {
    Publish {
        envelopes: Vec<Envelope>,
        reply: oneshot::Sender<Result<()>>,
    },
    Register {
        group: String,
        pattern: TopicPattern,
        reply: oneshot::Sender<Result<()>>,
    },
    Claim {
        group: String,
        max: u32,
        lease_ms: i64,
        reply: oneshot::Sender<Result<Claimed>>,
    },
    Settle {
        group: String,
        seq: i64,
        /// The claim's fencing token: a settlement for an older claim changes nothing.
        token: i64,
        settlement: Settlement,
        reply: oneshot::Sender<Result<()>>,
    },
}

pub(crate) struct Claimed {
    pub deliveries: Vec<Claim>,
    /// When the group's next delivery becomes claimable (retry delay or lease end), if known.
    pub next_due_ms: Option<i64>,
}

pub(crate) struct Claim {
    pub seq: i64,
    /// Random per claim; never reused after a replay (unlike `attempt`).
    pub token: i64,
    pub attempt: u32,
    pub envelope: Vec<u8>,
    pub history: Vec<Attempt>,
}

pub(crate) enum Settlement {
    Ack,
    Retry {
        at_ms: i64,
        history: Vec<Attempt>,
    },
    Dead {
        error: String,
        history: Vec<Attempt>,
    },
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

pub(crate) async fn load_groups(db: &Db) -> Result<Vec<(String, TopicPattern)>> {
    let rows = query("SELECT name, pattern FROM bus_groups")
        .fetch_all(db)
        .await?;
    let mut groups = Vec::with_capacity(rows.len());
    for row in rows {
        let pattern: String = row.get("pattern")?;
        groups.push((row.get("name")?, TopicPattern::parse(&pattern)?));
    }
    Ok(groups)
}

/// A command's answer, sent only after the transaction committed.
enum Done {
    Unit(oneshot::Sender<Result<()>>, Result<()>),
    Claimed(oneshot::Sender<Result<Claimed>>, Result<Claimed>),
}

impl Done {
    fn fail(self, reason: &str) {
        match self {
            Done::Unit(reply, _) => {
                let _ = reply.send(Err(Error::Storage(reason.to_owned())));
            }
            Done::Claimed(reply, _) => {
                let _ = reply.send(Err(Error::Storage(reason.to_owned())));
            }
        }
    }

    fn send(self) {
        match self {
            Done::Unit(reply, result) => {
                let _ = reply.send(result);
            }
            Done::Claimed(reply, result) => {
                let _ = reply.send(result);
            }
        }
    }
}

pub(crate) async fn run(
    db: Db,
    mut receiver: mpsc::Receiver<Command>,
    mut groups: Vec<(String, TopicPattern)>,
    inner: Weak<Inner>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = receiver.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(command) => batch.push(command),
                Err(_) => break,
            }
        }
        let mut woken = BTreeSet::new();
        let mut dead = false;
        let mut done = Vec::with_capacity(batch.len());
        let committed = match db.begin().await {
            Ok(mut tx) => {
                done =
                    apply_batch(&mut tx, batch.drain(..), &mut groups, &mut woken, &mut dead).await;
                tx.commit().await.map_err(|e| e.to_string())
            }
            Err(error) => {
                let reason = error.to_string();
                for command in batch.drain(..) {
                    reject(command, &reason);
                }
                Err(reason)
            }
        };
        match committed {
            Ok(()) => {
                done.into_iter().for_each(Done::send);
                if let Some(inner) = inner.upgrade() {
                    inner.wake(&woken.into_iter().collect::<Vec<_>>());
                }
                if dead {
                    super::dead_letters::refresh_gauge(&db).await;
                }
            }
            Err(reason) => {
                tracing::error!(%reason, "bus commit failed");
                done.into_iter().for_each(|d| d.fail(&reason));
                // Registrations of the failed batch did not happen.
                if let Ok(stored) = load_groups(&db).await {
                    groups = stored;
                }
            }
        }
    }
}

fn reject(command: Command, reason: &str) {
    let error = || Error::Storage(reason.to_owned());
    match command {
        Command::Publish { reply, .. }
        | Command::Register { reply, .. }
        | Command::Settle { reply, .. } => {
            let _ = reply.send(Err(error()));
        }
        Command::Claim { reply, .. } => {
            let _ = reply.send(Err(error()));
        }
    }
}

/// Applies a batch in one transaction with as few statements as possible: registrations first,
/// then every publish of the batch as multi-row inserts, every acknowledgement as one delete per
/// group, then retries, dead letters and claims.
async fn apply_batch(
    tx: &mut Tx,
    batch: impl Iterator<Item = Command>,
    groups: &mut Vec<(String, TopicPattern)>,
    woken: &mut BTreeSet<String>,
    dead: &mut bool,
) -> Vec<Done> {
    let mut done = Vec::new();
    let mut publishes = Vec::new();
    let mut acks: Vec<Ack> = Vec::new();
    let mut settles = Vec::new();
    let mut claims = Vec::new();
    for command in batch {
        match command {
            Command::Register {
                group,
                pattern,
                reply,
            } => {
                savepoint(tx).await;
                let result = register(tx, &group, &pattern, groups).await;
                finish(tx, result.is_ok()).await;
                done.push(Done::Unit(reply, result));
            }
            Command::Publish { envelopes, reply } => publishes.push((envelopes, reply)),
            Command::Settle {
                group,
                seq,
                token,
                settlement: Settlement::Ack,
                reply,
            } => {
                acks.push((group, seq, token, reply));
            }
            settle @ Command::Settle { .. } => settles.push(settle),
            claim @ Command::Claim { .. } => claims.push(claim),
        }
    }
    if !publishes.is_empty() {
        let envelopes: Vec<&Envelope> = publishes.iter().flat_map(|(e, _)| e.iter()).collect();
        // All or nothing: a failed statement must not leave messages without deliveries.
        savepoint(tx).await;
        let result = publish(tx, &envelopes, groups, woken)
            .await
            .map_err(|e| e.to_string());
        finish(tx, result.is_ok()).await;
        for (_, reply) in publishes {
            done.push(Done::Unit(reply, result.clone().map_err(Error::Storage)));
        }
    }
    if !acks.is_empty() {
        savepoint(tx).await;
        let result = acknowledge(tx, &acks).await.map_err(|e| e.to_string());
        finish(tx, result.is_ok()).await;
        for (group, ..) in &acks {
            // A settled head frees its subject: wake the group's consumers.
            woken.insert(group.clone());
        }
        for (_, _, _, reply) in acks {
            done.push(Done::Unit(reply, result.clone().map_err(Error::Storage)));
        }
    }
    for command in settles {
        if let Command::Settle {
            group,
            seq,
            token,
            settlement,
            reply,
        } = command
        {
            if matches!(settlement, Settlement::Dead { .. }) {
                *dead = true;
            }
            savepoint(tx).await;
            let result = settle(tx, &group, seq, token, settlement).await;
            finish(tx, result.is_ok()).await;
            woken.insert(group);
            done.push(Done::Unit(reply, result));
        }
    }
    for command in claims {
        if let Command::Claim {
            group,
            max,
            lease_ms,
            reply,
        } = command
        {
            done.push(Done::Claimed(reply, claim(tx, &group, max, lease_ms).await));
        }
    }
    done
}

/// Each command (or the batch's publishes, or its acknowledgements) runs inside a savepoint,
/// so a failed statement rolls back only its own command, never half of it.
async fn savepoint(tx: &mut Tx) {
    if let Err(error) = query("SAVEPOINT bus_command").execute(&mut *tx).await {
        tracing::error!(%error, "cannot open a savepoint");
    }
}

async fn finish(tx: &mut Tx, ok: bool) {
    if !ok {
        let _ = query("ROLLBACK TO SAVEPOINT bus_command")
            .execute(&mut *tx)
            .await;
    }
    let _ = query("RELEASE SAVEPOINT bus_command")
        .execute(&mut *tx)
        .await;
}

/// (group, seq, lease token, reply) of an acknowledgement.
type Ack = (String, i64, i64, oneshot::Sender<Result<()>>);

/// Rows per multi-row statement (5 columns each: far below SQLite's variable limit).
const ROWS_PER_STATEMENT: usize = 400;

async fn publish(
    tx: &mut Tx,
    envelopes: &[&Envelope],
    groups: &[(String, TopicPattern)],
    woken: &mut BTreeSet<String>,
) -> Result<()> {
    let now = now_ms();
    let encoded: Vec<Vec<u8>> = envelopes.iter().map(|e| e.to_json()).collect();
    let mut deliveries: Vec<(&str, i64, Option<&str>, &[u8])> = Vec::new();
    let indexed: Vec<(usize, &&Envelope)> = envelopes.iter().enumerate().collect();
    for chunk in indexed.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO bus_messages (id, topic, subject, envelope, published_at) VALUES {}
             ON CONFLICT (id) DO NOTHING RETURNING seq, id",
            placeholders(chunk.len(), 5, 1)
        );
        let mut statement = generated_query(sql);
        for (index, envelope) in chunk {
            statement = statement
                .bind(&envelope.id)
                .bind(&envelope.ty)
                .bind(envelope.subject.clone())
                .bind(encoded[*index].clone())
                .bind(now);
        }
        // Ids already published (earlier, or earlier in this batch) are not returned:
        // duplicates are suppressed.
        let mut inserted: HashMap<String, i64> = HashMap::new();
        for row in statement.fetch_all(&mut *tx).await? {
            inserted.insert(row.get("id")?, row.get("seq")?);
        }
        for (index, envelope) in chunk {
            let Some(seq) = inserted.remove(&envelope.id) else {
                continue;
            };
            for (group, _) in groups.iter().filter(|(_, p)| p.matches(&envelope.ty)) {
                deliveries.push((group, seq, envelope.subject.as_deref(), &encoded[*index]));
                woken.insert(group.clone());
            }
        }
    }
    for chunk in deliveries.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO bus_deliveries (grp, seq, subject, envelope, available_at) VALUES {}",
            placeholders(chunk.len(), 5, 1)
        );
        let mut statement = generated_query(sql);
        for (group, seq, subject, envelope) in chunk {
            statement = statement
                .bind(*group)
                .bind(*seq)
                .bind(subject.map(str::to_owned))
                .bind(envelope.to_vec())
                .bind(now);
        }
        statement.execute(&mut *tx).await?;
    }
    Ok(())
}

/// Deletes acknowledged deliveries: one statement per group and chunk. A delivery claimed
/// again since (its lease expired) has more attempts and is left alone.
async fn acknowledge(tx: &mut Tx, acks: &[Ack]) -> Result<()> {
    let mut by_group: HashMap<&str, Vec<(i64, i64)>> = HashMap::new();
    for (group, seq, token, _) in acks {
        by_group.entry(group).or_default().push((*seq, *token));
    }
    for (group, rows) in by_group {
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "DELETE FROM bus_deliveries WHERE grp = $1 AND (seq, lease_token) IN (VALUES {})",
                placeholders(chunk.len(), 2, 2)
            );
            let mut statement = generated_query(sql).bind(group);
            for (seq, token) in chunk {
                statement = statement.bind(*seq).bind(*token);
            }
            statement.execute(&mut *tx).await?;
        }
    }
    Ok(())
}

async fn register(
    tx: &mut Tx,
    group: &str,
    pattern: &TopicPattern,
    groups: &mut Vec<(String, TopicPattern)>,
) -> Result<()> {
    if let Some((_, existing)) = groups.iter().find(|(name, _)| name == group) {
        if existing == pattern {
            return Ok(());
        }
        return Err(Error::GroupPattern {
            group: group.to_owned(),
            existing: existing.as_str().to_owned(),
            requested: pattern.as_str().to_owned(),
        });
    }
    query("INSERT INTO bus_groups (name, pattern, created_at) VALUES ($1, $2, $3)")
        .bind(group)
        .bind(pattern.as_str())
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
    groups.push((group.to_owned(), pattern.clone()));
    Ok(())
}

async fn claim(tx: &mut Tx, group: &str, max: u32, lease_ms: i64) -> Result<Claimed> {
    let now = now_ms();
    let rows = query(
        "UPDATE bus_deliveries SET lease_until = $1, attempts = attempts + 1, lease_token = random()
         WHERE grp = $2 AND seq IN (
             SELECT d.seq FROM bus_deliveries d
             WHERE d.grp = $2 AND d.available_at <= $3
               AND (d.lease_until IS NULL OR d.lease_until < $3)
               AND (d.subject IS NULL OR NOT EXISTS (
                   SELECT 1 FROM bus_deliveries e
                   WHERE e.grp = d.grp AND e.subject = d.subject AND e.seq < d.seq))
             ORDER BY d.seq LIMIT $4)
         RETURNING seq, attempts, lease_token, envelope, history",
    )
    .bind(now + lease_ms)
    .bind(group)
    .bind(now)
    .bind(i64::from(max))
    .fetch_all(&mut *tx)
    .await?;
    let mut deliveries = Vec::with_capacity(rows.len());
    for row in rows {
        let history: String = row.get("history")?;
        deliveries.push(Claim {
            seq: row.get("seq")?,
            token: row.get("lease_token")?,
            attempt: u32::try_from(row.get::<i64>("attempts")?).unwrap_or(u32::MAX),
            envelope: row.get("envelope")?,
            history: serde_json::from_str(&history).unwrap_or_default(),
        });
    }
    deliveries.sort_by_key(|d| d.seq);
    let next_due_ms = if deliveries.is_empty() {
        // Only future times: a row blocked behind its subject's head is not "due", and waking
        // for it would spin. Settlements wake the group when a head goes away.
        query(
            "SELECT MIN(due) AS due FROM (
                 SELECT CASE WHEN lease_until IS NOT NULL THEN lease_until ELSE available_at END AS due
                 FROM bus_deliveries WHERE grp = $1)
             WHERE due > $2",
        )
        .bind(group)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?
        .get::<Option<i64>>("due")?
    } else {
        None
    };
    Ok(Claimed {
        deliveries,
        next_due_ms,
    })
}

async fn settle(
    tx: &mut Tx,
    group: &str,
    seq: i64,
    token: i64,
    settlement: Settlement,
) -> Result<()> {
    // `lease_token = $3` makes a late settlement (the lease expired and the message was claimed
    // again, or it was dead-lettered and replayed) a no-op instead of undoing the newer delivery.
    match settlement {
        Settlement::Ack => {
            query("DELETE FROM bus_deliveries WHERE grp = $1 AND seq = $2 AND lease_token = $3")
                .bind(group)
                .bind(seq)
                .bind(token)
                .execute(&mut *tx)
                .await?;
        }
        Settlement::Retry { at_ms, history } => {
            query(
                "UPDATE bus_deliveries SET lease_until = NULL, available_at = $4, history = $5
                 WHERE grp = $1 AND seq = $2 AND lease_token = $3",
            )
            .bind(group)
            .bind(seq)
            .bind(token)
            .bind(at_ms)
            .bind(serde_json::to_string(&history).unwrap_or_else(|_| "[]".into()))
            .execute(&mut *tx)
            .await?;
        }
        Settlement::Dead { error, history } => {
            let moved = query(
                "INSERT INTO bus_dead_letters (grp, seq, message_id, topic, subject, envelope, last_error, attempts, history, dead_at)
                 SELECT d.grp, d.seq, m.id, m.topic, d.subject, d.envelope, $4, d.attempts, $5, $6
                 FROM bus_deliveries d JOIN bus_messages m ON m.seq = d.seq
                 WHERE d.grp = $1 AND d.seq = $2 AND d.lease_token = $3",
            )
            .bind(group)
            .bind(seq)
            .bind(token)
            .bind(error)
            .bind(serde_json::to_string(&history).unwrap_or_else(|_| "[]".into()))
            .bind(super::dead_letters::now_rfc3339())
            .execute(&mut *tx)
            .await?;
            if moved > 0 {
                query("DELETE FROM bus_deliveries WHERE grp = $1 AND seq = $2")
                    .bind(group)
                    .bind(seq)
                    .execute(&mut *tx)
                    .await?;
            }
        }
    }
    Ok(())
}
