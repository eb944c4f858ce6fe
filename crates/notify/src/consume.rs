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
}

fn recipient(envelope: &Envelope) -> Option<String> {
    let data = envelope.data.as_ref()?;
    ["email", "recipient"]
        .iter()
        .find_map(|key| data.get(key).and_then(|v| v.as_str()))
        .filter(|address| !address.is_empty())
        .map(str::to_owned)
}

impl Notifier {
    async fn handle(&self, delivery: Delivery) -> Outcome {
        let envelope = &delivery.envelope;
        if !self.topics.iter().any(|p| p.matches(&envelope.ty)) {
            return Outcome::Ack;
        }
        let (id, ty, attempt) = (envelope.id.as_str(), envelope.ty.as_str(), delivery.attempt);
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
            Some(to) => match self.log.sent(id, "email", &to).await {
                Ok(true) => {}
                Ok(false) => match self.templates.email(envelope) {
                    Err(error) => {
                        record("email", to, "failed", error.clone()).await;
                        return Outcome::Reject { reason: error };
                    }
                    Ok(message) => match self.email.send(&to, &message, id).await {
                        Ok(detail) => record("email", to, "sent", detail).await,
                        Err(error) => {
                            record("email", to, "failed", error.clone()).await;
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
