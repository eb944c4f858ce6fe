//! One writer transaction: what a batch of commands does to the log and the groups.
//!
//! Registrations and replays first, then the consumers' settlements and claims in the order they
//! came, then the batch's publishes — in chunks, and between chunks the consumers' commands that
//! arrived meanwhile are applied too, so a large batch of publishes never keeps a consumer
//! waiting for its whole length. A claim served from memory is answered at once (it hands out
//! only messages already on disk, at or below `durable`); every other answer waits for the
//! commit and its fsync (see ADR 0013).

use std::collections::BTreeSet;

use rusqlite::Transaction;

use super::groups::{self, Groups};
use super::syncer::Done;
use super::writer::{Command, Prepared, Settled, Settlement, guarded, publish, replay};
use crate::Error;

/// Publishes inserted between two looks at the consumers' commands.
const CHUNK: usize = 256;

/// What the transaction changed besides rows: answers, groups to wake, whether dead letters
/// were written, and the first failure (which rolls the batch back).
pub(super) struct Applied {
    pub done: Vec<Done>,
    pub woken: BTreeSet<String>,
    pub dead: bool,
    pub failed: Option<String>,
    /// The highest log seq this batch published.
    pub last_seq: Option<i64>,
}

/// Applies `batch`; `incoming` yields commands that arrived since (consumers' ones are applied
/// between publish chunks, the others are left in `carry` for the next batch).
pub(super) fn apply_batch(
    tx: &Transaction<'_>,
    batch: impl Iterator<Item = Command>,
    groups: &mut Groups,
    durable: i64,
    incoming: &mut dyn FnMut() -> Option<Command>,
    carry: &mut Vec<Command>,
) -> Applied {
    let mut applied = Applied {
        done: Vec::new(),
        woken: BTreeSet::new(),
        dead: false,
        failed: None,
        last_seq: None,
    };
    let mut publishes = Vec::new();
    let mut consumers = Vec::new();
    for command in batch {
        match command {
            Command::Register {
                group,
                pattern,
                reply,
            } => {
                let result = guarded(tx, || groups::register(tx, groups, &group, &pattern));
                applied.done.push(Done::Unit(reply, result));
            }
            Command::Publish { messages, reply } => publishes.push((messages, reply)),
            consumer @ (Command::Settle { .. } | Command::Claim { .. }) => consumers.push(consumer),
            Command::Replay { filter, reply } => {
                applied.dead = true;
                let result = guarded(tx, || replay(tx, &filter, groups, &mut applied.woken));
                applied.done.push(Done::Count(reply, result));
            }
            Command::Shutdown => carry.push(Command::Shutdown),
        }
    }
    for command in consumers {
        consumer_command(tx, command, groups, durable, &mut applied);
    }
    if publishes.is_empty() {
        return applied;
    }
    let messages: Vec<&Prepared> = publishes.iter().flat_map(|(m, _)| m.iter()).collect();
    for chunk in messages.chunks(CHUNK) {
        // No savepoint here (a savepoint makes SQLite copy every page it touches into a
        // sub-journal — the costliest part of a publish): a failed publish fails the batch.
        match publish(tx, chunk, groups, &mut applied.woken) {
            Ok(Some(last)) => applied.last_seq = Some(last),
            Ok(None) => {}
            Err(error) => {
                applied.failed = Some(error.to_string());
                break;
            }
        }
        while let Some(command) = incoming() {
            match command {
                consumer @ (Command::Settle { .. } | Command::Claim { .. }) => {
                    consumer_command(tx, consumer, groups, durable, &mut applied);
                }
                other => carry.push(other),
            }
        }
    }
    for (_, reply) in publishes {
        applied.done.push(Done::Unit(reply, Ok(())));
    }
    applied
}

fn consumer_command(
    tx: &Transaction<'_>,
    command: Command,
    groups: &mut Groups,
    durable: i64,
    applied: &mut Applied,
) {
    match command {
        Command::Settle {
            group,
            items,
            reply,
        } => {
            let result = settle(tx, groups, &group, items, &mut applied.dead);
            // A settled head frees its subject: wake the group's consumers.
            applied.woken.insert(group);
            applied.done.push(Done::Unit(reply, result));
        }
        Command::Claim {
            group,
            max,
            lease_ms,
            reply,
        } => {
            let result = match groups.get_mut(&group) {
                Some(state) => groups::claim(tx, &group, state, max, lease_ms, durable),
                None => Err(Error::Storage(format!("unknown group {group}"))),
            };
            match result {
                Ok(claimed) if !claimed.wrote => {
                    let _ = reply.send(Ok(claimed));
                }
                result => applied.done.push(Done::Claimed(reply, result)),
            }
        }
        _ => {}
    }
}

fn settle(
    tx: &Transaction<'_>,
    groups: &mut Groups,
    group: &str,
    items: Vec<Settled>,
    dead: &mut bool,
) -> crate::Result<()> {
    let mut result = Ok(());
    for Settled {
        seq,
        token,
        settlement,
    } in items
    {
        if matches!(settlement, Settlement::Dead { .. }) {
            *dead = true;
        }
        let ack = matches!(settlement, Settlement::Ack);
        let apply = || match groups.get_mut(group) {
            Some(state) => groups::settle(tx, group, state, seq, token, settlement),
            None => Err(Error::Storage(format!("unknown group {group}"))),
        };
        // An acknowledgement is at most one statement: atomic without a savepoint.
        let outcome = if ack { apply() } else { guarded(tx, apply) };
        if let Err(error) = outcome {
            // The lease will expire and the message be delivered again.
            tracing::warn!(%group, seq, %error, "settle failed");
            result = Err(error);
        }
    }
    result
}
