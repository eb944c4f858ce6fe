use serde::{Deserialize, Serialize};

/// `[services.notification.settings]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Event types notified (topic patterns).
    pub topics: Vec<String>,
    /// Files replacing the built-in templates (`<type>.email.subject`, …). None: built-ins only.
    pub templates_dir: Option<String>,
    pub email: EmailConfig,
    pub webhooks: Vec<WebhookTarget>,
    pub webhook_timeout_ms: u64,
    /// Deliveries of one event are tried this many times (with the bus's backoff), then the event
    /// goes to the dead letters.
    pub max_attempts: u32,
    pub retry_backoff_ms: u64,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            topics: vec![
                "carpeta.document.authenticated".into(),
                "carpeta.transfer.confirmed".into(),
            ],
            templates_dir: None,
            email: EmailConfig::default(),
            webhooks: Vec::new(),
            webhook_timeout_ms: 5_000,
            max_attempts: 5,
            retry_backoff_ms: 1_000,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum EmailMode {
    /// `.eml` files in `mailbox_dir` (embedded mode: open them with any mail reader).
    #[default]
    Mailbox,
    Smtp,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EmailConfig {
    pub mode: EmailMode,
    pub mailbox_dir: String,
    pub smtp_host: String,
    pub smtp_port: u16,
    /// STARTTLS to the relay (off for a local relay on loopback).
    pub starttls: bool,
    pub from: String,
    pub timeout_ms: u64,
}

impl Default for EmailConfig {
    fn default() -> Self {
        EmailConfig {
            mode: EmailMode::Mailbox,
            mailbox_dir: "data/mailbox".into(),
            smtp_host: "127.0.0.1".into(),
            smtp_port: 25,
            starttls: false,
            from: "Carpeta Ciudadana <no-responder@carpeta.local>".into(),
            timeout_ms: 10_000,
        }
    }
}

/// A receiver of signed webhooks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookTarget {
    pub url: String,
    /// Shared with the receiver, who checks `x-telar-signature`.
    pub secret: String,
    /// Event types this receiver gets (topic patterns; empty: every notified type).
    #[serde(default)]
    pub events: Vec<String>,
}
