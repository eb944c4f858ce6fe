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
    // Waits for the first commit; then, after each checkpoint, lets commits gather until EVERY
    // has passed (each checkpoint fsyncs the database file) and runs again if one came.
    let mut due = nudged.recv().is_ok();
    while due {
        let next = Instant::now() + EVERY;
        let result = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        if let Err(error) = result {
            tracing::warn!(%error, "bus log checkpoint failed (the writer's own will run)");
        }
        due = false;
        while let Some(left) = next.checked_duration_since(Instant::now()) {
            match nudged.recv_timeout(left) {
                Ok(()) => due = true,
                Err(std_mpsc::RecvTimeoutError::Timeout) => break,
                // The writer is gone: the bus is closing.
                Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
        if !due {
            due = nudged.recv().is_ok();
        }
    }
}
