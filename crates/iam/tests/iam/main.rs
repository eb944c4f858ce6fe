//! Cedar policies for a Carpeta-like system: owner and operator access, a forbid, a refused file
//! that keeps the last good set, and reload on change.

mod authorize;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use telar_iam::Iam;

const SCHEMA: &str = r#"
entity User { operator: String, roles: Set<String> };
entity Document { owner: User, operator: String, sensitive: Bool };
action "read" appliesTo { principal: User, resource: Document, context: {} };
action "share" appliesTo { principal: User, resource: Document, context: {} };
"#;

const POLICIES: &str = r#"
// A citizen reads and shares their own documents.
permit (principal, action, resource is Document) when { resource.owner == principal };
// An operator's staff read the documents their operator holds.
permit (principal, action == Action::"read", resource is Document)
  when { principal.roles.contains("operador") && principal.operator == resource.operator };
// Sensitive documents are never shared.
forbid (principal, action == Action::"share", resource is Document) when { resource.sensitive };
"#;

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write");
}

fn entities(sensitive: bool) -> serde_json::Value {
    json!([
        {"uid": {"type": "User", "id": "ana"}, "attrs": {"operator": "op-1", "roles": ["ciudadano"]}, "parents": []},
        {"uid": {"type": "User", "id": "staff"}, "attrs": {"operator": "op-1", "roles": ["operador"]}, "parents": []},
        {"uid": {"type": "User", "id": "other-staff"}, "attrs": {"operator": "op-2", "roles": ["operador"]}, "parents": []},
        {"uid": {"type": "Document", "id": "d1"},
         "attrs": {"owner": {"__entity": {"type": "User", "id": "ana"}}, "operator": "op-1", "sensitive": sensitive},
         "parents": []}
    ])
}

fn allowed(iam: &Iam, who: &str, action: &str, sensitive: bool) -> bool {
    iam.is_allowed(
        &format!("User::\"{who}\""),
        &format!("Action::\"{action}\""),
        "Document::\"d1\"",
        json!({}),
        entities(sensitive),
    )
    .expect("a valid request")
}

fn policies() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("dir");
    write(dir.path(), "schema.cedarschema", SCHEMA);
    write(dir.path(), "documents.cedar", POLICIES);
    dir
}

#[test]
fn owners_and_their_operators_staff_read_sensitive_documents_are_never_shared() {
    let dir = policies();
    let iam = Iam::load(dir.path()).expect("load");
    assert!(allowed(&iam, "ana", "read", false));
    assert!(allowed(&iam, "ana", "share", false));
    assert!(!allowed(&iam, "ana", "share", true), "forbid wins");
    assert!(allowed(&iam, "staff", "read", true));
    assert!(!allowed(&iam, "staff", "share", false));
    assert!(
        !allowed(&iam, "other-staff", "read", false),
        "another operator's staff"
    );
    let bad = iam.is_allowed(
        "User::\"ana\"",
        "Action::\"delete\"",
        "Document::\"d1\"",
        json!({}),
        entities(false),
    );
    assert!(
        bad.is_err(),
        "an action the schema does not know is an error, not a silent deny"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_file_keeps_the_last_good_set_and_a_fix_is_picked_up() {
    let dir = policies();
    let iam = Iam::load(dir.path()).expect("load");
    let stop = std::sync::Arc::new(tokio::sync::Notify::new());
    let halt = stop.clone();
    let watching =
        tokio::spawn(iam.clone().watch(
            Duration::from_millis(20),
            async move { halt.notified().await },
        ));
    let ready = iam.readiness();

    // A policy that does not validate (no such attribute): refused, the old set stays.
    write(
        dir.path(),
        "extra.cedar",
        r#"permit (principal, action, resource is Document) when { resource.colour == "red" };"#,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while ready().await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "the refused file was never reported"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let reason = ready().await.expect_err("reported");
    assert!(
        reason.contains("colour") || reason.contains("validate"),
        "{reason}"
    );
    assert!(
        allowed(&iam, "ana", "read", false),
        "the last good set is in force"
    );
    assert!(!allowed(&iam, "staff", "share", false));

    // A valid change is picked up: staff may now share non-sensitive documents.
    write(
        dir.path(),
        "extra.cedar",
        r#"permit (principal, action == Action::"share", resource is Document) when { principal.roles.contains("operador") };"#,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !allowed(&iam, "staff", "share", false) {
        assert!(Instant::now() < deadline, "the fixed file was never loaded");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(ready().await.is_ok(), "ready again");
    assert!(
        !allowed(&iam, "staff", "share", true),
        "the forbid still wins"
    );
    stop.notify_one();
    watching.await.expect("watcher");
}

#[test]
fn a_directory_without_a_valid_schema_does_not_start() {
    let dir = tempfile::tempdir().expect("dir");
    assert!(Iam::load(dir.path()).is_err(), "no schema");
    write(dir.path(), "schema.cedarschema", "entity {");
    let error = Iam::load(dir.path())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("schema"), "{error}");
}
