//! Where notifications go: email (SMTP, or `.eml` files in a mailbox directory a person can open)
//! and webhooks (POST, signed). Every outbound call has a timeout.

use std::path::PathBuf;
use std::time::Duration;
use telar_kit::SendTraced;

use aws_lc_rs::hmac;
use lettre::message::{Mailbox, header::ContentType};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{EmailConfig, EmailMode};
use crate::templates::Rendered;

/// Sends emails.
pub enum Email {
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
    },
    Mailbox {
        dir: PathBuf,
        from: Mailbox,
    },
}

impl Email {
    pub fn new(config: &EmailConfig) -> Result<Self, String> {
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|e| format!("email.from `{}`: {e}", config.from))?;
        match config.mode {
            EmailMode::Mailbox => {
                std::fs::create_dir_all(&config.mailbox_dir)
                    .map_err(|e| format!("email.mailbox_dir {}: {e}", config.mailbox_dir))?;
                Ok(Email::Mailbox {
                    dir: PathBuf::from(&config.mailbox_dir),
                    from,
                })
            }
            EmailMode::Smtp => {
                let builder = if config.starttls {
                    AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&config.smtp_host)
                        .map_err(|e| format!("email.smtp_host: {e}"))?
                } else {
                    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.smtp_host)
                };
                let transport = builder
                    .port(config.smtp_port)
                    .timeout(Some(Duration::from_millis(config.timeout_ms)))
                    .build();
                Ok(Email::Smtp { transport, from })
            }
        }
    }

    /// Sends `message` to `to`; the `.eml` file name in mailbox mode is `<event id>.eml`.
    pub async fn send(
        &self,
        to: &str,
        message: &Rendered,
        event_id: &str,
    ) -> Result<String, String> {
        let to: Mailbox = to.parse().map_err(|e| format!("recipient `{to}`: {e}"))?;
        let from = match self {
            Email::Smtp { from, .. } | Email::Mailbox { from, .. } => from.clone(),
        };
        let email = Message::builder()
            .from(from)
            .to(to)
            .subject(&message.subject)
            .header(ContentType::TEXT_PLAIN)
            .body(message.body.clone())
            .map_err(|e| format!("building the message: {e}"))?;
        match self {
            Email::Smtp { transport, .. } => transport
                .send(email)
                .await
                .map(|response| format!("smtp {}", response.code()))
                .map_err(|e| format!("smtp: {e}")),
            Email::Mailbox { dir, .. } => {
                let safe: String = event_id
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || c == '-' {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect();
                let path = dir.join(format!("{safe}.eml"));
                tokio::fs::write(&path, email.formatted())
                    .await
                    .map(|()| format!("written to {}", path.display()))
                    .map_err(|e| format!("mailbox {}: {e}", path.display()))
            }
        }
    }
}

pub const SIGNATURE_HEADER: &str = "x-telar-signature";
pub const TIMESTAMP_HEADER: &str = "x-telar-timestamp";

/// `v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`: a receiver recomputes it with the shared
/// secret and refuses old timestamps (replays).
pub fn sign_webhook(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut context = hmac::Context::with_key(&key);
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    format!("v1={}", hex::encode(context.sign().as_ref()))
}

/// For receivers: whether `signature` is genuine for `body` at `timestamp`, and `timestamp` is
/// within `tolerance` of `now` (an older request is a replay).
pub fn verify_webhook(
    secret: &str,
    timestamp: i64,
    signature: &str,
    body: &[u8],
    now: i64,
    tolerance: Duration,
) -> bool {
    let fresh = (now - timestamp).unsigned_abs() <= tolerance.as_secs();
    let Some(hex_part) = signature.strip_prefix("v1=") else {
        return false;
    };
    let Ok(given) = hex::decode(hex_part) else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut message = timestamp.to_string().into_bytes();
    message.push(b'.');
    message.extend_from_slice(body);
    fresh && hmac::verify(&key, &message, &given).is_ok()
}

/// POSTs a signed webhook; a non-2xx answer is a failure.
pub async fn post_webhook(
    client: &reqwest::Client,
    url: &str,
    secret: &str,
    event_id: &str,
    event_type: &str,
    body: Vec<u8>,
) -> Result<String, String> {
    let timestamp = crate::now_secs();
    let signature = sign_webhook(secret, timestamp, &body);
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .header(TIMESTAMP_HEADER, timestamp.to_string())
        .header(SIGNATURE_HEADER, signature)
        .header("x-telar-event-id", event_id)
        .header("x-telar-event-type", event_type)
        .body(body)
        .send_traced()
        .await
        .map_err(|e| format!("webhook {url}: {e}"))?;
    let status = response.status();
    if status.is_success() {
        Ok(format!("http {}", status.as_u16()))
    } else {
        Err(format!("webhook {url}: answered {}", status.as_u16()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_signatures_check_body_secret_and_age() {
        let signature = sign_webhook("s3cret", 1000, b"{\"a\":1}");
        let ok = |secret: &str, ts: i64, body: &[u8], now: i64| {
            verify_webhook(secret, ts, &signature, body, now, Duration::from_secs(300))
        };
        assert!(ok("s3cret", 1000, b"{\"a\":1}", 1100));
        assert!(!ok("s3cret", 1000, b"{\"a\":2}", 1100), "another body");
        assert!(!ok("other", 1000, b"{\"a\":1}", 1100), "another secret");
        assert!(!ok("s3cret", 1001, b"{\"a\":1}", 1100), "another timestamp");
        assert!(!ok("s3cret", 1000, b"{\"a\":1}", 1400), "a replay, too old");
    }
}
