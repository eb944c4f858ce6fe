//! Settles registrations the hub could not take at once: hub-client publishes the queued call's
//! outcome; the citizen becomes `registered` (and `carpeta.citizen.registered` goes out) or
//! `rejected`. Idempotent by event id (inbox, same transaction).

use serde_json::json;
use telar_bus::{Bus, Delivery, Inbox, Outcome, SubscribeOptions, Subscription};

use super::State;
use crate::domain::events;
use crate::hub::is_duplicate;
use crate::shared::{event, now_rfc3339};

pub const GROUP: &str = "citizen";

pub(crate) async fn subscribe(bus: &Bus, state: State) -> Result<Subscription, telar_bus::Error> {
    bus.subscribe(
        "carpeta.hub.>",
        SubscribeOptions::group(GROUP),
        move |delivery: Delivery| {
            let state = state.clone();
            async move {
                match settle(&state, &delivery).await {
                    Ok(()) => Outcome::Ack,
                    Err(error) => Outcome::retry(error),
                }
            }
        },
    )
    .await
}

async fn settle(state: &State, delivery: &Delivery) -> Result<(), String> {
    let envelope = &delivery.envelope;
    let data = envelope.data.clone().unwrap_or_default();
    let relevant = matches!(
        envelope.ty.as_str(),
        events::HUB_CALL_COMPLETED | events::HUB_CALL_FAILED
    ) && data["endpoint"] == "registerCitizen";
    let Some(id) = envelope.subject.as_deref().filter(|_| relevant) else {
        return Ok(());
    };
    let mut tx = state.citizens.db.begin().await.map_err(|e| e.to_string())?;
    if !Inbox::first_time(&mut tx, GROUP, &envelope.id)
        .await
        .map_err(|e| e.to_string())?
    {
        return Ok(());
    }
    let Some(mut citizen) = state
        .citizens
        .get_in(&mut tx, id)
        .await
        .map_err(|e| e.to_string())?
    else {
        return tx.commit().await.map_err(|e| e.to_string());
    };
    if citizen.status != "pending_hub" || citizen.hub_call != data["call_id"].as_i64() {
        return tx.commit().await.map_err(|e| e.to_string());
    }
    let status = data["status"].as_u64().unwrap_or(0);
    let message = data["message"].as_str().unwrap_or_default();
    let registered = (200..300).contains(&status) && status != 204;
    citizen.status = if registered { "registered" } else { "rejected" }.into();
    citizen.hub_call = None;
    citizen.updated_at = now_rfc3339();
    state
        .citizens
        .update(&mut tx, &citizen)
        .await
        .map_err(|e| e.to_string())?;
    let outgoing = if registered {
        let key = state.pii.key_in(&mut tx, id).await?;
        super::registered_event(&citizen, &key)?
    } else {
        let reason = if is_duplicate(message) {
            "the hub already has this citizen with another operator".to_owned()
        } else {
            format!(
                "the hub refused the registration: {message} {}",
                data["error"].as_str().unwrap_or_default()
            )
        };
        event(
            events::CITIZEN_REGISTRATION_FAILED,
            id,
            json!({"id": id, "reason": reason.trim()}),
        )
    }
    .caused_by(envelope);
    state
        .outbox
        .append(&mut tx, &outgoing)
        .await
        .map_err(|e| e.to_string())?;
    state.outbox.commit(tx).await.map_err(|e| e.to_string())
}
