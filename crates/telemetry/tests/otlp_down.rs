//! A collector that accepts connections and never answers must not slow the instrumented code.

use std::time::{Duration, Instant};

use telar_telemetry::{OtlpConfig, TelemetryConfig};

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_collector_never_blocks_the_caller() {
    // Accepts TCP connections and holds them open without ever answering.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let config = TelemetryConfig {
        otlp: OtlpConfig {
            enabled: true,
            endpoint: format!("http://{address}/v1/traces"),
            timeout_ms: 5000,
        },
        ..TelemetryConfig::default()
    };
    let guard = telar_telemetry::init(&config, "otlp-down-test").expect("init");
    let started = Instant::now();
    for n in 0..20_000 {
        tracing::info_span!("work", n).in_scope(|| {});
    }
    let elapsed = started.elapsed();
    // 20 000 spans while every export hangs for 5 s: the caller must not wait for any export.
    assert!(
        elapsed < Duration::from_secs(4),
        "instrumented code waited for the collector: {elapsed:?}"
    );
    std::mem::forget(guard);
}
