//! The hub client: the one way Carpeta's services reach the hub. A write the hub cannot take now
//! (limit spent, breaker open, 5xx, timeout) is queued durably and answered "accepted"; a final
//! answer (2xx, 204, 4xx, 501) is remembered for 15 minutes by idempotency key, so the same call
//! made again is answered without reaching the hub.

use std::sync::Arc;
use std::time::{Duration, Instant};

use telar_resilience::Cache;
use telar_sql::{Db, query};
use tokio::sync::Mutex;

use super::calls::HubCall;
use super::protect::{Attempt, Protected};
use super::queue::{Claimed, Queue, QueuedCall};
use super::wire::{HubAnswer, Operator, read_operator_id, read_operators};
use super::{OperatorSettings, Registration};
use crate::shared::{Stop, now_rfc3339};

/// What a call got.
#[derive(Debug, Clone)]
pub enum Reply {
    /// The hub's final answer; `cached` when it was remembered from an earlier identical call.
    Answer { answer: HubAnswer, cached: bool },
    /// Accepted: queued, sent when the hub can take it.
    Queued(QueuedCall),
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum HubError {
    /// A read the hub cannot answer now (reads are never queued).
    #[error("the hub cannot answer now: {reason}")]
    Unavailable {
        reason: String,
        retry_after: Duration,
    },
    #[error("hub client storage: {0}")]
    Storage(String),
}

impl From<telar_bus::Error> for HubError {
    fn from(error: telar_bus::Error) -> Self {
        HubError::Storage(error.to_string())
    }
}

impl From<telar_sql::Error> for HubError {
    fn from(error: telar_sql::Error) -> Self {
        HubError::Storage(error.to_string())
    }
}

#[derive(Clone)]
pub struct HubClient {
    pub(crate) protected: Protected,
    pub(crate) queue: Queue,
    answers: Cache,
    answer_ttl: Duration,
    db: Db,
    /// The last good operator list and when it was read (getOperators is limited like the rest).
    operators: Arc<Mutex<Option<LastOperators>>>,
    settings: Arc<OperatorSettings>,
    poll: Duration,
}

/// The operator list and when it was read.
type LastOperators = (Vec<Operator>, Instant);

const OPERATORS_FRESH: Duration = Duration::from_secs(30);

impl HubClient {
    pub(crate) fn new(
        protected: Protected,
        queue: Queue,
        answers: Cache,
        answer_ttl: Duration,
        db: Db,
        settings: OperatorSettings,
        poll: Duration,
    ) -> Self {
        HubClient {
            protected,
            queue,
            answers,
            answer_ttl,
            db,
            operators: Arc::new(Mutex::new(None)),
            settings: Arc::new(settings),
            poll,
        }
    }

    /// Makes `call` now if it can, else queues it (writes) or says when to come back (reads).
    /// `key`: the caller's idempotency key; by default the call's own content.
    pub async fn call(&self, call: HubCall, key: Option<&str>) -> Result<Reply, HubError> {
        let key = key.map_or_else(
            || call.derived_key(),
            |k| format!("{}:{k}", call.endpoint()),
        );
        if !call.is_read() {
            if let Ok(Some(answer)) = self.answers.get::<HubAnswer>(&key).await {
                metrics::counter!("hub_calls", "endpoint" => call.endpoint(), "outcome" => "cached")
                    .increment(1);
                return Ok(Reply::Answer {
                    answer,
                    cached: true,
                });
            }
            // Calls about a citizen reach the hub in the order they were made: behind any
            // that is still queued.
            if let Some(subject) = call.citizen()
                && self.queue.has_queued_for(&subject.to_string()).await?
            {
                let queued = self
                    .queue
                    .enqueue(
                        &key,
                        &call,
                        "an earlier call for this citizen is queued",
                        Duration::ZERO,
                    )
                    .await?;
                return Ok(Reply::Queued(queued));
            }
        }
        let (reason, after) = match self.protected.attempt(&call).await {
            Attempt::Terminal(answer) => {
                if !call.is_read() {
                    self.remember(&key, &answer).await;
                }
                return Ok(Reply::Answer {
                    answer,
                    cached: false,
                });
            }
            Attempt::Transient(reason) => (reason, self.queue.backoff.initial),
            Attempt::Limited(after) => (
                "the hub's call budget for this endpoint is spent".to_owned(),
                after,
            ),
            Attempt::Open(after) => (
                "the hub endpoint's circuit breaker is open".to_owned(),
                after,
            ),
        };
        if call.is_read() {
            return Err(HubError::Unavailable {
                reason,
                retry_after: after,
            });
        }
        Ok(Reply::Queued(
            self.queue.enqueue(&key, &call, &reason, after).await?,
        ))
    }

    async fn remember(&self, key: &str, answer: &HubAnswer) {
        if let Err(error) = self.answers.set(key, answer, self.answer_ttl).await {
            tracing::warn!(%error, "hub answer not cached");
        }
    }

    /// Every operator the hub lists: the list read within 30 s unless `fresh`, else the hub's
    /// answer — or the last good list when the hub cannot be asked now.
    pub async fn operators(&self, fresh: bool) -> Result<Vec<Operator>, HubError> {
        let mut last = self.operators.lock().await;
        if let Some((list, at)) = last.as_ref()
            && at.elapsed() < OPERATORS_FRESH
            && !fresh
        {
            return Ok(list.clone());
        }
        match self.call(HubCall::GetOperators, None).await {
            Ok(Reply::Answer { answer, .. }) => {
                let list = if answer.status == 204 {
                    Vec::new()
                } else {
                    read_operators(&answer.body)
                };
                *last = Some((list.clone(), Instant::now()));
                Ok(list)
            }
            Ok(Reply::Queued(_)) => Err(HubError::Storage("a read was queued".into())),
            Err(error) => match last.as_ref() {
                Some((list, _)) => Ok(list.clone()),
                None => Err(error),
            },
        }
    }

    /// This operator's registration at the hub, once made.
    pub async fn registration(&self) -> Result<Option<Registration>, HubError> {
        if !self.settings.id.is_empty() {
            return Ok(Some(Registration {
                id: self.settings.id.clone(),
                name: self.settings.name.clone(),
                transfer_url: self.settings.transfer_url.clone(),
            }));
        }
        let row = query("SELECT id, name, transfer_url FROM hub_operator WHERE singleton = 1")
            .fetch_optional(&self.db)
            .await?;
        Ok(match row {
            Some(row) => Some(Registration {
                id: row.get("id")?,
                name: row.get("name")?,
                transfer_url: row.get("transfer_url")?,
            }),
            None => None,
        })
    }

    /// Registers this operator at the hub (unless it already is, by name) and its transfer
    /// endpoint. Idempotent; the answer says what is in place.
    pub async fn ensure_registered(&self) -> Result<Registration, String> {
        let settings = &self.settings;
        let mut registration = match self.registration().await.map_err(|e| e.to_string())? {
            Some(known) => known,
            None => {
                let listed = self.operators(false).await.map_err(|e| e.to_string())?;
                let id = match listed.iter().find(|o| o.name == settings.name) {
                    Some(found) => found.id.clone(),
                    None => {
                        let call = HubCall::RegisterOperator {
                            name: settings.name.clone(),
                            address: settings.address.clone(),
                            contact_mail: settings.contact_mail.clone(),
                            participants: settings.participants.clone(),
                        };
                        match self.protected.attempt(&call).await {
                            Attempt::Terminal(answer) if answer.is_success() => {
                                read_operator_id(&answer.body).ok_or_else(|| {
                                    format!(
                                        "registerOperator answered without an id: {}",
                                        answer.body
                                    )
                                })?
                            }
                            Attempt::Terminal(answer) => {
                                return Err(format!(
                                    "the hub refused the operator: {} {}",
                                    answer.status,
                                    answer.message()
                                ));
                            }
                            other => {
                                return Err(format!(
                                    "registerOperator not possible now: {other:?}"
                                ));
                            }
                        }
                    }
                };
                query(
                    "INSERT INTO hub_operator (singleton, id, name, transfer_url, registered_at) VALUES (1, $1, $2, '', $3)
                     ON CONFLICT (singleton) DO UPDATE SET id = excluded.id, name = excluded.name",
                )
                .bind(id.clone())
                .bind(settings.name.clone())
                .bind(now_rfc3339())
                .execute(&self.db)
                .await
                .map_err(|e| e.to_string())?;
                Registration {
                    id,
                    name: settings.name.clone(),
                    transfer_url: String::new(),
                }
            }
        };
        if !settings.transfer_url.is_empty() && registration.transfer_url != settings.transfer_url {
            let call = HubCall::RegisterTransferEndpoint {
                operator_id: registration.id.clone(),
                endpoint: settings.transfer_url.clone(),
                endpoint_confirm: settings.confirm_url.clone(),
            };
            match self.protected.attempt(&call).await {
                Attempt::Terminal(answer) if answer.is_success() && answer.status != 204 => {}
                Attempt::Terminal(answer) => {
                    return Err(format!(
                        "the hub refused the transfer endpoint: {} {}",
                        answer.status,
                        answer.message()
                    ));
                }
                other => {
                    return Err(format!(
                        "registerTransferEndPoint not possible now: {other:?}"
                    ));
                }
            }
            if settings.id.is_empty() {
                query("UPDATE hub_operator SET transfer_url = $1 WHERE singleton = 1")
                    .bind(settings.transfer_url.clone())
                    .execute(&self.db)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            registration.transfer_url = settings.transfer_url.clone();
            self.operators.lock().await.take();
        }
        Ok(registration)
    }

    /// Keeps trying `ensure_registered` (every 5 s) until it holds or the service stops.
    pub async fn register_in_background(self, stop: Stop) {
        tokio::pin!(stop);
        loop {
            match self.ensure_registered().await {
                Ok(registration) => {
                    tracing::info!(operator = %registration.id, name = %registration.name,
                        transfer_url = %registration.transfer_url, "operator registered at the hub");
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, "operator not registered at the hub yet; retrying in 5 s")
                }
            }
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
    }

    /// The queue's worker: sends due calls, publishes their outcomes.
    pub async fn work_queue(self, stop: Stop) {
        tokio::pin!(stop);
        let wake = self.queue.woken();
        loop {
            let notified = wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let worked = match self.queue.claim_due(16, Duration::from_secs(60)).await {
                Ok(claimed) => {
                    let n = claimed.len();
                    for call in claimed {
                        if let Err(error) = self.retry(&call).await {
                            tracing::warn!(%error, call = call.seq, "queued hub call not settled; it stays queued");
                        }
                    }
                    n
                }
                Err(error) => {
                    tracing::warn!(%error, "hub call queue unreadable");
                    0
                }
            };
            if let Ok(n) = self.queue.queued_count().await {
                metrics::gauge!("hub_queue_length").set(n as f64);
            }
            if worked > 0 {
                continue;
            }
            tokio::select! {
                () = &mut stop => return,
                () = &mut notified => {}
                () = tokio::time::sleep(self.poll) => {}
            }
        }
    }

    async fn retry(&self, claimed: &Claimed) -> Result<(), telar_bus::Error> {
        if let Ok(Some(answer)) = self.answers.get::<HubAnswer>(&claimed.key).await {
            return self.queue.finish(claimed, Some(&answer), "").await;
        }
        match self.protected.attempt(&claimed.call).await {
            Attempt::Terminal(answer) => {
                self.remember(&claimed.key, &answer).await;
                self.queue.finish(claimed, Some(&answer), "").await
            }
            Attempt::Limited(after) => Ok(self
                .queue
                .reschedule(claimed, after, false, "rate limit")
                .await?),
            Attempt::Open(after) => Ok(self
                .queue
                .reschedule(claimed, after, false, "breaker open")
                .await?),
            Attempt::Transient(reason) => {
                let attempts = claimed.attempts + 1;
                if attempts >= self.queue.backoff.max_attempts {
                    self.queue.finish(claimed, None, &reason).await
                } else {
                    let after = self.queue.backoff.after(attempts);
                    Ok(self.queue.reschedule(claimed, after, true, &reason).await?)
                }
            }
        }
    }
}
