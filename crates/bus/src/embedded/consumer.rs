//! A consumer of the embedded bus: claims deliveries for its group, runs the handler on each
//! (bounded concurrency), settles the outcome through the writer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use telar_types::Envelope;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::Inner;
use super::writer::{Claim, Command, Settlement, now_ms};
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
    let notify = inner.notifier(&options.group);
    let options = Arc::new(options);
    let mut in_flight = JoinSet::new();
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

        let free = permits.available_permits();
        if free == 0 {
            // A permit comes back as soon as a delivery's settlement is queued (before it is
            // committed): the handler slot turns over once per commit, not once per two.
            tokio::select! {
                permit = permits.acquire() => drop(permit),
                _ = stop.changed() => {}
            }
            while in_flight.try_join_next().is_some() {}
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
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            }
            continue;
        }
        for claim in claimed.deliveries {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let inner = inner.clone();
            let handler = handler.clone();
            let options = options.clone();
            in_flight.spawn(async move {
                deliver(&inner, &options, handler.as_ref(), claim, permit).await;
            });
        }
        // Reap finished tasks so the set does not grow.
        while in_flight.try_join_next().is_some() {}
    }
    // Drain: let in-flight deliveries finish and settle.
    while in_flight.join_next().await.is_some() {}
}

/// Runs the handler on one claimed delivery and settles it. `permit` (the delivery's handler
/// slot) is released once the settlement is queued: the writer applies settlements before the
/// claims queued after them, so per-subject order and leases are unchanged, and at most
/// `max_in_flight` handlers run while at most twice that many deliveries await their commit.
async fn deliver(
    inner: &Inner,
    options: &SubscribeOptions,
    handler: &dyn Handler,
    claim: Claim,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
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
    let group = options.group.clone();
    let queued = inner
        .enqueue(|reply| Command::Settle {
            group,
            seq: claim.seq,
            token: claim.token,
            settlement,
            reply,
        })
        .await;
    drop(permit);
    let result = match queued {
        Ok(committed) => committed.await,
        Err(error) => Err(error),
    };
    if let Err(error) = result {
        // The lease will expire and the message be delivered again.
        tracing::warn!(group = %options.group, seq = claim.seq, %error, "settle failed");
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
