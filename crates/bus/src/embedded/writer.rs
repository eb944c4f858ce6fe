//! The single writer: a dedicated thread with its own SQLite connection (rusqlite, cached
//! prepared statements) that applies every bus write — publishes, claims, settlements — in
//! group-committed transactions. See ADR 0006: sqlx's per-statement thread hop was the
//! bottleneck of the first, async version.

use std::collections::BTreeSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use rusqlite::{Connection, Transaction, TransactionBehavior, params};
use telar_sql::Synchronous;
use telar_types::Envelope;
use tokio::sync::{mpsc, oneshot};

use super::Inner;
use super::apply::{Applied, apply_batch};
use super::checkpoint::Checkpointer;
use super::groups::{self, Groups};
use super::syncer::{Committed, Durable, Syncer};
use crate::dead_letter::{Attempt, DeadLetterFilter};
use crate::topic::TopicPattern;
use crate::{Error, Result};

/// Commands applied per transaction, at most.
const MAX_BATCH: usize = 2048;
/// How often group cursors are written.
const CURSOR_EVERY: Duration = Duration::from_millis(200);

pub(crate) enum Command {
    Publish {
        messages: Vec<Prepared>,
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
    /// Puts matching dead letters back in their groups' queues; answers how many.
    Replay {
        filter: DeadLetterFilter,
        reply: oneshot::Sender<Result<u64>>,
    },
    /// Stops the writer (its connection closes); later commands fail with `Closed`.
    Shutdown,
    /// The settlements a consumer gathered since its last claim (sent just before the next
    /// one: applied before it, in one command instead of one per message).
    Settle {
        group: String,
        items: Vec<Settled>,
        reply: oneshot::Sender<Result<()>>,
    },
}

/// An envelope serialized by its publisher (not by the writer thread, the bus's bottleneck).
pub(crate) struct Prepared {
    pub id: String,
    pub topic: String,
    pub subject: Option<String>,
    pub bytes: Arc<[u8]>,
}

impl Prepared {
    pub(crate) fn new(envelope: Envelope) -> Self {
        thread_local! {
            /// Serialization scratch space, kept at its high-water mark: one copy into the
            /// shared bytes instead of a growing vector per envelope.
            static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let bytes = SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut buffer) => {
                buffer.clear();
                envelope.write_json(&mut buffer);
                Arc::<[u8]>::from(&buffer[..])
            }
            Err(_) => Arc::from(envelope.to_json()),
        });
        Prepared {
            id: envelope.id,
            topic: envelope.ty,
            subject: envelope.subject,
            bytes,
        }
    }
}

pub(crate) struct Claimed {
    pub deliveries: Vec<Claim>,
    /// When the group's next delivery becomes claimable (retry delay or lease end), if known.
    pub next_due_ms: Option<i64>,
    /// Whether the claim changed rows (retries, replays): then it is answered after the
    /// commit; a claim served from memory is answered at once.
    pub wrote: bool,
}

pub(crate) struct Claim {
    pub seq: i64,
    /// Random per claim; never reused after a replay (unlike `attempt`).
    pub token: i64,
    pub attempt: u32,
    pub envelope: Arc<[u8]>,
    pub history: Vec<Attempt>,
}

/// One delivery's outcome.
pub(crate) struct Settled {
    pub seq: i64,
    /// The claim's fencing token: a settlement for an older claim changes nothing.
    pub token: i64,
    pub settlement: Settlement,
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
    // SQLite itself never fsyncs at commit: with `full`, the syncer thread does, once for every
    // commit since its last fsync, while the writer goes on (see syncer.rs).
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    let wal = match synchronous {
        Synchronous::Full => {
            let mut log = config.path.clone().into_os_string();
            log.push("-wal");
            Some(std::path::PathBuf::from(log))
        }
        Synchronous::Normal => None,
    };
    // Everything in the file at start is as durable as it will get.
    let last: Option<i64> =
        connection.query_row("SELECT MAX(seq) FROM bus_messages", [], |row| row.get(0))?;
    let durable: Durable = Arc::new(std::sync::atomic::AtomicI64::new(last.unwrap_or(0)));
    let syncer = Syncer::spawn(wal, durable.clone(), inner.clone())?;
    let checkpointer = Checkpointer::spawn(&config.path)?;
    // Checkpoint every ~40 MB of log instead of 4 MB: hot pages (the table's last leaf, the id
    // index) are copied back to the database file once per checkpoint, not once per 1000 pages.
    // The checkpointer thread has copied most of it by then: what this connection's automatic
    // checkpoint does is the rest, and letting the log start again from its beginning.
    connection.pragma_update(None, "wal_autocheckpoint", 10_000)?;
    // Rows read back (a group behind the in-memory window, lease expiries, replays) come from
    // recent pages: keep 16 MiB of them instead of SQLite's 2 MiB, and read the file through a
    // 256 MiB memory map (address space, not memory) instead of a copy per page read.
    connection.pragma_update(None, "cache_size", -16_384)?;
    connection.pragma_update(None, "mmap_size", 268_435_456)?;
    connection.set_prepared_statement_cache_capacity(64);
    let groups = groups::load(&connection)?;
    std::thread::Builder::new()
        .name("telar-bus-writer".into())
        .spawn(move || {
            let stages = Stages {
                syncer,
                checkpointer,
                durable,
            };
            run(connection, receiver, groups, &stages, &retention);
        })
        .map_err(|e| Error::Storage(format!("cannot start the bus writer: {e}")))?;
    Ok(())
}

/// What follows a commit: the fsync and answers, the background checkpoints, and the durable
/// seq claims read.
struct Stages {
    syncer: Syncer,
    checkpointer: Checkpointer,
    durable: Durable,
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
                   AND seq <= COALESCE((SELECT MIN(cursor) FROM bus_groups), 9223372036854775807)
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
    mut groups: Groups,
    stages: &Stages,
    retention: &Retention,
) {
    let mut last_gc = std::time::Instant::now();
    let mut last_cursors = std::time::Instant::now();
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // Commands that arrived during the last batch and belong to the next one.
    let mut carry = Vec::new();
    let mut stopping = false;
    while !stopping {
        if carry.is_empty() {
            let Some(first) = receiver.blocking_recv() else {
                break;
            };
            batch.push(first);
        } else {
            batch.append(&mut carry);
        }
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
        let transaction = match connection.transaction_with_behavior(TransactionBehavior::Immediate)
        {
            Ok(transaction) => transaction,
            Err(error) => {
                let reason = error.to_string();
                batch.drain(..).for_each(|command| reject(command, &reason));
                continue;
            }
        };
        let durable = stages.durable.load(std::sync::atomic::Ordering::Acquire);
        let mut incoming = || receiver.try_recv().ok();
        let Applied {
            done,
            woken,
            dead,
            failed,
            last_seq,
        } = apply_batch(
            &transaction,
            batch.drain(..),
            &mut groups,
            durable,
            &mut incoming,
            &mut carry,
        );
        // A cursor only bounds what a crash delivers again: written every CURSOR_EVERY (and
        // at shutdown), not with every acknowledgement, which would cost a commit each.
        if last_cursors.elapsed() >= CURSOR_EVERY {
            if let Err(error) = groups::persist_cursors(&transaction, &mut groups) {
                tracing::warn!(%error, "bus cursors not written (messages may be delivered again)");
            }
            last_cursors = std::time::Instant::now();
        }
        let committed = match failed {
            None => transaction.commit().map_err(|e| e.to_string()),
            Some(reason) => {
                let _ = transaction.rollback();
                Err(reason)
            }
        };
        match committed {
            Ok(()) => {
                stages.checkpointer.committed();
                stages.syncer.submit(Committed {
                    done,
                    woken: woken.into_iter().collect(),
                    last_seq,
                });
                if dead {
                    refresh_gauge(&connection);
                }
                if last_gc.elapsed() >= retention.every {
                    collect_garbage(&connection, retention);
                    last_gc = std::time::Instant::now();
                }
            }
            Err(reason) => {
                tracing::error!(%reason, "bus commit failed");
                done.into_iter().for_each(|d| d.fail(&reason));
                // What the failed batch changed in memory did not happen: start again from the
                // file (deliveries in flight come back as after a restart).
                match groups::load(&connection) {
                    Ok(stored) => groups = stored,
                    Err(error) => tracing::error!(%error, "bus groups could not be reloaded"),
                }
            }
        }
    }
    // Leave the cursors where the consumers are, so a clean restart redelivers nothing (synced
    // here: the syncer has stopped).
    let _ = connection.pragma_update(None, "synchronous", "FULL");
    if let Ok(transaction) = connection.transaction_with_behavior(TransactionBehavior::Immediate)
        && groups::persist_cursors(&transaction, &mut groups).is_ok()
    {
        let _ = transaction.commit();
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
        Command::Replay { reply, .. } => {
            let _ = reply.send(Err(error()));
        }
        Command::Shutdown => {}
    }
}

/// Each command (or all the batch's publishes) runs inside a savepoint, so a failed statement
/// rolls back only its own command, never half of it.
pub(super) fn guarded<T>(tx: &Transaction<'_>, work: impl FnOnce() -> Result<T>) -> Result<T> {
    tx.execute_batch("SAVEPOINT bus_command")?;
    let result = work();
    if result.is_err() {
        let _ = tx.execute_batch("ROLLBACK TO SAVEPOINT bus_command");
    }
    let _ = tx.execute_batch("RELEASE SAVEPOINT bus_command");
    result
}

pub(super) fn publish(
    tx: &Transaction<'_>,
    messages: &[&Prepared],
    groups: &mut Groups,
    woken: &mut BTreeSet<String>,
) -> Result<Option<i64>> {
    let now = now_ms();
    let mut last = None;
    // No RETURNING: SQLite builds an ephemeral table for it on every execution. A duplicate
    // (same envelope id) changes no row; otherwise the new row's seq is the last rowid.
    let mut insert_message = tx.prepare_cached(
        "INSERT INTO bus_messages (id, topic, subject, envelope, published_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (id) DO NOTHING",
    )?;
    for message in messages {
        let inserted = insert_message.execute(params![
            message.id,
            message.topic,
            message.subject,
            &message.bytes[..],
            now
        ])?;
        // Already published (same envelope id): duplicate suppressed.
        if inserted == 0 {
            continue;
        }
        let seq = tx.last_insert_rowid();
        last = Some(seq);
        for (name, group) in groups.iter_mut() {
            if groups::offer(group, seq, message) && !woken.contains(name.as_str()) {
                woken.insert(name.clone());
            }
        }
    }
    Ok(last)
}

/// Moves matching dead letters back to their groups' deliveries with fresh attempts; a message
/// the log collected since is put back from the dead letter's copy.
pub(super) fn replay(
    tx: &Transaction<'_>,
    filter: &DeadLetterFilter,
    groups: &mut Groups,
    woken: &mut BTreeSet<String>,
) -> Result<u64> {
    let matching =
        "(?1 IS NULL OR id = ?1) AND (?2 IS NULL OR grp = ?2) AND (?3 IS NULL OR topic = ?3)";
    let key = (filter.id, filter.group.as_deref(), filter.topic.as_deref());
    let with_now = (key.0, key.1, key.2, now_ms());
    tx.execute(
        &format!(
            "INSERT INTO bus_messages (seq, id, topic, subject, envelope, published_at)
             SELECT seq, message_id, topic, subject, envelope, ?4 FROM bus_dead_letters WHERE {matching}
             ON CONFLICT DO NOTHING"
        ),
        with_now,
    )?;
    let mut statement = tx.prepare(&format!(
        "INSERT INTO bus_deliveries (grp, seq, subject, available_at)
         SELECT grp, seq, subject, ?4 FROM bus_dead_letters WHERE {matching}
         ON CONFLICT (grp, seq) DO NOTHING RETURNING grp, subject"
    ))?;
    let queued: Vec<(String, Option<String>)> = statement
        .query_map(with_now, |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (name, subject) in queued {
        if let Some(group) = groups.get_mut(&name) {
            groups::replayed(group, subject.as_deref());
        }
        woken.insert(name);
    }
    let moved = tx.execute(
        &format!("DELETE FROM bus_dead_letters WHERE {matching}"),
        key,
    )?;
    Ok(moved as u64)
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
