//! Crypto-shredding on both backends.

use serde_json::json;
use telar_store::{EventStore, ExpectedVersion, NewEvent, REDACTED, Shredder};

const MASTER: [u8; 32] = [7; 32];

fn registered(email: &str) -> NewEvent {
    NewEvent::new(
        "CitizenRegistered",
        json!({"citizen": "1032456789", "email": email, "name": "Ana Pérez", "operator": "op-1"}),
    )
}

pub async fn forgetting_a_subject_redacts_its_fields_and_keeps_the_stream(store: EventStore) {
    let shredder = Shredder::open(store.db().clone(), &MASTER)
        .await
        .expect("shredder");
    let store = store.with_shredder(shredder.clone());
    let mut first = registered("ana@example.com");
    shredder
        .encrypt("citizen-1", &mut first, &["email", "name"])
        .await
        .expect("encrypt");
    store
        .append("citizen-1", ExpectedVersion::NoStream, vec![first])
        .await
        .expect("append");
    // Rotation: later events use a new key; the first still decrypts.
    let old_key = shredder.rotate("citizen-1").await.expect("rotate");
    let mut second = registered("ana@new.example.com");
    shredder
        .encrypt("citizen-1", &mut second, &["email", "name"])
        .await
        .expect("encrypt");
    assert_eq!(
        second.metadata.extra["shredding"]["kid"],
        json!(old_key),
        "the newest key encrypts"
    );
    store
        .append("citizen-1", ExpectedVersion::Exact(1), vec![second])
        .await
        .expect("append");

    let raw: Vec<String> =
        telar_sql::query("SELECT data FROM es_events WHERE stream = 'citizen-1'")
            .fetch_all(store.db())
            .await
            .expect("raw rows")
            .iter()
            .map(|r| r.get("data").expect("data"))
            .collect();
    assert!(
        raw.iter()
            .all(|d| !d.contains("example.com") && !d.contains("Pérez")),
        "no personal field is stored in clear: {raw:?}"
    );

    let events = store.read_stream("citizen-1", 1, 10).await.expect("read");
    assert_eq!(events[0].data["email"], "ana@example.com");
    assert_eq!(events[0].data["name"], "Ana Pérez");
    assert_eq!(events[1].data["email"], "ana@new.example.com");
    assert_eq!(events[0].data["operator"], "op-1", "other fields untouched");

    assert_eq!(
        shredder.forget("citizen-1").await.expect("forget"),
        2,
        "both keys"
    );
    let events = store
        .read_stream("citizen-1", 1, 10)
        .await
        .expect("replay after forget");
    assert_eq!(events.len(), 2, "the stream stays replayable");
    assert_eq!(events[0].data["email"], REDACTED);
    assert_eq!(events[0].data["name"], REDACTED);
    assert_eq!(events[1].data["email"], REDACTED);
    assert_eq!(events[0].data["citizen"], "1032456789");

    // Another process (fresh cache) sees the subject forgotten too.
    let other = Shredder::open(store.db().clone(), &MASTER)
        .await
        .expect("shredder");
    let mut stored = store.read_stream("citizen-1", 1, 1).await.expect("read");
    other.decrypt(&mut stored[0]).await.expect("decrypt");
    assert_eq!(stored[0].data["email"], REDACTED);
}

pub async fn a_wrong_master_key_is_refused(store: EventStore) {
    let shredder = Shredder::open(store.db().clone(), &MASTER)
        .await
        .expect("shredder");
    let mut event = registered("x@example.com");
    shredder
        .encrypt("citizen-2", &mut event, &["email"])
        .await
        .expect("encrypt");
    store
        .append("citizen-2", ExpectedVersion::NoStream, vec![event])
        .await
        .expect("append");
    let wrong = Shredder::open(store.db().clone(), &[8; 32])
        .await
        .expect("shredder");
    let mut stored = store.read_stream("citizen-2", 1, 1).await.expect("read");
    let error = wrong
        .decrypt(&mut stored[0])
        .await
        .expect_err("wrong master key");
    assert!(error.to_string().contains("master key"), "{error}");
    assert!(
        Shredder::open(store.db().clone(), &[1; 16]).await.is_err(),
        "16-byte master key"
    );
}
