//! What both sagas share: calls to the operator's services as step outcomes, the lock, the
//! transfer row, events.

use std::time::Duration;
use telar_kit::SendTraced;

use serde_json::{Value, json};
use telar_saga::{StepContext, StepError};

use super::Deps;
use super::store::{self, Transfer};
use crate::shared::{ServiceClient, event, now_rfc3339};

/// Calls a service; transport failures and 5xx are transient, the status and body are returned.
pub(crate) async fn call(
    client: &ServiceClient,
    method: http::Method,
    path: &str,
    body: Option<Value>,
    key: Option<&str>,
) -> Result<(u16, Value), StepError> {
    let mut request = client
        .request(method, path)
        .await
        .map_err(StepError::transient)?;
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send_traced()
        .await
        .map_err(|e| StepError::transient(format!("{path}: {e}")))?;
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status >= 500 || status == 429 {
        return Err(StepError::transient(format!(
            "{path} answered {status}: {body}"
        )));
    }
    Ok((status, body))
}

/// A 2xx, or a permanent failure naming the answer.
pub(crate) fn expect_success(path: &str, (status, body): (u16, Value)) -> Result<Value, StepError> {
    if (200..300).contains(&status) {
        Ok(body)
    } else {
        Err(StepError::permanent(format!(
            "{path} answered {status}: {body}"
        )))
    }
}

pub(crate) fn citizen_of(ctx: &StepContext) -> String {
    ctx.input["citizen"].as_str().unwrap_or_default().to_owned()
}

/// Takes the citizen's lock (or finds the token this saga took before a crash) and records the
/// transfer as running under it.
pub(crate) async fn lock(
    deps: &Deps,
    ctx: &StepContext,
    direction: &str,
    peer: &str,
) -> Result<Value, StepError> {
    let citizen = citizen_of(ctx);
    let ttl = Duration::from_secs(
        deps.config.confirm_timeout_secs + deps.config.register_within_secs + 3_600,
    );
    let token = match store::token_of(&deps.db, &ctx.saga_id)
        .await
        .map_err(|e| StepError::transient(e.to_string()))?
    {
        Some(token) if token > 0 => token,
        _ => match deps
            .locks
            .try_acquire(&format!("citizen:{citizen}"), ttl)
            .await
        {
            Ok(Some(lease)) => lease.token,
            Ok(None) => {
                return Err(StepError::transient(format!(
                    "citizen {citizen} is in another transfer"
                )));
            }
            Err(error) => return Err(StepError::transient(error.to_string())),
        },
    };
    let now = now_rfc3339();
    let transfer = Transfer {
        id: ctx.saga_id.clone(),
        citizen,
        direction: direction.into(),
        peer: peer.into(),
        status: "running".into(),
        detail: String::new(),
        created_at: now.clone(),
        updated_at: now,
    };
    if !store::record(&deps.db, &transfer, token)
        .await
        .map_err(StepError::transient)?
    {
        return Err(StepError::permanent(
            "the citizen's lock passed to another transfer",
        ));
    }
    Ok(json!({"token": token}))
}

/// Ends the transfer: its row (under the fence), the lock released, the event.
pub(crate) async fn finish(
    deps: &Deps,
    ctx: &StepContext,
    status: &str,
    detail: &str,
    event_type: &str,
    data: Value,
) -> Result<Value, StepError> {
    let citizen = citizen_of(ctx);
    let token = ctx
        .outputs
        .get("lock")
        .and_then(|o| o["token"].as_u64())
        .unwrap_or(0);
    if let Some(mut transfer) = store::get(&deps.db, &ctx.saga_id)
        .await
        .map_err(|e| StepError::transient(e.to_string()))?
    {
        transfer.status = status.into();
        transfer.detail = detail.chars().take(500).collect();
        transfer.updated_at = now_rfc3339();
        store::record(&deps.db, &transfer, token)
            .await
            .map_err(StepError::transient)?;
    }
    let mut envelope = event(event_type, &citizen, data);
    envelope.id = format!("{}:{}", ctx.saga_id, event_type);
    deps.publish_once(envelope)
        .await
        .map_err(StepError::transient)?;
    // A release that finds another holder changes nothing; the lock also expires by itself.
    let _ = deps
        .locks
        .release(&format!("citizen:{citizen}"), token)
        .await;
    Ok(json!({"status": status}))
}

/// Publishes one event per saga and type.
pub(crate) async fn announce(
    deps: &Deps,
    ctx: &StepContext,
    event_type: &str,
    data: Value,
) -> Result<(), StepError> {
    let mut envelope = event(event_type, &citizen_of(ctx), data);
    envelope.id = format!("{}:{}", ctx.saga_id, event_type);
    deps.publish_once(envelope)
        .await
        .map_err(StepError::transient)
}

/// A step whose action gets the saga's dependencies.
pub(crate) fn step<F, Fut>(deps: &std::sync::Arc<Deps>, name: &str, action: F) -> telar_saga::Step
where
    F: Fn(std::sync::Arc<Deps>, StepContext) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Value, StepError>> + Send + 'static,
{
    let deps = deps.clone();
    telar_saga::Step::new(name, move |ctx| action(deps.clone(), ctx))
}

/// Deletes every document of `owner` (files too); a document already gone counts as deleted.
/// Returns how many there were.
pub(crate) async fn delete_documents(deps: &Deps, owner: &str) -> Result<usize, StepError> {
    let list_path = format!("/documents?owner={owner}");
    let listed = expect_success(
        &list_path,
        call(&deps.ingestion, http::Method::GET, &list_path, None, None).await?,
    )?;
    let mut deleted = 0;
    for document in listed.as_array().into_iter().flatten() {
        let path = format!("/documents/{}", document["id"].as_str().unwrap_or_default());
        let (status, body) = call(&deps.ingestion, http::Method::DELETE, &path, None, None).await?;
        if !(status == 204 || status == 404) {
            return Err(StepError::transient(format!(
                "{path} answered {status}: {body}"
            )));
        }
        deleted += 1;
    }
    Ok(deleted)
}
