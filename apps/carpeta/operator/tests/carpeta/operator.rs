//! A whole operator on one bus: hub-client, iam, citizen, ingestion, metadata, read-models,
//! signature and sharing, against the world's hub-sim.

use serde_json::{Value, json};
use telar_carpeta::{citizen, ingestion, metadata, read_models, sharing, signature};
use telar_kit::KitConfig;

use crate::helpers::{Running, World};

pub struct Operator {
    pub hub_client: Running,
    pub iam: Running,
    pub citizen: Running,
    pub ingestion: Running,
    pub metadata: Running,
    pub read_models: Running,
    pub signature: Running,
    pub sharing: Running,
    pub sharing_db: telar_sql::Db,
}

pub async fn operator(world: &mut World) -> Operator {
    let hub_client = crate::hub::hub_client(world, |_| {}).await;
    let iam = world.iam().await;
    let tokens = world.tokens().await;
    let kit = KitConfig::default;

    let db = world.db("citizen").await;
    let config = citizen::CitizenConfig {
        hub_client_url: hub_client.base.clone(),
        ..Default::default()
    };
    let app = citizen::build(
        db,
        world.bus.clone(),
        config,
        world.verifier(),
        tokens.clone(),
        kit(),
    )
    .await
    .unwrap();
    let citizen = world.run(app).await;

    let (listener, base) = World::port().await;
    let files = tempfile::tempdir().unwrap();
    let mut config = ingestion::IngestionConfig {
        iam_url: iam.base.clone(),
        ..Default::default()
    };
    config.objects.dir = files.path().display().to_string();
    config.objects.public_url = base;
    config.objects.url_secret = "a test secret of some length".into();
    world.dirs.push(files);
    let db = world.db("ingestion").await;
    let app = ingestion::build(
        db,
        world.bus.clone(),
        config,
        world.verifier(),
        tokens.clone(),
        kit(),
    )
    .await
    .unwrap();
    let ingestion = world.run_on(app, listener);

    let index = tempfile::tempdir().unwrap();
    let config = metadata::MetadataConfig {
        iam_url: iam.base.clone(),
        index_dir: index.path().display().to_string(),
        ..Default::default()
    };
    world.dirs.push(index);
    let db = world.db("metadata").await;
    let app = metadata::build(
        db,
        world.bus.clone(),
        config,
        world.verifier(),
        tokens.clone(),
        kit(),
    )
    .await
    .unwrap();
    let metadata = world.run(app).await;

    let db = world.db("read-models").await;
    let app = read_models::build(
        db,
        world.bus.clone(),
        Default::default(),
        world.verifier(),
        kit(),
    )
    .await
    .unwrap();
    let read_models = world.run(app).await;

    let db = world.db("signature").await;
    let config = signature::SignatureConfig {
        ingestion_url: ingestion.base.clone(),
        hub_client_url: hub_client.base.clone(),
        citizen_url: citizen.base.clone(),
        iam_url: iam.base.clone(),
        ..Default::default()
    };
    let app = signature::build(
        db,
        world.bus.clone(),
        config,
        world.verifier(),
        tokens.clone(),
        kit(),
    )
    .await
    .unwrap();
    let signature = world.run(app).await;

    let (listener, base) = World::port().await;
    let sharing_db = world.db("sharing").await;
    let config = sharing::SharingConfig {
        public_url: base,
        ingestion_url: ingestion.base.clone(),
        iam_url: iam.base.clone(),
        ..Default::default()
    };
    let app = sharing::build(
        sharing_db.clone(),
        world.bus.clone(),
        config,
        world.verifier(),
        tokens,
        kit(),
    )
    .await
    .unwrap();
    let sharing = world.run_on(app, listener);
    Operator {
        hub_client,
        iam,
        citizen,
        ingestion,
        metadata,
        read_models,
        signature,
        sharing,
        sharing_db,
    }
}

pub async fn call(
    world: &World,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    crate::documents::call(world, method, url, token, body).await
}

/// Registers `id` with the operator (201 expected).
pub async fn register(world: &World, operator: &Operator, id: &str, name: &str, email: &str) {
    let token = world.token(id, &["ciudadano"]);
    let (status, body) = call(
        world,
        reqwest::Method::POST,
        operator.citizen.url("/citizens"),
        &token,
        Some(json!({"id": id, "name": name, "address": "Calle 10 # 5-20", "email": email})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}
