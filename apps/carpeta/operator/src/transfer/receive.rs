//! The receiving saga: this operator is the destination.

use std::sync::Arc;
use std::time::Duration;
use telar_kit::SendTraced;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use telar_saga::{RetryPolicy, Saga, StepContext, StepError};

use super::Deps;
use super::protocol::{Incoming, confirm_body};
use super::steps::{
    announce, call, citizen_of, delete_documents, expect_success, finish, lock, step,
};
use crate::domain::events;

pub const SAGA: &str = "transfer-receive";
/// The protocol carries no address; the hub requires one.
const NO_ADDRESS: &str = "Sin dirección (recibido por traslado)";

fn incoming(ctx: &StepContext) -> Result<Incoming, StepError> {
    serde_json::from_value(ctx.input["incoming"].clone())
        .map_err(|e| StepError::permanent(e.to_string()))
}

async fn confirm(deps: &Deps, ctx: &StepContext, accepted: bool) -> Result<(), StepError> {
    let incoming = incoming(ctx)?;
    let response = deps
        .peers
        .post(&incoming.confirm_url)
        .json(&confirm_body(incoming.id, accepted))
        .send_traced()
        .await
        .map_err(|e| {
            StepError::transient(format!("the origin's confirm URL did not answer: {e}"))
        })?;
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        Ok(())
    } else if status >= 500 || status == 429 {
        Err(StepError::transient(format!(
            "the origin's confirm URL answered {status}"
        )))
    } else {
        Err(StepError::permanent(format!(
            "the origin refused the confirmation ({status})"
        )))
    }
}

/// A file name for a received document: the URL's last path segment when it looks like one.
fn filename(name: &str, url: &str) -> String {
    let last = url
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .rsplit('/')
        .next()
        .unwrap_or_default();
    if last.contains('.') && last.len() <= 120 {
        last.to_owned()
    } else {
        format!("{name}.pdf")
    }
}

pub(crate) fn saga(deps: Arc<Deps>) -> Saga {
    let d = &deps;
    let on_failure = deps.clone();
    let unstore = deps.clone();
    let undownload = deps.clone();
    Saga::new(SAGA)
        .step(
            step(d, "lock", |deps, ctx| async move {
                let peer = incoming(&ctx)?.confirm_url;
                lock(&deps, &ctx, "in", &peer).await
            })
            .retry(RetryPolicy::attempts(3))
            // Runs last when anything failed: the origin hears req_status 0.
            .compensate(move |ctx| {
                let deps = on_failure.clone();
                async move {
                    confirm(&deps, &ctx, false).await?;
                    finish(&deps, &ctx, "failed", "compensated: nothing kept; req_status 0 sent", events::TRANSFER_FAILED,
                        json!({"citizen": citizen_of(&ctx), "direction": "in"})).await?;
                    Ok(())
                }
            })
            .compensation_retry(RetryPolicy::attempts(5).backoff(Duration::from_millis(500), Duration::from_secs(30))),
        )
        .step(
            step(d, "store-citizen", |deps, ctx| async move {
                let incoming = incoming(&ctx)?;
                let path = format!("/citizens/{}", incoming.id);
                let (status, existing) = call(&deps.citizens, http::Method::GET, &path, None, None).await?;
                if status == 200 && existing["status"] != "receiving" {
                    return Err(StepError::permanent(format!("this operator already holds citizen {} ({})", incoming.id, existing["status"])));
                }
                let import = format!("/citizens/{}/import", incoming.id);
                let body = json!({"name": incoming.name, "email": incoming.email, "address": NO_ADDRESS, "status": "receiving"});
                expect_success(&import, call(&deps.citizens, http::Method::PUT, &import, Some(body), None).await?)?;
                Ok(json!({}))
            })
            .retry(RetryPolicy::attempts(3))
            .compensate(move |ctx| {
                let deps = unstore.clone();
                async move {
                    let path = format!("/citizens/{}", citizen_of(&ctx));
                    let (status, body) = call(&deps.citizens, http::Method::DELETE, &path, None, None).await?;
                    if status == 204 { Ok(()) } else { Err(StepError::transient(format!("{path} answered {status}: {body}"))) }
                }
            }),
        )
        .step(
            step(d, "download", |deps, ctx| async move { download(&deps, &ctx).await })
                .retry(RetryPolicy::attempts(3).backoff(Duration::from_millis(500), Duration::from_secs(10)))
                .compensate(move |ctx| {
                    let deps = undownload.clone();
                    async move { delete_documents(&deps, &citizen_of(&ctx)).await.map(|_| ()) }
                }),
        )
        .step(
            step(d, "confirm", |deps, ctx| async move {
                confirm(&deps, &ctx, true).await?;
                Ok(json!({"req_status": 1}))
            })
            .retry(RetryPolicy::attempts(5).backoff(Duration::from_millis(500), Duration::from_secs(30))),
        )
        .step(
            step(d, "register", |deps, ctx| async move {
                let incoming = incoming(&ctx)?;
                let body = json!({"id": incoming.id, "name": incoming.name, "address": NO_ADDRESS, "email": incoming.email});
                // A key per attempt: the hub's "already registered" while the origin still holds
                // the citizen is a final answer hub-client would otherwise repeat for 15 minutes.
                let key = format!("{}:{}", ctx.idempotency_key, ctx.attempt);
                let (status, answer) = call(&deps.hub, http::Method::POST, "/hub/citizens", Some(body), Some(&key)).await?;
                let (citizen_status, hub_call) = match status {
                    201 => ("registered", None),
                    202 => ("pending_hub", answer["call"]["id"].as_i64()),
                    // The origin has not let go at the hub yet: try again later.
                    409 => return Err(StepError::transient(format!("the hub still lists the citizen elsewhere: {}", answer["detail"]))),
                    other => return Err(StepError::transient(format!("registering at the hub answered {other}: {answer}"))),
                };
                let path = format!("/citizens/{}/status", incoming.id);
                expect_success(&path, call(&deps.citizens, http::Method::PUT, &path,
                    Some(json!({"status": citizen_status, "hub_call": hub_call})), None).await?)?;
                Ok(json!({"hub": citizen_status}))
            })
            .retry(RetryPolicy::attempts(40).backoff(Duration::from_millis(200), Duration::from_secs(60))),
        )
        .step(step(d, "finish", |deps, ctx| async move {
            let documents = ctx.outputs["download"]["documents"].as_array().map_or(0, Vec::len);
            announce(&deps, &ctx, events::TRANSFER_RECEIVED, json!({"citizen": citizen_of(&ctx), "documents": documents})).await?;
            finish(&deps, &ctx, "completed", "", events::TRANSFER_COMPLETED, json!({"citizen": citizen_of(&ctx), "direction": "in"})).await
        }))
}

/// Every document: downloaded from the origin's link, stored through ingestion's upload link,
/// confirmed by the SHA-256 computed here. A re-run skips names already stored.
async fn download(deps: &Deps, ctx: &StepContext) -> Result<Value, StepError> {
    let incoming = incoming(ctx)?;
    let owner = incoming.id.to_string();
    let list_path = format!("/documents?owner={owner}");
    let existing = expect_success(
        &list_path,
        call(&deps.ingestion, http::Method::GET, &list_path, None, None).await?,
    )?;
    let stored: Vec<String> = existing
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["status"] == "ready")
        .filter_map(|d| d["title"].as_str().map(str::to_owned))
        .collect();
    let mut ids = Vec::new();
    for (name, urls) in &incoming.documents {
        for (n, url) in urls.iter().enumerate() {
            let title = if urls.len() > 1 {
                format!("{name} ({})", n + 1)
            } else {
                name.clone()
            };
            if stored.contains(&title) {
                continue;
            }
            ids.push(store_one(deps, &owner, &title, url).await?);
        }
    }
    Ok(json!({"documents": ids}))
}

async fn store_one(deps: &Deps, owner: &str, title: &str, url: &str) -> Result<String, StepError> {
    let response = deps
        .peers
        .get(url)
        .send_traced()
        .await
        .map_err(|e| StepError::transient(format!("downloading `{title}`: {e}")))?;
    let status = response.status().as_u16();
    if status != 200 {
        let error = format!("downloading `{title}` answered {status}");
        return Err(if status >= 500 {
            StepError::transient(error)
        } else {
            StepError::permanent(error)
        });
    }
    let content_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim)
        .filter(|v| v.contains('/'))
        .unwrap_or("application/octet-stream")
        .to_owned();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| StepError::transient(format!("downloading `{title}`: {e}")))?;
    if bytes.is_empty() {
        return Err(StepError::permanent(format!("`{title}` is empty")));
    }
    let body = json!({"owner": owner, "title": title, "filename": filename(title, url), "content_type": content_type, "size": bytes.len()});
    let ticket = expect_success(
        "/documents",
        call(
            &deps.ingestion,
            http::Method::POST,
            "/documents",
            Some(body),
            None,
        )
        .await?,
    )?;
    let put = deps
        .peers
        .put(ticket["upload"]["url"].as_str().unwrap_or_default())
        .header(http::header::CONTENT_TYPE, content_type)
        .body(bytes.clone())
        .send_traced()
        .await
        .map_err(|e| StepError::transient(format!("storing `{title}`: {e}")))?;
    if !put.status().is_success() {
        return Err(StepError::transient(format!(
            "storing `{title}` answered {}",
            put.status()
        )));
    }
    let id = ticket["document"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let confirm = format!("/documents/{id}/confirm");
    let sha = hex::encode(Sha256::digest(&bytes));
    expect_success(
        &confirm,
        call(
            &deps.ingestion,
            http::Method::POST,
            &confirm,
            Some(json!({"sha256": sha, "size": bytes.len()})),
            None,
        )
        .await?,
    )?;
    Ok(id)
}

/// The saga id of an incoming transfer: the same request again is the same saga.
pub(crate) fn saga_id(incoming: &Incoming) -> String {
    let digest = Sha256::digest(serde_json::to_vec(&incoming.documents).unwrap_or_default());
    format!("in-{}-{}", incoming.id, hex::encode(&digest[..6]))
}
