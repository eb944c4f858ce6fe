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
use crate::shared::{App, may_act_for};

pub const NAME: &str = "read-models";
pub const GROUP: &str = "read-models";

/// `[services.read-models.settings]` (nothing to set yet).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReadModelsConfig {}

pub async fn build(
    db: Db,
    bus: Bus,
    _config: ReadModelsConfig,
    verifier: Verifier,
    kit: KitConfig,
) -> Result<App, String> {
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
                async move {
                    match apply(&views, &delivery).await {
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

async fn apply(views: &views::Views, delivery: &Delivery) -> Result<(), String> {
    let envelope = &delivery.envelope;
    if !views::Views::handles(&envelope.ty) {
        return Ok(());
    }
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
