//! A consumer of the embedded bus: claims deliveries for its group, runs the handler on each
//! (bounded concurrency), and settles the outcomes through the writer, gathered into one
//! command before each claim.

use std::sync::Arc;
use std::time::{Duration, Instant};

use telar_types::Envelope;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use super::Inner;
use super::writer::{Claim, Command, Settled, Settlement, now_ms};
use crate::bus::SubscribeOptions;
use crate::consume::{observe, run_handler};
use crate::dead_letter::Attempt;
use crate::dead_letter_sql::now_rfc3339;
use crate::handler::{Delivery, Handler, Outcome};

/// Longest wait between claims when nothing signals new work (safety net for clock-based
/// wake-ups: retry delays and lease expiries).
const MAX_IDLE: Duration = Duration::from_secs(1);

pub(crate) async fn run(
    inner: Arc<Inner>,
    options: SubscribeOptions,
    handler: Arc<dyn Handler>,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(options.max_in_flight));
    // Owned by this task: a subscription that is aborted (a simulated crash) takes its
    // in-flight deliveries down with it, so their messages come back after the lease.
    let mut in_flight = JoinSet::new();
    let notify = inner.notifier(&options.group);
    let options = Arc::new(options);
    // Deliveries report their settlement here; the loop sends what gathered in one command
    // before each claim (the writer applies it first, so a settled subject is claimable again).
    let (settled_tx, mut settled) = mpsc::unbounded_channel::<Settled>();
    let mut pending: Vec<Settled> = Vec::new();
    loop {
        // A dropped `Subscription` (sender gone) stops the consumer like `stop()`.
        if *stop.borrow() || stop.has_changed().is_err() {
            break;
        }
        // Register for wake-ups before claiming, so a publish between the claim and the wait
        // is not missed.
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();

        while let Ok(item) = settled.try_recv() {
            pending.push(item);
        }
        // Not awaited: the commit is the writer's business now.
        let _ = flush(&inner, &options.group, &mut pending).await;
        while in_flight.try_join_next().is_some() {}

        let free = permits.available_permits();
        if free == 0 {
            // A handler slot comes back as soon as its delivery reported its settlement.
            tokio::select! {
                permit = permits.acquire() => drop(permit),
                _ = stop.changed() => {}
            }
            // Let the deliveries that are ready finish too (they run before this task again),
            // so the next claim asks for every free slot instead of the first one.
            tokio::task::yield_now().await;
            continue;
        }
        let lease_ms = options.lease.as_millis() as i64;
        let claimed = inner
            .send(|reply| Command::Claim {
                group: options.group.clone(),
                max: u32::try_from(free).unwrap_or(u32::MAX),
                lease_ms,
                reply,
            })
            .await;
        let claimed = match claimed {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::warn!(group = %options.group, %error, "claim failed");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
        };
        if claimed.deliveries.is_empty() {
            let idle = claimed
                .next_due_ms
                .map(|due| Duration::from_millis(u64::try_from(due - now_ms()).unwrap_or(0).max(1)))
                .unwrap_or(MAX_IDLE)
                .min(MAX_IDLE);
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep(idle) => {}
                _ = stop.changed() => {}
                Some(item) = settled.recv() => pending.push(item),
            }
            continue;
        }
        for claim in claimed.deliveries {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let handler = handler.clone();
            let options = options.clone();
            let settled_tx = settled_tx.clone();
            // Boxed: the handler's future is large, and a task copies its future in when
            // spawned and its stage when done.
            in_flight.spawn(Box::pin(async move {
                let settled = deliver(&options, handler.as_ref(), claim).await;
                // The slot is free once the outcome is known; the writer applies it before
                // the next claim this consumer sends.
                drop(permit);
                let _ = settled_tx.send(settled);
            }));
        }
        // Let the deliveries just started run before claiming again: quick handlers are done
        // by then, and the next claim asks for their slots too instead of what is left.
        tokio::task::yield_now().await;
    }
    // Drain: let in-flight deliveries finish, then settle everything they reported.
    while in_flight.join_next().await.is_some() {}
    while let Ok(item) = settled.try_recv() {
        pending.push(item);
    }
    if let Some(committed) = flush(&inner, &options.group, &mut pending).await
        && let Err(error) = committed.await
    {
        tracing::warn!(group = %options.group, %error, "last settlements failed; their leases will expire");
    }
}

/// Sends the gathered settlements; returns their commit, which the loop does not wait for
/// (the next claim is queued behind them, and a settlement that fails leaves a lease that
/// expires into a redelivery).
async fn flush(
    inner: &Inner,
    group: &str,
    pending: &mut Vec<Settled>,
) -> Option<impl std::future::Future<Output = crate::Result<()>>> {
    if pending.is_empty() {
        return None;
    }
    let items = std::mem::take(pending);
    let queued = inner
        .enqueue(|reply| Command::Settle {
            group: group.to_owned(),
            items,
            reply,
        })
        .await;
    match queued {
        Ok(committed) => Some(committed),
        Err(error) => {
            tracing::warn!(%group, %error, "settlements not queued; their leases will expire");
            None
        }
    }
}

/// Runs the handler on one claimed delivery and decides its settlement.
async fn deliver(options: &SubscribeOptions, handler: &dyn Handler, claim: Claim) -> Settled {
    let started = Instant::now();
    let (settlement, topic, outcome_label) = match Envelope::from_json(&claim.envelope) {
        Err(error) => (
            dead(format!("undecodable envelope: {error}"), &claim),
            "undecodable".to_owned(),
            "dead",
        ),
        Ok(envelope) => {
            let topic = envelope.ty.clone();
            let delivery = Delivery {
                envelope,
                group: options.group.clone(),
                attempt: claim.attempt,
            };
            let outcome = run_handler(handler, delivery, options.handler_timeout).await;
            let (settlement, label) = decide(options, &claim, outcome);
            (settlement, topic, label)
        }
    };
    observe(&topic, &options.group, outcome_label, started);
    Settled {
        seq: claim.seq,
        token: claim.token,
        settlement,
    }
}

fn decide(
    options: &SubscribeOptions,
    claim: &Claim,
    outcome: Outcome,
) -> (Settlement, &'static str) {
    match outcome {
        Outcome::Ack => (Settlement::Ack, "ack"),
        Outcome::Reject { reason } => (dead(reason, claim), "dead"),
        Outcome::Retry { reason, after } => {
            if claim.attempt >= options.policy.max_attempts {
                let reason = format!("gave up after {} attempts: {reason}", claim.attempt);
                return (dead(reason, claim), "dead");
            }
            let mut history = claim.history.clone();
            history.push(Attempt {
                attempt: claim.attempt,
                at: now_rfc3339(),
                error: reason,
            });
            let delay = after.unwrap_or_else(|| options.policy.backoff(claim.attempt));
            let at_ms = now_ms() + delay.as_millis() as i64;
            (Settlement::Retry { at_ms, history }, "retry")
        }
    }
}

fn dead(error: String, claim: &Claim) -> Settlement {
    let mut history = claim.history.clone();
    history.push(Attempt {
        attempt: claim.attempt,
        at: now_rfc3339(),
        error: error.clone(),
    });
    Settlement::Dead { error, history }
}
