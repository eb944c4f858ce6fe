//! Prints `bare=URL kit=URL` on stdout, then serves both until stdin closes.
//! The kit side runs exactly what a service runs: JSON logs (to stdout), metrics, request ids,
//! timeouts, negotiation, CORS and limits.

use axum::Json;
use axum::routing::get;
use serde_json::{Value, json};
use telar_kit::{OpenApiRouter, Service, routes};
use tokio::io::AsyncReadExt;

/// The trivial handler both servers run.
#[utoipa::path(get, path = "/hello", responses((status = 200)))]
async fn hello() -> Json<Value> {
    Json(json!({"hello": "world"}))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let _telemetry =
        telar_telemetry::init(&telar_telemetry::TelemetryConfig::default(), "bench-kit")
            .map_err(std::io::Error::other)?;
    let bare_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let kit_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    eprintln!(
        "bare=http://{}/hello kit=http://{}/hello",
        bare_listener.local_addr()?,
        kit_listener.local_addr()?
    );

    let bare = axum::Router::new().route("/hello", get(hello));
    tokio::spawn(async move { axum::serve(bare_listener, bare).await });
    let kit = Service::new("bench-kit").api(OpenApiRouter::new().routes(routes!(hello)));
    let stdin_closed = async {
        let mut sink = Vec::new();
        let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    };
    kit.run(kit_listener, stdin_closed).await
}
