//! iam (8009): the operator's ABAC decisions over Cedar policies (`POST /authorize`, from
//! `telar-iam`), and the client every document service asks before it acts.

use std::path::PathBuf;
use std::time::Duration;
use telar_kit::SendTraced;

use serde::{Deserialize, Serialize};
use serde_json::json;
use telar_auth::{Claims, Verifier};
use telar_iam::Iam;
use telar_kit::{ApiError, KitConfig, ReadyCheck, Service};
use telar_types::ErrorCode;

use crate::shared::{App, ServiceClient, require_token};

pub const NAME: &str = "iam";

/// Carpeta's policies, compiled in: used when no directory is configured.
pub const BUILTIN_SCHEMA: &str =
    include_str!("../../../../../config/carpeta/policies/schema.cedarschema");
pub const BUILTIN_POLICIES: &str =
    include_str!("../../../../../config/carpeta/policies/documents.cedar");

/// `[services.iam.settings]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IamConfig {
    /// A directory with `schema.cedarschema` and `*.cedar` files, reloaded on change. Empty: the
    /// built-in Carpeta policies (written to `builtin_dir` at start).
    pub policies_dir: String,
    pub builtin_dir: String,
    pub reload_every_ms: u64,
}

impl Default for IamConfig {
    fn default() -> Self {
        IamConfig {
            policies_dir: String::new(),
            builtin_dir: "data/iam-policies".into(),
            reload_every_ms: 2_000,
        }
    }
}

/// Builds the iam service; `/ready` fails while a refused policy set is on disk.
pub fn build(config: &IamConfig, verifier: Verifier, kit: KitConfig) -> Result<App, String> {
    let dir = if config.policies_dir.is_empty() {
        let dir = PathBuf::from(&config.builtin_dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        std::fs::write(dir.join("schema.cedarschema"), BUILTIN_SCHEMA)
            .map_err(|e| e.to_string())?;
        std::fs::write(dir.join("documents.cedar"), BUILTIN_POLICIES).map_err(|e| e.to_string())?;
        dir
    } else {
        PathBuf::from(&config.policies_dir)
    };
    let iam = Iam::load(&dir).map_err(|e| e.to_string())?;
    let api = telar_iam::iam_routes(iam.clone())
        .layer(axum::middleware::from_fn(require_token))
        .layer(axum::middleware::from_fn_with_state(
            verifier,
            telar_auth::authenticate,
        ));
    let service = Service::new(NAME)
        .config(kit)
        .api(api)
        .ready_check(ReadyCheck::new("policies", iam.readiness()));
    let every = Duration::from_millis(config.reload_every_ms.max(100));
    Ok(App::new(service).task(move |stop| iam.watch(every, stop)))
}

/// Asks the iam service whether a caller may act on a citizen's document.
#[derive(Clone)]
pub struct Authorizer {
    iam: ServiceClient,
}

impl Authorizer {
    pub fn new(iam: ServiceClient) -> Self {
        Authorizer { iam }
    }

    /// `Ok(())` when the policies allow `action` by `claims` on a document of `owner`; 403
    /// otherwise; 503 when iam cannot be asked (never allowed by default).
    pub async fn check(
        &self,
        claims: &Claims,
        action: &str,
        owner: &str,
        document: &str,
    ) -> Result<(), ApiError> {
        let question = json!({
            "principal": format!("User::{}", json!(claims.sub)),
            "action": format!("Action::{}", json!(action)),
            "resource": format!("Document::{}", json!(document)),
            "context": {},
            "entities": [
                {"uid": {"type": "User", "id": claims.sub}, "attrs": {"roles": claims.roles}, "parents": []},
                {"uid": {"type": "User", "id": owner}, "attrs": {"roles": []}, "parents": []},
                {"uid": {"type": "Document", "id": document},
                 "attrs": {"owner": {"__entity": {"type": "User", "id": owner}}}, "parents": []}
            ]
        });
        // The caller and the owner may be the same user: one entity, with the caller's roles.
        let question = dedupe_entities(question, &claims.sub, owner);
        let unavailable = |detail: String| {
            ApiError::new(ErrorCode::Unavailable, detail).with_retry_after(Duration::from_secs(2))
        };
        let response = self
            .iam
            .request(http::Method::POST, "/authorize")
            .await
            .map_err(unavailable)?
            .json(&question)
            .send_traced()
            .await
            .map_err(|e| unavailable(format!("iam unreachable: {e}")))?;
        if !response.status().is_success() {
            return Err(unavailable(format!("iam answered {}", response.status())));
        }
        let answer: serde_json::Value = response
            .json()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if answer["allowed"] == true {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("not allowed to {action} this document"),
            ))
        }
    }
}

fn dedupe_entities(
    mut question: serde_json::Value,
    caller: &str,
    owner: &str,
) -> serde_json::Value {
    if caller == owner
        && let Some(list) = question["entities"].as_array_mut()
    {
        list.remove(1);
    }
    question
}
