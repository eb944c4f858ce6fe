//! Observability for telar processes: JSON log lines that carry the service, request and trace
//! ids of the span they happen in; a process-wide Prometheus recorder; OTLP span export when
//! configured (off by default, never blocking the caller when the collector is down).

mod catalog;
mod config;
mod json_log;
mod line;
mod prometheus;
mod propagate;
mod trace;

pub use catalog::{CATALOG, Kind, MetricInfo};
pub use config::{LogConfig, OtlpConfig, TelemetryConfig};
pub use json_log::{JsonLogLayer, LogSink};
pub use line::LogLine;
pub use prometheus::{install_metrics, render_metrics};
pub use propagate::{hop, in_hop, in_trace, outgoing, span_traceparent};
pub use trace::{TraceParent, current_trace_id};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Errors while setting telemetry up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid log filter `{filter}`: {reason}")]
    Filter { filter: String, reason: String },
    #[error("otlp exporter: {0}")]
    Otlp(String),
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
}

static OTLP_ACTIVE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether spans are exported over OTLP in this process (trace ids then come from the exporter).
pub fn otlp_active() -> bool {
    OTLP_ACTIVE.load(std::sync::atomic::Ordering::Relaxed)
}

/// Keeps the trace exporter alive; dropping it flushes what is buffered (bounded by the
/// exporter timeout) and stops the export thread.
#[must_use = "dropping the guard stops span export"]
pub struct TelemetryGuard {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
    logs: Option<std::sync::Arc<json_log::StdoutWriter>>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
        if let Some(logs) = self.logs.take() {
            logs.flush();
        }
    }
}

/// Installs the global subscriber (JSON logs to stdout, optional OTLP export) and the
/// Prometheus recorder. Call once, at the start of `main`.
pub fn init(config: &TelemetryConfig, process: &str) -> Result<TelemetryGuard, Error> {
    install_metrics();
    let filter = EnvFilter::try_new(&config.log.level).map_err(|e| Error::Filter {
        filter: config.log.level.clone(),
        reason: e.to_string(),
    })?;
    let json = JsonLogLayer::new(LogSink::Stdout);
    let writer = json.stdout_writer();
    let sink = json.sink();
    // One global filter (not a per-layer one): cheaper on the hot path, and spans exported over
    // OTLP follow the same level as logs.
    let (otel_layer, provider) = if config.otlp.enabled {
        let (layer, provider) = trace::otlp_layer(&config.otlp, process)?;
        (Some(layer), Some(provider))
    } else {
        (None, None)
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(json)
        .with(otel_layer)
        .try_init()
        .map_err(|_| Error::AlreadyInstalled)?;
    line::install(sink);
    OTLP_ACTIVE.store(provider.is_some(), std::sync::atomic::Ordering::Relaxed);
    Ok(TelemetryGuard {
        provider,
        logs: writer,
    })
}
