//! What the broker backends (NATS JetStream, RabbitMQ) share: the consumer driver that turns a
//! stream of raw broker messages into handler calls, and the dead-letter store.
//!
//! The driver bounds in-flight messages, keeps per-subject order within a group in this
//! process (all subscriptions of a group on one backend share one [`Sequencer`]: a message
//! waits while an earlier one of its subject is being handled), runs the handler, and settles
//! through the backend's [`Acker`]: ack, retry with a delay, or bury in the dead-letter store
//! and then drop from the broker.

pub(crate) mod store;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::BoxFuture;
use telar_types::Envelope;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use crate::Result;
use crate::bus::SubscribeOptions;
use crate::consume::{observe, run_handler};
use crate::handler::{Delivery, Handler, Outcome};
use store::{Burial, DeadLetterStore};

/// Settles one broker message.
pub(crate) trait Acker: Send + Sync + 'static {
    fn ack(&self) -> BoxFuture<'_, Result<()>>;
    /// Deliver again after `delay` as attempt `next_attempt`.
    fn retry(&self, delay: Duration, next_attempt: u32) -> BoxFuture<'_, Result<()>>;
    /// The message is in the dead-letter store: never deliver it again.
    fn drop_message(&self) -> BoxFuture<'_, Result<()>>;
    /// Still working on it (or waiting behind an earlier message of its subject): keep the lease.
    fn keep(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

/// One message as the broker handed it over.
pub(crate) struct Incoming {
    pub payload: bytes::Bytes,
    /// 1 for the first delivery.
    pub attempt: u32,
    pub acker: Arc<dyn Acker>,
}

/// A message waiting for, or holding, its subject's turn. Only its subject is read on the
/// admission path (which is serial); the envelope is decoded by the job itself.
struct Job {
    incoming: Incoming,
    subject: Option<String>,
    _permit: OwnedSemaphorePermit,
    waiting_since: Instant,
}

/// What admission reads of an envelope: its subject (the rest is skipped without building it).
#[derive(serde::Deserialize)]
struct Head {
    #[serde(default)]
    subject: Option<String>,
}

/// Per-subject turns for one group in this process.
#[derive(Default)]
pub(crate) struct Sequencer {
    busy: Mutex<HashMap<String, VecDeque<Job>>>,
}

impl Sequencer {
    /// The job if its subject is free (the subject is now busy), or `None` if it was queued.
    fn admit(&self, job: Job) -> Option<Job> {
        let Some(subject) = job.subject.clone() else {
            return Some(job);
        };
        let Ok(mut busy) = self.busy.lock() else {
            return Some(job);
        };
        match busy.get_mut(&subject) {
            Some(queue) => {
                queue.push_back(job);
                None
            }
            None => {
                busy.insert(subject, VecDeque::new());
                Some(job)
            }
        }
    }

    /// The next job of `subject`, or `None` (the subject is free again); and the ackers of
    /// jobs still queued behind it for longer than `renew_after`, whose leases need renewing.
    fn next(&self, subject: &str, renew_after: Duration) -> (Option<Job>, Vec<Arc<dyn Acker>>) {
        let Ok(mut busy) = self.busy.lock() else {
            return (None, Vec::new());
        };
        let Some(queue) = busy.get_mut(subject) else {
            return (None, Vec::new());
        };
        let Some(job) = queue.pop_front() else {
            busy.remove(subject);
            return (None, Vec::new());
        };
        let mut stale = Vec::new();
        for waiting in queue.iter_mut() {
            if waiting.waiting_since.elapsed() > renew_after {
                waiting.waiting_since = Instant::now();
                stale.push(waiting.incoming.acker.clone());
            }
        }
        (Some(job), stale)
    }
}

/// What a running consumer needs.
pub(crate) struct Context {
    pub options: SubscribeOptions,
    pub handler: Arc<dyn Handler>,
    pub store: DeadLetterStore,
    pub feed: Arc<GroupFeed>,
}

pub(crate) type Source = futures::stream::BoxStream<'static, Result<Incoming>>;

/// The messages of one group in this process: one broker source shared by every subscription
/// of the group, so messages are admitted to the sequencer in the order the broker hands them
/// over.
pub(crate) struct GroupFeed {
    source: tokio::sync::Mutex<Source>,
    sequencer: Sequencer,
    /// Ids this group acknowledged lately, for brokers without publish-side deduplication.
    recent: Option<Mutex<RecentIds>>,
}

/// A bounded set of the last acknowledged envelope ids (oldest forgotten first).
#[derive(Default)]
pub(crate) struct RecentIds {
    ids: std::collections::HashSet<String>,
    order: VecDeque<String>,
}

impl RecentIds {
    const CAPACITY: usize = 10_000;

    fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    fn insert(&mut self, id: String) {
        if self.ids.insert(id.clone()) {
            self.order.push_back(id);
            if self.order.len() > Self::CAPACITY
                && let Some(oldest) = self.order.pop_front()
            {
                self.ids.remove(&oldest);
            }
        }
    }
}

/// The groups this process consumes, per backend instance. A feed lives while a subscription
/// of its group does.
#[derive(Default)]
pub(crate) struct Feeds(Mutex<HashMap<String, Weak<GroupFeed>>>);

impl Feeds {
    /// The group's running feed, or a new one on the source `open` makes (`dedup`: skip ids
    /// acknowledged lately).
    pub(crate) async fn join<F, Fut>(
        &self,
        group: &str,
        dedup: bool,
        open: F,
    ) -> Result<Arc<GroupFeed>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Source>>,
    {
        if let Some(feed) = self.running(group) {
            return Ok(feed);
        }
        let fresh = Arc::new(GroupFeed {
            source: tokio::sync::Mutex::new(open().await?),
            sequencer: Sequencer::default(),
            recent: dedup.then(Mutex::default),
        });
        let Ok(mut feeds) = self.0.lock() else {
            return Ok(fresh);
        };
        // Another subscription of the group may have opened one meanwhile: use that one.
        if let Some(feed) = feeds.get(group).and_then(Weak::upgrade) {
            return Ok(feed);
        }
        feeds.insert(group.to_owned(), Arc::downgrade(&fresh));
        Ok(fresh)
    }

    fn running(&self, group: &str) -> Option<Arc<GroupFeed>> {
        self.0.lock().ok()?.get(group).and_then(Weak::upgrade)
    }
}

/// Runs a consumer of `feed` for one subscription.
pub(crate) fn subscribe(
    feed: Arc<GroupFeed>,
    options: SubscribeOptions,
    handler: Arc<dyn Handler>,
    store: DeadLetterStore,
) -> crate::bus::Subscription {
    let context = Arc::new(Context {
        feed,
        options,
        handler,
        store,
    });
    let (stop, stopped) = watch::channel(false);
    crate::bus::Subscription::new(stop, tokio::spawn(drive(context, stopped)))
}

/// Consumes the group's feed until `stop` (or until the source ends), at most `max_in_flight`
/// at once.
pub(crate) async fn drive(context: Arc<Context>, mut stop: watch::Receiver<bool>) {
    let permits = Arc::new(Semaphore::new(context.options.max_in_flight));
    // Owned by this task: a subscription that is aborted (a simulated crash) takes its
    // in-flight deliveries down with it, so their messages come back after the lease.
    let mut in_flight = JoinSet::new();
    loop {
        if *stop.borrow() || stop.has_changed().is_err() {
            break;
        }
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit { Ok(p) => p, Err(_) => break },
            _ = stop.changed() => continue,
        };
        let admitted = tokio::select! {
            admitted = next_job(&context, permit) => admitted,
            _ = stop.changed() => continue,
        };
        match admitted {
            Admitted::Ended => break,
            Admitted::Queued => {}
            Admitted::Failed => {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                    _ = stop.changed() => {}
                }
            }
            Admitted::Run(job) => {
                let context = context.clone();
                // Boxed: the handler's future is large, and a task copies its future in
                // when spawned and its stage when done (measured: ~4 % of the consumer's CPU).
                in_flight.spawn(Box::pin(async move { run(&context, *job).await }));
            }
        }
        while in_flight.try_join_next().is_some() {}
    }
    while in_flight.join_next().await.is_some() {}
}

enum Admitted {
    Run(Box<Job>),
    /// Waiting behind an earlier message of its subject (or already dead-lettered).
    Queued,
    Failed,
    Ended,
}

/// Takes the next message from the shared source and admits it to the sequencer, both under
/// the source's lock: admission order is delivery order, whichever subscription takes it.
async fn next_job(context: &Context, permit: OwnedSemaphorePermit) -> Admitted {
    let mut source = context.feed.source.lock().await;
    let incoming = match source.next().await {
        None => return Admitted::Ended,
        Some(Ok(incoming)) => incoming,
        Some(Err(error)) => {
            tracing::warn!(group = %context.options.group, %error, "consume failed; retrying");
            return Admitted::Failed;
        }
    };
    let subject = match serde_json::from_slice::<Head>(&incoming.payload) {
        Ok(head) => head.subject,
        Err(error) => {
            drop(source);
            undecodable(context, &incoming, None, &error.to_string()).await;
            return Admitted::Queued;
        }
    };
    let job = Job {
        incoming,
        subject,
        _permit: permit,
        waiting_since: Instant::now(),
    };
    match context.feed.sequencer.admit(job) {
        Some(job) => Admitted::Run(Box::new(job)),
        None => Admitted::Queued,
    }
}

/// Handles the job, then the ones queued behind it on its subject.
async fn run(context: &Context, mut job: Job) {
    loop {
        let subject = job.subject.clone();
        handle(context, job).await;
        let Some(subject) = subject else { return };
        let (next, stale) = context
            .feed
            .sequencer
            .next(&subject, context.options.lease / 3);
        for acker in stale {
            let _ = acker.keep().await;
        }
        match next {
            Some(next) => job = next,
            None => return,
        }
    }
}

async fn handle(context: &Context, job: Job) {
    let options = &context.options;
    let Job {
        incoming, subject, ..
    } = job;
    let envelope = match Envelope::from_json(&incoming.payload) {
        Ok(envelope) => envelope,
        Err(error) => {
            undecodable(context, &incoming, subject.as_deref(), &error.to_string()).await;
            return;
        }
    };
    let started = Instant::now();
    let topic = envelope.ty.clone();
    let id = envelope.id.clone();
    let attempt = incoming.attempt.max(1);
    let seen = |recent: &Mutex<RecentIds>| recent.lock().map(|r| r.contains(&id)).unwrap_or(false);
    if context.feed.recent.as_ref().is_some_and(seen) {
        // A duplicate publish of a message this group already handled.
        if let Err(error) = incoming.acker.ack().await {
            tracing::warn!(group = %options.group, message = %id, %error, "settle failed");
        }
        return;
    }
    let outcome = if attempt > options.policy.max_attempts {
        // Delivered again and again without being settled (consumers crashing, leases
        // expiring): the broker's delivery count says it is time to give up.
        Outcome::reject(format!(
            "gave up after {} deliveries without a settlement",
            attempt - 1
        ))
    } else {
        let delivery = Delivery {
            envelope,
            group: options.group.clone(),
            attempt,
        };
        run_handler(context.handler.as_ref(), delivery, options.handler_timeout).await
    };
    let settled = match outcome {
        Outcome::Ack => {
            observe(&topic, &options.group, "ack", started);
            let acked = incoming.acker.ack().await;
            if acked.is_ok()
                && let Some(recent) = &context.feed.recent
                && let Ok(mut recent) = recent.lock()
            {
                recent.insert(id.clone());
            }
            if acked.is_ok() && attempt > 1 {
                let _ = context.store.forget(&options.group, &id).await;
            }
            acked
        }
        Outcome::Reject { reason } => {
            observe(&topic, &options.group, "dead", started);
            bury(context, &incoming, subject.as_deref(), &reason).await;
            Ok(())
        }
        Outcome::Retry { reason, after } => {
            if attempt >= options.policy.max_attempts {
                observe(&topic, &options.group, "dead", started);
                let reason = format!("gave up after {attempt} attempts: {reason}");
                bury(context, &incoming, subject.as_deref(), &reason).await;
                Ok(())
            } else {
                observe(&topic, &options.group, "retry", started);
                let delay = after.unwrap_or_else(|| options.policy.backoff(attempt));
                match context
                    .store
                    .record_attempt(&options.group, &id, attempt, &reason)
                    .await
                {
                    Ok(()) => incoming.acker.retry(delay, attempt + 1).await,
                    Err(error) => Err(error),
                }
            }
        }
    };
    if let Err(error) = settled {
        // Unsettled: the broker delivers it again.
        tracing::warn!(group = %options.group, message = %id, %error, "settle failed");
    }
}

/// A message that is no envelope: straight to the dead letters, with the reason.
async fn undecodable(context: &Context, incoming: &Incoming, subject: Option<&str>, error: &str) {
    let started = Instant::now();
    let reason = format!("undecodable envelope: {error}");
    bury(context, incoming, subject, &reason).await;
    observe("undecodable", &context.options.group, "dead", started);
}

/// Stores the dead letter, then drops the message from the broker (in that order: a crash in
/// between leaves a duplicate dead letter, never a lost one).
async fn bury(context: &Context, incoming: &Incoming, subject: Option<&str>, reason: &str) {
    let (id, topic) = match Envelope::from_json(&incoming.payload) {
        Ok(envelope) => (envelope.id, envelope.ty),
        Err(_) => (String::new(), "undecodable".to_owned()),
    };
    let burial = Burial {
        group: &context.options.group,
        message_id: &id,
        topic: &topic,
        subject,
        envelope: &incoming.payload,
        attempt: incoming.attempt.max(1),
        error: reason,
    };
    match context.store.bury(burial).await {
        Ok(()) => {
            if let Err(error) = incoming.acker.drop_message().await {
                tracing::warn!(group = %context.options.group, %error, "dead letter stored but the broker message was not dropped");
            }
        }
        Err(error) => {
            // Left unsettled: delivered again, buried on a later attempt.
            tracing::error!(group = %context.options.group, %error, "could not store a dead letter");
        }
    }
}
