//! hub-client against hub-sim: the protection the spec asks for, observed from outside.

use std::time::Duration;

use serde_json::{Value, json};
use telar_carpeta::hub::{self, HubClientConfig};
use telar_kit::KitConfig;

use crate::helpers::{Running, World, eventually, metric};

pub async fn hub_client(
    world: &mut World,
    configure: impl FnOnce(&mut HubClientConfig),
) -> Running {
    let bus = world.bus.clone();
    hub_client_on(world, bus, configure).await
}

pub async fn hub_client_on(
    world: &mut World,
    bus: telar_bus::Bus,
    configure: impl FnOnce(&mut HubClientConfig),
) -> Running {
    let mut config = HubClientConfig {
        hub_url: world.hub.base.clone(),
        ..HubClientConfig::default()
    };
    config.operator.transfer_url = "http://127.0.0.1:9/api/transferCitizen/".into();
    config.queue.poll_ms = 20;
    config.queue.initial_backoff_ms = 20;
    config.queue.max_backoff_ms = 100;
    configure(&mut config);
    let db = world.db("hub-client").await;
    let (app, client) = hub::build(db, bus, config, world.verifier(), KitConfig::default())
        .await
        .unwrap();
    client
        .ensure_registered()
        .await
        .expect("operator registered at hub-sim");
    world.run(app).await
}

fn citizen(id: &str) -> Value {
    json!({"id": id, "name": "Ana Pérez", "address": "Calle 1 # 2-3", "email": "ana.perez@correo.co"})
}

async fn post(world: &World, url: String, body: &Value) -> (u16, Value) {
    let response = world
        .http
        .post(url)
        .bearer_auth(world.service_token())
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn get(world: &World, url: String) -> Value {
    let response = world
        .http
        .get(url)
        .bearer_auth(world.service_token())
        .send()
        .await
        .unwrap();
    response.json().await.unwrap()
}

async fn metrics_text(world: &World, client: &Running) -> String {
    world
        .http
        .get(client.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_operator_registers_itself_and_its_transfer_endpoint() {
    let mut world = World::new().await;
    let _client = hub_client(&mut world, |_| {}).await;
    let state = world.hub_state().await;
    let operators = state["operators"].as_array().unwrap();
    assert_eq!(operators.len(), 1);
    assert_eq!(operators[0]["name"], "Operador Telar");
    assert_eq!(
        operators[0]["transfer_api_url"],
        "http://127.0.0.1:9/api/transferCitizen/"
    );
}

#[tokio::test]
async fn a_registration_reaches_the_hub_once_and_a_repeat_is_answered_from_memory() {
    let mut world = World::new().await;
    let client = hub_client(&mut world, |_| {}).await;
    let (status, body) = post(&world, client.url("/hub/citizens"), &citizen("1032456789")).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["outcome"], "registered");
    assert_eq!(body["cached"], false);
    let (status, body) = post(&world, client.url("/hub/citizens"), &citizen("1032456789")).await;
    assert_eq!((status, &body["cached"]), (201, &json!(true)), "{body}");
    let state = world.hub_state().await;
    let citizens = state["citizens"].as_array().unwrap();
    assert_eq!(citizens.len(), 1);
    assert_eq!(citizens[0]["operator_name"], "Operador Telar");
    let text = metrics_text(&world, &client).await;
    assert_eq!(
        metric(
            &text,
            "hub_status_codes_total",
            &[r#"endpoint="registerCitizen""#, r#"code="201""#]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &text,
            "hub_calls_total",
            &[r#"endpoint="registerCitizen""#, r#"outcome="cached""#]
        ),
        Some(1.0)
    );
    assert!(
        metric(
            &text,
            "hub_latency_count",
            &[r#"endpoint="registerCitizen""#]
        )
        .is_some()
    );
}

#[tokio::test]
async fn a_citizen_another_operator_holds_is_a_conflict_with_the_hubs_reason_and_is_not_retried() {
    let mut world = World::new().await;
    let client = hub_client(&mut world, |_| {}).await;
    // Another operator registered the citizen first.
    let other = world
        .http
        .post(world.hub.url("/apis/registerCitizen"))
        .json(
            &json!({"id": 1032456789u64, "name": "Ana", "address": "x", "email": "ana@correo.co",
                      "operatorId": "65f0c0ffee0000000000000b", "operatorName": "Otro"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 201);
    let (status, body) = post(&world, client.url("/hub/citizens"), &citizen("1032456789")).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("ya se encuentra registrado"),
        "{body}"
    );
    let validate = get(&world, client.url("/hub/citizens/1032456789")).await;
    assert_eq!(validate["outcome"], "registered");
    assert_eq!(validate["operator"], "Otro");
    let text = metrics_text(&world, &client).await;
    assert_eq!(
        metric(
            &text,
            "hub_status_codes_total",
            &[r#"endpoint="registerCitizen""#, r#"code="501""#]
        ),
        Some(1.0)
    );
    let queued: Value = get(&world, client.url("/hub/calls")).await;
    assert_eq!(queued, json!([]), "a business refusal is never queued");
}

#[tokio::test]
async fn beyond_the_per_endpoint_limit_calls_are_accepted_queued_and_sent_later() {
    let mut world = World::new().await;
    let client = hub_client(&mut world, |c| c.window_ms = 1_500).await;
    let mut accepted = 0;
    let mut done = 0;
    for n in 0..12 {
        let body = json!({"citizen_id": format!("10324567{:02}", 10 + n), "url": "https://docs.example.co/x", "title": format!("Diploma {n}")});
        let response = world
            .http
            .put(client.url("/hub/documents/authenticate"))
            .bearer_auth(world.service_token())
            .json(&body)
            .send()
            .await
            .unwrap();
        match response.status().as_u16() {
            200 => done += 1,
            202 => accepted += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(
        (done, accepted),
        (10, 2),
        "10 per window reach the hub, the rest wait"
    );
    let text = metrics_text(&world, &client).await;
    assert_eq!(
        metric(
            &text,
            "hub_rate_limit_exceeded_total",
            &[r#"endpoint="authenticateDocument""#]
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(
            &text,
            "hub_rate_limit_remaining",
            &[r#"endpoint="authenticateDocument""#]
        ),
        Some(0.0)
    );
    // The worker sends them once the window has room.
    let calls = eventually(
        Duration::from_secs(10),
        "queued authentications to be done",
        || async {
            let calls = get(&world, client.url("/hub/calls?status=done")).await;
            (calls.as_array().map_or(0, Vec::len) == 2).then_some(calls)
        },
    )
    .await;
    let state = world.hub_state().await;
    assert_eq!(state["authentications"].as_array().map_or(0, Vec::len), 12);
    assert_eq!(calls[0]["answer_status"], 200);
}

#[tokio::test]
async fn a_failing_hub_opens_the_breaker_and_queued_calls_go_through_after_it_recovers() {
    let mut world = World::new().await;
    let client = hub_client(&mut world, |c| {
        c.breaker_failures = 2;
        c.breaker_open_secs = 1;
    })
    .await;
    let (tx, mut published) = tokio::sync::mpsc::unbounded_channel();
    let events = world
        .bus
        .subscribe(
            "carpeta.hub.>",
            telar_bus::SubscribeOptions::group("test"),
            move |d: telar_bus::Delivery| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send((d.envelope.ty, d.envelope.subject.unwrap_or_default()));
                    telar_bus::Outcome::Ack
                }
            },
        )
        .await
        .unwrap();
    world
        .hub_faults(json!({"unavailable_for_ms": 60_000, "endpoints": ["registerCitizen"]}))
        .await;
    let ids = ["1032456781", "1032456782", "1032456783"];
    for id in ids {
        let (status, body) = post(&world, client.url("/hub/citizens"), &citizen(id)).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["outcome"], "queued");
    }
    let text = metrics_text(&world, &client).await;
    assert_eq!(
        metric(&text, "hub_cb_open", &[r#"endpoint="registerCitizen""#]),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &text,
            "hub_status_codes_total",
            &[r#"endpoint="registerCitizen""#, r#"code="503""#]
        )
        .map(|n| n >= 2.0),
        Some(true)
    );
    // Only the first two reached the hub: then the breaker answered for it.
    world
        .http
        .delete(world.hub.url("/control/faults"))
        .send()
        .await
        .unwrap();
    eventually(
        Duration::from_secs(10),
        "queued registrations to reach the hub",
        || async {
            let state = world.hub_state().await;
            (state["citizens"].as_array().map_or(0, Vec::len) == 3).then_some(())
        },
    )
    .await;
    let text = metrics_text(&world, &client).await;
    assert_eq!(
        metric(&text, "hub_cb_open", &[r#"endpoint="registerCitizen""#]),
        Some(0.0)
    );
    // Each queued call announced itself, then its outcome, with the citizen as subject.
    let mut seen = Vec::new();
    while seen.len() < 6 {
        let event = tokio::time::timeout(Duration::from_secs(5), published.recv())
            .await
            .unwrap()
            .unwrap();
        seen.push(event);
    }
    events.stop().await;
    for id in ids {
        for ty in ["carpeta.hub.call_queued", "carpeta.hub.call_completed"] {
            assert!(
                seen.contains(&(ty.to_owned(), id.to_owned())),
                "{ty} for {id} in {seen:?}"
            );
        }
    }
}
