//! Consumer-group state of the embedded log, held by the writer thread.
//!
//! One process owns the log, so a group's progress lives in memory and only a cursor is
//! written: every message at or below `bus_groups.cursor` is settled for the group, or waits
//! in `bus_deliveries` (the exceptions: retries and replays). A message is read from the log
//! (or taken straight from a publish when the group is caught up), waits its subject's turn,
//! is leased to a consumer, and on `Ack` simply leaves memory; the cursor then moves past it.
//! After a restart, messages above the cursor are delivered again (at least once), except
//! those already moved to retries or dead letters.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::window::{Waiting, Window};
use super::writer::{Claim, Claimed, Prepared, Settlement, now_ms};
use crate::topic::TopicPattern;
use crate::{Error, Result};

/// Log rows read per claim, at most.
const READ_BATCH: usize = 1024;

struct Lease {
    subject: Option<String>,
    until_ms: i64,
    token: i64,
    attempt: u32,
}

pub(crate) struct Group {
    pub pattern: TopicPattern,
    /// The last log seq this group examined.
    read_pos: i64,
    persisted_cursor: i64,
    waiting: Window,
    in_flight: HashMap<i64, Lease>,
    busy: HashMap<String, u32>,
    /// Subjects with rows in `bus_deliveries` (retrying or replayed): later messages wait.
    retrying: HashMap<String, u32>,
    /// Seqs above the cursor already moved to retries or dead letters (known after a restart).
    skip: HashSet<i64>,
    /// Rows this group has in `bus_deliveries` (none: the claim skips that table).
    rows: u64,
    /// When `rows` and `retrying` were last read from the file: another process (`telar dlq
    /// replay`) may have added rows.
    counted_at: Instant,
}

/// How often a group re-reads its row counts from the file.
const RECOUNT_EVERY: Duration = Duration::from_secs(1);

pub(crate) type Groups = HashMap<String, Group>;

fn bump(map: &mut HashMap<String, u32>, subject: Option<&str>, up: bool) {
    let Some(subject) = subject else { return };
    if up {
        *map.entry(subject.to_owned()).or_default() += 1;
    } else if let Some(count) = map.get_mut(subject) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            map.remove(subject);
        }
    }
}

/// Reads every group's state from the file (at start, and after a failed commit).
pub(crate) fn load(connection: &Connection) -> Result<Groups> {
    let mut groups = Groups::new();
    let mut statement = connection.prepare("SELECT name, pattern, cursor FROM bus_groups")?;
    let rows = statement.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, i64>(2)?,
        ))
    })?;
    for row in rows {
        let (name, pattern, cursor) = row?;
        let mut group = Group {
            pattern: TopicPattern::parse(&pattern)?,
            read_pos: cursor,
            persisted_cursor: cursor,
            waiting: Window::default(),
            in_flight: HashMap::new(),
            busy: HashMap::new(),
            retrying: HashMap::new(),
            skip: HashSet::new(),
            rows: 0,
            counted_at: Instant::now(),
        };
        recount(connection, &name, &mut group)?;
        let mut skip = connection.prepare_cached(
            "SELECT seq FROM bus_deliveries WHERE grp = ?1 AND seq > ?2
             UNION SELECT seq FROM bus_dead_letters WHERE grp = ?1 AND seq > ?2",
        )?;
        for seq in skip.query_map(params![name, cursor], |r| r.get::<_, i64>(0))? {
            group.skip.insert(seq?);
        }
        groups.insert(name, group);
    }
    Ok(groups)
}

/// Reads the group's rows in `bus_deliveries` and the subjects they hold.
fn recount(connection: &Connection, name: &str, group: &mut Group) -> Result<()> {
    group.rows = connection
        .prepare_cached("SELECT COUNT(*) FROM bus_deliveries WHERE grp = ?1")?
        .query_row(params![name], |r| r.get::<_, i64>(0))
        .map(|n| u64::try_from(n).unwrap_or(0))?;
    group.retrying.clear();
    let mut subjects = connection.prepare_cached(
        "SELECT subject, COUNT(*) FROM bus_deliveries WHERE grp = ?1 AND subject IS NOT NULL GROUP BY subject",
    )?;
    for row in subjects.query_map(params![name], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
    })? {
        let (subject, count) = row?;
        group
            .retrying
            .insert(subject, u32::try_from(count).unwrap_or(u32::MAX));
    }
    group.counted_at = Instant::now();
    Ok(())
}

/// A new group starts at the end of the log: it receives what is published from now on.
pub(crate) fn register(
    tx: &Transaction<'_>,
    groups: &mut Groups,
    name: &str,
    pattern: &TopicPattern,
) -> Result<()> {
    if let Some(existing) = groups.get(name) {
        if &existing.pattern == pattern {
            return Ok(());
        }
        return Err(Error::GroupPattern {
            group: name.to_owned(),
            existing: existing.pattern.as_str().to_owned(),
            requested: pattern.as_str().to_owned(),
        });
    }
    let end: i64 = tx.query_row("SELECT COALESCE(MAX(seq), 0) FROM bus_messages", [], |r| {
        r.get(0)
    })?;
    tx.execute(
        "INSERT INTO bus_groups (name, pattern, created_at, cursor) VALUES (?1, ?2, ?3, ?4)",
        params![name, pattern.as_str(), now_ms(), end],
    )?;
    groups.insert(
        name.to_owned(),
        Group {
            pattern: pattern.clone(),
            read_pos: end,
            persisted_cursor: end,
            waiting: Window::default(),
            in_flight: HashMap::new(),
            busy: HashMap::new(),
            retrying: HashMap::new(),
            skip: HashSet::new(),
            rows: 0,
            counted_at: Instant::now(),
        },
    );
    Ok(())
}

/// A message just written: groups that are caught up take it without reading it back.
/// Returns whether `group` wants it (to wake its consumers).
pub(crate) fn offer(group: &mut Group, seq: i64, message: &Prepared) -> bool {
    let wanted = group.pattern.matches(&message.topic);
    if group.read_pos == seq - 1 && group.waiting.has_room() {
        group.read_pos = seq;
        if wanted {
            group.waiting.insert(
                seq,
                Waiting {
                    subject: message.subject.clone(),
                    envelope: message.bytes.clone(),
                    attempts: 0,
                },
            );
        }
    }
    wanted
}

pub(crate) fn claim(
    tx: &Transaction<'_>,
    name: &str,
    group: &mut Group,
    max: u32,
    lease_ms: i64,
    durable: i64,
) -> Result<Claimed> {
    let now = now_ms();
    let max = max as usize;
    if group.counted_at.elapsed() >= RECOUNT_EVERY {
        recount(tx, name, group)?;
    }
    expire_leases(tx, group, now)?;
    let mut deliveries = claim_exceptions(tx, name, group, max, lease_ms, now)?;
    let wrote = !deliveries.is_empty();
    read_log(tx, group)?;
    // Hand out waiting messages in log order, at most one in flight per subject.
    let mut blocked: HashSet<&str> = HashSet::new();
    let mut chosen = Vec::new();
    for (seq, waiting) in group.waiting.iter() {
        // Not on disk yet (and neither is anything after it): handed out after the fsync.
        if deliveries.len() + chosen.len() >= max || *seq > durable {
            break;
        }
        if let Some(subject) = waiting.subject.as_deref() {
            let free = !group.busy.contains_key(subject)
                && !group.retrying.contains_key(subject)
                && !blocked.contains(subject);
            // Later messages of this subject wait behind this one either way.
            blocked.insert(subject);
            if !free {
                continue;
            }
        }
        chosen.push(*seq);
    }
    for seq in chosen {
        let Some(waiting) = group.waiting.remove(seq) else {
            continue;
        };
        let token = rand::random::<i64>();
        let attempt = waiting.attempts + 1;
        bump(&mut group.busy, waiting.subject.as_deref(), true);
        group.in_flight.insert(
            seq,
            Lease {
                subject: waiting.subject,
                until_ms: now + lease_ms,
                token,
                attempt,
            },
        );
        deliveries.push(Claim {
            seq,
            token,
            attempt,
            envelope: waiting.envelope,
            history: Vec::new(),
        });
    }
    let next_due_ms = if deliveries.is_empty() {
        let leases = group.in_flight.values().map(|l| l.until_ms).min();
        let rows: Option<i64> = if group.rows == 0 {
            None
        } else {
            tx
            .prepare_cached(
                "SELECT MIN(due) FROM (
                     SELECT CASE WHEN lease_until IS NOT NULL THEN lease_until ELSE available_at END AS due
                     FROM bus_deliveries WHERE grp = ?1)
                 WHERE due > ?2",
            )?
            .query_row(params![name, now], |row| row.get(0))?
        };
        [leases, rows].into_iter().flatten().min()
    } else {
        None
    };
    Ok(Claimed {
        deliveries,
        next_due_ms,
        wrote,
    })
}

/// Deliveries whose lease ran out go back to wait, in log order, for another consumer.
fn expire_leases(tx: &Transaction<'_>, group: &mut Group, now: i64) -> Result<()> {
    let expired: Vec<i64> = group
        .in_flight
        .iter()
        .filter(|(_, lease)| lease.until_ms < now)
        .map(|(seq, _)| *seq)
        .collect();
    let mut envelope = tx.prepare_cached("SELECT envelope FROM bus_messages WHERE seq = ?1")?;
    for seq in expired {
        let Some(lease) = group.in_flight.remove(&seq) else {
            continue;
        };
        bump(&mut group.busy, lease.subject.as_deref(), false);
        let bytes: Vec<u8> = envelope
            .query_row(params![seq], |row| row.get(0))
            .optional()?
            .unwrap_or_default();
        group.waiting.insert(
            seq,
            Waiting {
                subject: lease.subject,
                envelope: Arc::from(bytes),
                attempts: lease.attempt,
            },
        );
    }
    Ok(())
}

/// Rows of `bus_deliveries` that are due: retries whose delay passed, replays, expired leases.
fn claim_exceptions(
    tx: &Transaction<'_>,
    name: &str,
    group: &mut Group,
    max: usize,
    lease_ms: i64,
    now: i64,
) -> Result<Vec<Claim>> {
    if group.rows == 0 || max == 0 {
        return Ok(Vec::new());
    }
    let mut candidates = tx.prepare_cached(
        "SELECT d.seq, d.subject FROM bus_deliveries d
         WHERE d.grp = ?1 AND d.available_at <= ?2
           AND (d.lease_until IS NULL OR d.lease_until < ?2)
           AND (d.subject IS NULL OR NOT EXISTS (
               SELECT 1 FROM bus_deliveries e
               WHERE e.grp = d.grp AND e.subject = d.subject AND e.seq < d.seq))
         ORDER BY d.seq LIMIT ?3",
    )?;
    let rows: Vec<(i64, Option<String>)> = candidates
        .query_map(params![name, now, max as i64], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut lease = tx.prepare_cached(
        "UPDATE bus_deliveries SET lease_until = ?1, attempts = attempts + 1, lease_token = random()
         WHERE grp = ?2 AND seq = ?3
         RETURNING attempts, lease_token, history",
    )?;
    let mut envelope = tx.prepare_cached("SELECT envelope FROM bus_messages WHERE seq = ?1")?;
    let mut claims = Vec::new();
    for (seq, subject) in rows {
        // A subject with a log delivery in flight waits for it.
        if subject
            .as_deref()
            .is_some_and(|s| group.busy.contains_key(s))
        {
            continue;
        }
        let (attempts, token, history): (i64, i64, String) = lease
            .query_row(params![now + lease_ms, name, seq], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
        // A missing message (should not happen: it is kept while deliveries need it) becomes
        // an empty envelope, dead-lettered as undecodable instead of stalling the subject.
        let bytes: Vec<u8> = envelope
            .query_row(params![seq], |row| row.get(0))
            .optional()?
            .unwrap_or_default();
        claims.push(Claim {
            seq,
            token,
            attempt: u32::try_from(attempts).unwrap_or(u32::MAX),
            envelope: Arc::from(bytes),
            history: serde_json::from_str(&history).unwrap_or_default(),
        });
    }
    Ok(claims)
}

/// Reads the log past the group's position into its waiting messages (bounded).
fn read_log(tx: &Transaction<'_>, group: &mut Group) -> Result<()> {
    let room = group.waiting.room().min(READ_BATCH);
    if room == 0 {
        return Ok(());
    }
    let mut statement = tx.prepare_cached(
        "SELECT seq, topic, subject, envelope FROM bus_messages WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let mut rows = statement.query(params![group.read_pos, room as i64])?;
    while let Some(row) = rows.next()? {
        let seq: i64 = row.get(0)?;
        group.read_pos = seq;
        if group.skip.remove(&seq) {
            continue;
        }
        let topic: String = row.get(1)?;
        if group.pattern.matches(&topic) {
            group.waiting.insert(
                seq,
                Waiting {
                    subject: row.get(2)?,
                    envelope: Arc::from(row.get::<_, Vec<u8>>(3)?),
                    attempts: 0,
                },
            );
        }
    }
    Ok(())
}

/// Applies a consumer's outcome. A settlement for a lease that expired (the message went to
/// another consumer) changes nothing.
pub(crate) fn settle(
    tx: &Transaction<'_>,
    name: &str,
    group: &mut Group,
    seq: i64,
    token: i64,
    settlement: Settlement,
) -> Result<()> {
    match group.in_flight.get(&seq) {
        Some(lease) if lease.token == token => {}
        // Leased again since: this settlement is stale.
        Some(_) => return Ok(()),
        None => return settle_exception(tx, name, group, seq, token, settlement),
    }
    let Some(lease) = group.in_flight.remove(&seq) else {
        return Ok(());
    };
    bump(&mut group.busy, lease.subject.as_deref(), false);
    match settlement {
        Settlement::Ack => {}
        Settlement::Retry { at_ms, history } => {
            tx.prepare_cached(
                "INSERT INTO bus_deliveries (grp, seq, subject, attempts, available_at, history)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                name,
                seq,
                lease.subject,
                i64::from(lease.attempt),
                at_ms,
                serde_json::to_string(&history).unwrap_or_else(|_| "[]".into())
            ])?;
            bump(&mut group.retrying, lease.subject.as_deref(), true);
            group.rows += 1;
        }
        Settlement::Dead { error, history } => {
            tx.prepare_cached(
                "INSERT INTO bus_dead_letters (grp, seq, message_id, topic, subject, envelope, last_error, attempts, history, dead_at)
                 SELECT ?1, seq, id, topic, subject, envelope, ?2, ?3, ?4, ?5 FROM bus_messages WHERE seq = ?6",
            )?
            .execute(params![
                name,
                error,
                i64::from(lease.attempt),
                serde_json::to_string(&history).unwrap_or_else(|_| "[]".into()),
                crate::dead_letter_sql::now_rfc3339(),
                seq
            ])?;
        }
    }
    Ok(())
}

fn settle_exception(
    tx: &Transaction<'_>,
    name: &str,
    group: &mut Group,
    seq: i64,
    token: i64,
    settlement: Settlement,
) -> Result<()> {
    // `lease_token = ?3`: a late settlement (the lease expired and the row was claimed again,
    // or it was dead-lettered and replayed) is a no-op instead of undoing the newer delivery.
    match settlement {
        Settlement::Ack => {
            let removed: Option<Option<String>> = tx
                .prepare_cached(
                    "DELETE FROM bus_deliveries WHERE grp = ?1 AND seq = ?2 AND lease_token = ?3 RETURNING subject",
                )?
                .query_row(params![name, seq, token], |row| row.get(0))
                .optional()?;
            if let Some(subject) = removed {
                bump(&mut group.retrying, subject.as_deref(), false);
                group.rows = group.rows.saturating_sub(1);
            }
        }
        Settlement::Retry { at_ms, history } => {
            tx.prepare_cached(
                "UPDATE bus_deliveries SET lease_until = NULL, available_at = ?4, history = ?5
                 WHERE grp = ?1 AND seq = ?2 AND lease_token = ?3",
            )?
            .execute(params![
                name,
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
                    name,
                    seq,
                    token,
                    error,
                    serde_json::to_string(&history).unwrap_or_else(|_| "[]".into()),
                    crate::dead_letter_sql::now_rfc3339()
                ])?;
            if moved > 0 {
                let subject: Option<Option<String>> = tx
                    .prepare_cached(
                        "DELETE FROM bus_deliveries WHERE grp = ?1 AND seq = ?2 RETURNING subject",
                    )?
                    .query_row(params![name, seq], |row| row.get(0))
                    .optional()?;
                if let Some(subject) = subject {
                    bump(&mut group.retrying, subject.as_deref(), false);
                    group.rows = group.rows.saturating_sub(1);
                }
            }
        }
    }
    Ok(())
}

/// Rows put back into `bus_deliveries` by a replay: their subjects now hold later messages.
pub(crate) fn replayed(group: &mut Group, subject: Option<&str>) {
    bump(&mut group.retrying, subject, true);
    group.rows += 1;
}

/// Writes each group's cursor if it moved: below the first message still waiting or in flight.
pub(crate) fn persist_cursors(tx: &Transaction<'_>, groups: &mut Groups) -> Result<()> {
    let mut update = tx.prepare_cached("UPDATE bus_groups SET cursor = ?1 WHERE name = ?2")?;
    for (name, group) in groups.iter_mut() {
        let first_open = group
            .waiting
            .first_seq()
            .into_iter()
            .chain(group.in_flight.keys().min().copied())
            .min();
        let cursor = first_open.map_or(group.read_pos, |seq| seq - 1);
        if cursor != group.persisted_cursor {
            update.execute(params![cursor, name])?;
            group.persisted_cursor = cursor;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;
    use telar_types::Envelope;

    use super::*;

    /// A claim hands out only what the syncer has declared on disk; the rest waits for the next
    /// fsync, in order.
    #[test]
    fn claims_hand_out_only_durable_messages() {
        let mut connection = Connection::open_in_memory().expect("sqlite");
        for migration in super::super::schema::MIGRATIONS {
            connection.execute_batch(migration.sqlite).expect("schema");
        }
        let tx = connection.transaction().expect("tx");
        let mut groups = Groups::new();
        let pattern = TopicPattern::parse("t.>").expect("pattern");
        register(&tx, &mut groups, "g", &pattern).expect("register");
        let group = groups.get_mut("g").expect("group");
        let start = group.read_pos;
        for n in 1..=3 {
            let envelope = Envelope::new("/test", "t.x", serde_json::json!({ "n": n }))
                .with_subject(format!("s{n}"));
            assert!(offer(group, start + n, &Prepared::new(envelope)));
        }
        let first = claim(&tx, "g", group, 10, 30_000, start + 2).expect("claim");
        let seqs: Vec<i64> = first.deliveries.iter().map(|c| c.seq).collect();
        assert_eq!(seqs, vec![start + 1, start + 2]);
        assert!(!first.wrote, "served from memory");
        let second = claim(&tx, "g", group, 10, 30_000, start + 2).expect("claim");
        assert!(second.deliveries.is_empty(), "the third is not on disk yet");
        let third = claim(&tx, "g", group, 10, 30_000, start + 3).expect("claim");
        assert_eq!(
            third.deliveries.iter().map(|c| c.seq).collect::<Vec<_>>(),
            vec![start + 3]
        );
    }
}
