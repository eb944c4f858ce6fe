//! The Lambda adapter end to end, without AWS: API Gateway (HTTP API) events as lambda_http
//! parses them, through the service's router, on a real database.

#![allow(clippy::unwrap_used)]

use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

fn event(method: &str, path: &str, body: Option<Value>) -> String {
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "accept": "application/json", "host": "hub.example.com"},
        "requestContext": {
            "accountId": "123456789012", "apiId": "api", "domainName": "hub.example.com",
            "domainPrefix": "hub", "requestId": "req-1", "routeKey": "$default", "stage": "$default",
            "time": "24/Nov/2026:03:00:00 +0000", "timeEpoch": 1795000000000u64,
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "10.0.0.1", "userAgent": "test"}
        },
        "body": body.map(|b| b.to_string()),
        "isBase64Encoded": false
    })
    .to_string()
}

async fn send(
    router: &axum::Router,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let request = lambda_http::request::from_str(&event(method, path, body)).unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn api_gateway_events_reach_the_hub_simulator() {
    let (db, _dir) = telar_testkit::sqlite_db("hub-sim").await;
    let router = telar_lambda::hub_sim_router(db, telar_kit::KitConfig::default())
        .await
        .unwrap();
    let (status, _) = send(&router, "GET", "/apis/validateCitizen/1032456789", None).await;
    assert_eq!(status, 204, "nobody registered yet");
    let citizen = json!({"id": 1032456789u64, "name": "Ana", "address": "Calle 1", "email": "ana@correo.co",
                         "operatorId": "65f0c0ffee0000000000000a", "operatorName": "Operador"});
    let (status, body) = send(&router, "POST", "/apis/registerCitizen", Some(citizen)).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = send(&router, "GET", "/apis/validateCitizen/1032456789", None).await;
    assert_eq!(status, 200);
    assert!(body.as_str().unwrap().contains("Operador"), "{body}");
    let (status, _) = send(&router, "GET", "/health", None).await;
    assert_eq!(status, 200);
}
