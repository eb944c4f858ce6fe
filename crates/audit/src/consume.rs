//! The audit service's consumer: every event whose type matches one of the configured patterns
//! (plus explicit `audit.log` events) becomes a record. Redelivered events are recorded once
//! (the log is idempotent by event id).

use telar_bus::{Bus, Delivery, Outcome, SubscribeOptions, Subscription};

use crate::log::AuditLog;
use crate::record::NewRecord;

/// The consumer group of the audit service for one pattern (a group follows one pattern):
/// `audit-carpeta_all` for `carpeta.>`, `audit-audit_log` for `audit.log`. Stable, so a restart
/// resumes where it stopped.
pub fn group_for(pattern: &str) -> String {
    let mut group = String::from("audit-");
    for c in pattern.chars() {
        match c {
            '.' => group.push('_'),
            '*' => group.push_str("any"),
            '>' => group.push_str("all"),
            c if c.is_ascii_alphanumeric() || c == '-' || c == '_' => group.push(c),
            _ => group.push('x'),
        }
    }
    group.truncate(64);
    group
}

/// Subscribes the log to `patterns` (and `audit.log`, always).
pub async fn subscribe(
    bus: &Bus,
    log: &AuditLog,
    patterns: &[String],
) -> Result<Vec<Subscription>, telar_bus::Error> {
    let mut all: Vec<&str> = patterns.iter().map(String::as_str).collect();
    if !all
        .iter()
        .any(|p| *p == "audit.log" || *p == ">" || *p == "audit.>")
    {
        all.push("audit.log");
    }
    let mut subscriptions = Vec::with_capacity(all.len());
    for pattern in all {
        let log = log.clone();
        let subscription = bus
            .subscribe(
                pattern,
                SubscribeOptions::group(group_for(pattern)),
                move |delivery: Delivery| {
                    let log = log.clone();
                    async move {
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
            .await?;
        subscriptions.push(subscription);
    }
    Ok(subscriptions)
}
