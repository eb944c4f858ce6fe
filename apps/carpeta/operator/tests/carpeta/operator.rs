//! A whole operator on one bus: hub-client, iam, citizen, ingestion, metadata, read-models,
//! signature and sharing, against the world's hub-sim.

use serde_json::{Value, json};
use telar_bus::{Bus, EmbeddedBus, EmbeddedConfig};
use telar_carpeta::{citizen, ingestion, metadata, read_models, sharing, signature, transfer};
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
    pub transfer: Running,
    pub bus: Bus,
    pub transfer_db: telar_sql::Db,
    pub transfer_config: transfer::TransferConfig,
    pub tokens: telar_carpeta::shared::TokenSource,
}

impl Operator {
    /// Stops the transfer service and starts it again on the same database, port and runner
    /// name: unfinished sagas resume.
    pub async fn restart_transfer(&mut self, world: &mut World) {
        self.transfer.shutdown.trigger();
        let address = self.transfer.base.trim_start_matches("http://").to_owned();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        let listener = loop {
            match tokio::net::TcpListener::bind(&address).await {
                Ok(listener) => break listener,
                Err(error) => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "{address} stays busy: {error}"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            }
        };
        let app = transfer::build(
            self.transfer_db.clone(),
            self.bus.clone(),
            self.transfer_config.clone(),
            world.verifier(),
            self.tokens.clone(),
            KitConfig::default(),
        )
        .await
        .unwrap();
        self.transfer = world.run_on(app, listener);
    }
}

pub async fn operator(world: &mut World) -> Operator {
    let bus = world.bus.clone();
    named_operator(world, "Operador Telar", bus, |_| {}).await
}

/// An operator with its own name at the hub and its own bus (as a separate process would).
pub async fn named_operator(
    world: &mut World,
    name: &str,
    bus: Bus,
    configure: impl FnOnce(&mut transfer::TransferConfig),
) -> Operator {
    let (transfer_listener, transfer_base) = World::port().await;
    let hub_client = crate::hub::hub_client_on(world, bus.clone(), |c| {
        c.operator.name = name.to_owned();
        c.operator.transfer_url = format!("{transfer_base}/api/transferCitizen");
        c.operator.confirm_url = format!("{transfer_base}/api/transferCitizenConfirm");
    })
    .await;
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
        bus.clone(),
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
        bus.clone(),
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
        bus.clone(),
        config,
        world.verifier(),
        tokens.clone(),
        kit(),
    )
    .await
    .unwrap();
    let metadata = world.run(app).await;

    let db = world.db("read-models").await;
    let config = read_models::ReadModelsConfig {
        citizen_url: citizen.base.clone(),
        ..Default::default()
    };
    let app = read_models::build(
        db,
        bus.clone(),
        config,
        world.verifier(),
        tokens.clone(),
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
        bus.clone(),
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
        bus.clone(),
        config,
        world.verifier(),
        tokens.clone(),
        kit(),
    )
    .await
    .unwrap();
    let sharing = world.run_on(app, listener);

    let transfer_db = world.db("transfer").await;
    let mut config = transfer::TransferConfig {
        public_url: transfer_base,
        hub_client_url: hub_client.base.clone(),
        citizen_url: citizen.base.clone(),
        ingestion_url: ingestion.base.clone(),
        ..Default::default()
    };
    configure(&mut config);
    let transfer_config = config.clone();
    let app = transfer::build(
        transfer_db.clone(),
        bus.clone(),
        config,
        world.verifier(),
        tokens.clone(),
        kit(),
    )
    .await
    .unwrap();
    let transfer = world.run_on(app, transfer_listener);
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
        transfer,
        bus,
        transfer_db,
        transfer_config,
        tokens,
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

/// A second embedded bus (another operator's).
pub async fn another_bus(world: &mut World) -> Bus {
    let dir = tempfile::tempdir().unwrap();
    let bus = Bus::new(
        EmbeddedBus::open(&EmbeddedConfig {
            path: dir.path().join("bus.db"),
            ..EmbeddedConfig::default()
        })
        .await
        .unwrap(),
    );
    world.dirs.push(dir);
    bus
}
