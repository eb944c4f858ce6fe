use std::time::Instant;

use telar_kit::{CorsConfig, KitConfig};

use crate::helpers::{spawn, spawn_with};

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    let app = spawn_with(
        KitConfig {
            body_limit_bytes: 1024,
            ..KitConfig::default()
        },
        true,
    )
    .await;
    let big = format!(r#"{{"id":1,"email":"{}@x.co"}}"#, "a".repeat(4096));
    let response = app
        .client
        .post(app.url("/citizens"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 413);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
}

#[tokio::test]
async fn slow_handlers_are_cut_off_with_504() {
    let app = spawn_with(
        KitConfig {
            request_timeout_ms: 100,
            ..KitConfig::default()
        },
        true,
    )
    .await;
    let started = Instant::now();
    let response = app
        .client
        .get(app.url("/slow?ms=5000"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 504);
    assert!(
        started.elapsed().as_secs() < 4,
        "answered at the timeout, not after the handler"
    );
    let body: serde_json::Value = response.json().await.expect("problem");
    assert_eq!(body["code"], "timeout");
}

#[tokio::test]
async fn cors_allows_only_configured_origins() {
    let config = KitConfig {
        cors: CorsConfig {
            allowed_origins: vec!["https://app.carpeta.gov.co".into()],
            ..CorsConfig::default()
        },
        ..KitConfig::default()
    };
    let app = spawn_with(config, true).await;
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/citizens"))
        .header("origin", "https://app.carpeta.gov.co")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .expect("send");
    assert_eq!(
        preflight
            .headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("https://app.carpeta.gov.co")
    );
    let foreign = app
        .client
        .get(app.url("/health"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .expect("send");
    assert!(
        foreign
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn default_config_grants_no_cross_origin_access() {
    let app = spawn().await;
    let response = app
        .client
        .get(app.url("/health"))
        .header("origin", "https://app.example")
        .send()
        .await
        .expect("send");
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}
