//! A telar service as an AWS Lambda function. The service is the same kit `Service` that
//! `telar serve` runs; here its router is handed to `lambda_http`, which turns API Gateway (HTTP
//! and REST APIs) and ALB events into requests. State lives in PostgreSQL (a Lambda's disk is
//! not kept), configured from the environment:
//!
//! - `TELAR_DATABASE__POSTGRES__URL` (required), `TELAR_DATABASE__POSTGRES__SCHEMA_PREFIX`
//! - `TELAR_HTTP__REQUEST_TIMEOUT_MS` (default 30000; keep it under the function's timeout)

use telar_kit::KitConfig;
use telar_sql::{Db, PostgresConfig};

/// The router of the hub simulator on `db`, with the kit's defaults (health, metrics, docs…).
pub async fn hub_sim_router(db: Db, kit: KitConfig) -> Result<axum::Router, String> {
    let service =
        telar_carpeta_hub_sim::build(db, telar_carpeta_hub_sim::HubSimConfig::default(), kit)
            .await
            .map_err(|e| e.to_string())?;
    Ok(service.into_router())
}

/// The database from the environment.
pub async fn database_from_env() -> Result<Db, String> {
    let url = std::env::var("TELAR_DATABASE__POSTGRES__URL").map_err(|_| {
        "TELAR_DATABASE__POSTGRES__URL is required (a Lambda keeps no disk)".to_owned()
    })?;
    let config = PostgresConfig {
        url,
        schema_prefix: std::env::var("TELAR_DATABASE__POSTGRES__SCHEMA_PREFIX").unwrap_or_default(),
        max_connections: 2,
        ..PostgresConfig::default()
    };
    Db::postgres(&config, telar_carpeta_hub_sim::NAME)
        .await
        .map_err(|e| e.to_string())
}

/// The kit's settings from the environment.
pub fn kit_from_env() -> KitConfig {
    let mut kit = KitConfig::default();
    if let Some(ms) = std::env::var("TELAR_HTTP__REQUEST_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        kit.request_timeout_ms = ms;
    }
    kit
}
