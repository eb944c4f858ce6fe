//! The services this binary can run, by name: how each is built from the settings (Carpeta's
//! in `carpeta`).

mod carpeta;

use std::future::Future;
use std::pin::Pin;

use anyhow::{Context, bail};
use telar_gateway::Gateway;
use telar_kit::Service;
use telar_sql::Db;
use tokio::net::TcpListener;

use crate::settings::Settings;

/// Every service `telar serve` accepts, in start order (the gateway last: it fronts the rest).
pub const NAMES: &[&str] = &[
    telar_identity::NAME,
    telar_audit::NAME,
    telar_notify::NAME,
    telar_carpeta_hub_sim::NAME,
    telar_carpeta::iam::NAME,
    telar_carpeta::hub::NAME,
    telar_carpeta::citizen::NAME,
    telar_carpeta::ingestion::NAME,
    telar_carpeta::metadata::NAME,
    telar_carpeta::read_models::NAME,
    telar_carpeta::signature::NAME,
    telar_carpeta::sharing::NAME,
    telar_carpeta::transfer::NAME,
    telar_gateway::NAME,
];

/// The process's bus, opened by the first service that needs it and shared by the rest (one
/// embedded log per process).
#[derive(Default)]
pub struct SharedBus(tokio::sync::OnceCell<telar_bus::Bus>);

impl SharedBus {
    pub async fn get(&self, settings: &Settings) -> anyhow::Result<&telar_bus::Bus> {
        self.0
            .get_or_try_init(|| async {
                settings
                    .bus
                    .open()
                    .await
                    .with_context(|| format!("opening the bus at {}", settings.bus.location()))
            })
            .await
    }
}

/// A service ready to serve: a kit service, or the gateway (its own HTTP server).
pub enum Runnable {
    Kit(Box<Service>),
    /// A kit service with bus consumers, stopped (in-flight deliveries settled) after it drains.
    Consuming(Box<Service>, Vec<telar_bus::Subscription>),
    Gateway(Gateway),
    /// A Carpeta service: kit service, background tasks and subscriptions.
    App(Box<telar_carpeta::shared::App>),
}

type Serving = Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>>;

impl Runnable {
    pub fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Serving {
        match self {
            Runnable::Kit(service) => Box::pin(service.run(listener, shutdown)),
            Runnable::Consuming(service, subscriptions) => Box::pin(async move {
                let served = service.run(listener, shutdown).await;
                for subscription in subscriptions {
                    subscription.stop().await;
                }
                served
            }),
            Runnable::Gateway(gateway) => Box::pin(gateway.run(listener, shutdown)),
            Runnable::App(app) => Box::pin(app.run(listener, shutdown)),
        }
    }
}

/// Upstream instances and the JWKS URL may name a service of this system (`service://identity`):
/// it becomes that service's address here.
fn resolve_gateway_urls(
    config: &mut telar_gateway::GatewayConfig,
    settings: &Settings,
) -> Result<(), String> {
    for upstream in config.upstreams.values_mut() {
        for instance in &mut upstream.instances {
            *instance = settings.resolve_service_url(instance)?;
        }
    }
    if let Some(url) = &config.auth.jwks_url {
        config.auth.jwks_url = Some(settings.resolve_service_url(url)?);
    }
    Ok(())
}

/// A relative `data/...` path of the defaults follows the SQLite directory when it was moved
/// (`database.sqlite.dir`), so one setting relocates all local state.
fn sqlite_relative(settings: &Settings, path: &str) -> String {
    let dir = &settings.database.sqlite.dir;
    match path.strip_prefix("data/") {
        Some(rest) if dir.as_path() != std::path::Path::new("data") => {
            dir.join(rest).display().to_string()
        }
        _ => path.to_owned(),
    }
}

/// A built service and where its data lives.
pub struct Built {
    pub service: Runnable,
    pub data: String,
}

impl Built {
    fn app(app: telar_carpeta::shared::App, data: String) -> Self {
        Built {
            service: Runnable::App(Box::new(app)),
            data,
        }
    }
}

async fn database(name: &str, settings: &Settings) -> anyhow::Result<Db> {
    Db::connect(&settings.database, name)
        .await
        .with_context(|| format!("opening the database of {name}"))
}

pub async fn build(name: &str, settings: &Settings, bus: &SharedBus) -> anyhow::Result<Built> {
    match name {
        telar_audit::NAME => {
            let db = database(name, settings).await?;
            let data = db.location().to_owned();
            let (service, log) = telar_audit::build(db, settings.http.clone())
                .await
                .with_context(|| format!("preparing {name}"))?;
            let topics = &settings.services.audit.settings.topics;
            let subscription = telar_audit::subscribe(bus.get(settings).await?, &log, topics)
                .await
                .with_context(|| format!("subscribing {name} to {topics:?}"))?;
            Ok(Built {
                service: Runnable::Consuming(Box::new(service), vec![subscription]),
                data,
            })
        }
        telar_carpeta_hub_sim::NAME => {
            let db = database(name, settings).await?;
            let data = db.location().to_owned();
            let service = telar_carpeta_hub_sim::build(
                db,
                settings.services.hub_sim.settings.clone(),
                settings.http.clone(),
            )
            .await
            .with_context(|| format!("preparing {name}"))?;
            Ok(Built {
                service: Runnable::Kit(Box::new(service)),
                data,
            })
        }
        telar_notify::NAME => {
            let db = database(name, settings).await?;
            let data = format!(
                "{} · mail: {}",
                db.location(),
                settings.services.notification.settings.email.mailbox_dir
            );
            let notification = telar_notify::build(
                db,
                settings.services.notification.settings.clone(),
                settings.http.clone(),
            )
            .await
            .with_context(|| format!("preparing {name}"))?;
            if let Some(unseal) = carpeta::notification_unseal(settings, bus)? {
                notification.unseal_with(unseal);
            }
            let subscription = notification
                .subscribe(bus.get(settings).await?)
                .await
                .with_context(|| format!("subscribing {name}"))?;
            Ok(Built {
                service: Runnable::Consuming(Box::new(notification.service), vec![subscription]),
                data,
            })
        }
        telar_identity::NAME => {
            let db = database(name, settings).await?;
            let data = db.location().to_owned();
            let mut config = settings.services.identity.settings.clone();
            if config.keys_secret.is_none() {
                config.keys_secret = std::env::var("TELAR_IDENTITY_KEYS_SECRET").ok();
            }
            let (service, accounts) = telar_identity::build(db, config, settings.http.clone())
                .await
                .with_context(|| format!("preparing {name}"))?;
            let auth = &settings.carpeta.auth;
            if !auth.client_secret.is_empty() {
                accounts
                    .ensure_client(telar_identity::NewAccount {
                        name: auth.client_id.clone(),
                        secret: auth.client_secret.clone(),
                        roles: vec![telar_carpeta::shared::SERVICE_ROLE.to_owned()],
                        permissions: Vec::new(),
                        org_id: None,
                    })
                    .await
                    .with_context(|| format!("creating the account {}", auth.client_id))?;
            }
            Ok(Built {
                service: Runnable::Kit(Box::new(service)),
                data,
            })
        }
        telar_gateway::NAME => {
            let mut config = settings.services.gateway.settings.clone();
            resolve_gateway_urls(&mut config, settings)
                .map_err(|e| anyhow::anyhow!("services.gateway.settings: {e}"))?;
            let verifier = telar_gateway::verifier(&config.auth);
            let gateway = Gateway::build(config, settings.http.clone(), verifier)
                .await
                .map_err(|e| anyhow::anyhow!("preparing {name}: {e}"))?;
            Ok(Built {
                service: Runnable::Gateway(gateway),
                data: "none (routes and limits in memory)".into(),
            })
        }
        other => match carpeta::build(other, settings, bus).await? {
            Some(built) => Ok(built),
            None => bail!("unknown service `{other}`"),
        },
    }
}
