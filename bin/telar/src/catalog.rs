//! The services this binary can run, by name: how each is built from the settings.

use anyhow::{Context, bail};
use telar_kit::Service;
use telar_sql::Db;

use crate::settings::Settings;

/// Every service `telar serve` accepts, in start order.
pub const NAMES: &[&str] = &[telar_carpeta_hub_sim::NAME];

/// A built service and where its data lives.
pub struct Built {
    pub service: Service,
    pub data: String,
}

pub async fn build(name: &str, settings: &Settings) -> anyhow::Result<Built> {
    match name {
        telar_carpeta_hub_sim::NAME => {
            let db = Db::connect(&settings.database, name)
                .await
                .with_context(|| format!("opening the database of {name}"))?;
            let data = db.location().to_owned();
            let service = telar_carpeta_hub_sim::build(
                db,
                settings.services.hub_sim.settings.clone(),
                settings.http.clone(),
            )
            .await
            .with_context(|| format!("preparing {name}"))?;
            Ok(Built { service, data })
        }
        other => bail!("unknown service `{other}`"),
    }
}
