//! The binary's configuration: each crate's `Config`, composed. Layers: the built-in
//! `config/telar.toml`, then the `--config` file, then `TELAR_*` env vars (`__` nests).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use telar_audit::AuditConfig;
use telar_carpeta_hub_sim::HubSimConfig;
use telar_gateway::GatewayConfig;
use telar_identity::IdentityConfig;
use telar_kit::KitConfig;
use telar_notify::NotifyConfig;
use telar_sql::{Backend, DbConfig};
use telar_telemetry::TelemetryConfig;

/// The embedded default, compiled in so the binary runs anywhere without files.
pub const DEFAULT_TOML: &str = include_str!("../../../config/telar.toml");

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The system this process runs.
    pub system: String,
    pub telemetry: TelemetryConfig,
    pub http: KitConfig,
    pub database: DbConfig,
    pub bus: telar_bus::BusConfig,
    /// What Carpeta's services share.
    pub carpeta: CarpetaSettings,
    pub services: Services,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct CarpetaSettings {
    pub auth: telar_carpeta::shared::AuthConfig,
}

/// Every service this binary knows, each with where it listens and its own settings.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Services {
    pub gateway: ServiceEntry<GatewayConfig>,
    pub identity: ServiceEntry<IdentityConfig>,
    pub audit: ServiceEntry<AuditConfig>,
    pub notification: ServiceEntry<NotifyConfig>,
    #[serde(rename = "hub-sim")]
    pub hub_sim: ServiceEntry<HubSimConfig>,
    #[serde(rename = "hub-client")]
    pub hub_client: ServiceEntry<telar_carpeta::hub::HubClientConfig>,
    pub citizen: ServiceEntry<telar_carpeta::citizen::CitizenConfig>,
    pub iam: ServiceEntry<telar_carpeta::iam::IamConfig>,
    pub ingestion: ServiceEntry<telar_carpeta::ingestion::IngestionConfig>,
    pub metadata: ServiceEntry<telar_carpeta::metadata::MetadataConfig>,
    #[serde(rename = "read-models")]
    pub read_models: ServiceEntry<telar_carpeta::read_models::ReadModelsConfig>,
    pub signature: ServiceEntry<telar_carpeta::signature::SignatureConfig>,
    pub sharing: ServiceEntry<telar_carpeta::sharing::SharingConfig>,
    pub transfer: ServiceEntry<telar_carpeta::transfer::TransferConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceEntry<T> {
    /// Started by `telar up`.
    pub enabled: bool,
    pub host: String,
    /// 0 picks a free port.
    pub port: u16,
    pub settings: T,
}

impl<T: Default> Default for ServiceEntry<T> {
    fn default() -> Self {
        ServiceEntry {
            enabled: true,
            host: "127.0.0.1".to_owned(),
            port: 0,
            settings: T::default(),
        }
    }
}

/// Why the configuration cannot be used; every message names the key.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("config file {0} does not exist")]
    MissingFile(String),
    #[error("invalid config: {0}")]
    Parse(String),
    #[error("invalid config:\n  {}", .0.join("\n  "))]
    Invalid(Vec<String>),
}

impl Settings {
    /// Loads and validates the layered configuration.
    pub fn load(file: Option<&Path>) -> Result<Settings, Error> {
        let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(file) = file {
            if !file.exists() {
                return Err(Error::MissingFile(file.display().to_string()));
            }
            figment = figment.merge(Toml::file(file));
        }
        let env = Env::prefixed("TELAR_")
            .split("__")
            // Keys keep their original case here: compare without it. `TELAR_CONFIG` names
            // the file and `TELAR_IDENTITY_KEYS_SECRET` is read where the keys are opened
            // (identity, `telar token`, `telar demo`): neither is a config key.
            .filter(|key| {
                let key = key.as_str().to_ascii_lowercase();
                key != "config" && key != "identity_keys_secret" && !key.starts_with("test_")
            })
            .map(|key| env_key_to_config_key(key.as_str()).into());
        figment = figment.merge(env);
        let settings: Settings = figment.extract().map_err(|error| {
            Error::Parse(
                error
                    .into_iter()
                    .map(|e| describe(&e))
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks what types alone cannot; reports every problem at once.
    pub fn validate(&self) -> Result<(), Error> {
        let mut problems = Vec::new();
        if self.system != "carpeta" {
            problems.push(format!(
                "system: `{}` is not a known system (known: carpeta)",
                self.system
            ));
        }
        if let Err(reason) = self.telemetry.validate() {
            problems.push(reason);
        }
        if self.http.body_limit_bytes == 0 {
            problems.push("http.body_limit_bytes: must be greater than 0".into());
        }
        if self.http.request_timeout_ms == 0 {
            problems.push("http.request_timeout_ms: must be greater than 0".into());
        }
        for (index, origin) in self.http.cors.allowed_origins.iter().enumerate() {
            if !is_origin(origin) {
                problems.push(format!(
                    "http.cors.allowed_origins[{index}]: `{origin}` is not an origin (scheme://host[:port]) or \"*\""
                ));
            }
        }
        if self.database.backend == Backend::Postgres
            && !(self.database.postgres.url.starts_with("postgres://")
                || self.database.postgres.url.starts_with("postgresql://"))
        {
            problems
                .push("database.postgres.url: must start with postgres:// or postgresql://".into());
        }
        let hub = &self.services.hub_sim;
        match &hub.settings.control_token {
            Some(token) if token.is_empty() => problems.push(
                "services.hub-sim.settings.control_token: must not be empty (leave it unset for none)".into(),
            ),
            None if hub.host.parse::<IpAddr>().is_ok_and(|ip| !ip.is_loopback()) => problems.push(
                "services.hub-sim.settings.control_token: required when services.hub-sim.host is not loopback \
                 (the control API can wipe the hub's state)"
                    .into(),
            ),
            _ => {}
        }
        let mut ports: BTreeMap<u16, &str> = BTreeMap::new();
        for (name, host, port, enabled) in self.service_addresses() {
            if host.parse::<IpAddr>().is_err() {
                problems.push(format!(
                    "services.{name}.host: `{host}` is not an IP address"
                ));
            }
            if enabled
                && port != 0
                && let Some(other) = ports.insert(port, name)
            {
                problems.push(format!(
                    "services.{name}.port: {port} is already used by services.{other}"
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid(problems))
        }
    }

    /// (name, host, port, enabled) of every known service.
    pub fn service_addresses(&self) -> Vec<(&'static str, &str, u16, bool)> {
        let Services {
            gateway,
            identity,
            audit,
            notification,
            hub_sim,
            hub_client,
            citizen,
            iam,
            ingestion,
            metadata,
            read_models,
            signature,
            sharing,
            transfer,
        } = &self.services;
        vec![
            (
                "identity",
                identity.host.as_str(),
                identity.port,
                identity.enabled,
            ),
            ("audit", audit.host.as_str(), audit.port, audit.enabled),
            (
                "notification",
                notification.host.as_str(),
                notification.port,
                notification.enabled,
            ),
            (
                "hub-sim",
                hub_sim.host.as_str(),
                hub_sim.port,
                hub_sim.enabled,
            ),
            (
                "hub-client",
                hub_client.host.as_str(),
                hub_client.port,
                hub_client.enabled,
            ),
            (
                "citizen",
                citizen.host.as_str(),
                citizen.port,
                citizen.enabled,
            ),
            ("iam", iam.host.as_str(), iam.port, iam.enabled),
            (
                "ingestion",
                ingestion.host.as_str(),
                ingestion.port,
                ingestion.enabled,
            ),
            (
                "metadata",
                metadata.host.as_str(),
                metadata.port,
                metadata.enabled,
            ),
            (
                "read-models",
                read_models.host.as_str(),
                read_models.port,
                read_models.enabled,
            ),
            (
                "signature",
                signature.host.as_str(),
                signature.port,
                signature.enabled,
            ),
            (
                "sharing",
                sharing.host.as_str(),
                sharing.port,
                sharing.enabled,
            ),
            (
                "transfer",
                transfer.host.as_str(),
                transfer.port,
                transfer.enabled,
            ),
            (
                "gateway",
                gateway.host.as_str(),
                gateway.port,
                gateway.enabled,
            ),
        ]
    }

    pub fn enabled_services(&self) -> Vec<String> {
        self.service_addresses()
            .into_iter()
            .filter(|(_, _, _, enabled)| *enabled)
            .map(|(name, ..)| name.to_owned())
            .collect()
    }

    /// Records where `service` really listens (after binding port 0).
    pub fn set_port(&mut self, service: &str, port: u16) {
        match service {
            "gateway" => self.services.gateway.port = port,
            "identity" => self.services.identity.port = port,
            "audit" => self.services.audit.port = port,
            "notification" => self.services.notification.port = port,
            "hub-sim" => self.services.hub_sim.port = port,
            "hub-client" => self.services.hub_client.port = port,
            "citizen" => self.services.citizen.port = port,
            "iam" => self.services.iam.port = port,
            "ingestion" => self.services.ingestion.port = port,
            "metadata" => self.services.metadata.port = port,
            "read-models" => self.services.read_models.port = port,
            "signature" => self.services.signature.port = port,
            "sharing" => self.services.sharing.port = port,
            "transfer" => self.services.transfer.port = port,
            _ => {}
        }
    }

    /// `service://NAME/path` → `http://HOST:PORT/path` of that service; other URLs unchanged.
    pub fn resolve_service_url(&self, url: &str) -> Result<String, String> {
        let Some(rest) = url.strip_prefix("service://") else {
            return Ok(url.to_owned());
        };
        let (name, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (host, port) = self
            .address_of(name)
            .ok_or_else(|| format!("`{url}`: no service named `{name}`"))?;
        Ok(format!("http://{host}:{port}{path}"))
    }

    pub fn address_of(&self, service: &str) -> Option<(String, u16)> {
        self.service_addresses()
            .into_iter()
            .find(|(name, ..)| *name == service)
            .map(|(_, host, port, _)| (host.to_owned(), port))
    }

    /// The config as JSON with secrets replaced by `***`: passwords inside URLs and any key
    /// whose name says it is secret.
    pub fn redacted(&self) -> Value {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        redact(&mut value, "");
        drop_nulls(&mut value);
        value
    }

    pub fn source_description(&self, file: Option<&Path>) -> String {
        match file {
            Some(file) => format!("defaults + {} + TELAR_* env", file.display()),
            None => "defaults + TELAR_* env".to_owned(),
        }
    }
}

/// `http.request_timeout_ms: invalid type: found string "soon", expected u64 (from TELAR_ env)`.
fn describe(error: &figment::Error) -> String {
    let source = error
        .metadata
        .as_ref()
        .map(|m| match &m.source {
            Some(source) => format!(" (from {source})"),
            None => format!(" (from {})", m.name),
        })
        .unwrap_or_default();
    if error.path.is_empty() {
        format!("{}{source}", error.kind)
    } else {
        format!("{}: {}{source}", error.path.join("."), error.kind)
    }
}

/// `SERVICES__HUB_SIM__PORT` → `services.hub-sim.port`: env names cannot hold `-`, service
/// names do.
fn env_key_to_config_key(key: &str) -> String {
    let lower = key.to_ascii_lowercase();
    let mut segments: Vec<String> = lower.split('.').map(str::to_owned).collect();
    if segments.len() > 1 && segments[0] == "services" {
        segments[1] = segments[1].replace('_', "-");
    }
    segments.join(".")
}

fn is_origin(origin: &str) -> bool {
    if origin == "*" {
        return true;
    }
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && !rest.contains('/')
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
}

/// Unset optional keys are left out (TOML has no null).
fn drop_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, child| !child.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

fn redact(value: &mut Value, key: &str) {
    let secret_name = ["password", "secret", "token", "api_key", "private_key"]
        .iter()
        .any(|word| key.to_ascii_lowercase().contains(word));
    match value {
        Value::Object(map) => {
            for (child_key, child) in map.iter_mut() {
                redact(child, child_key);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| redact(item, key)),
        Value::String(text) if secret_name => *text = "***".to_owned(),
        Value::String(text) => {
            if let Some(clean) = redact_url_password(text) {
                *text = clean;
            }
        }
        _ => {}
    }
}

/// `scheme://user:pass@host` → `scheme://user:***@host`, and `?password=x` → `?password=***`.
fn redact_url_password(text: &str) -> Option<String> {
    let userinfo_redacted = redact_userinfo(text);
    let base = userinfo_redacted.as_deref().unwrap_or(text);
    let query_redacted = redact_query_password(base);
    query_redacted.or(userinfo_redacted)
}

fn redact_query_password(text: &str) -> Option<String> {
    let (head, query) = text.split_once('?')?;
    let mut changed = false;
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                changed = true;
                format!("{key}=***")
            }
            _ => pair.to_owned(),
        })
        .collect();
    changed.then(|| format!("{head}?{}", pairs.join("&")))
}

fn redact_userinfo(text: &str) -> Option<String> {
    let (scheme, rest) = text.split_once("://")?;
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let (userinfo, host) = authority.rsplit_once('@')?;
    let (user, _password) = userinfo.split_once(':')?;
    Some(format!(
        "{scheme}://{user}:***@{host}{}",
        &rest[authority_end..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_default_is_valid_and_complete() {
        let settings = Settings::load(None).expect("defaults load");
        assert_eq!(settings.system, "carpeta");
        assert_eq!(settings.services.hub_sim.port, 8019);
        assert_eq!(settings.database.backend, Backend::Sqlite);
    }

    #[test]
    fn url_passwords_and_secret_keys_are_redacted() {
        let mut settings = Settings::load(None).expect("defaults");
        settings.database.postgres.url = "postgres://telar:s3cr3t@db:5432/telar".into();
        settings.services.hub_sim.settings.control_token = Some("tok-123".into());
        let text = settings.redacted().to_string();
        assert!(
            !text.contains("s3cr3t") && !text.contains("tok-123"),
            "{text}"
        );
        assert!(text.contains("postgres://telar:***@db:5432/telar"));
        assert_eq!(
            redact_url_password("postgres://db/telar?user=u&password=p4ss&sslmode=require")
                .as_deref(),
            Some("postgres://db/telar?user=u&password=***&sslmode=require")
        );
    }

    #[test]
    fn origins_are_checked() {
        assert!(is_origin("https://app.example.gov.co"));
        assert!(is_origin("http://127.0.0.1:3000"));
        assert!(is_origin("*"));
        assert!(!is_origin("app.example.gov.co"));
        assert!(!is_origin("https://app.example/path"));
    }
}
