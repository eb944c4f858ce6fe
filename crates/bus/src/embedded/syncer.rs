//! Durability off the writer's path: with `synchronous = full` the writer commits with SQLite's
//! `NORMAL` (frames written to the WAL, no fsync) and hands each committed batch's answers to
//! this thread, which fsyncs the WAL once for every batch that gathered meanwhile and only then
//! answers. The writer applies the next batch while the disk syncs (see ADR 0013): a publish
//! still returns only once durable, and a claim hands out only durable messages (its answer
//! waits for the same fsync), but SQLite work and fsyncs overlap instead of alternating.
//!
//! SQLite's `NORMAL` in WAL mode already syncs the WAL before each checkpoint, the database
//! after it, and the WAL header when the log is reused; what it skips — the sync at each
//! commit — is what this thread does, for all the commits since its last one.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Weak};

use tokio::sync::oneshot;

use super::Inner;
use super::writer::Claimed;
use crate::{Error, Result};

/// A command's answer, sent only once its transaction is committed (and durable).
pub(crate) enum Done {
    Unit(oneshot::Sender<Result<()>>, Result<()>),
    Claimed(oneshot::Sender<Result<Claimed>>, Result<Claimed>),
    Count(oneshot::Sender<Result<u64>>, Result<u64>),
}

impl Done {
    pub(crate) fn fail(self, reason: &str) {
        let error = || Error::Storage(reason.to_owned());
        match self {
            Done::Unit(reply, _) => {
                let _ = reply.send(Err(error()));
            }
            Done::Claimed(reply, _) => {
                let _ = reply.send(Err(error()));
            }
            Done::Count(reply, _) => {
                let _ = reply.send(Err(error()));
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
            Done::Count(reply, result) => {
                let _ = reply.send(result);
            }
        }
    }
}

/// One committed transaction's answers, the groups it gave new work to, and the highest log
/// seq it published (if any).
pub(crate) struct Committed {
    pub done: Vec<Done>,
    pub woken: Vec<String>,
    pub last_seq: Option<i64>,
}

/// The highest log seq known to be on disk (with `normal`: committed). Claims hand out only
/// messages at or below it; the syncer raises it after each fsync, before waking the groups.
pub(crate) type Durable = Arc<AtomicI64>;

/// The writer's end: answers go out in commit order, after the fsync that covers them.
pub(crate) struct Syncer {
    sender: std_mpsc::Sender<Committed>,
}

impl Syncer {
    /// Starts the thread. `wal` is the log to fsync (`None`: `synchronous = normal`, answer at
    /// once — still off the writer's thread, which wakes no task itself).
    pub(crate) fn spawn(
        wal: Option<PathBuf>,
        durable: Durable,
        inner: Weak<Inner>,
    ) -> Result<Self> {
        let (sender, receiver) = std_mpsc::channel::<Committed>();
        std::thread::Builder::new()
            .name("telar-bus-sync".into())
            .spawn(move || run(&receiver, wal.as_deref(), &durable, &inner))
            .map_err(|e| Error::Storage(format!("cannot start the bus syncer: {e}")))?;
        Ok(Syncer { sender })
    }

    pub(crate) fn submit(&self, committed: Committed) {
        if let Err(std_mpsc::SendError(committed)) = self.sender.send(committed) {
            committed
                .done
                .into_iter()
                .for_each(|d| d.fail("the bus is closed"));
        }
    }
}

fn run(
    receiver: &std_mpsc::Receiver<Committed>,
    wal: Option<&Path>,
    durable: &AtomicI64,
    inner: &Weak<Inner>,
) {
    let mut log: Option<File> = None;
    let mut pending = Vec::new();
    while let Ok(first) = receiver.recv() {
        pending.push(first);
        pending.extend(receiver.try_iter());
        let synced = match wal {
            None => Ok(()),
            Some(path) => sync(&mut log, path),
        };
        let mut woken: Vec<String> = Vec::new();
        for Committed {
            done,
            woken: groups,
            last_seq,
        } in pending.drain(..)
        {
            match &synced {
                Ok(()) => {
                    if let Some(seq) = last_seq {
                        durable.fetch_max(seq, Ordering::Release);
                    }
                    done.into_iter().for_each(Done::send);
                }
                Err(reason) => done.into_iter().for_each(|d| d.fail(reason)),
            }
            for group in groups {
                if !woken.contains(&group) {
                    woken.push(group);
                }
            }
        }
        if let Some(inner) = inner.upgrade() {
            inner.wake(&woken);
        }
    }
}

/// fsyncs the WAL (opened on first use: it exists once the writer has committed; its directory
/// is synced once too, so the file's creation is durable).
fn sync(log: &mut Option<File>, path: &Path) -> std::result::Result<(), String> {
    if log.is_none() {
        let file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| format!("cannot sync {}: {e}", dir.display()))?;
        }
        *log = Some(file);
    }
    let Some(file) = log.as_ref() else {
        return Err("bus log not open".into());
    };
    file.sync_data().map_err(|error| {
        tracing::error!(%error, path = %path.display(), "bus log fsync failed");
        format!("fsync of the bus log failed: {error}")
    })
}
