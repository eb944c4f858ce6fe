//! The consumer: each notified event is rendered and sent on every channel that has not already
//! succeeded for it (the delivery log is the inbox). Failed channels make the bus retry the event
//! with backoff; past the attempts it goes to the dead letters. A template error cannot be fixed
//! by retrying: the event goes to the dead letters at once, and the consumer carries on.

use std::sync::Arc;
use std::time::Duration;

use telar_bus::{
    Bus, Delivery, Outcome, RetryPolicy, SubscribeOptions, Subscription, TopicPattern,
};
use telar_types::Envelope;

use crate::channels::{self, Email};
use crate::config::NotifyConfig;
use crate::deliveries::DeliveryLog;
use crate::templates::Templates;

/// The consumer group of the notification service.
pub const GROUP: &str = "notification";

pub(crate) struct Notifier {
    pub templates: Templates,
    pub email: Email,
    pub log: DeliveryLog,
    pub topics: Vec<TopicPattern>,
    pub webhooks: Vec<(crate::config::WebhookTarget, Vec<TopicPattern>)>,
    pub http: reqwest::Client,
    /// Opens encrypted fields of an event's data before it is rendered (set by the system).
    pub unseal: std::sync::OnceLock<Arc<dyn Unseal>>,
}

/// Opens the encrypted (crypto-shredded) fields of an event's data in place, so templates and
/// the recipient see the plain values; fields whose key was forgotten read as `[redacted]`. A
/// system that seals personal data in its events gives the notification service one.
pub trait Unseal: Send + Sync + 'static {
    fn unseal<'a>(
        &'a self,
        data: &'a mut serde_json::Value,
    ) -> futures::future::BoxFuture<'a, Result<(), String>>;
}

/// What a crypto-shredded field reads as (`telar_store::REDACTED`).
const REDACTED: &str = "[redacted]";

fn recipient(envelope: &Envelope) -> Option<String> {
    let data = envelope.data.as_ref()?;
    ["email", "recipient"]
        .iter()
        .find_map(|key| data.get(key).and_then(|v| v.as_str()))
        .filter(|address| !address.is_empty() && *address != REDACTED)
        .map(str::to_owned)
}

/// `luis@correo.co` → `l***@correo.co`: enough to recognise, not enough to contact.
fn mask_address(address: &str) -> String {
    match address.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".to_owned(),
    }
}

impl Notifier {
    async fn handle(&self, delivery: Delivery) -> Outcome {
        if !self.topics.iter().any(|p| p.matches(&delivery.envelope.ty)) {
            return Outcome::Ack;
        }
        let attempt = delivery.attempt;
        let mut opened = delivery.envelope;
        if let (Some(unseal), Some(data)) = (self.unseal.get(), opened.data.as_mut())
            && let Err(error) = unseal.unseal(data).await
        {
            return Outcome::retry(format!("opening encrypted fields: {error}"));
        }
        let envelope = &opened;
        let (id, ty) = (envelope.id.as_str(), envelope.ty.as_str());
        let mut failures = Vec::new();
        let record =
            |channel: &'static str, target: String, status: &'static str, detail: String| {
                let log = self.log.clone();
                async move {
                    if let Err(error) = log
                        .record(id, ty, channel, &target, attempt, status, &detail)
                        .await
                    {
                        tracing::warn!(%error, "delivery log");
                    }
                }
            };
        match recipient(envelope) {
            // The log keeps the address masked: it outlives the person's data (a citizen who
            // left the operator), and one recipient per event is enough to tell deliveries apart.
            Some(to) => match self.log.sent(id, "email", &mask_address(&to)).await {
                Ok(true) => {}
                Ok(false) => match self.templates.email(envelope) {
                    Err(error) => {
                        record("email", mask_address(&to), "failed", error.clone()).await;
                        return Outcome::Reject { reason: error };
                    }
                    Ok(message) => match self.email.send(&to, &message, id).await {
                        Ok(detail) => record("email", mask_address(&to), "sent", detail).await,
                        Err(error) => {
                            record("email", mask_address(&to), "failed", error.clone()).await;
                            failures.push(error);
                        }
                    },
                },
                Err(error) => failures.push(error.to_string()),
            },
            None if attempt == 1 => {
                record(
                    "email",
                    "-".into(),
                    "skipped",
                    "no recipient (data.email)".into(),
                )
                .await;
            }
            None => {}
        }
        for (target, events) in &self.webhooks {
            if !events.is_empty() && !events.iter().any(|p| p.matches(ty)) {
                continue;
            }
            match self.log.sent(id, "webhook", &target.url).await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(error) => {
                    failures.push(error.to_string());
                    continue;
                }
            }
            let body = match self.templates.webhook(envelope) {
                Ok(body) => body,
                Err(error) => {
                    record("webhook", target.url.clone(), "failed", error.clone()).await;
                    return Outcome::Reject { reason: error };
                }
            };
            match channels::post_webhook(&self.http, &target.url, &target.secret, id, ty, body)
                .await
            {
                Ok(detail) => record("webhook", target.url.clone(), "sent", detail).await,
                Err(error) => {
                    record("webhook", target.url.clone(), "failed", error.clone()).await;
                    failures.push(error);
                }
            }
        }
        if failures.is_empty() {
            Outcome::Ack
        } else {
            Outcome::Retry {
                reason: failures.join("; "),
                after: None,
            }
        }
    }
}

/// Subscribes the notifier (group `notification`, every event; the configured types are
/// notified, others acknowledged).
pub(crate) async fn subscribe(
    bus: &Bus,
    notifier: Arc<Notifier>,
    config: &NotifyConfig,
) -> Result<Subscription, telar_bus::Error> {
    let policy = RetryPolicy {
        max_attempts: config.max_attempts.max(1),
        initial_backoff_ms: config.retry_backoff_ms,
        max_backoff_ms: config.retry_backoff_ms.saturating_mul(60).max(1),
    };
    let options = SubscribeOptions::group(GROUP)
        .policy(policy)
        .handler_timeout(Duration::from_millis(
            config.email.timeout_ms
                + config.webhook_timeout_ms * (config.webhooks.len() as u64 + 1),
        ));
    bus.subscribe(">", options, move |delivery: Delivery| {
        let notifier = notifier.clone();
        async move { notifier.handle(delivery).await }
    })
    .await
}
