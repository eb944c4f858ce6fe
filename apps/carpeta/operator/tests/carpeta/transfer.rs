//! Two operators on one hub-sim: a citizen with three documents goes from A to B and back;
//! refusals and silence restore the origin; a peer in the older dialect is understood.

use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::documents::upload_to;
use crate::helpers::{World, eventually, open_pii};
use crate::operator::{Operator, another_bus, call, named_operator, register};

const ID: &str = "1032456789";

async fn operator_id(world: &World, from: &Operator, name: &str) -> String {
    let token = world.token(ID, &["ciudadano"]);
    let (status, listed) = call(
        world,
        reqwest::Method::GET,
        from.transfer.url("/transfers/operators"),
        &token,
        None,
    )
    .await;
    assert_eq!(status, 200, "{listed}");
    listed
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == name)
        .and_then(|o| o["id"].as_str())
        .unwrap_or_else(|| panic!("{name} not in {listed}"))
        .to_owned()
}

/// Starts a transfer and waits until it ends; returns its final row.
async fn transfer(world: &World, from: &Operator, to_id: &str) -> Value {
    let token = world.token(ID, &["ciudadano"]);
    let (status, started) = call(
        world,
        reqwest::Method::POST,
        from.transfer.url("/transfers"),
        &token,
        Some(json!({"citizen_id": ID, "operator_id": to_id})),
    )
    .await;
    assert_eq!(status, 202, "{started}");
    let id = started["id"].as_str().unwrap().to_owned();
    eventually(Duration::from_secs(60), "the transfer to end", || async {
        let (_, detail) = call(
            world,
            reqwest::Method::GET,
            from.transfer.url(&format!("/transfers/{id}")),
            &token,
            None,
        )
        .await;
        (detail["transfer"]["status"] != "running" && detail["transfer"]["status"].is_string())
            .then_some(detail["transfer"].clone())
    })
    .await
}

/// The citizen's ready documents at `op`: title → SHA-256.
async fn documents(world: &World, op: &Operator) -> Vec<(String, String)> {
    let token = world.token(ID, &["ciudadano"]);
    let (_, listed) = call(
        world,
        reqwest::Method::GET,
        op.ingestion.url(&format!("/documents?owner={ID}")),
        &token,
        None,
    )
    .await;
    let mut docs: Vec<(String, String)> = listed
        .as_array()
        .map(|l| {
            l.iter()
                .map(|d| {
                    (
                        d["title"].as_str().unwrap_or_default().to_owned(),
                        d["sha256"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    docs.sort();
    docs
}

async fn hub_operator(world: &World) -> Value {
    let validate = world
        .http
        .get(world.hub.url(&format!("/apis/validateCitizen/{ID}")))
        .send()
        .await
        .unwrap();
    if validate.status() == 204 {
        return Value::Null;
    }
    validate.json().await.unwrap()
}

/// Everything `holder` must show, and `other` must not, once the citizen is with `holder`.
async fn check_holds(
    world: &World,
    holder: &Operator,
    holder_name: &str,
    other: &Operator,
    expected: &[(String, String)],
) {
    let token = world.token(ID, &["ciudadano"]);
    eventually(
        Duration::from_secs(30),
        "the hub to list the citizen with the holder",
        || async {
            hub_operator(world)
                .await
                .as_str()
                .is_some_and(|m| m.contains(holder_name))
                .then_some(())
        },
    )
    .await;
    // The receiving saga registers at the hub, then marks the citizen registered here.
    eventually(
        Duration::from_secs(30),
        "the holder to have the citizen registered",
        || async {
            let (status, citizen) = call(
                world,
                reqwest::Method::GET,
                holder.citizen.url(&format!("/citizens/{ID}")),
                &token,
                None,
            )
            .await;
            (status == 200 && citizen["status"] == "registered").then_some(())
        },
    )
    .await;
    assert_eq!(
        documents(world, holder).await,
        expected,
        "the same files, by SHA-256"
    );
    let (status, _) = call(
        world,
        reqwest::Method::GET,
        other.citizen.url(&format!("/citizens/{ID}")),
        &token,
        None,
    )
    .await;
    assert_eq!(status, 404, "the origin forgot the citizen");
    assert!(
        documents(world, other).await.is_empty(),
        "the origin keeps no document"
    );
    eventually(
        Duration::from_secs(10),
        "both read models and both searches to agree",
        || async {
            let (_, here) = call(
                world,
                reqwest::Method::GET,
                holder
                    .read_models
                    .url(&format!("/read-models/citizens/{ID}")),
                &token,
                None,
            )
            .await;
            let (_, there) = call(
                world,
                reqwest::Method::GET,
                other
                    .read_models
                    .url(&format!("/read-models/citizens/{ID}")),
                &token,
                None,
            )
            .await;
            let ready = here["documents"]
                .as_array()
                .map_or(0, |d| d.iter().filter(|d| d["status"] == "ready").count());
            let (_, found_here) = call(
                world,
                reqwest::Method::GET,
                holder
                    .metadata
                    .url(&format!("/metadata/search?q=diploma&owner={ID}")),
                &token,
                None,
            )
            .await;
            let (_, found_there) = call(
                world,
                reqwest::Method::GET,
                other
                    .metadata
                    .url(&format!("/metadata/search?q=diploma&owner={ID}")),
                &token,
                None,
            )
            .await;
            (ready == expected.len()
                && there["status"] == "transferred"
                && there["documents"].as_array().is_some_and(Vec::is_empty)
                && found_here["total"] == 1
                && found_there["total"] == 0)
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_citizen_with_three_documents_moves_from_a_to_b_and_back() {
    let mut world = World::new().await;
    let bus_a = world.bus.clone();
    let a = named_operator(&mut world, "Operador A", bus_a, |_| {}).await;
    let bus_b = another_bus(&mut world).await;
    // B unregisters first when it sends: both orders of the protocol are exercised.
    let b = named_operator(&mut world, "Operador B", bus_b, |c| {
        c.unregister_before_send = true
    })
    .await;
    // A's bus log keeps what A published about Ana: sealed with her key at A.
    let (registered, mut published) =
        crate::helpers::capture(&world.bus, "carpeta.citizen.registered", "test-pii").await;
    register(&world, &a, ID, "Ana Pérez", "ana@correo.co").await;
    let at_a = tokio::time::timeout(Duration::from_secs(10), published.recv())
        .await
        .unwrap()
        .unwrap()
        .data
        .unwrap();
    registered.stop().await;
    assert!(at_a["email"]["$enc"].is_string(), "sealed: {at_a}");
    let opened = open_pii(&world, &a.citizen, at_a.clone()).await;
    assert_eq!(
        (opened["name"].as_str(), opened["email"].as_str()),
        (Some("Ana Pérez"), Some("ana@correo.co"))
    );
    let ana = world.token(ID, &["ciudadano"]);
    for (title, body) in [
        ("Diploma de bachiller", "diploma"),
        ("Cédula", "cedula"),
        ("Acta de grado", "acta"),
    ] {
        upload_to(
            &world,
            &a.ingestion,
            &ana,
            ID,
            title,
            &format!("{body}.pdf"),
            format!("%PDF {body}").as_bytes(),
        )
        .await;
    }
    let mut expected: Vec<(String, String)> = [
        ("Acta de grado", "acta"),
        ("Cédula", "cedula"),
        ("Diploma de bachiller", "diploma"),
    ]
    .iter()
    .map(|(t, b)| {
        (
            (*t).to_owned(),
            hex::encode(Sha256::digest(format!("%PDF {b}").as_bytes())),
        )
    })
    .collect();
    expected.sort();
    assert_eq!(documents(&world, &a).await, expected);

    let to_b = operator_id(&world, &a, "Operador B").await;
    let ended = transfer(&world, &a, &to_b).await;
    assert_eq!(ended["status"], "completed", "{ended}");
    check_holds(&world, &b, "Operador B", &a, &expected).await;
    // Crypto-shredded at A: the same stored event no longer opens.
    let shredded = open_pii(&world, &a.citizen, at_a.clone()).await;
    assert_eq!(
        (shredded["name"].as_str(), shredded["email"].as_str()),
        (Some("[redacted]"), Some("[redacted]")),
        "A forgot Ana's keys when she left"
    );
    // B's side of the same transfer.
    eventually(
        Duration::from_secs(30),
        "B's receiving transfer to complete",
        || async {
            let (_, list) = call(
                &world,
                reqwest::Method::GET,
                b.transfer.url(&format!("/transfers?citizen={ID}")),
                &ana,
                None,
            )
            .await;
            (list[0]["status"] == "completed" && list[0]["direction"] == "in").then_some(())
        },
    )
    .await;

    let to_a = operator_id(&world, &b, "Operador A").await;
    let ended = transfer(&world, &b, &to_a).await;
    assert_eq!(ended["status"], "completed", "{ended}");
    check_holds(&world, &a, "Operador A", &b, &expected).await;
}

/// A destination we control: accepts with 201, then answers `req_status` as told (or never).
async fn fake_destination(world: &mut World, name: &str, answer: Option<i32>) -> String {
    let (listener, base) = World::port().await;
    let http = world.http.clone();
    let router = axum::Router::new().route(
        "/api/transferCitizen",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let http = http.clone();
            async move {
                if let Some(status) = answer {
                    let url = body["confirmAPI"].as_str().unwrap_or_default().to_owned();
                    let id = body["id"].clone();
                    tokio::spawn(async move {
                        let _ = http
                            .post(url)
                            .json(&json!({"id": id, "req_status": status}))
                            .send()
                            .await;
                    });
                }
                (http::StatusCode::CREATED, "ok")
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, router).await });
    let registered: Value = world
        .http
        .post(world.hub.url("/apis/registerOperator"))
        .json(
            &json!({"name": name, "address": "x", "contactMail": "x@y.co", "participants": ["x"]}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = registered["idOperator"].as_str().unwrap().to_owned();
    world
        .http
        .put(world.hub.url("/apis/registerTransferEndPoint"))
        .json(&json!({"idOperator": id, "endPoint": format!("{base}/api/transferCitizen")}))
        .send()
        .await
        .unwrap();
    id
}

#[tokio::test]
async fn a_refusal_or_silence_restores_everything_at_the_origin() {
    let mut world = World::new().await;
    let bus = world.bus.clone();
    let a = named_operator(&mut world, "Operador A", bus, |c| {
        c.confirm_timeout_secs = 2;
        c.unregister_before_send = true;
    })
    .await;
    register(&world, &a, ID, "Ana Pérez", "ana@correo.co").await;
    let ana = world.token(ID, &["ciudadano"]);
    upload_to(
        &world,
        &a.ingestion,
        &ana,
        ID,
        "Diploma",
        "diploma.pdf",
        b"%PDF diploma",
    )
    .await;
    let before = documents(&world, &a).await;

    for (name, answer) in [("Rechaza", Some(0)), ("Calla", None)] {
        let peer = fake_destination(&mut world, name, answer).await;
        let ended = transfer(&world, &a, &peer).await;
        assert_eq!(ended["status"], "failed", "{name}: {ended}");
        let (_, citizen) = call(
            &world,
            reqwest::Method::GET,
            a.citizen.url(&format!("/citizens/{ID}")),
            &ana,
            None,
        )
        .await;
        assert_eq!(citizen["status"], "registered", "{name}: restored");
        assert_eq!(
            documents(&world, &a).await,
            before,
            "{name}: documents kept"
        );
        let at_hub = hub_operator(&world).await;
        assert!(
            at_hub.as_str().is_some_and(|m| m.contains("Operador A")),
            "{name}: registered at the hub again: {at_hub}"
        );
    }
}

#[tokio::test]
async fn a_peer_in_the_older_dialect_is_understood_and_confirmed_with_a_number() {
    let mut world = World::new().await;
    let bus = world.bus.clone();
    let b = named_operator(&mut world, "Operador B", bus, |_| {}).await;
    // The origin: serves one file and records the confirmation it gets.
    let (listener, base) = World::port().await;
    let (tx, mut confirmations) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let router = axum::Router::new()
        .route(
            "/files/diploma.pdf",
            axum::routing::get(|| async {
                ([("content-type", "application/pdf")], "%PDF old dialect")
            }),
        )
        .route(
            "/confirmar/",
            axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(body);
                    "ok"
                }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, router).await });
    let body = json!({"id": ID, "citizenName": "Ana Pérez", "citizenEmail": "ana@correo.co",
                      "Documents": {"Diploma": format!("{base}/files/diploma.pdf")},
                      "confirmationURL": format!("{base}/confirmar/")});
    let accepted = world
        .http
        .post(b.transfer.url("/api/transferCitizen/"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 201, "accepted with 201");
    let again = world
        .http
        .post(b.transfer.url("/api/transferCitizen"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        again.status(),
        200,
        "the same transfer again starts nothing new"
    );
    let confirmation = tokio::time::timeout(Duration::from_secs(30), confirmations.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        confirmation,
        json!({"id": 1032456789u64, "req_status": 1}),
        "numbers, at the URL as given"
    );
    let ana = world.token(ID, &["ciudadano"]);
    eventually(
        Duration::from_secs(30),
        "B to register the citizen at the hub",
        || async {
            let (_, citizen) = call(
                &world,
                reqwest::Method::GET,
                b.citizen.url(&format!("/citizens/{ID}")),
                &ana,
                None,
            )
            .await;
            (citizen["status"] == "registered").then_some(())
        },
    )
    .await;
    let docs = documents(&world, &b).await;
    assert_eq!(
        docs,
        vec![(
            "Diploma".to_owned(),
            hex::encode(Sha256::digest(b"%PDF old dialect"))
        )]
    );
    let bad = world
        .http
        .post(b.transfer.url("/api/transferCitizen"))
        .json(&json!({"id": "12"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    assert!(bad.text().await.unwrap().contains("id"));
    let _ = &b.bus;
}

#[tokio::test]
async fn an_origin_restarted_while_waiting_for_the_confirmation_finishes_the_transfer() {
    let mut world = World::new().await;
    let bus = world.bus.clone();
    let mut a = named_operator(&mut world, "Operador A", bus, |c| {
        c.confirm_timeout_secs = 120
    })
    .await;
    register(&world, &a, ID, "Ana Pérez", "ana@correo.co").await;
    let ana = world.token(ID, &["ciudadano"]);
    upload_to(
        &world,
        &a.ingestion,
        &ana,
        ID,
        "Diploma",
        "diploma.pdf",
        b"%PDF diploma",
    )
    .await;
    // A destination that accepts and tells the test where to confirm, and nothing else.
    let (listener, base) = World::port().await;
    let (tx, mut received) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let router = axum::Router::new().route(
        "/api/transferCitizen",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(body);
                (http::StatusCode::CREATED, "ok")
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, router).await });
    let registered: Value = world.http.post(world.hub.url("/apis/registerOperator"))
        .json(&json!({"name": "Lento", "address": "x", "contactMail": "x@y.co", "participants": ["x"]}))
        .send().await.unwrap().json().await.unwrap();
    let peer = registered["idOperator"].as_str().unwrap().to_owned();
    world
        .http
        .put(world.hub.url("/apis/registerTransferEndPoint"))
        .json(&json!({"idOperator": peer, "endPoint": format!("{base}/api/transferCitizen")}))
        .send()
        .await
        .unwrap();

    let (status, started) = call(
        &world,
        reqwest::Method::POST,
        a.transfer.url("/transfers"),
        &ana,
        Some(json!({"citizen_id": ID, "operator_id": peer})),
    )
    .await;
    assert_eq!(status, 202, "{started}");
    let id = started["id"].as_str().unwrap().to_owned();
    let sent = tokio::time::timeout(Duration::from_secs(20), received.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sent["id"], json!(1032456789u64), "the id goes as a number");
    assert_eq!(sent["urlDocuments"].as_object().map(|m| m.len()), Some(1));

    // The origin goes away while it waits, and comes back on the same database.
    a.restart_transfer(&mut world).await;
    let confirm = sent["confirmAPI"].as_str().unwrap().to_owned();
    let confirmed = world
        .http
        .post(&confirm)
        .json(&json!({"id": ID, "req_status": "1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        confirmed.status(),
        200,
        "the restarted origin takes the confirmation"
    );
    let ended = eventually(
        Duration::from_secs(30),
        "the resumed transfer to end",
        || async {
            let (_, detail) = call(
                &world,
                reqwest::Method::GET,
                a.transfer.url(&format!("/transfers/{id}")),
                &ana,
                None,
            )
            .await;
            (detail["transfer"]["status"] != "running").then_some(detail)
        },
    )
    .await;
    assert_eq!(ended["transfer"]["status"], "completed", "{ended}");
    let (status, _) = call(
        &world,
        reqwest::Method::GET,
        a.citizen.url(&format!("/citizens/{ID}")),
        &ana,
        None,
    )
    .await;
    assert_eq!(status, 404);
    assert!(documents(&world, &a).await.is_empty());
    assert_eq!(
        hub_operator(&world).await,
        Value::Null,
        "no longer listed with A (the fake never registers)"
    );
}
