use std::time::Instant;

use reqwest::Method;
use serde_json::json;

use crate::helpers::{Engine, spawn};

#[tokio::test]
async fn fail_next_fails_exactly_that_many_calls() {
    let hub = spawn(Engine::Sqlite).await;
    let set = hub
        .set_faults(json!({"fail_next": 2, "fail_status": 503}))
        .await;
    assert_eq!(set.status, 200);
    assert_eq!(set.body["fail_next"], 2);
    assert_eq!(hub.validate("1032456789").await.status, 503);
    assert_eq!(hub.validate("1032456789").await.status, 503);
    assert_eq!(hub.validate("1032456789").await.status, 204);
}

#[tokio::test]
async fn unavailable_window_answers_503_until_cleared() {
    let hub = spawn(Engine::Sqlite).await;
    hub.set_faults(json!({"unavailable_for_ms": 60000})).await;
    assert_eq!(hub.register(1032456789, "Op").await.status, 503);
    assert_eq!(
        hub.call(Method::GET, "/apis/getOperators", None)
            .await
            .status,
        503
    );
    let faults = hub.call(Method::GET, "/control/faults", None).await;
    assert!(faults.body["unavailable_for_ms"].as_u64().unwrap_or(0) > 50_000);
    assert_eq!(
        hub.call(Method::DELETE, "/control/faults", None)
            .await
            .status,
        204
    );
    assert_eq!(hub.register(1032456789, "Op").await.status, 201);
}

#[tokio::test]
async fn error_rate_and_endpoint_filter() {
    let hub = spawn(Engine::Sqlite).await;
    hub.set_faults(json!({"error_rate": 1.0, "endpoints": ["registerCitizen"]}))
        .await;
    assert_eq!(hub.register(1032456789, "Op").await.status, 500);
    assert_eq!(
        hub.validate("1032456789").await.status,
        204,
        "other endpoints unaffected"
    );
}

#[tokio::test]
async fn latency_is_added() {
    let hub = spawn(Engine::Sqlite).await;
    hub.set_faults(json!({"latency_ms": 300})).await;
    let started = Instant::now();
    assert_eq!(hub.validate("1032456789").await.status, 204);
    assert!(started.elapsed().as_millis() >= 300);
}

#[tokio::test]
async fn invalid_faults_name_the_field() {
    let hub = spawn(Engine::Sqlite).await;
    for (faults, field) in [
        (json!({"error_rate": 1.5}), "error_rate"),
        (json!({"fail_status": 404}), "fail_status"),
        (json!({"latency": 5}), "latency"),
        (json!({"latency_ms": "slow"}), "latency_ms"),
        (json!({"latency_ms": 30000}), "latency_ms"),
        (json!({"endpoints": ["registerCitzen"]}), "endpoints"),
    ] {
        let answer = hub.set_faults(faults).await;
        assert_eq!(answer.status, 422);
        assert_eq!(answer.body["errors"][0]["field"], field);
    }
}

#[tokio::test]
async fn reset_forgets_everything() {
    let hub = spawn(Engine::Sqlite).await;
    hub.register(1032456789, "Op").await;
    hub.call(
        Method::POST,
        "/apis/registerOperator",
        Some(json!({"name": "X", "address": "Y", "contactMail": "a@b.co", "participants": []})),
    )
    .await;
    hub.set_faults(json!({"latency_ms": 1})).await;
    let state = hub.call(Method::GET, "/control/state", None).await;
    assert_eq!(state.body["citizens"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        hub.call(Method::POST, "/control/reset", None).await.status,
        204
    );
    let state = hub.call(Method::GET, "/control/state", None).await;
    assert_eq!(state.body["citizens"], json!([]));
    assert_eq!(state.body["operators"], json!([]));
    assert_eq!(state.body["faults"]["latency_ms"], 0);
}

#[tokio::test]
async fn a_configured_token_guards_the_control_api() {
    let (db, _dir) = telar_testkit::sqlite_db("hub-sim").await;
    let config = telar_carpeta_hub_sim::HubSimConfig {
        control_token: Some("s3cret".into()),
        ..Default::default()
    };
    let service = telar_carpeta_hub_sim::build(db, config, telar_kit::KitConfig::default())
        .await
        .expect("build");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(service.run(listener, std::future::pending()));
    let client = reqwest::Client::new();
    let missing = client
        .post(format!("{base}/control/reset"))
        .send()
        .await
        .expect("send");
    assert_eq!(missing.status(), 401);
    let wrong = client
        .post(format!("{base}/control/reset"))
        .header("x-control-token", "s3creT")
        .send()
        .await
        .expect("send");
    assert_eq!(wrong.status(), 401);
    let right = client
        .post(format!("{base}/control/reset"))
        .header("x-control-token", "s3cret")
        .send()
        .await
        .expect("send");
    assert_eq!(right.status(), 204);
    let hub = client
        .get(format!("{base}/apis/getOperators"))
        .send()
        .await
        .expect("send");
    assert_eq!(hub.status(), 204, "the hub API itself needs no token");
}
