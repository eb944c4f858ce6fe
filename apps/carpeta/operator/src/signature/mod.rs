//! signature (8006): a document's SHA-256 signed with the operator's key, and authenticated at
//! the hub — which gets a download link of at most 15 minutes, never the bytes. The receipt is
//! stored; `carpeta.document.authenticated` goes out (outbox) and the notification service
//! emails the citizen. An authentication the hub cannot take now is queued by hub-client and
//! settled from its outcome event.

mod keys;
mod routes;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use telar_auth::Verifier;
use telar_bus::{Bus, Delivery, Inbox, Outbox, Outcome, SubscribeOptions};
use telar_kit::KitConfig;
use telar_sql::Db;

use crate::domain::events;
use crate::iam::Authorizer;
use crate::shared::{App, ServiceClient, TokenSource, event, now_rfc3339, peers};

pub const NAME: &str = "signature";
pub const GROUP: &str = "signature";

/// `[services.signature.settings]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignatureConfig {
    pub ingestion_url: String,
    pub hub_client_url: String,
    pub citizen_url: String,
    pub iam_url: String,
    pub timeout_ms: u64,
}

impl Default for SignatureConfig {
    fn default() -> Self {
        SignatureConfig {
            ingestion_url: "service://ingestion".into(),
            hub_client_url: "service://hub-client".into(),
            citizen_url: "service://citizen".into(),
            iam_url: "service://iam".into(),
            timeout_ms: 15_000,
        }
    }
}

#[derive(Clone)]
pub(crate) struct State {
    pub db: Db,
    pub key: Arc<keys::SigningKey>,
    pub outbox: Outbox,
    pub ingestion: ServiceClient,
    pub hub: ServiceClient,
    pub citizens: ServiceClient,
    pub authorizer: Authorizer,
}

pub async fn build(
    db: Db,
    bus: Bus,
    config: SignatureConfig,
    verifier: Verifier,
    tokens: TokenSource,
    kit: KitConfig,
) -> Result<App, String> {
    db.migrate(&[keys::MIGRATION, Outbox::MIGRATION, Inbox::MIGRATION])
        .await
        .map_err(|e| e.to_string())?;
    let timeout = Duration::from_millis(config.timeout_ms);
    let client = |url: &str| ServiceClient::new(url, timeout, tokens.clone());
    let outbox = Outbox::new();
    let state = State {
        db: db.clone(),
        key: Arc::new(keys::SigningKey::load_or_create(&db).await?),
        outbox: outbox.clone(),
        ingestion: client(&config.ingestion_url),
        hub: client(&config.hub_client_url),
        citizens: client(&config.citizen_url),
        authorizer: Authorizer::new(client(&config.iam_url)),
    };
    let consumer = state.clone();
    let subscription = bus
        .subscribe(
            "carpeta.hub.>",
            SubscribeOptions::group(GROUP),
            move |delivery: Delivery| {
                let state = consumer.clone();
                async move {
                    match settle(&state, &delivery).await {
                        Ok(()) => Outcome::Ack,
                        Err(error) => Outcome::retry(error),
                    }
                }
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    let service = crate::shared::service(NAME, kit, verifier, routes::router(state), &db);
    let relay = outbox.relay(db, bus);
    Ok(App::new(service)
        .task(move |stop| relay.run(stop))
        .subscription(subscription))
}

/// The authenticated event, with what the notification needs (the citizen's name and email).
pub(crate) async fn authenticated_event(
    state: &State,
    document: &str,
    owner: &str,
    title: &str,
    sha256: &str,
) -> Result<telar_types::Envelope, telar_kit::ApiError> {
    let (name, email) = peers::sealed_contact(&state.citizens, owner).await?;
    Ok(event(
        events::DOCUMENT_AUTHENTICATED,
        owner,
        json!({"id": document, "owner": owner, "title": title, "sha256": sha256, "name": name, "email": email}),
    ))
}

/// hub-client reports a queued authentication's outcome.
async fn settle(state: &State, delivery: &Delivery) -> Result<(), String> {
    let envelope = &delivery.envelope;
    let data = envelope.data.clone().unwrap_or_default();
    let relevant = matches!(
        envelope.ty.as_str(),
        events::HUB_CALL_COMPLETED | events::HUB_CALL_FAILED
    ) && data["endpoint"] == "authenticateDocument";
    let Some(call) = data["call_id"].as_i64().filter(|_| relevant) else {
        return Ok(());
    };
    let row = telar_sql::query("SELECT document_id, owner, title, sha256 FROM signatures WHERE hub_call = $1 AND status = 'pending_hub'")
        .bind(call)
        .fetch_optional(&state.db)
        .await
        .map_err(|e| e.to_string())?;
    let Some(row) = row else { return Ok(()) };
    let text = |c: &str| row.get::<String>(c).map_err(|e| e.to_string());
    let (document, owner, title, sha256) = (
        text("document_id")?,
        text("owner")?,
        text("title")?,
        text("sha256")?,
    );
    let status = data["status"].as_u64().unwrap_or(0);
    let authenticated = (200..300).contains(&status);
    let outgoing = if authenticated {
        Some(
            authenticated_event(state, &document, &owner, &title, &sha256)
                .await
                .map_err(|e| e.to_problem().detail.unwrap_or_default())?,
        )
    } else {
        None
    };
    let mut tx = state.db.begin().await.map_err(|e| e.to_string())?;
    if !Inbox::first_time(&mut tx, GROUP, &envelope.id)
        .await
        .map_err(|e| e.to_string())?
    {
        return Ok(());
    }
    telar_sql::query(
        "UPDATE signatures SET status = $1, hub_message = $2, authenticated_at = $3, hub_call = NULL WHERE document_id = $4",
    )
    .bind(if authenticated { "authenticated" } else { "hub_refused" })
    .bind(data["message"].as_str().or(data["error"].as_str()).unwrap_or_default().to_owned())
    .bind(authenticated.then(now_rfc3339))
    .bind(document)
    .execute(&mut tx)
    .await
    .map_err(|e| e.to_string())?;
    if let Some(outgoing) = outgoing {
        state
            .outbox
            .append(&mut tx, &outgoing.caused_by(envelope))
            .await
            .map_err(|e| e.to_string())?;
        metrics::counter!("documents_signed").increment(1);
    }
    state.outbox.commit(tx).await.map_err(|e| e.to_string())
}
