//! read-models (8007): CQRS views built from Carpeta's events — a citizen's folder (documents,
//! their state, authentications, shares) and the transfers in and out. Every event is applied
//! once (inbox, in the same transaction as the view's rows); views are only read here.

mod views;

use serde::{Deserialize, Serialize};
use telar_auth::{Authenticated, Verifier};
use telar_bus::{Bus, Delivery, Inbox, Outcome, SubscribeOptions, Subscription};
use telar_kit::{ApiError, KitConfig, OpenApiRouter, routes};
use telar_sql::Db;

pub use views::{FolderDocument, FolderView, TransferView};

use crate::domain::CitizenId;
use crate::shared::{App, PiiKeys, ServiceClient, TokenSource, may_act_for};

pub const NAME: &str = "read-models";
pub const GROUP: &str = "read-models";

/// `[services.read-models.settings]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReadModelsConfig {
    /// The citizen service, which hands out the keys of sealed personal fields.
    pub citizen_url: String,
    pub timeout_ms: u64,
}

impl Default for ReadModelsConfig {
    fn default() -> Self {
        ReadModelsConfig {
            citizen_url: "service://citizen".into(),
            timeout_ms: 10_000,
        }
    }
}

pub async fn build(
    db: Db,
    bus: Bus,
    config: ReadModelsConfig,
    verifier: Verifier,
    tokens: TokenSource,
    kit: KitConfig,
) -> Result<App, String> {
    let pii = PiiKeys::new(ServiceClient::new(
        &config.citizen_url,
        std::time::Duration::from_millis(config.timeout_ms),
        tokens,
    ));
    db.migrate(&[views::MIGRATION, Inbox::MIGRATION])
        .await
        .map_err(|e| e.to_string())?;
    let views = views::Views { db: db.clone() };
    let consumer = views.clone();
    let subscription: Subscription = bus
        .subscribe(
            "carpeta.>",
            SubscribeOptions::group(GROUP),
            move |delivery: Delivery| {
                let views = consumer.clone();
                let pii = pii.clone();
                async move {
                    match apply(&views, &pii, delivery).await {
                        Ok(()) => Outcome::Ack,
                        Err(error) => Outcome::retry(error),
                    }
                }
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    let api = OpenApiRouter::new()
        .routes(routes!(folder))
        .routes(routes!(transfers))
        .with_state(views);
    let service = crate::shared::service(NAME, kit, verifier, api, &db);
    Ok(App::new(service).subscription(subscription))
}

async fn apply(views: &views::Views, pii: &PiiKeys, delivery: Delivery) -> Result<(), String> {
    let mut envelope = delivery.envelope;
    if !views::Views::handles(&envelope.ty) {
        return Ok(());
    }
    // Sealed personal fields (a citizen's name) opened before the transaction; a citizen who
    // left reads as `[redacted]`.
    if let Some(data) = envelope.data.as_mut() {
        pii.open(data).await?;
    }
    let envelope = &envelope;
    let mut tx = views.db.begin().await.map_err(|e| e.to_string())?;
    if !Inbox::first_time(&mut tx, GROUP, &envelope.id)
        .await
        .map_err(|e| e.to_string())?
    {
        return Ok(());
    }
    views
        .apply(&mut tx, envelope)
        .await
        .map_err(|e| e.to_string())?;
    tx.commit().await.map_err(|e| e.to_string())
}

/// A citizen's folder: their status here and every document with its state.
#[utoipa::path(get, path = "/read-models/citizens/{id}", tag = "read-models", params(("id" = String, Path)),
    responses((status = 200, body = FolderView), (status = 404, body = telar_kit::Problem)))]
async fn folder(
    axum::extract::State(views): axum::extract::State<views::Views>,
    Authenticated(claims): Authenticated,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<axum::Json<FolderView>, ApiError> {
    let id = CitizenId::parse(&id)
        .map_err(|r| ApiError::invalid("id", r))?
        .to_string();
    may_act_for(&claims, &id)?;
    views
        .folder(&id)
        .await
        .map_err(ApiError::internal)?
        .map(axum::Json)
        .ok_or_else(|| ApiError::not_found(format!("nothing is known of citizen {id}")))
}

/// A citizen's transfers, newest first.
#[utoipa::path(get, path = "/read-models/citizens/{id}/transfers", tag = "read-models", params(("id" = String, Path)),
    responses((status = 200, body = Vec<TransferView>)))]
async fn transfers(
    axum::extract::State(views): axum::extract::State<views::Views>,
    Authenticated(claims): Authenticated,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<axum::Json<Vec<TransferView>>, ApiError> {
    let id = CitizenId::parse(&id)
        .map_err(|r| ApiError::invalid("id", r))?
        .to_string();
    may_act_for(&claims, &id)?;
    views
        .transfers(&id)
        .await
        .map(axum::Json)
        .map_err(ApiError::internal)
}
