//! With OTLP on, spans reach the collector over OTLP/HTTP (protobuf).

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::routing::post;
use telar_telemetry::{OtlpConfig, TelemetryConfig};

#[tokio::test(flavor = "multi_thread")]
async fn spans_are_exported_to_the_configured_collector() {
    let received: Arc<Mutex<Vec<(String, usize)>>> = Arc::default();
    let sink = received.clone();
    let collector = Router::new().route(
        "/v1/traces",
        post(move |headers: HeaderMap, body: Bytes| {
            let sink = sink.clone();
            async move {
                let content_type = headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                sink.lock()
                    .map(|mut s| s.push((content_type, body.len())))
                    .ok();
                ""
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, collector).await });

    let config = TelemetryConfig {
        otlp: OtlpConfig {
            enabled: true,
            endpoint: format!("http://{address}/v1/traces"),
            timeout_ms: 2000,
        },
        ..TelemetryConfig::default()
    };
    let guard = telar_telemetry::init(&config, "otlp-test").expect("init");
    tracing::info_span!("unit-of-work", answer = 42).in_scope(|| tracing::info!("inside"));
    // Dropping the guard flushes the batch (on the exporter's own thread).
    tokio::task::spawn_blocking(move || drop(guard))
        .await
        .expect("flush");

    let received = received.lock().map(|r| r.clone()).unwrap_or_default();
    assert!(!received.is_empty(), "collector received nothing");
    assert_eq!(received[0].0, "application/x-protobuf");
    assert!(received[0].1 > 0);
}
