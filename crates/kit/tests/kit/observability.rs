use crate::helpers::{spawn, spawn_with};

#[tokio::test]
async fn health_and_ready_report_checks() {
    let app = spawn().await;
    let health = app
        .client
        .get(app.url("/health"))
        .send()
        .await
        .expect("send");
    assert_eq!(health.status(), 200);
    let ready: serde_json::Value = app
        .client
        .get(app.url("/ready"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(ready["status"], "pass");
    assert_eq!(ready["checks"]["database"]["status"], "pass");

    let sick = spawn_with(telar_kit::KitConfig::default(), false).await;
    let response = sick
        .client
        .get(sick.url("/ready"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["failed"][0], "database");
    assert_eq!(body["checks"]["database"]["output"], "connection refused");
    let health = sick
        .client
        .get(sick.url("/health"))
        .send()
        .await
        .expect("send");
    assert_eq!(
        health.status(),
        200,
        "liveness does not depend on dependencies"
    );
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let app = spawn().await;
    let echoed = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .expect("send");
    assert_eq!(echoed.headers()["x-request-id"], "abc-123");
    let generated = app
        .client
        .get(app.url("/health"))
        .send()
        .await
        .expect("send");
    let id = generated.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    let too_long = "x".repeat(300);
    let replaced = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", too_long.as_str())
        .send()
        .await
        .expect("send");
    assert_ne!(replaced.headers()["x-request-id"], too_long.as_str());
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_and_status() {
    let app = spawn().await;
    for _ in 0..3 {
        app.client
            .post(app.url("/citizens"))
            .header("content-type", "application/json")
            .body(r#"{"id":1,"email":"a@b.co"}"#)
            .send()
            .await
            .expect("send");
    }
    app.client.get(app.url("/boom")).send().await.expect("send");
    let response = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("send");
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("text/plain")
    );
    let text = response.text().await.expect("text");
    let line = |name: &str, route: &str, status: &str| {
        text.lines().any(|l| {
            l.starts_with(name)
                && l.contains("service=\"kit-test\"")
                && l.contains(&format!("route=\"{route}\""))
                && l.contains(&format!("status=\"{status}\""))
        })
    };
    assert!(
        line("http_server_request_count_total{", "/citizens", "201"),
        "{text}"
    );
    assert!(
        line("http_server_request_duration_bucket{", "/citizens", "201"),
        "{text}"
    );
    assert!(
        line("http_server_error_count_total{", "/boom", "500"),
        "{text}"
    );
    assert!(
        !line("http_server_error_count_total{", "/citizens", "201"),
        "2xx is not an error"
    );
}
