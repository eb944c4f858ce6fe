//! Checkpoints off the writer's path. SQLite checkpoints in the committing connection once the
//! WAL passes `wal_autocheckpoint` pages: copying ~40 MB into the database file and fsyncing
//! it stalled every publish and claim for 40–70 ms, four times per 100 000 messages. This
//! thread, on its own connection, copies the log into the database with `PASSIVE` checkpoints
//! (which never block the writer) every `EVERY` while the writer is busy; the writer's own
//! automatic checkpoint then finds almost nothing left to copy, and the log is reused from its
//! start as before (it stays bounded).

use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::{Error, Result};

/// How often, at most, a checkpoint runs while commits keep coming.
const EVERY: Duration = Duration::from_millis(50);

/// The writer's end: `committed()` after each commit (cheap; never blocks).
pub(crate) struct Checkpointer {
    nudge: std_mpsc::SyncSender<()>,
}

impl Checkpointer {
    pub(crate) fn spawn(path: &Path) -> Result<Self> {
        let connection = Connection::open(path)?;
        connection.busy_timeout(Duration::from_secs(5))?;
        let (nudge, nudged) = std_mpsc::sync_channel::<()>(1);
        std::thread::Builder::new()
            .name("telar-bus-ckpt".into())
            .spawn(move || run(&connection, &nudged))
            .map_err(|e| Error::Storage(format!("cannot start the bus checkpointer: {e}")))?;
        Ok(Checkpointer { nudge })
    }

    pub(crate) fn committed(&self) {
        // Full: a nudge is already waiting, which is all that is needed.
        let _ = self.nudge.try_send(());
    }
}

fn run(connection: &Connection, nudged: &std_mpsc::Receiver<()>) {
    while nudged.recv().is_ok() {
        let started = Instant::now();
        let result = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        if let Err(error) = result {
            tracing::warn!(%error, "bus log checkpoint failed (the writer's own will run)");
        }
        // Let commits gather between checkpoints (each one fsyncs the database file).
        if let Some(rest) = EVERY.checked_sub(started.elapsed()) {
            std::thread::sleep(rest);
        }
    }
}
