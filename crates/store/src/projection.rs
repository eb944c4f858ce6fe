//! Projections: read models built from `read_all`, each with a checkpoint moved in the same
//! transaction as its writes (so every event has its effect exactly once), following new events
//! live (woken by commits, with a slow poll for appends by other processes), rebuildable from
//! zero.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use telar_sql::{Db, Tx};

use crate::event::RecordedEvent;
use crate::{EventStore, Result, checkpoint};

/// A read model fed by the store's events.
pub trait Projection: Send + Sync + 'static {
    /// Unique per target database: the checkpoint's key and the name operators use.
    fn name(&self) -> &str;
    /// Applies one event inside `tx`, which also moves the checkpoint. An error stops the
    /// projection at this event (or skips it, by policy); the message is shown on `/ready`.
    fn apply<'a>(
        &'a self,
        tx: &'a mut Tx,
        event: &'a RecordedEvent,
    ) -> BoxFuture<'a, std::result::Result<(), String>>;
    /// Empties the read model, before a rebuild from position 0.
    fn reset<'a>(&'a self, tx: &'a mut Tx) -> BoxFuture<'a, Result<()>>;
}

/// What to do with an event the projection cannot apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// Stop at it: the read model stays consistent, `/ready` fails until it is fixed.
    #[default]
    Stop,
    /// Skip it (logged and counted in `projection_skipped_events`).
    Skip,
}

/// Where a projection is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectionStatus {
    /// Applied everything up to `position` that it has read so far.
    Running { position: i64 },
    /// Stopped at the event at `position`.
    Stopped { position: i64, reason: String },
}

/// Runs one projection from one store into a target database (the store's own, or a read-model
/// service's).
#[derive(Clone)]
pub struct Projector {
    store: EventStore,
    target: Db,
    projection: Arc<dyn Projection>,
    on_error: OnError,
    batch: u32,
    status: Arc<Mutex<ProjectionStatus>>,
}

/// A rebuild's outcome.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rebuilt {
    pub projection: String,
    pub events: u64,
    pub position: i64,
    pub millis: u64,
}

/// Safety net for appends committed by other processes.
const POLL: Duration = Duration::from_secs(1);

impl Projector {
    /// Prepares the checkpoint table and row in `target`.
    pub async fn new(store: EventStore, target: Db, projection: impl Projection) -> Result<Self> {
        checkpoint::prepare(&target, projection.name()).await?;
        let position = checkpoint::read(&target, projection.name()).await?;
        Ok(Projector {
            store,
            target,
            projection: Arc::new(projection),
            on_error: OnError::Stop,
            batch: 500,
            status: Arc::new(Mutex::new(ProjectionStatus::Running { position })),
        })
    }

    pub fn on_error(mut self, policy: OnError) -> Self {
        self.on_error = policy;
        self
    }

    pub fn name(&self) -> &str {
        self.projection.name()
    }

    pub fn status(&self) -> ProjectionStatus {
        self.status
            .lock()
            .map(|s| s.clone())
            .unwrap_or(ProjectionStatus::Stopped {
                position: 0,
                reason: "status lock poisoned".into(),
            })
    }

    /// A check for the kit's `/ready` (`ReadyCheck::new(name, projector.readiness())`): fails
    /// with the reason while the projection is stopped.
    pub fn readiness(
        &self,
    ) -> impl Fn() -> std::future::Ready<std::result::Result<(), String>> + Send + Sync + 'static
    {
        let status = self.status.clone();
        move || {
            let result = match status.lock().map(|s| s.clone()) {
                Ok(ProjectionStatus::Running { .. }) => Ok(()),
                Ok(ProjectionStatus::Stopped { position, reason }) => {
                    Err(format!("stopped at position {position}: {reason}"))
                }
                Err(_) => Err("status lock poisoned".into()),
            };
            std::future::ready(result)
        }
    }

    /// Follows the store until `shutdown` resolves.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        tokio::pin!(shutdown);
        let appended = self.store.appended();
        loop {
            let woken = appended.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if let Err(error) = self.catch_up(|_| {}).await {
                tracing::warn!(projection = %self.name(), %error, "projection did not catch up");
            }
            tokio::select! {
                _ = &mut woken => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = &mut shutdown => return,
            }
        }
    }

    /// Applies every event after the checkpoint; `progress` gets the position after each batch.
    /// Returns how many events were applied.
    pub async fn catch_up(&self, progress: impl Fn(i64)) -> Result<u64> {
        let name = self.projection.name().to_owned();
        let mut applied = 0;
        loop {
            let from = checkpoint::read(&self.target, &name).await?;
            let events = self.store.read_all(from, self.batch).await?;
            let Some(last) = events.last().map(|e| e.position) else {
                self.set(ProjectionStatus::Running { position: from });
                return Ok(applied);
            };
            let mut tx = self.target.begin().await?;
            let mut done = from;
            let mut stopped = None;
            for event in &events {
                match self.projection.apply(&mut tx, event).await {
                    Ok(()) => {}
                    Err(reason) if self.on_error == OnError::Skip => {
                        tracing::warn!(projection = %name, position = event.position, stream = %event.stream, %reason, "event skipped");
                        metrics::counter!("projection_skipped_events", "projection" => name.clone())
                            .increment(1);
                    }
                    Err(reason) => {
                        stopped = Some((event.position, reason));
                        break;
                    }
                }
                done = event.position;
                applied += 1;
            }
            if done > from {
                checkpoint::advance(&mut tx, &name, from, done).await?;
            }
            tx.commit().await?;
            metrics::gauge!("projection_position", "projection" => name.clone()).set(done as f64);
            progress(done);
            if let Some((position, reason)) = stopped {
                tracing::error!(projection = %name, position, %reason, "projection stopped");
                metrics::gauge!("projection_stopped", "projection" => name.clone()).set(1.0);
                self.set(ProjectionStatus::Stopped { position, reason });
                return Ok(applied);
            }
            metrics::gauge!("projection_stopped", "projection" => name.clone()).set(0.0);
            if last == done && events.len() < self.batch as usize {
                self.set(ProjectionStatus::Running { position: done });
                return Ok(applied);
            }
        }
    }

    /// Empties the read model and applies every event from position 0.
    pub async fn rebuild(&self, progress: impl Fn(i64)) -> Result<Rebuilt> {
        let started = std::time::Instant::now();
        let name = self.projection.name().to_owned();
        let mut tx = self.target.begin().await?;
        self.projection.reset(&mut tx).await?;
        telar_sql::query("UPDATE es_checkpoints SET position = 0 WHERE name = $1")
            .bind(&name)
            .execute(&mut tx)
            .await?;
        tx.commit().await?;
        self.set(ProjectionStatus::Running { position: 0 });
        let events = self.catch_up(progress).await?;
        Ok(Rebuilt {
            position: checkpoint::read(&self.target, &name).await?,
            projection: name,
            events,
            millis: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        })
    }

    fn set(&self, status: ProjectionStatus) {
        if let Ok(mut current) = self.status.lock() {
            *current = status;
        }
    }
}
