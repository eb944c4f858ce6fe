//! The sending saga: this operator is the origin.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use telar_kit::SendTraced;

use serde_json::{Value, json};
use telar_saga::{RetryPolicy, Saga, Step, StepContext, StepError};

use super::Deps;
use super::protocol::outgoing;
use super::steps::{
    announce, call, citizen_of, delete_documents, expect_success, finish, lock, step,
};
use crate::domain::{CitizenId, events, mask_id};

pub const SAGA: &str = "transfer-send";

/// Steps after the destination confirmed cannot be undone by compensation (the citizen is
/// theirs now): they are retried for a long while instead.
fn after_confirm() -> RetryPolicy {
    RetryPolicy::attempts(30).backoff(Duration::from_millis(200), Duration::from_secs(60))
}

pub(crate) fn saga(deps: Arc<Deps>) -> Saga {
    let d = &deps;
    let compensate_lock = deps.clone();
    let restore = deps.clone();
    let reregister = deps.clone();
    let mut saga = Saga::new(SAGA)
        .step(
            step(d, "lock", |deps, ctx| async move {
                let peer = ctx.input["operator_id"].as_str().unwrap_or_default().to_owned();
                lock(&deps, &ctx, "out", &peer).await
            })
            .retry(RetryPolicy::attempts(3))
            .compensate(move |ctx| {
                let deps = compensate_lock.clone();
                async move {
                    finish(&deps, &ctx, "failed", "compensated: everything restored", events::TRANSFER_FAILED, json!({"citizen": citizen_of(&ctx), "direction": "out"})).await?;
                    Ok(())
                }
            }),
        )
        .step(
            step(d, "mark", |deps, ctx| async move {
                let citizen = citizen_of(&ctx);
                let path = format!("/citizens/{citizen}");
                let found = expect_success(&path, call(&deps.citizens, http::Method::GET, &path, None, None).await?)?;
                let status_path = format!("/citizens/{citizen}/status");
                expect_success(
                    &status_path,
                    call(&deps.citizens, http::Method::PUT, &status_path, Some(json!({"status": "transferring"})), None).await?,
                )?;
                announce(&deps, &ctx, events::TRANSFER_REQUESTED,
                    json!({"citizen": citizen, "direction": "out", "operator_id": ctx.input["operator_id"]})).await?;
                Ok(json!({"name": found["name"], "email": found["email"], "address": found["address"]}))
            })
            .retry(RetryPolicy::attempts(3))
            .compensate(move |ctx| {
                let deps = restore.clone();
                async move {
                    let path = format!("/citizens/{}/status", citizen_of(&ctx));
                    let (status, body) = call(&deps.citizens, http::Method::PUT, &path, Some(json!({"status": "registered"})), None).await?;
                    if (200..300).contains(&status) || status == 404 {
                        Ok(())
                    } else {
                        Err(StepError::transient(format!("{path} answered {status}: {body}")))
                    }
                }
            }),
        )
        .step(
            step(d, "collect", |deps, ctx| async move {
                let citizen = citizen_of(&ctx);
                let list_path = format!("/documents?owner={citizen}");
                let listed = expect_success(&list_path, call(&deps.ingestion, http::Method::GET, &list_path, None, None).await?)?;
                let mut documents: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for document in listed.as_array().into_iter().flatten().filter(|d| d["status"] == "ready") {
                    let id = document["id"].as_str().unwrap_or_default();
                    let path = format!("/documents/{id}/download-url");
                    let link = expect_success(&path, call(&deps.ingestion, http::Method::GET, &path, None, None).await?)?;
                    let mut name = document["title"].as_str().unwrap_or(id).to_owned();
                    if documents.contains_key(&name) {
                        name = format!("{name} ({id})");
                    }
                    documents.insert(name, vec![link["url"].as_str().unwrap_or_default().to_owned()]);
                }
                Ok(json!({"documents": documents}))
            })
            .retry(RetryPolicy::attempts(3)),
        );
    if deps.config.unregister_before_send {
        saga = saga.step(
            step(d, "unregister-first", |deps, ctx| async move {
                unregister(&deps, &ctx).await
            })
            .retry(RetryPolicy::attempts(5))
            .compensate(move |ctx| {
                let deps = reregister.clone();
                async move {
                    let contact = &ctx.outputs["mark"];
                    let body = json!({"id": citizen_of(&ctx), "name": contact["name"], "address": contact["address"], "email": contact["email"]});
                    let (status, answer) = call(&deps.hub, http::Method::POST, "/hub/citizens", Some(body), Some(&format!("{}:reregister", ctx.saga_id))).await?;
                    if matches!(status, 201 | 202) {
                        Ok(())
                    } else {
                        Err(StepError::transient(format!("re-registering at the hub answered {status}: {answer}")))
                    }
                }
            }),
        );
    }
    saga.step(
        step(d, "send", |deps, ctx| async move {
            let citizen = CitizenId::parse(&citizen_of(&ctx)).map_err(StepError::permanent)?;
            let contact = &ctx.outputs["mark"];
            let documents: BTreeMap<String, Vec<String>> =
                serde_json::from_value(ctx.outputs["collect"]["documents"].clone())
                    .unwrap_or_default();
            let body = outgoing(
                citizen,
                contact["name"].as_str().unwrap_or_default(),
                contact["email"].as_str().unwrap_or_default(),
                &documents,
                &deps.confirm_url(),
            );
            let url = ctx.input["transfer_url"].as_str().unwrap_or_default();
            let response = deps
                .peers
                .post(url)
                .json(&body)
                .send_traced()
                .await
                .map_err(|e| {
                    StepError::transient(format!("the destination did not answer: {e}"))
                })?;
            let status = response.status().as_u16();
            tracing::info!(
                citizen = mask_id(&citizen.to_string()),
                status,
                "transfer sent"
            );
            match status {
                200..=299 => Ok(json!({"status": status})),
                500..=599 | 429 => Err(StepError::transient(format!(
                    "the destination answered {status}"
                ))),
                _ => Err(StepError::permanent(format!(
                    "the destination refused the transfer ({status})"
                ))),
            }
        })
        .retry(
            RetryPolicy::attempts(3).backoff(Duration::from_millis(500), Duration::from_secs(10)),
        ),
    )
    .step(Step::wait_for(
        "await-confirm",
        "confirm",
        Duration::from_secs(deps.config.confirm_timeout_secs),
    ))
    .step(step(d, "check-confirm", |deps, ctx| async move {
        if ctx.outputs["await-confirm"]["accepted"] == true {
            announce(
                &deps,
                &ctx,
                events::TRANSFER_CONFIRMED,
                json!({"citizen": citizen_of(&ctx), "direction": "out"}),
            )
            .await?;
            Ok(json!({"accepted": true}))
        } else {
            Err(StepError::permanent(
                "the destination answered req_status 0",
            ))
        }
    }))
    .step(
        step(d, "delete-documents", |deps, ctx| async move {
            let deleted = delete_documents(&deps, &citizen_of(&ctx)).await?;
            Ok(json!({"deleted": deleted}))
        })
        .retry(after_confirm()),
    )
    .step(
        step(d, "forget-citizen", |deps, ctx| async move {
            let path = format!("/citizens/{}", citizen_of(&ctx));
            let (status, body) =
                call(&deps.citizens, http::Method::DELETE, &path, None, None).await?;
            if status == 204 {
                Ok(json!({}))
            } else {
                Err(StepError::transient(format!(
                    "{path} answered {status}: {body}"
                )))
            }
        })
        .retry(after_confirm()),
    )
    .step(
        step(d, "hub-lets-go", |deps, ctx| async move {
            if !deps.config.unregister_before_send {
                unregister(&deps, &ctx).await?;
            }
            // Whatever the order, the hub must not list the citizen with this operator any more.
            let path = format!("/hub/citizens/{}", citizen_of(&ctx));
            let answer = expect_success(
                &path,
                call(&deps.hub, http::Method::GET, &path, None, None).await?,
            )?;
            let ours = ctx.input["own_operator"].as_str().unwrap_or_default();
            if answer["outcome"] == "registered" && answer["operator"].as_str() == Some(ours) {
                return Err(StepError::transient(
                    "the hub still lists the citizen with this operator",
                ));
            }
            Ok(json!({"hub": answer["outcome"]}))
        })
        .retry(after_confirm()),
    )
    .step(step(d, "finish", |deps, ctx| async move {
        finish(
            &deps,
            &ctx,
            "completed",
            "",
            events::TRANSFER_COMPLETED,
            json!({"citizen": citizen_of(&ctx), "direction": "out"}),
        )
        .await
    }))
}

/// unregisterCitizen through hub-client (202 queued counts: the check after it waits for it).
async fn unregister(deps: &Deps, ctx: &StepContext) -> Result<Value, StepError> {
    let path = format!("/hub/citizens/{}", citizen_of(ctx));
    let (status, body) = call(
        &deps.hub,
        http::Method::DELETE,
        &path,
        None,
        Some(&ctx.idempotency_key),
    )
    .await?;
    match status {
        200 | 202 => Ok(json!({"outcome": body["outcome"]})),
        _ => Err(StepError::permanent(format!(
            "unregistering at the hub answered {status}: {body}"
        ))),
    }
}
