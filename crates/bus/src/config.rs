use serde::{Deserialize, Serialize};

use crate::{Bus, EmbeddedBus, EmbeddedConfig, Result};

/// Which bus a process uses (`[bus]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusConfig {
    pub backend: BusBackend,
    pub embedded: EmbeddedConfig,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BusBackend {
    /// The SQLite log in `bus.embedded.path`.
    #[default]
    Embedded,
}

impl BusConfig {
    /// Opens the configured backend.
    pub async fn open(&self) -> Result<Bus> {
        match self.backend {
            BusBackend::Embedded => Ok(Bus::new(EmbeddedBus::open(&self.embedded).await?)),
        }
    }
}
