//! Attribute-based access with Cedar: each system keeps its policies in a directory
//! (`schema.cedarschema` plus any number of `*.cedar` files). They are validated against the
//! schema when loaded and reloaded when a file changes; a set that does not parse or validate is
//! refused — the last good set stays in force — and reported on `/ready` until fixed.
//!
//! ```ignore
//! let iam = Iam::load("config/carpeta/policies")?;
//! tokio::spawn(iam.clone().watch(Duration::from_secs(2), shutdown));
//! service.ready_check(ReadyCheck::new("policies", iam.readiness()));
//! let allowed = iam.is_allowed(r#"User::"1032456789""#, r#"Action::"read""#, r#"Document::"d1""#,
//!                              json!({}), entities)?;
//! ```

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

mod routes;

pub use routes::iam_routes;

use cedar_policy::{
    Authorizer, Context, Decision, Entities, EntityUid, PolicySet, Request, Schema, ValidationMode,
    Validator,
};

/// A decision and the policies behind it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Decided {
    pub allowed: bool,
    /// The policies that decided (for a deny without any: none applied).
    pub policies: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum IamError {
    #[error("policies in {dir}: {reason}")]
    Policies { dir: String, reason: String },
    #[error("invalid request: {0}")]
    Request(String),
}

struct Loaded {
    schema: Schema,
    policies: PolicySet,
    /// What the files looked like, to notice changes.
    stamp: Option<Stamp>,
}

/// A system's policies. Cheap to clone.
#[derive(Clone)]
pub struct Iam {
    dir: PathBuf,
    loaded: Arc<RwLock<Loaded>>,
    /// Why the last reload was refused (cleared by a good one).
    problem: Arc<RwLock<Option<String>>>,
}

fn files(dir: &Path) -> Result<(PathBuf, Vec<PathBuf>), String> {
    let schema = dir.join("schema.cedarschema");
    if !schema.is_file() {
        return Err(format!("{} is missing", schema.display()));
    }
    let mut policies: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "cedar"))
        .collect();
    policies.sort();
    Ok((schema, policies))
}

/// Newest modification time, total size and number of the files: a change to any of them (even
/// within one tick of a coarse file-system clock, if the size moves) is noticed.
type Stamp = (Option<SystemTime>, u64, usize);

fn stamp(dir: &Path) -> Option<Stamp> {
    let (schema, policies) = files(dir).ok()?;
    let count = policies.len() + 1;
    let metadata: Vec<std::fs::Metadata> = std::iter::once(schema)
        .chain(policies)
        .filter_map(|path| std::fs::metadata(path).ok())
        .collect();
    let newest = metadata.iter().filter_map(|m| m.modified().ok()).max();
    Some((
        newest,
        metadata.iter().map(std::fs::Metadata::len).sum(),
        count,
    ))
}

fn load(dir: &Path) -> Result<Loaded, String> {
    let stamp = stamp(dir);
    let (schema_file, policy_files) = files(dir)?;
    let schema_text = std::fs::read_to_string(&schema_file).map_err(|e| e.to_string())?;
    let (schema, _warnings) =
        Schema::from_cedarschema_str(&schema_text).map_err(|e| format!("schema: {e}"))?;
    let mut text = String::new();
    for file in &policy_files {
        let content = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
        // Parse each file alone first, so an error names its file.
        PolicySet::from_str(&content).map_err(|e| format!("{}: {e}", file.display()))?;
        text.push_str(&content);
        text.push('\n');
    }
    let policies = PolicySet::from_str(&text).map_err(|e| format!("policies: {e}"))?;
    let result = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
    if !result.validation_passed() {
        let errors: Vec<String> = result.validation_errors().map(|e| e.to_string()).collect();
        return Err(format!(
            "do not validate against the schema: {}",
            errors.join("; ")
        ));
    }
    Ok(Loaded {
        schema,
        policies,
        stamp,
    })
}

impl telar_types::Classify for IamError {
    fn code(&self) -> telar_types::ErrorCode {
        match self {
            IamError::Policies { .. } => telar_types::ErrorCode::Unavailable,
            IamError::Request(_) => telar_types::ErrorCode::InvalidArgument,
        }
    }
}

impl Iam {
    /// Loads the policies in `dir`; they must be valid to start.
    pub fn load(dir: impl Into<PathBuf>) -> Result<Self, IamError> {
        let dir = dir.into();
        let loaded = load(&dir).map_err(|reason| IamError::Policies {
            dir: dir.display().to_string(),
            reason,
        })?;
        Ok(Iam {
            dir,
            loaded: Arc::new(RwLock::new(loaded)),
            problem: Arc::default(),
        })
    }

    /// Loads the files again. A set that does not load is refused: the last good one stays,
    /// and the reason is kept for `/ready`.
    pub fn reload(&self) -> Result<(), IamError> {
        match load(&self.dir) {
            Ok(loaded) => {
                if let Ok(mut current) = self.loaded.write() {
                    *current = loaded;
                }
                if let Ok(mut problem) = self.problem.write() {
                    *problem = None;
                }
                tracing::info!(dir = %self.dir.display(), "policies reloaded");
                Ok(())
            }
            Err(reason) => {
                tracing::error!(dir = %self.dir.display(), %reason, "policies refused; the last good set stays");
                if let Ok(mut problem) = self.problem.write() {
                    *problem = Some(reason.clone());
                }
                Err(IamError::Policies {
                    dir: self.dir.display().to_string(),
                    reason,
                })
            }
        }
    }

    /// Reloads when a file changes (checked every `every`) until `shutdown`.
    pub async fn watch(self, every: Duration, shutdown: impl Future<Output = ()> + Send) {
        tokio::pin!(shutdown);
        let mut seen = self.loaded.read().ok().and_then(|l| l.stamp);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = &mut shutdown => return,
            }
            let now = stamp(&self.dir);
            if now != seen {
                seen = now;
                let _ = self.reload();
            }
        }
    }

    /// For the kit's `/ready`: fails with the reason while a refused set is on disk.
    pub fn readiness(
        &self,
    ) -> impl Fn() -> std::future::Ready<Result<(), String>> + Send + Sync + 'static {
        let problem = self.problem.clone();
        move || {
            let result = match problem.read().map(|p| p.clone()) {
                Ok(None) => Ok(()),
                Ok(Some(reason)) => Err(format!(
                    "policies refused (the last good set is in force): {reason}"
                )),
                Err(_) => Err("policy lock poisoned".into()),
            };
            std::future::ready(result)
        }
    }

    /// Whether `principal` may do `action` on `resource` (Cedar UIDs, e.g. `User::"42"`), given
    /// the entities (Cedar JSON: attributes and parents) and the request context.
    pub fn is_allowed(
        &self,
        principal: &str,
        action: &str,
        resource: &str,
        context: serde_json::Value,
        entities: serde_json::Value,
    ) -> Result<bool, IamError> {
        self.decide(principal, action, resource, context, entities)
            .map(|decision| decision.allowed)
    }

    /// The decision and the policies that made it (their `@id` annotation, else Cedar's id).
    pub fn decide(
        &self,
        principal: &str,
        action: &str,
        resource: &str,
        context: serde_json::Value,
        entities: serde_json::Value,
    ) -> Result<Decided, IamError> {
        let uid = |text: &str| {
            EntityUid::from_str(text).map_err(|e| IamError::Request(format!("`{text}`: {e}")))
        };
        let loaded = self
            .loaded
            .read()
            .map_err(|_| IamError::Request("policy lock poisoned".into()))?;
        let action_uid = uid(action)?;
        let context = Context::from_json_value(context, Some((&loaded.schema, &action_uid)))
            .map_err(|e| IamError::Request(format!("context: {e}")))?;
        let request = Request::new(
            uid(principal)?,
            action_uid,
            uid(resource)?,
            context,
            Some(&loaded.schema),
        )
        .map_err(|e| IamError::Request(e.to_string()))?;
        let entities = Entities::from_json_value(entities, Some(&loaded.schema))
            .map_err(|e| IamError::Request(format!("entities: {e}")))?;
        let response = Authorizer::new().is_authorized(&request, &loaded.policies, &entities);
        let policies = response
            .diagnostics()
            .reason()
            .map(|id| {
                loaded
                    .policies
                    .annotation(id, "id")
                    .map_or_else(|| id.to_string(), str::to_owned)
            })
            .collect();
        Ok(Decided {
            allowed: response.decision() == Decision::Allow,
            policies,
        })
    }
}
