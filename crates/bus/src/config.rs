use serde::{Deserialize, Serialize};
use telar_sql::{Db, DbConfig};

use crate::{
    Bus, EmbeddedBus, EmbeddedConfig, Error, NatsBus, NatsConfig, RabbitBus, RabbitConfig, Result,
};

/// Which bus a process uses (`[bus]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusConfig {
    pub backend: BusBackend,
    pub embedded: EmbeddedConfig,
    pub nats: NatsConfig,
    pub rabbitmq: RabbitConfig,
    /// Where the broker backends (NATS, RabbitMQ) keep dead letters and attempt histories:
    /// the `bus_dead_letters` database (a SQLite file, or a schema in PostgreSQL). The embedded
    /// bus keeps them in its own log.
    pub dead_letters: DbConfig,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BusBackend {
    /// The SQLite log in `bus.embedded.path`.
    #[default]
    Embedded,
    /// NATS JetStream at `bus.nats.url`.
    Nats,
    /// RabbitMQ at `bus.rabbitmq.url`.
    Rabbitmq,
}

impl BusBackend {
    pub fn as_str(self) -> &'static str {
        match self {
            BusBackend::Embedded => "embedded",
            BusBackend::Nats => "nats",
            BusBackend::Rabbitmq => "rabbitmq",
        }
    }
}

impl BusConfig {
    /// Opens the configured backend.
    pub async fn open(&self) -> Result<Bus> {
        match self.backend {
            BusBackend::Embedded => Ok(Bus::new(EmbeddedBus::open(&self.embedded).await?)),
            BusBackend::Nats => Ok(Bus::new(
                NatsBus::open(&self.nats, self.dead_letter_db().await?).await?,
            )),
            BusBackend::Rabbitmq => Ok(Bus::new(
                RabbitBus::open(&self.rabbitmq, self.dead_letter_db().await?).await?,
            )),
        }
    }

    /// Where this configuration's bus lives, for messages.
    pub fn location(&self) -> String {
        match self.backend {
            BusBackend::Embedded => self.embedded.path.display().to_string(),
            BusBackend::Nats => self.nats.url.clone(),
            BusBackend::Rabbitmq => redact(&self.rabbitmq.url),
        }
    }

    async fn dead_letter_db(&self) -> Result<Db> {
        Db::connect(&self.dead_letters, "bus_dead_letters")
            .await
            .map_err(Error::from)
    }
}

/// The URL without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}
