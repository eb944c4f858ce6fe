//! The embedded backend: a SQLite log with group commit.
//!
//! One writer thread, on its own rusqlite connection, owns every write (publish, claim, settle):
//! it takes all commands waiting in its channel, applies them in one transaction and commits
//! once — many concurrent publishes share one fsync. Each consumer group has its own delivery
//! rows (fan-out at publish), claimed under a lease; a delivery whose lease expires is delivered
//! again. Per-subject order holds within a group: a delivery is only claimed when no earlier
//! delivery of the same subject is still pending, leased or waiting to be retried.
//!
//! One process owns the file (the writer is in-process); consumers in that process
//! load-balance within a group.

mod apply;
mod checkpoint;
mod consumer;
mod groups;
mod schema;
mod syncer;
mod window;
mod writer;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use telar_sql::{Db, SqliteConfig, Synchronous};
use telar_types::Envelope;
use tokio::sync::{Notify, mpsc, oneshot, watch};

use crate::bus::{Backend, SubscribeOptions, Subscription};
use crate::dead_letter::{DeadLetter, DeadLetterFilter};
use crate::handler::Handler;
use crate::topic::TopicPattern;
use crate::{Error, Result};

use writer::Command;

/// Embedded bus settings (`[bus.embedded]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedConfig {
    /// The log file.
    pub path: PathBuf,
    /// `full` (default): a published message survives power loss. `normal`: it survives a
    /// process crash but the last commits may be lost on power loss.
    pub synchronous: Synchronous,
    /// How long a message stays in the log once no group has it pending (also how long a
    /// re-published envelope id is recognised as a duplicate).
    pub retention_secs: u64,
    /// How often the writer removes messages past retention.
    pub gc_interval_secs: u64,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        EmbeddedConfig {
            path: PathBuf::from("data/bus.db"),
            synchronous: Synchronous::Full,
            retention_secs: 7 * 24 * 3600,
            gc_interval_secs: 60,
        }
    }
}

/// The embedded SQLite bus. Wrap it in [`crate::Bus`].
#[derive(Clone)]
pub struct EmbeddedBus {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    db: Db,
    commands: mpsc::Sender<Command>,
    notifiers: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Inner {
    /// The notifier consumers of `group` wait on; woken by publishes that reach the group.
    pub(crate) fn notifier(&self, group: &str) -> Arc<Notify> {
        let Ok(mut notifiers) = self.notifiers.lock() else {
            return Arc::new(Notify::new());
        };
        notifiers
            .entry(group.to_owned())
            .or_insert_with(|| Arc::new(Notify::new()))
            .clone()
    }

    pub(crate) fn wake(&self, groups: &[String]) {
        if let Ok(notifiers) = self.notifiers.lock() {
            for group in groups {
                if let Some(notify) = notifiers.get(group) {
                    notify.notify_waiters();
                }
            }
        }
    }

    pub(crate) async fn send<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T>>) -> Command,
    ) -> Result<T> {
        self.enqueue(make).await?.await
    }

    /// Queues a command for the writer; the returned future resolves when it has been applied
    /// (committed).
    pub(crate) async fn enqueue<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T>>) -> Command,
    ) -> Result<impl std::future::Future<Output = Result<T>>> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| Error::Closed)?;
        Ok(async move { answer.await.map_err(|_| Error::Closed)? })
    }
}

impl EmbeddedBus {
    /// Opens (creating if needed) the log and starts its writer.
    pub async fn open(config: &EmbeddedConfig) -> Result<Self> {
        let sqlite = SqliteConfig {
            synchronous: config.synchronous,
            max_connections: 4,
            ..SqliteConfig::default()
        };
        let db = Db::sqlite(&config.path, &sqlite).await?;
        db.migrate(schema::MIGRATIONS).await?;
        let (commands, receiver) = mpsc::channel(8192);
        let inner = Arc::new(Inner {
            db: db.clone(),
            commands,
            notifiers: Mutex::new(HashMap::new()),
        });
        writer::spawn(config, receiver, Arc::downgrade(&inner))?;
        Ok(EmbeddedBus { inner })
    }

    /// Closes the database; later calls fail with `Closed`.
    pub async fn close(&self) {
        self.inner.db.close().await;
    }
}

impl Backend for EmbeddedBus {
    fn name(&self) -> &'static str {
        "embedded"
    }

    fn publish_batch(&self, envelopes: Vec<Envelope>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.inner
                .send(|reply| Command::Publish {
                    messages: envelopes.into_iter().map(writer::Prepared::new).collect(),
                    reply,
                })
                .await
        })
    }

    fn subscribe(
        &self,
        pattern: TopicPattern,
        options: SubscribeOptions,
        handler: Arc<dyn Handler>,
    ) -> BoxFuture<'_, Result<Subscription>> {
        Box::pin(async move {
            let group = options.group.clone();
            self.inner
                .send(|reply| Command::Register {
                    group,
                    pattern,
                    reply,
                })
                .await?;
            let (stop, stopped) = watch::channel(false);
            let task = tokio::spawn(consumer::run(self.inner.clone(), options, handler, stopped));
            Ok(Subscription::new(stop, task))
        })
    }

    fn dead_letters(&self, filter: DeadLetterFilter) -> BoxFuture<'_, Result<Vec<DeadLetter>>> {
        Box::pin(crate::dead_letter_sql::list(&self.inner.db, filter))
    }

    fn replay(&self, filter: DeadLetterFilter) -> BoxFuture<'_, Result<u64>> {
        Box::pin(async move {
            self.inner
                .send(|reply| Command::Replay { filter, reply })
                .await
        })
    }

    fn purge(&self, filter: DeadLetterFilter) -> BoxFuture<'_, Result<u64>> {
        Box::pin(crate::dead_letter_sql::purge(&self.inner.db, filter))
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let _ = self.inner.commands.send(Command::Shutdown).await;
            self.inner.db.close().await;
        })
    }
}
