//! `telar-bench-gateway upstream` serves a trivial JSON answer (and `POST /upload`, which counts
//! the bytes it receives); `telar-bench-gateway gateway UPSTREAM_URL` runs the telar gateway in
//! front of it with token verification and rate limits on (limits too high to trigger), writes
//! a valid token to stdout's first line, and logs one JSON access line per request to stdout.
//! Both print `url=http://…` on stderr and run until stdin closes. `BENCH_WORKERS=N` sets the
//! gateway's event loops (default: one per core).

use axum::body::Body;
use axum::routing::{get, post};
use futures::StreamExt;
use telar_auth::{Claims, KeyRing, Verifier, VerifierConfig};
use telar_gateway::{Gateway, GatewayConfig, LimitsConfig, RouteConfig, UpstreamConfig};
use tokio::io::AsyncReadExt;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

async fn stdin_closed() {
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
}

async fn upload(body: Body) -> String {
    let mut stream = body.into_data_stream();
    let mut total = 0u64;
    while let Some(Ok(chunk)) = stream.next().await {
        total += chunk.len() as u64;
    }
    total.to_string()
}

async fn upstream() -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    eprintln!("url=http://{}", listener.local_addr()?);
    let app = axum::Router::new()
        .route("/upload", post(upload))
        .fallback(get(|| async {
            (
                [("content-type", "application/json")],
                r#"{"id":"1032456789","name":"Ana","documents":3}"#,
            )
        }));
    axum::serve(listener, app)
        .with_graceful_shutdown(stdin_closed())
        .await
}

async fn gateway(upstream: &str) -> std::io::Result<()> {
    let mut telemetry = telar_telemetry::TelemetryConfig::default();
    if let Ok(level) = std::env::var("BENCH_LOG") {
        telemetry.log.level = level;
    }
    let _telemetry =
        telar_telemetry::init(&telemetry, "bench-gateway").map_err(std::io::Error::other)?;
    let keys = KeyRing::generate(now(), 3600).map_err(std::io::Error::other)?;
    let token = keys
        .sign(&Claims {
            sub: "1032456789".into(),
            roles: vec!["ciudadano".into()],
            permissions: Vec::new(),
            org_id: None,
            iss: "telar".into(),
            aud: "telar".into(),
            exp: now() + 3600,
            iat: now(),
            jti: uuid::Uuid::new_v4().to_string(),
        })
        .map_err(std::io::Error::other)?;
    println!("{token}");
    let verifier =
        Verifier::new(VerifierConfig::new("telar", "telar")).with_keys(&keys.jwks(now()));
    let mut limits = LimitsConfig::default();
    limits.roles.insert("ciudadano".into(), 1_000_000_000);
    let mut upload = RouteConfig::new("/upload", "app");
    upload.max_body_bytes = Some(4 << 30);
    let mut edge = telar_gateway::EdgeConfig::default();
    if let Some(workers) = std::env::var("BENCH_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
    {
        edge.workers = workers;
    }
    let config = GatewayConfig {
        edge,
        routes: vec![RouteConfig::new("/api", "app"), upload],
        upstreams: [(
            "app".to_owned(),
            UpstreamConfig {
                instances: vec![upstream.to_owned()],
                ..UpstreamConfig::default()
            },
        )]
        .into(),
        limits,
        ..GatewayConfig::default()
    };
    let gateway = Gateway::build(config, telar_kit::KitConfig::default(), verifier)
        .await
        .map_err(std::io::Error::other)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    eprintln!("url=http://{}", listener.local_addr()?);
    gateway.run(listener, stdin_closed()).await
}

fn main() -> std::io::Result<()> {
    let runtime = if std::env::var("BENCH_FLAVOR").as_deref() == Ok("current") {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
    };
    runtime.block_on(run())
}

async fn run() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("upstream") => upstream().await,
        Some("gateway") if args.len() == 3 => gateway(&args[2]).await,
        _ => {
            eprintln!("usage: telar-bench-gateway upstream | gateway UPSTREAM_URL");
            std::process::exit(2);
        }
    }
}
