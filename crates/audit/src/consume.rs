//! The audit service's consumer: one consumer group (`audit`) receives every event and records
//! those whose type matches a configured pattern, plus explicit `audit.log` events; the others
//! are acknowledged. Redelivered events are recorded once (the log is idempotent by event id).
//! One group for all patterns (as the notification service does): overlapping patterns never
//! hand the same event to two handlers at once.

use telar_bus::{Bus, Delivery, Outcome, SubscribeOptions, Subscription, TopicPattern};

use crate::log::AuditLog;
use crate::record::NewRecord;

/// The consumer group of the audit service.
pub const GROUP: &str = "audit";

/// Subscribes the log to `patterns` (and `audit.log`, always).
pub async fn subscribe(
    bus: &Bus,
    log: &AuditLog,
    patterns: &[String],
) -> Result<Subscription, telar_bus::Error> {
    let mut audited = patterns
        .iter()
        .map(|p| TopicPattern::parse(p))
        .collect::<Result<Vec<_>, _>>()?;
    audited.push(TopicPattern::parse("audit.log")?);
    let log = log.clone();
    bus.subscribe(
        ">",
        SubscribeOptions::group(GROUP),
        move |delivery: Delivery| {
            let (log, audited) = (log.clone(), audited.clone());
            async move {
                if !audited.iter().any(|p| p.matches(&delivery.envelope.ty)) {
                    return Outcome::Ack;
                }
                let record = NewRecord::from_envelope(&delivery.envelope);
                match log.append(&record).await {
                    Ok(_) => Outcome::Ack,
                    Err(error) => Outcome::Retry {
                        reason: error.to_string(),
                        after: None,
                    },
                }
            }
        },
    )
    .await
}
