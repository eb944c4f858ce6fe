use serde::{Deserialize, Serialize};

/// HTTP behaviour shared by every service (`[http]` in the config file).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KitConfig {
    /// Largest accepted request body; larger bodies get 413.
    pub body_limit_bytes: usize,
    /// Longest a handler may take; slower requests get 504.
    pub request_timeout_ms: u64,
    /// How long shutdown waits for in-flight requests before closing anyway.
    pub shutdown_grace_ms: u64,
    pub cors: CorsConfig,
}

impl Default for KitConfig {
    fn default() -> Self {
        KitConfig {
            body_limit_bytes: 1024 * 1024,
            request_timeout_ms: 30_000,
            shutdown_grace_ms: 10_000,
            cors: CorsConfig::default(),
        }
    }
}

/// Which browser origins may call the service. Empty: no cross-origin access.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Exact origins (`https://app.example.gov.co`) or `*` for any.
    pub allowed_origins: Vec<String>,
    pub max_age_secs: u64,
}

impl Default for CorsConfig {
    fn default() -> Self {
        CorsConfig {
            allowed_origins: Vec::new(),
            max_age_secs: 600,
        }
    }
}
