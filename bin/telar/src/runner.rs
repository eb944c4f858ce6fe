//! Starts a set of services in this process, waits until each answers `/ready`, prints where
//! they are, and drains them on Ctrl-C / SIGTERM.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::catalog;
use crate::commands::CommandError;
use crate::settings::Settings;

/// How long services get to become ready before `telar up` reports them as not ready.
const READY_DEADLINE: Duration = Duration::from_secs(15);

struct Started {
    name: String,
    url: String,
    data: String,
}

pub async fn run(settings: Settings, names: Vec<String>) -> Result<(), CommandError> {
    let _telemetry = telar_telemetry::init(&settings.telemetry, "telar")
        .map_err(|e| CommandError::Usage(e.to_string()))?;
    let clock = Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut started = Vec::new();
    // Every port first: services that call each other (the gateway's upstreams, its JWKS) are
    // told the real addresses, including those picked by the system (port 0).
    let mut listeners = Vec::new();
    let mut settings = settings;
    // One process holding the identity service: the services' account gets a fresh secret.
    if settings.carpeta.auth.client_secret.is_empty() && names.iter().any(|n| n == "identity") {
        settings.carpeta.auth.client_secret = hex::encode(rand::random::<[u8; 24]>());
    }
    for name in &names {
        let listener = match bind(name, &settings).await {
            Ok(listener) => listener,
            Err(error) => return Err(error.into()),
        };
        let port = listener.local_addr().map_err(anyhow::Error::from)?.port();
        settings.set_port(name, port);
        listeners.push(listener);
    }
    let bus = catalog::SharedBus::default();
    for (name, listener) in names.iter().zip(listeners) {
        match start_one(name, listener, &settings, &bus, &stop_rx, &mut tasks).await {
            Ok(service) => started.push(service),
            Err(error) => {
                let _ = stop_tx.send(true);
                while tasks.join_next().await.is_some() {}
                return Err(error.into());
            }
        }
    }
    let states = wait_until_ready(&started).await;
    print_table(&settings, &started, &states, clock.elapsed());
    tracing::info!(
        ready_ms = clock.elapsed().as_millis() as u64,
        services = ?started.iter().map(|s| (&s.name, &s.url)).collect::<Vec<_>>(),
        "system ready"
    );

    let outcome = tokio::select! {
        _ = stop_signal() => Ok(()),
        Some(finished) = tasks.join_next() => Err(anyhow::anyhow!("a service stopped unexpectedly: {finished:?}")),
    };
    eprintln!("draining in-flight requests…");
    let _ = stop_tx.send(true);
    while let Some(result) = tasks.join_next().await {
        if let Ok(Err(error)) = result {
            tracing::error!(%error, "service stopped with an error");
        }
    }
    tracing::info!(
        uptime_ms = clock.elapsed().as_millis() as u64,
        "system stopped"
    );
    eprintln!("stopped");
    outcome.map_err(CommandError::from)
}

async fn bind(name: &str, settings: &Settings) -> anyhow::Result<TcpListener> {
    let (host, port) = settings
        .address_of(name)
        .with_context(|| format!("unknown service `{name}`"))?;
    TcpListener::bind((host.as_str(), port)).await.with_context(|| {
        format!("cannot listen on {host}:{port} for {name}; is it already running? change services.{name}.port")
    })
}

async fn start_one(
    name: &str,
    listener: TcpListener,
    settings: &Settings,
    bus: &catalog::SharedBus,
    stop: &watch::Receiver<bool>,
    tasks: &mut JoinSet<std::io::Result<()>>,
) -> anyhow::Result<Started> {
    let address = listener.local_addr()?;
    let built = catalog::build(name, settings, bus).await?;
    let mut stop = stop.clone();
    let signal = async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    };
    tasks.spawn(built.service.run(listener, signal));
    Ok(Started {
        name: name.to_owned(),
        url: format!("http://{address}"),
        data: built.data,
    })
}

/// Polls each service's `/ready` until it answers 200 or the deadline passes.
async fn wait_until_ready(started: &[Started]) -> Vec<String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap_or_default();
    let deadline = Instant::now() + READY_DEADLINE;
    let mut states = Vec::with_capacity(started.len());
    for service in started {
        let url = format!("{}/ready", service.url);
        let state = loop {
            match client.get(&url).send().await {
                Ok(response) if response.status().is_success() => break "ready".to_owned(),
                Ok(response) if Instant::now() >= deadline => {
                    break format!("not ready ({})", response.status().as_u16());
                }
                Err(error) if Instant::now() >= deadline => break format!("not ready ({error})"),
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        states.push(state);
    }
    states
}

fn print_table(settings: &Settings, started: &[Started], states: &[String], elapsed: Duration) {
    let mode = match settings.database.backend {
        telar_sql::Backend::Sqlite => "embedded (SQLite)",
        telar_sql::Backend::Postgres => "distributed (PostgreSQL)",
    };
    let width = started
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(7)
        .max(7);
    let url_width = started
        .iter()
        .map(|s| s.url.len())
        .max()
        .unwrap_or(3)
        .max(3);
    let mut out = String::new();
    out.push_str(&format!(
        "\n  telar {} · {} · {mode} · ready in {} ms\n\n",
        env!("CARGO_PKG_VERSION"),
        settings.system,
        elapsed.as_millis()
    ));
    if let Some(gateway) = started.iter().find(|s| s.name == "gateway") {
        out.push_str(&format!("  Clients enter at {}\n\n", gateway.url));
    }
    out.push_str(&format!(
        "  {:width$}  {:url_width$}  {:9}  DOCS\n",
        "SERVICE", "URL", "STATE"
    ));
    for (service, state) in started.iter().zip(states) {
        out.push_str(&format!(
            "  {:width$}  {:url_width$}  {:9}  {}/docs\n",
            service.name, service.url, state, service.url
        ));
    }
    out.push('\n');
    for service in started {
        out.push_str(&format!("  {} data: {}\n", service.name, service.data));
    }
    out.push_str(
        "\n  /health /ready /metrics /openapi.json on every service · Ctrl-C drains and stops\n\n",
    );
    let _ = std::io::stderr().write_all(out.as_bytes());
}

/// Resolves on Ctrl-C or SIGTERM.
async fn stop_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
