//! The audit log on SQLite and PostgreSQL: the chain catches edits, gaps and truncation; appends
//! are idempotent and serialized; events from the bus become records once; the HTTP API.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::{Value, json};
use telar_audit::{AuditLog, Filter, NewRecord};
use telar_sql::{Db, query};
use telar_types::Envelope;

fn event(actor: &str, entity: &str, n: usize) -> NewRecord {
    let envelope = Envelope::new(
        "/citizen",
        "carpeta.document.signed",
        json!({"actor": actor, "n": n}),
    )
    .with_subject(entity);
    NewRecord::from_envelope(&envelope)
}

async fn filled(db: Db, records: usize) -> AuditLog {
    let log = AuditLog::open(db).await.unwrap();
    for n in 0..records {
        log.append(&event("u-1", &format!("doc-{n}"), n))
            .await
            .unwrap();
    }
    log
}

async fn chain_catches_edits_gaps_and_truncation(make: impl AsyncFn() -> Db) {
    let log = filled(make().await, 10).await;
    let verified = log.verify().await.unwrap();
    assert!(verified.ok, "{verified:?}");
    assert_eq!(verified.records, 10);

    // An edit in the middle: record 4 is named.
    query("UPDATE audit_records SET actor = 'someone-else' WHERE seq = 4")
        .execute(log.db())
        .await
        .unwrap();
    let verified = log.verify().await.unwrap();
    assert!(!verified.ok);
    let broken = verified.first_broken.unwrap();
    assert_eq!(broken.seq, 4);
    assert!(broken.reason.contains("edited"), "{}", broken.reason);

    // An edit that also rewrites the hash: the next record's link breaks.
    let log = filled(make().await, 10).await;
    let fake = "f".repeat(64);
    query("UPDATE audit_records SET actor = 'x', hash = $1 WHERE seq = 6")
        .bind(fake)
        .execute(log.db())
        .await
        .unwrap();
    let verified = log.verify().await.unwrap();
    assert_eq!(verified.first_broken.map(|b| b.seq), Some(6));

    // A deletion in the middle: the missing record is named.
    let log = filled(make().await, 10).await;
    query("DELETE FROM audit_records WHERE seq = 3")
        .execute(log.db())
        .await
        .unwrap();
    let broken = log.verify().await.unwrap().first_broken.unwrap();
    assert_eq!(broken.seq, 3);
    assert!(broken.reason.contains("missing"));

    // The newest records removed: the head gives it away.
    let log = filled(make().await, 10).await;
    query("DELETE FROM audit_records WHERE seq >= 9")
        .execute(log.db())
        .await
        .unwrap();
    let broken = log.verify().await.unwrap().first_broken.unwrap();
    assert_eq!(broken.seq, 9);
    assert!(broken.reason.contains("removed"), "{}", broken.reason);
}

async fn appends_are_idempotent_and_serialized(db: Db) {
    let log = AuditLog::open(db).await.unwrap();
    let record = event("u-1", "doc-1", 1);
    let first = log.append(&record).await.unwrap();
    assert_eq!(log.append(&record).await.unwrap(), first);
    let writers = (0..8).map(|w| {
        let log = log.clone();
        tokio::spawn(async move {
            for n in 0..15 {
                log.append(&event(&format!("u-{w}"), "doc", n))
                    .await
                    .unwrap();
            }
        })
    });
    for writer in futures::future::join_all(writers).await {
        writer.unwrap();
    }
    let verified = log.verify().await.unwrap();
    assert!(verified.ok, "{verified:?}");
    assert_eq!(verified.records, 121);
}

mod sqlite {
    use super::*;

    #[tokio::test]
    async fn the_chain_catches_edits_gaps_and_truncation() {
        let dirs = std::sync::Mutex::new(Vec::new());
        chain_catches_edits_gaps_and_truncation(async || {
            let (db, dir) = telar_testkit::sqlite_db("audit").await;
            dirs.lock().unwrap().push(dir);
            db
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appends_are_idempotent_and_take_turns() {
        let (db, _dir) = telar_testkit::sqlite_db("audit").await;
        appends_are_idempotent_and_serialized(db).await;
    }
}

mod postgres {
    use super::*;

    #[tokio::test]
    async fn the_chain_catches_edits_gaps_and_truncation() {
        chain_catches_edits_gaps_and_truncation(async || telar_testkit::postgres_db("audit").await)
            .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appends_are_idempotent_and_take_turns() {
        appends_are_idempotent_and_serialized(telar_testkit::postgres_db("audit").await).await;
    }
}

#[tokio::test]
async fn bus_events_become_records_once() {
    let (db, _dir) = telar_testkit::sqlite_db("audit").await;
    let bus_dir = tempfile::tempdir().unwrap();
    let bus = telar_bus::Bus::new(
        telar_bus::EmbeddedBus::open(&telar_bus::EmbeddedConfig {
            path: bus_dir.path().join("bus.db"),
            ..telar_bus::EmbeddedConfig::default()
        })
        .await
        .unwrap(),
    );
    let (_service, log) = telar_audit::build(db, telar_kit::KitConfig::default())
        .await
        .unwrap();
    let subscription = telar_audit::subscribe(&bus, &log, &["carpeta.>".to_owned()])
        .await
        .unwrap();
    let signed = Envelope::new(
        "/signature",
        "carpeta.document.authenticated",
        json!({"actor": "u-9"}),
    )
    .with_subject("doc-1");
    let explicit = Envelope::new(
        "/identity",
        "audit.log",
        json!({"actor": "u-9", "action": "login.succeeded", "entity_type": "account", "entity_id": "ana"}),
    );
    let ignored = Envelope::new("/x", "other.thing.happened", json!({}));
    for envelope in [&signed, &explicit, &ignored, &signed] {
        bus.publish(envelope.clone()).await.unwrap();
    }
    let mut records = Vec::new();
    for _ in 0..500 {
        records = log.list(&Filter::default()).await.unwrap();
        if records.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Give a duplicate delivery the chance to show up before asserting it did not.
    let marker = Envelope::new("/identity", "audit.log", json!({"action": "marker"}));
    bus.publish(marker).await.unwrap();
    for _ in 0..500 {
        records = log.list(&Filter::default()).await.unwrap();
        if records.iter().any(|r| r.action == "marker") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let actions: Vec<&str> = records.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(actions.len(), 3, "{actions:?}");
    assert!(actions.contains(&"carpeta.document.authenticated"));
    assert!(actions.contains(&"login.succeeded"));
    let signed_record = records.iter().find(|r| r.entity_id == "doc-1").unwrap();
    assert_eq!(
        (
            signed_record.actor.as_str(),
            signed_record.entity_type.as_str()
        ),
        ("u-9", "document")
    );
    assert!(log.verify().await.unwrap().ok);
    subscription.stop().await;
}

#[tokio::test]
async fn the_http_api_filters_pages_verifies_and_exports() {
    let (db, _dir) = telar_testkit::sqlite_db("audit").await;
    let (service, log) = telar_audit::build(db, telar_kit::KitConfig::default())
        .await
        .unwrap();
    for n in 0..5 {
        log.append(&event("ana", &format!("doc-{n}"), n))
            .await
            .unwrap();
    }
    for n in 0..3 {
        log.append(&event("luis", "doc-0", 10 + n)).await.unwrap();
    }
    let server = telar_testkit::serve(service).await;
    let http = telar_testkit::client();
    let get = |path: &str| {
        let (http, url) = (http.clone(), server.url(path));
        async move { http.get(url).send().await.unwrap() }
    };
    let page: Value = get("/audit?actor=luis").await.json().await.unwrap();
    assert_eq!(page["records"].as_array().unwrap().len(), 3);
    let page: Value = get("/audit?entity_type=document&entity_id=doc-0")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["records"].as_array().unwrap().len(), 4);
    let page: Value = get("/audit?limit=3").await.json().await.unwrap();
    assert_eq!(page["next_after"], 3);
    let next: Value = get("/audit?limit=3&after=3").await.json().await.unwrap();
    assert_eq!(next["records"][0]["seq"], 4);
    let future: Value = get("/audit?from=2999-01-01T00:00:00Z")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(future["records"].as_array().unwrap().len(), 0);
    let past: Value = get("/audit?to=2999-01-01T00:00:00Z")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(past["records"].as_array().unwrap().len(), 8);
    let bad = get("/audit?from=yesterday").await;
    assert_eq!(bad.status(), 422);
    let problem: Value = bad.json().await.unwrap();
    assert_eq!(problem["errors"][0]["field"], "from");

    let verified: Value = get("/audit/verify").await.json().await.unwrap();
    assert_eq!(
        (verified["ok"].clone(), verified["records"].clone()),
        (json!(true), json!(8))
    );
    let export = get("/audit/export").await;
    assert_eq!(export.headers()["content-type"], "application/x-ndjson");
    let text = export.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 8);
    assert_eq!(lines[7]["hash"], verified["head_hash"]);
}
