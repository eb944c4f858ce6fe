//! Keeps metadata and the search index from document events. The row changes in the same
//! transaction as the inbox record; the index follows (indexing is idempotent by document id,
//! so a redelivery after a crash between the two repairs it).

use serde_json::Value;
use telar_bus::{Bus, Delivery, Inbox, Outcome, SubscribeOptions, Subscription};

use super::State;
use super::store::DocumentMeta;
use crate::domain::events;
use crate::shared::now_rfc3339;

pub const GROUP: &str = "metadata";

pub(crate) async fn subscribe(bus: &Bus, state: State) -> Result<Subscription, telar_bus::Error> {
    bus.subscribe(
        "carpeta.>",
        SubscribeOptions::group(GROUP),
        move |delivery: Delivery| {
            let state = state.clone();
            async move {
                match apply(&state, &delivery).await {
                    Ok(()) => Outcome::Ack,
                    Err(error) => Outcome::retry(error),
                }
            }
        },
    )
    .await
}

fn text(data: &Value, field: &str) -> String {
    data[field].as_str().unwrap_or_default().to_owned()
}

async fn apply(state: &State, delivery: &Delivery) -> Result<(), String> {
    let envelope = &delivery.envelope;
    let data = envelope.data.clone().unwrap_or_default();
    let relevant = [
        events::DOCUMENT_UPLOADED,
        events::DOCUMENT_DELETED,
        events::DOCUMENT_AUTHENTICATED,
        events::CITIZEN_TRANSFERRED,
    ];
    if !relevant.contains(&envelope.ty.as_str()) {
        return Ok(());
    }
    let err = |e: telar_sql::Error| e.to_string();
    let mut tx = state.metas.db.begin().await.map_err(err)?;
    if !Inbox::first_time(&mut tx, GROUP, &envelope.id)
        .await
        .map_err(|e| e.to_string())?
    {
        return Ok(());
    }
    let now = now_rfc3339();
    let id = text(&data, "id");
    let owner = envelope.subject.clone().unwrap_or_default();
    let mut reindex = None;
    let mut unindex = None;
    match envelope.ty.as_str() {
        events::DOCUMENT_UPLOADED => {
            let meta = DocumentMeta {
                id: id.clone(),
                owner: owner.clone(),
                title: text(&data, "title"),
                filename: text(&data, "filename"),
                content_type: text(&data, "content_type"),
                size: data["size"].as_i64().unwrap_or(0),
                tags: serde_json::from_value(data["tags"].clone()).unwrap_or_default(),
                authenticated: false,
                deleted_at: None,
                updated_at: now.clone(),
            };
            state.metas.upsert(&mut tx, &meta).await.map_err(err)?;
            reindex = Some(meta);
        }
        events::DOCUMENT_DELETED => {
            state
                .metas
                .mark(&mut tx, &id, "deleted_at", &now)
                .await
                .map_err(err)?;
            unindex = Some(id.clone());
        }
        events::DOCUMENT_AUTHENTICATED => {
            state
                .metas
                .mark(&mut tx, &id, "authenticated", &now)
                .await
                .map_err(err)?;
        }
        _ => {
            // The citizen left this operator: nothing of theirs stays searchable here.
            state
                .metas
                .forget_owner(&mut tx, &owner)
                .await
                .map_err(err)?;
            state
                .index
                .remove_owner(&owner)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    if let Some(meta) = &reindex {
        state
            .index
            .index(&[index_document(meta)])
            .await
            .map_err(|e| e.to_string())?;
    }
    if let Some(id) = &unindex {
        state.index.remove(id).await.map_err(|e| e.to_string())?;
    }
    tx.commit().await.map_err(err)?;
    state.invalidate(&owner).await;
    Ok(())
}

/// What search sees of a document: its title, and its file name and tags as body.
pub(crate) fn index_document(meta: &DocumentMeta) -> telar_search::Document {
    let filename_words = meta.filename.replace(['.', '-', '_'], " ");
    telar_search::Document {
        id: meta.id.clone(),
        owner: meta.owner.clone(),
        tags: meta.tags.clone(),
        title: meta.title.clone(),
        body: format!("{filename_words} {}", meta.tags.join(" ")),
    }
}
