//! The single writer: a dedicated thread with its own SQLite connection (rusqlite, cached
//! prepared statements) that applies every bus write — publishes, claims, settlements — in
//! group-committed transactions. See ADR 0006: sqlx's per-statement thread hop was the
//! bottleneck of the first, async version.

use std::collections::BTreeSet;
use std::sync::Weak;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use telar_sql::Synchronous;
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
    /// Stops the writer (its connection closes); later commands fail with `Closed`.
    Shutdown,
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

impl From<rusqlite::Error> for Error {
    fn from(error: rusqlite::Error) -> Self {
        Error::Storage(error.to_string())
    }
}

/// Opens the writer's connection and starts its thread.
pub(crate) fn spawn(
    config: &super::EmbeddedConfig,
    receiver: mpsc::Receiver<Command>,
    inner: Weak<Inner>,
) -> Result<()> {
    let synchronous = config.synchronous;
    let retention = Retention {
        keep_ms: i64::try_from(config.retention_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
        every: Duration::from_secs(config.gc_interval_secs),
    };
    let connection = Connection::open(&config.path)?;
    connection.busy_timeout(Duration::from_secs(5))?;
    let level = match synchronous {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    connection.pragma_update(None, "synchronous", level)?;
    connection.set_prepared_statement_cache_capacity(64);
    let groups = load_groups(&connection)?;
    std::thread::Builder::new()
        .name("telar-bus-writer".into())
        .spawn(move || run(connection, receiver, groups, &inner, &retention))
        .map_err(|e| Error::Storage(format!("cannot start the bus writer: {e}")))?;
    Ok(())
}

fn load_groups(connection: &Connection) -> Result<Vec<(String, TopicPattern)>> {
    let mut statement = connection.prepare("SELECT name, pattern FROM bus_groups")?;
    let rows = statement.query_map([], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
    })?;
    let mut groups = Vec::new();
    for row in rows {
        let (name, pattern) = row?;
        groups.push((name, TopicPattern::parse(&pattern)?));
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

/// When finished messages leave the log.
struct Retention {
    keep_ms: i64,
    every: Duration,
}

/// Removes messages older than the retention that no delivery still needs (dead letters keep
/// their own copy of the envelope). Bounded per run so a large backlog never stalls the writer.
fn collect_garbage(connection: &Connection, retention: &Retention) {
    let cutoff = now_ms().saturating_sub(retention.keep_ms);
    // One statement, so a delivery added meanwhile (a replay from another connection) is seen by
    // the same snapshot that decides what to delete.
    let result = connection
        .prepare_cached(
            "DELETE FROM bus_messages WHERE seq IN (
                 SELECT seq FROM bus_messages
                 WHERE published_at <= ?1
                   AND seq < COALESCE((SELECT MIN(seq) FROM bus_deliveries), 9223372036854775807)
                 ORDER BY seq LIMIT 10000)",
        )
        .and_then(|mut statement| statement.execute(params![cutoff]));
    match result {
        Ok(0) => {}
        Ok(removed) => tracing::debug!(removed, "bus log: finished messages removed"),
        Err(error) => tracing::warn!(%error, "bus log garbage collection failed"),
    }
}

fn run(
    mut connection: Connection,
    mut receiver: mpsc::Receiver<Command>,
    mut groups: Vec<(String, TopicPattern)>,
    inner: &Weak<Inner>,
    retention: &Retention,
) {
    let mut last_gc = std::time::Instant::now();
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut stopping = false;
    while !stopping {
        let Some(first) = receiver.blocking_recv() else {
            break;
        };
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(command) => batch.push(command),
                Err(_) => break,
            }
        }
        if let Some(index) = batch.iter().position(|c| matches!(c, Command::Shutdown)) {
            stopping = true;
            for command in batch.drain(index..) {
                reject(command, "the bus is closed");
            }
        }
        if batch.is_empty() {
            continue;
        }
        let mut woken = BTreeSet::new();
        let mut dead = false;
        let transaction = match connection.transaction_with_behavior(TransactionBehavior::Immediate)
        {
            Ok(transaction) => transaction,
            Err(error) => {
                let reason = error.to_string();
                batch.drain(..).for_each(|command| reject(command, &reason));
                continue;
            }
        };
        let done = apply_batch(
            &transaction,
            batch.drain(..),
            &mut groups,
            &mut woken,
            &mut dead,
        );
        match transaction.commit() {
            Ok(()) => {
                done.into_iter().for_each(Done::send);
                if let Some(inner) = inner.upgrade() {
                    inner.wake(&woken.into_iter().collect::<Vec<_>>());
                }
                if dead {
                    refresh_gauge(&connection);
                }
                if last_gc.elapsed() >= retention.every {
                    collect_garbage(&connection, retention);
                    last_gc = std::time::Instant::now();
                }
            }
            Err(error) => {
                let reason = error.to_string();
                tracing::error!(%reason, "bus commit failed");
                done.into_iter().for_each(|d| d.fail(&reason));
                // Registrations of the failed batch did not happen.
                if let Ok(stored) = load_groups(&connection) {
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
        Command::Shutdown => {}
    }
}

/// Each command (or all the batch's publishes) runs inside a savepoint, so a failed statement
/// rolls back only its own command, never half of it.
fn guarded<T>(tx: &Transaction<'_>, work: impl FnOnce() -> Result<T>) -> Result<T> {
    tx.execute_batch("SAVEPOINT bus_command")?;
    let result = work();
    if result.is_err() {
        let _ = tx.execute_batch("ROLLBACK TO SAVEPOINT bus_command");
    }
    let _ = tx.execute_batch("RELEASE SAVEPOINT bus_command");
    result
}

/// Registrations first, then every publish of the batch, then settlements, then claims.
fn apply_batch(
    tx: &Transaction<'_>,
    batch: impl Iterator<Item = Command>,
    groups: &mut Vec<(String, TopicPattern)>,
    woken: &mut BTreeSet<String>,
    dead: &mut bool,
) -> Vec<Done> {
    let mut done = Vec::new();
    let mut publishes = Vec::new();
    let mut settles = Vec::new();
    let mut claims = Vec::new();
    for command in batch {
        match command {
            Command::Register {
                group,
                pattern,
                reply,
            } => {
                let result = guarded(tx, || register(tx, &group, &pattern, groups));
                done.push(Done::Unit(reply, result));
            }
            Command::Publish { envelopes, reply } => publishes.push((envelopes, reply)),
            settle @ Command::Settle { .. } => settles.push(settle),
            claim @ Command::Claim { .. } => claims.push(claim),
            Command::Shutdown => {}
        }
    }
    if !publishes.is_empty() {
        let envelopes: Vec<&Envelope> = publishes.iter().flat_map(|(e, _)| e.iter()).collect();
        let result =
            guarded(tx, || publish(tx, &envelopes, groups, woken)).map_err(|e| e.to_string());
        for (_, reply) in publishes {
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
            let result = guarded(tx, || settle(tx, &group, seq, token, settlement));
            // A settled head frees its subject: wake the group's consumers.
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
            done.push(Done::Claimed(reply, claim(tx, &group, max, lease_ms)));
        }
    }
    done
}

fn publish(
    tx: &Transaction<'_>,
    envelopes: &[&Envelope],
    groups: &[(String, TopicPattern)],
    woken: &mut BTreeSet<String>,
) -> Result<()> {
    let now = now_ms();
    let mut insert_message = tx.prepare_cached(
        "INSERT INTO bus_messages (id, topic, subject, envelope, published_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (id) DO NOTHING RETURNING seq",
    )?;
    let mut insert_delivery = tx.prepare_cached(
        "INSERT INTO bus_deliveries (grp, seq, subject, available_at) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for envelope in envelopes {
        let bytes = envelope.to_json();
        let seq: Option<i64> = insert_message
            .query_row(
                params![envelope.id, envelope.ty, envelope.subject, bytes, now],
                |row| row.get(0),
            )
            .optional()?;
        // Already published (same envelope id): duplicate suppressed.
        let Some(seq) = seq else { continue };
        for (group, _) in groups.iter().filter(|(_, p)| p.matches(&envelope.ty)) {
            insert_delivery.execute(params![group, seq, envelope.subject, now])?;
            woken.insert(group.clone());
        }
    }
    Ok(())
}

fn register(
    tx: &Transaction<'_>,
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
    tx.execute(
        "INSERT INTO bus_groups (name, pattern, created_at) VALUES (?1, ?2, ?3)",
        params![group, pattern.as_str(), now_ms()],
    )?;
    groups.push((group.to_owned(), pattern.clone()));
    Ok(())
}

fn claim(tx: &Transaction<'_>, group: &str, max: u32, lease_ms: i64) -> Result<Claimed> {
    let now = now_ms();
    let mut statement = tx.prepare_cached(
        "UPDATE bus_deliveries SET lease_until = ?1, attempts = attempts + 1, lease_token = random()
         WHERE grp = ?2 AND seq IN (
             SELECT d.seq FROM bus_deliveries d
             WHERE d.grp = ?2 AND d.available_at <= ?3
               AND (d.lease_until IS NULL OR d.lease_until < ?3)
               AND (d.subject IS NULL OR NOT EXISTS (
                   SELECT 1 FROM bus_deliveries e
                   WHERE e.grp = d.grp AND e.subject = d.subject AND e.seq < d.seq))
             ORDER BY d.seq LIMIT ?4)
         RETURNING seq, attempts, lease_token, history",
    )?;
    let rows = statement.query_map(params![now + lease_ms, group, now, i64::from(max)], |row| {
        let history: String = row.get(3)?;
        Ok(Claim {
            seq: row.get(0)?,
            attempt: u32::try_from(row.get::<_, i64>(1)?).unwrap_or(u32::MAX),
            token: row.get(2)?,
            envelope: Vec::new(),
            history: serde_json::from_str(&history).unwrap_or_default(),
        })
    })?;
    let mut deliveries = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    deliveries.sort_by_key(|d| d.seq);
    let mut envelope = tx.prepare_cached("SELECT envelope FROM bus_messages WHERE seq = ?1")?;
    for delivery in &mut deliveries {
        // A missing message (should not happen: it is kept while deliveries need it) becomes an
        // empty envelope, which the consumer dead-letters as undecodable instead of stalling.
        delivery.envelope = envelope
            .query_row(params![delivery.seq], |row| row.get(0))
            .optional()?
            .unwrap_or_default();
    }
    let next_due_ms = if deliveries.is_empty() {
        // Only future times: a row blocked behind its subject's head is not "due", and waking
        // for it would spin. Settlements wake the group when a head goes away.
        tx.prepare_cached(
            "SELECT MIN(due) FROM (
                 SELECT CASE WHEN lease_until IS NOT NULL THEN lease_until ELSE available_at END AS due
                 FROM bus_deliveries WHERE grp = ?1)
             WHERE due > ?2",
        )?
        .query_row(params![group, now], |row| row.get::<_, Option<i64>>(0))?
    } else {
        None
    };
    Ok(Claimed {
        deliveries,
        next_due_ms,
    })
}

fn settle(
    tx: &Transaction<'_>,
    group: &str,
    seq: i64,
    token: i64,
    settlement: Settlement,
) -> Result<()> {
    // `lease_token = ?3` makes a late settlement (the lease expired and the message was claimed
    // again, or it was dead-lettered and replayed) a no-op instead of undoing the newer delivery.
    match settlement {
        Settlement::Ack => {
            tx.prepare_cached(
                "DELETE FROM bus_deliveries WHERE grp = ?1 AND seq = ?2 AND lease_token = ?3",
            )?
            .execute(params![group, seq, token])?;
        }
        Settlement::Retry { at_ms, history } => {
            tx.prepare_cached(
                "UPDATE bus_deliveries SET lease_until = NULL, available_at = ?4, history = ?5
                 WHERE grp = ?1 AND seq = ?2 AND lease_token = ?3",
            )?
            .execute(params![
                group,
                seq,
                token,
                at_ms,
                serde_json::to_string(&history).unwrap_or_else(|_| "[]".into())
            ])?;
        }
        Settlement::Dead { error, history } => {
            let moved = tx
                .prepare_cached(
                    "INSERT INTO bus_dead_letters (grp, seq, message_id, topic, subject, envelope, last_error, attempts, history, dead_at)
                     SELECT d.grp, d.seq, m.id, m.topic, d.subject, m.envelope, ?4, d.attempts, ?5, ?6
                     FROM bus_deliveries d JOIN bus_messages m ON m.seq = d.seq
                     WHERE d.grp = ?1 AND d.seq = ?2 AND d.lease_token = ?3",
                )?
                .execute(params![
                    group,
                    seq,
                    token,
                    error,
                    serde_json::to_string(&history).unwrap_or_else(|_| "[]".into()),
                    crate::dead_letter_sql::now_rfc3339()
                ])?;
            if moved > 0 {
                tx.prepare_cached("DELETE FROM bus_deliveries WHERE grp = ?1 AND seq = ?2")?
                    .execute(params![group, seq])?;
            }
        }
    }
    Ok(())
}

/// Sets `queue_dlq_length{group}` for every known group (0 when it has none).
fn refresh_gauge(connection: &Connection) {
    let Ok(mut statement) = connection.prepare_cached(
        "SELECT g.name, COUNT(d.id) FROM bus_groups g
         LEFT JOIN bus_dead_letters d ON d.grp = g.name GROUP BY g.name",
    ) else {
        return;
    };
    let Ok(rows) = statement.query_map([], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
    }) else {
        return;
    };
    for (group, count) in rows.flatten() {
        metrics::gauge!("queue_dlq_length", "group" => group).set(count as f64);
    }
}
