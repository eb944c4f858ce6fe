use serde::{Deserialize, Serialize};

/// hub-sim settings (`[services.hub-sim.settings]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubSimConfig {
    /// Browser origins the hub accepts; a request with any other `Origin` header gets 500, as on
    /// the real hub. Server-to-server calls send no `Origin`.
    pub allowed_origins: Vec<String>,
    /// When set, the control API requires header `x-control-token` with this value. Required
    /// (by `telar config check`) when hub-sim listens on a non-loopback address.
    pub control_token: Option<String>,
}

impl Default for HubSimConfig {
    fn default() -> Self {
        HubSimConfig {
            allowed_origins: vec!["https://govcarpeta-apis-4905ff3c005b.herokuapp.com".to_owned()],
            control_token: None,
        }
    }
}
