//! The operator commands against real files: `telar dlq`, `telar saga`, `telar projections`,
//! `telar token`, `telar audit`.

use std::time::Duration;

use super::{run, telar, text};

/// Dead-letters `count` messages in a fresh bus file and returns its path.
async fn bus_with_dead_letters(dir: &std::path::Path, count: u64) -> std::path::PathBuf {
    let path = dir.join("bus.db");
    let config = telar_bus::EmbeddedConfig {
        path: path.clone(),
        ..Default::default()
    };
    let bus = telar_bus::Bus::new(telar_bus::EmbeddedBus::open(&config).await.expect("open"));
    let (done, mut dead) = tokio::sync::mpsc::unbounded_channel();
    let sub = bus
        .subscribe(
            "carpeta.document.uploaded",
            telar_bus::SubscribeOptions::group("search-index"),
            move |_d: telar_bus::Delivery| {
                let done = done.clone();
                async move {
                    let _ = done.send(());
                    telar_bus::Outcome::reject("index unavailable")
                }
            },
        )
        .await
        .expect("subscribe");
    for n in 0..count {
        let envelope = telar_types::Envelope::new(
            "/carpeta/ingestion",
            "carpeta.document.uploaded",
            serde_json::json!({ "n": n }),
        );
        bus.publish(envelope).await.expect("publish");
    }
    for _ in 0..count {
        dead.recv().await.expect("handled");
    }
    sub.stop().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while bus
        .dead_letters(telar_bus::DeadLetterFilter::default())
        .await
        .map(|l| l.len() as u64)
        .unwrap_or(0)
        < count
    {
        assert!(
            std::time::Instant::now() < deadline,
            "dead letters did not appear"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn dlq_lists_shows_replays_and_purges() {
    let dir = tempfile::tempdir().expect("dir");
    let path = bus_with_dead_letters(dir.path(), 3).await;
    let env = ("TELAR_BUS__EMBEDDED__PATH", path.display().to_string());
    let dlq = |args: &[&str]| run(telar().arg("dlq").args(args).env(env.0, &env.1));

    let listed = dlq(&["list", "--json"]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let letters: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("json");
    assert_eq!(letters.as_array().map(Vec::len), Some(3));
    assert_eq!(letters[0]["group"], "search-index");
    let id = letters[0]["id"].as_i64().unwrap_or(0).to_string();

    let table = dlq(&["list"]);
    assert!(text(&table.stdout).contains("index unavailable"));
    let shown = dlq(&["show", &id, "--json"]);
    let letter: serde_json::Value = serde_json::from_slice(&shown.stdout).expect("json");
    assert_eq!(letter["history"][0]["error"], "index unavailable");
    assert_eq!(dlq(&["show", "424242"]).status.code(), Some(2));
    assert_eq!(
        dlq(&["replay"]).status.code(),
        Some(2),
        "replay needs a selection"
    );

    let replayed: serde_json::Value =
        serde_json::from_slice(&dlq(&["replay", "--id", &id, "--json"]).stdout).expect("json");
    assert_eq!(replayed["replayed"], 1);
    let purged: serde_json::Value =
        serde_json::from_slice(&dlq(&["purge", "--all", "--json"]).stdout).expect("json");
    assert_eq!(purged["purged"], 2);
    let empty: serde_json::Value =
        serde_json::from_slice(&dlq(&["list", "--json"]).stdout).expect("json");
    assert_eq!(empty, serde_json::json!([]));
}

/// A parked saga in the `transfer` service's SQLite database.
async fn parked_saga(dir: &std::path::Path) -> String {
    use telar_saga::{RetryPolicy, Saga, SagaEngine, Step, StepContext, StepError};
    let db = telar_sql::Db::sqlite(
        &dir.join("transfer.db"),
        &telar_sql::SqliteConfig::default(),
    )
    .await
    .expect("db");
    let saga = Saga::new("transfer")
        .step(
            Step::new("reserve", |_c: StepContext| async {
                Ok(serde_json::json!(1))
            })
            .compensate(|_c: StepContext| async { Err(StepError::transient("registry down")) })
            .compensation_retry(RetryPolicy::attempts(1)),
        )
        .step(Step::new("confirm", |_c: StepContext| async {
            Err::<serde_json::Value, _>(StepError::permanent("refused"))
        }));
    let engine = SagaEngine::open(db.clone(), "cli-test", [saga])
        .await
        .expect("engine");
    let id = engine
        .start("transfer", serde_json::json!({}))
        .await
        .expect("start");
    engine
        .wait(&id, Duration::from_secs(15))
        .await
        .expect("parked");
    db.close().await;
    id
}

#[tokio::test(flavor = "multi_thread")]
async fn saga_lists_shows_retries_and_refuses_wrong_states() {
    let dir = tempfile::tempdir().expect("dir");
    let id = parked_saga(dir.path()).await;
    let env = (
        "TELAR_DATABASE__SQLITE__DIR",
        dir.path().display().to_string(),
    );
    let saga = |args: &[&str]| run(telar().arg("saga").args(args).env(env.0, &env.1));

    let listed = saga(&["list", "--service", "transfer", "--json"]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let sagas: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("json");
    assert_eq!(sagas[0]["id"], serde_json::json!(id));
    assert_eq!(sagas[0]["status"], "NeedsAttention");
    let table = saga(&[
        "list",
        "--service",
        "transfer",
        "--status",
        "NeedsAttention",
    ]);
    assert!(
        text(&table.stdout).contains("registry down"),
        "{}",
        text(&table.stdout)
    );
    let shown: serde_json::Value =
        serde_json::from_slice(&saga(&["show", "--service", "transfer", &id, "--json"]).stdout)
            .expect("json");
    assert!(
        shown["log"].as_array().is_some_and(|l| l.len() >= 3),
        "{shown}"
    );
    assert_eq!(
        saga(&["show", "--service", "transfer", "nope"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        saga(&["list", "--service", "transfer", "--status", "Sleeping"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        saga(&["abort", "--service", "transfer", &id]).status.code(),
        Some(2),
        "a parked saga cannot be aborted"
    );
    let retried = saga(&["retry", "--service", "transfer", &id, "--json"]);
    assert!(retried.status.success(), "{}", text(&retried.stderr));
    let after: serde_json::Value =
        serde_json::from_slice(&saga(&["list", "--service", "transfer", "--json"]).stdout)
            .expect("json");
    assert_eq!(
        after[0]["status"], "Compensating",
        "waits for the service's engine"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn projections_are_listed_and_rebuilt_from_zero() {
    use telar_store::{EventStore, ExpectedVersion, NewEvent};
    let (db, dir) = telar_testkit::sqlite_db("folders").await;
    let store = EventStore::open(db.clone()).await.expect("store");
    for n in 0..30 {
        store
            .append(
                &format!("folder-{}", n % 3),
                ExpectedVersion::Any,
                vec![NewEvent::new("Uploaded", serde_json::json!({"n": n}))],
            )
            .await
            .expect("append");
    }
    db.close().await;
    let env = (
        "TELAR_DATABASE__SQLITE__DIR",
        dir.path().display().to_string(),
    );
    let projections = |args: &[&str]| run(telar().arg("projections").args(args).env(env.0, &env.1));

    let rebuilt = projections(&["rebuild", "stream-index", "--service", "folders", "--json"]);
    assert!(rebuilt.status.success(), "{}", text(&rebuilt.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&rebuilt.stdout).expect("json");
    assert_eq!(summary["projection"], "stream-index");
    assert_eq!(summary["events"], 30);
    assert_eq!(summary["position"], 30);

    let listed: serde_json::Value =
        serde_json::from_slice(&projections(&["list", "--service", "folders", "--json"]).stdout)
            .expect("json");
    assert_eq!(listed["head"], 30);
    assert_eq!(listed["checkpoints"][0]["name"], "stream-index");
    assert_eq!(listed["checkpoints"][0]["position"], 30);
    let table = projections(&["list", "--service", "folders"]);
    assert!(
        text(&table.stdout).contains("stream-index"),
        "{}",
        text(&table.stdout)
    );

    let db = telar_sql::Db::sqlite(
        &dir.path().join("folders.db"),
        &telar_sql::SqliteConfig::default(),
    )
    .await
    .expect("db");
    let rows = telar_sql::query("SELECT stream, version FROM es_stream_index ORDER BY stream")
        .fetch_all(&db)
        .await
        .expect("read model");
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].get::<i64>("version").expect("version"), 10);
    db.close().await;

    let unknown = projections(&["rebuild", "nope", "--service", "folders"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        text(&unknown.stderr).contains("stream-index"),
        "names the known ones"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn token_issue_signs_with_the_identity_key_and_inspect_decodes() {
    let dir = tempfile::tempdir().expect("dir");
    let env = (
        "TELAR_DATABASE__SQLITE__DIR",
        dir.path().display().to_string(),
    );
    let issued = run(telar()
        .args([
            "token",
            "issue",
            "--sub",
            "ops-1",
            "--role",
            "operador",
            "--audience",
            "carpeta",
            "--json",
        ])
        .env(env.0, &env.1));
    assert!(issued.status.success(), "{}", text(&issued.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&issued.stdout).expect("json");
    let token = answer["access_token"].as_str().expect("token").to_owned();

    // The identity database now holds the key: a verifier trusting its JWKS accepts the token.
    let db = telar_sql::Db::sqlite(
        &dir.path().join("identity.db"),
        &telar_sql::SqliteConfig::default(),
    )
    .await
    .expect("db");
    let ring: String = telar_sql::query("SELECT ring FROM identity_keys WHERE id = 1")
        .fetch_one(&db)
        .await
        .and_then(|row| row.get("ring"))
        .expect("keys");
    let ring: telar_auth::KeyRing = serde_json::from_str(&ring).expect("ring");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    let verifier = telar_auth::Verifier::new(telar_auth::VerifierConfig::new(
        "http://127.0.0.1:8008",
        "carpeta",
    ))
    .with_keys(&ring.jwks(now));
    let claims = verifier.verify(&token).await.expect("valid");
    assert_eq!(
        (claims.sub.as_str(), claims.roles.as_slice()),
        ("ops-1", &["operador".to_owned()][..])
    );
    db.close().await;

    let inspected = run(telar().args(["token", "inspect", &token, "--json"]));
    let shown: serde_json::Value = serde_json::from_slice(&inspected.stdout).expect("json");
    assert_eq!(shown["claims"]["sub"], "ops-1");
    assert_eq!(shown["header"]["alg"], "EdDSA");
    assert_eq!(shown["verified"], false);
    assert_eq!(
        run(telar().args(["token", "inspect", "garbage"]))
            .status
            .code(),
        Some(2)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_verify_names_the_first_broken_record_and_export_writes_json_lines() {
    let (db, dir) = telar_testkit::sqlite_db("audit").await;
    let log = telar_audit::AuditLog::open(db.clone()).await.expect("log");
    for n in 0..5 {
        let event = telar_types::Envelope::new(
            "/t",
            "carpeta.document.signed",
            serde_json::json!({"n": n}),
        )
        .with_subject(format!("doc-{n}"));
        log.append(&telar_audit::NewRecord::from_envelope(&event))
            .await
            .expect("append");
    }
    let env = (
        "TELAR_DATABASE__SQLITE__DIR",
        dir.path().display().to_string(),
    );
    let audit = |args: &[&str]| run(telar().arg("audit").args(args).env(env.0, &env.1));

    let ok = audit(&["verify"]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert!(
        text(&ok.stdout).starts_with("ok: 5 records"),
        "{}",
        text(&ok.stdout)
    );
    let file = dir.path().join("audit.jsonl");
    let exported = audit(&["export", "--output", file.to_str().expect("path")]);
    assert!(exported.status.success(), "{}", text(&exported.stderr));
    let lines = std::fs::read_to_string(&file).expect("export");
    assert_eq!(lines.lines().count(), 5);
    let first: serde_json::Value =
        serde_json::from_str(lines.lines().next().expect("line")).expect("json");
    assert_eq!(first["entity_id"], "doc-0");

    telar_sql::query("UPDATE audit_records SET entity_id = 'doc-x' WHERE seq = 2")
        .execute(&db)
        .await
        .expect("tamper");
    db.close().await;
    let broken = audit(&["verify", "--json"]);
    assert_eq!(broken.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&broken.stdout).expect("json");
    assert_eq!(report["ok"], false);
    assert_eq!(report["first_broken"]["seq"], 2);
    assert!(text(&broken.stderr).contains("broken at record 2"));
}
