use reqwest::Method;

use crate::helpers::{Engine, citizen, spawn};

#[tokio::test]
async fn malformed_json_is_400_problem() {
    let hub = spawn(Engine::Sqlite).await;
    let request = hub
        .client
        .post(hub.url("/apis/registerCitizen"))
        .header("content-type", "application/json")
        .body("{\"id\": 10324");
    let answer = hub.send(request).await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.content_type, "application/problem+json");
}

#[tokio::test]
async fn wrong_types_are_501_not_a_crash() {
    let hub = spawn(Engine::Sqlite).await;
    for body in [
        r#"{"id": {"n": 1}}"#,
        r#"[1,2,3]"#,
        r#""just a string""#,
        "null",
        r#"{"id": true, "name": 5}"#,
    ] {
        let request = hub
            .client
            .post(hub.url("/apis/registerCitizen"))
            .header("content-type", "application/json")
            .body(body);
        assert_eq!(hub.send(request).await.status, 501, "{body}");
    }
    assert_eq!(
        hub.validate("1032456789").await.status,
        204,
        "server still serving"
    );
}

#[tokio::test]
async fn huge_bodies_are_413() {
    let hub = spawn(Engine::Sqlite).await;
    let mut body = citizen(1032456789, "Op");
    body["name"] = serde_json::Value::String("x".repeat(300 * 1024));
    let answer = hub
        .call(Method::POST, "/apis/registerCitizen", Some(body))
        .await;
    assert_eq!(answer.status, 413);
    assert_eq!(
        hub.validate("1032456789").await.status,
        204,
        "nothing stored"
    );
}

#[tokio::test]
async fn accept_is_ignored_like_the_real_hub() {
    let hub = spawn(Engine::Sqlite).await;
    for accept in ["image/png", "application/xml", "text/html"] {
        let request = hub
            .client
            .post(hub.url("/apis/registerCitizen"))
            .header("accept", accept)
            .json(&citizen(1032456789, "Op"));
        let answer = hub.send(request).await;
        assert!(
            answer.status == 201 || answer.status == 501,
            "{accept}: {}",
            answer.status
        );
        assert_eq!(answer.content_type, "application/json", "{accept}");
    }
    let control = hub
        .client
        .get(hub.url("/control/faults"))
        .header("accept", "image/png");
    assert_eq!(
        hub.send(control).await.status,
        406,
        "the control API negotiates"
    );
}

#[tokio::test]
async fn a_foreign_preflight_gets_500_too() {
    let hub = spawn(Engine::Sqlite).await;
    let preflight = hub
        .client
        .request(Method::OPTIONS, hub.url("/apis/registerCitizen"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST");
    assert_eq!(hub.send(preflight).await.status, 500);
}

#[tokio::test]
async fn a_foreign_origin_gets_500_like_the_real_hub() {
    let hub = spawn(Engine::Sqlite).await;
    let foreign = hub
        .client
        .get(hub.url("/apis/validateCitizen/1032456789"))
        .header("origin", "https://evil.example");
    assert_eq!(hub.send(foreign).await.status, 500);
    let allowed = hub
        .client
        .get(hub.url("/apis/validateCitizen/1032456789"))
        .header(
            "origin",
            "https://govcarpeta-apis-4905ff3c005b.herokuapp.com",
        );
    assert_eq!(hub.send(allowed).await.status, 204);
    assert_eq!(
        hub.validate("1032456789").await.status,
        204,
        "no Origin: server-to-server"
    );
}
