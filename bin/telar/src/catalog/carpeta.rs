//! How each Carpeta service is built from the settings: its database, the process's bus, the
//! token verifier, the services' own token source and its URLs resolved (`service://NAME`).

use anyhow::bail;
use telar_carpeta::shared::{App, PiiKeys, ServiceClient, TokenSource};
use telar_carpeta::{
    citizen, hub, iam, ingestion, metadata, read_models, sharing, signature, transfer,
};
use telar_sql::Db;

use super::{Built, SharedBus, sqlite_relative};
use crate::settings::Settings;

/// What building one service needs.
struct Ctx<'a> {
    name: &'a str,
    settings: &'a Settings,
    bus: &'a SharedBus,
}

impl Ctx<'_> {
    async fn db(&self) -> anyhow::Result<Db> {
        super::database(self.name, self.settings).await
    }

    async fn bus(&self) -> anyhow::Result<telar_bus::Bus> {
        Ok(self.bus.get(self.settings).await?.clone())
    }

    fn kit(&self) -> telar_kit::KitConfig {
        self.settings.http.clone()
    }

    /// Resolves a `service://NAME` URL of this service's settings in place.
    fn url(&self, url: &mut String, key: &str) -> anyhow::Result<()> {
        *url = self
            .settings
            .resolve_service_url(url)
            .map_err(|e| anyhow::anyhow!("services.{}.settings.{key}: {e}", self.name))?;
        Ok(())
    }

    fn verifier(&self) -> anyhow::Result<telar_auth::Verifier> {
        let auth = &self.settings.carpeta.auth;
        let jwks_url = self
            .settings
            .resolve_service_url(&auth.jwks_url)
            .map_err(|e| anyhow::anyhow!("carpeta.auth.jwks_url: {e}"))?;
        Ok(telar_auth::Verifier::new(telar_auth::VerifierConfig {
            jwks_url: Some(jwks_url),
            ..telar_auth::VerifierConfig::new(auth.issuer.clone(), auth.audience.clone())
        }))
    }

    /// The services' own token source (client credentials at the identity service).
    fn tokens(&self) -> anyhow::Result<TokenSource> {
        let auth = &self.settings.carpeta.auth;
        if auth.client_secret.is_empty() {
            bail!(
                "carpeta.auth.client_secret is not set: services in separate processes need it \
                 (TELAR_CARPETA__AUTH__CLIENT_SECRET), and the identity service must run with the same value"
            );
        }
        let token_url = self
            .settings
            .resolve_service_url(&auth.token_url)
            .map_err(|e| anyhow::anyhow!("carpeta.auth.token_url: {e}"))?;
        Ok(TokenSource::new(
            &token_url,
            &auth.client_id,
            &auth.client_secret,
        ))
    }

    fn built(&self, app: Result<App, String>, data: String) -> anyhow::Result<Built> {
        let app = app.map_err(|e| anyhow::anyhow!("preparing {}: {e}", self.name))?;
        Ok(Built::app(app, data))
    }
}

/// Builds the Carpeta service `name` (`None`: not one of them).
pub async fn build(
    name: &str,
    settings: &Settings,
    bus: &SharedBus,
) -> anyhow::Result<Option<Built>> {
    let cx = Ctx {
        name,
        settings,
        bus,
    };
    let services = &settings.services;
    let built = match name {
        hub::NAME => {
            let mut config = services.hub_client.settings.clone();
            cx.url(&mut config.hub_url, "hub_url")?;
            cx.url(&mut config.operator.transfer_url, "operator.transfer_url")?;
            cx.url(&mut config.operator.confirm_url, "operator.confirm_url")?;
            let db = cx.db().await?;
            let data = db.location().to_owned();
            let app = hub::build(db, cx.bus().await?, config, cx.verifier()?, cx.kit())
                .await
                .map(|(app, _client)| app);
            cx.built(app, data)?
        }
        citizen::NAME => {
            let mut config = services.citizen.settings.clone();
            cx.url(&mut config.hub_client_url, "hub_client_url")?;
            let db = cx.db().await?;
            let data = db.location().to_owned();
            let app = citizen::build(
                db,
                cx.bus().await?,
                config,
                cx.verifier()?,
                cx.tokens()?,
                cx.kit(),
            )
            .await;
            cx.built(app, data)?
        }
        iam::NAME => {
            let mut config = services.iam.settings.clone();
            let data = if config.policies_dir.is_empty() {
                config.builtin_dir = sqlite_relative(settings, &config.builtin_dir);
                format!("built-in policies in {}", config.builtin_dir)
            } else {
                format!("policies in {}", config.policies_dir)
            };
            cx.built(iam::build(&config, cx.verifier()?, cx.kit()), data)?
        }
        ingestion::NAME => {
            let mut config = services.ingestion.settings.clone();
            cx.url(&mut config.iam_url, "iam_url")?;
            cx.url(&mut config.objects.public_url, "objects.public_url")?;
            config.objects.dir = sqlite_relative(settings, &config.objects.dir);
            if config.objects.url_secret.is_empty() {
                tracing::warn!(
                    "services.ingestion.settings.objects.url_secret is empty: a random one is used, so links die with this process"
                );
                config.objects.url_secret = hex::encode(rand::random::<[u8; 24]>());
            }
            let db = cx.db().await?;
            let data = format!("{} · files: {}", db.location(), config.objects.dir);
            let app = ingestion::build(
                db,
                cx.bus().await?,
                config,
                cx.verifier()?,
                cx.tokens()?,
                cx.kit(),
            )
            .await;
            cx.built(app, data)?
        }
        metadata::NAME => {
            let mut config = services.metadata.settings.clone();
            cx.url(&mut config.iam_url, "iam_url")?;
            config.index_dir = sqlite_relative(settings, &config.index_dir);
            let db = cx.db().await?;
            let data = format!("{} · index: {}", db.location(), config.index_dir);
            let app = metadata::build(
                db,
                cx.bus().await?,
                config,
                cx.verifier()?,
                cx.tokens()?,
                cx.kit(),
            )
            .await;
            cx.built(app, data)?
        }
        read_models::NAME => {
            let mut config = services.read_models.settings.clone();
            cx.url(&mut config.citizen_url, "citizen_url")?;
            let db = cx.db().await?;
            let data = db.location().to_owned();
            let app = read_models::build(
                db,
                cx.bus().await?,
                config,
                cx.verifier()?,
                cx.tokens()?,
                cx.kit(),
            )
            .await;
            cx.built(app, data)?
        }
        signature::NAME => {
            let mut config = services.signature.settings.clone();
            cx.url(&mut config.ingestion_url, "ingestion_url")?;
            cx.url(&mut config.hub_client_url, "hub_client_url")?;
            cx.url(&mut config.citizen_url, "citizen_url")?;
            cx.url(&mut config.iam_url, "iam_url")?;
            let db = cx.db().await?;
            let data = db.location().to_owned();
            let app = signature::build(
                db,
                cx.bus().await?,
                config,
                cx.verifier()?,
                cx.tokens()?,
                cx.kit(),
            )
            .await;
            cx.built(app, data)?
        }
        sharing::NAME => {
            let mut config = services.sharing.settings.clone();
            cx.url(&mut config.public_url, "public_url")?;
            cx.url(&mut config.ingestion_url, "ingestion_url")?;
            cx.url(&mut config.iam_url, "iam_url")?;
            let db = cx.db().await?;
            let data = db.location().to_owned();
            let app = sharing::build(
                db,
                cx.bus().await?,
                config,
                cx.verifier()?,
                cx.tokens()?,
                cx.kit(),
            )
            .await;
            cx.built(app, data)?
        }
        transfer::NAME => {
            let mut config = services.transfer.settings.clone();
            cx.url(&mut config.public_url, "public_url")?;
            cx.url(&mut config.hub_client_url, "hub_client_url")?;
            cx.url(&mut config.citizen_url, "citizen_url")?;
            cx.url(&mut config.ingestion_url, "ingestion_url")?;
            let db = cx.db().await?;
            let data = db.location().to_owned();
            let app = transfer::build(
                db,
                cx.bus().await?,
                config,
                cx.verifier()?,
                cx.tokens()?,
                cx.kit(),
            )
            .await;
            cx.built(app, data)?
        }
        _ => return Ok(None),
    };
    Ok(Some(built))
}

/// Opens the sealed personal fields of Carpeta's events for the notification service (keys
/// from the citizen service). `None` without the services' client secret (no Carpeta here).
pub(super) fn notification_unseal(
    settings: &Settings,
    bus: &SharedBus,
) -> anyhow::Result<Option<std::sync::Arc<dyn telar_notify::Unseal>>> {
    if settings.carpeta.auth.client_secret.is_empty() {
        return Ok(None);
    }
    let cx = Ctx {
        name: telar_notify::NAME,
        settings,
        bus,
    };
    let mut citizen_url = "service://citizen".to_owned();
    cx.url(&mut citizen_url, "citizen_url")?;
    let keys = PiiKeys::new(ServiceClient::new(
        &citizen_url,
        std::time::Duration::from_secs(10),
        cx.tokens()?,
    ));
    Ok(Some(std::sync::Arc::new(Unsealer(keys))))
}

struct Unsealer(PiiKeys);

impl telar_notify::Unseal for Unsealer {
    fn unseal<'a>(
        &'a self,
        data: &'a mut serde_json::Value,
    ) -> futures::future::BoxFuture<'a, Result<(), String>> {
        Box::pin(self.0.open(data))
    }
}
