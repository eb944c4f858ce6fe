use serde::{Deserialize, Serialize};

/// Logging and tracing settings (`[telemetry]` in the config file).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    pub log: LogConfig,
    pub otlp: OtlpConfig,
}

/// JSON log lines on stdout.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// An `EnvFilter` directive, e.g. `info` or `info,telar_kit=debug`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".to_owned(),
        }
    }
}

/// OTLP/HTTP span export. Off by default.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpConfig {
    pub enabled: bool,
    /// Full traces endpoint, e.g. `http://127.0.0.1:4318/v1/traces`.
    pub endpoint: String,
    /// Per-export timeout; a collector that does not answer costs at most this, off the
    /// request path.
    pub timeout_ms: u64,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        OtlpConfig {
            enabled: false,
            endpoint: "http://127.0.0.1:4318/v1/traces".to_owned(),
            timeout_ms: 3_000,
        }
    }
}

impl TelemetryConfig {
    /// Checks the log filter and the OTLP endpoint; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        tracing_subscriber::EnvFilter::try_new(&self.log.level).map_err(|e| {
            format!(
                "telemetry.log.level: `{}` is not a valid filter: {e}",
                self.log.level
            )
        })?;
        if self.otlp.enabled
            && !(self.otlp.endpoint.starts_with("http://")
                || self.otlp.endpoint.starts_with("https://"))
        {
            return Err(format!(
                "telemetry.otlp.endpoint: `{}` must be an http(s) URL",
                self.otlp.endpoint
            ));
        }
        Ok(())
    }
}
