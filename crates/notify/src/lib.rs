//! The notification service of a telar system. It consumes the configured event types from the
//! bus, renders each with minijinja templates per event type and channel (Spanish defaults built
//! in, overridable by files) and delivers it by email — SMTP, or `.eml` files in a mailbox
//! directory in embedded mode — and to webhooks, POSTed with an HMAC-SHA256 signature over a
//! timestamp and the body (receivers can refuse replays, see [`verify_webhook`]). Every attempt
//! is in the delivery log (`GET /deliveries`); a channel that succeeded is never repeated.

mod channels;
mod config;
mod consume;
mod deliveries;
mod templates;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use telar_bus::{Bus, Subscription, TopicPattern};
use telar_kit::{ApiError, KitConfig, OpenApiRouter, ReadyCheck, Service, routes};
use telar_sql::Db;
use telar_types::ErrorCode;

pub use channels::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_webhook, verify_webhook};
pub use config::{EmailConfig, EmailMode, NotifyConfig, WebhookTarget};
pub use consume::{GROUP, Unseal};
pub use deliveries::{Delivery, DeliveryFilter, DeliveryLog};
pub use templates::{Rendered, Templates};

pub const NAME: &str = "notification";

pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("notification configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Sql(#[from] telar_sql::Error),
    #[error(transparent)]
    Bus(#[from] telar_bus::Error),
}

/// The built service: its routes and readiness, and what `subscribe` starts.
pub struct Notification {
    pub service: Service,
    notifier: Arc<consume::Notifier>,
    config: NotifyConfig,
}

impl Notification {
    /// Starts consuming from `bus`.
    pub async fn subscribe(&self, bus: &Bus) -> Result<Subscription, NotifyError> {
        Ok(consume::subscribe(bus, self.notifier.clone(), &self.config).await?)
    }

    /// Opens encrypted fields of events before they are rendered (set once, before
    /// `subscribe`).
    pub fn unseal_with(&self, unseal: Arc<dyn Unseal>) {
        let _ = self.notifier.unseal.set(unseal);
    }

    pub fn deliveries(&self) -> &DeliveryLog {
        &self.notifier.log
    }
}

fn patterns(list: &[String], field: &str) -> Result<Vec<TopicPattern>, NotifyError> {
    list.iter()
        .map(|p| TopicPattern::parse(p).map_err(|e| NotifyError::Config(format!("{field}: {e}"))))
        .collect()
}

pub async fn build(
    db: Db,
    config: NotifyConfig,
    kit: KitConfig,
) -> Result<Notification, NotifyError> {
    let templates = Templates::load(config.templates_dir.as_deref().map(Path::new))
        .map_err(NotifyError::Config)?;
    let problems = templates.problems();
    for problem in &problems {
        tracing::error!(%problem, "notification template does not compile; its events go to the dead letters");
    }
    let email = channels::Email::new(&config.email).map_err(NotifyError::Config)?;
    let webhooks = config
        .webhooks
        .iter()
        .map(|target| Ok((target.clone(), patterns(&target.events, "webhooks.events")?)))
        .collect::<Result<Vec<_>, NotifyError>>()?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(config.webhook_timeout_ms))
        .build()
        .map_err(|e| NotifyError::Config(e.to_string()))?;
    let log = DeliveryLog::open(db.clone()).await?;
    let notifier = Arc::new(consume::Notifier {
        templates,
        email,
        log: log.clone(),
        topics: patterns(&config.topics, "topics")?,
        webhooks,
        http,
        unseal: std::sync::OnceLock::new(),
    });
    let templates_ready = ReadyCheck::new("templates", move || {
        let problems = problems.clone();
        async move {
            if problems.is_empty() {
                Ok(())
            } else {
                Err(problems.join("; "))
            }
        }
    });
    let database = ReadyCheck::new("database", move || {
        let db = db.clone();
        async move { db.ping().await.map_err(|e| e.to_string()) }
    });
    let api = OpenApiRouter::new()
        .routes(routes!(list_deliveries))
        .with_state(log);
    let service = Service::new(NAME)
        .config(kit)
        .api(api)
        .ready_check(templates_ready)
        .ready_check(database);
    Ok(Notification {
        service,
        notifier,
        config,
    })
}

/// Delivery attempts, newest first.
#[utoipa::path(get, path = "/deliveries", tag = "notification", params(DeliveryFilter),
    responses((status = 200, body = Vec<Delivery>)))]
async fn list_deliveries(
    State(log): State<DeliveryLog>,
    Query(filter): Query<DeliveryFilter>,
) -> Result<Json<Vec<Delivery>>, ApiError> {
    log.list(&filter)
        .await
        .map(Json)
        .map_err(|e| ApiError::new(ErrorCode::Unavailable, e.to_string()))
}
