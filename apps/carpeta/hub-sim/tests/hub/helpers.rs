use serde_json::{Value, json};
use telar_kit::KitConfig;
use telar_sql::Db;
use telar_testkit::Shutdown;

pub struct Hub {
    pub base: String,
    pub client: reqwest::Client,
    pub shutdown: Shutdown,
    pub server: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: Option<tempfile::TempDir>,
}

pub enum Engine {
    Sqlite,
    Postgres,
}

pub async fn spawn_on(db: Db) -> Hub {
    let service = telar_carpeta_hub_sim::build(
        db,
        telar_carpeta_hub_sim::HubSimConfig::default(),
        KitConfig::default(),
    )
    .await
    .expect("hub-sim builds");
    let running = telar_testkit::serve(service).await;
    Hub {
        base: running.base,
        client: telar_testkit::client(),
        shutdown: running.shutdown,
        server: running.server,
        _dir: None,
    }
}

pub async fn spawn(engine: Engine) -> Hub {
    match engine {
        Engine::Sqlite => {
            let (db, dir) = telar_testkit::sqlite_db("hub-sim").await;
            let mut hub = spawn_on(db).await;
            hub._dir = Some(dir);
            hub
        }
        Engine::Postgres => spawn_on(telar_testkit::postgres_db("hubsim").await).await,
    }
}

pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: Value,
}

impl Answer {
    pub fn text(&self) -> &str {
        self.body.as_str().unwrap_or("")
    }
}

impl Hub {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.expect("hub answers");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let bytes = response.bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Answer {
            status,
            content_type,
            body,
        }
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Answer {
        let mut request = self.client.request(method, self.url(path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.send(request).await
    }

    pub async fn register(&self, id: u64, operator: &str) -> Answer {
        self.call(
            reqwest::Method::POST,
            "/apis/registerCitizen",
            Some(citizen(id, operator)),
        )
        .await
    }

    pub async fn validate(&self, id: &str) -> Answer {
        self.call(
            reqwest::Method::GET,
            &format!("/apis/validateCitizen/{id}"),
            None,
        )
        .await
    }

    pub async fn set_faults(&self, faults: Value) -> Answer {
        self.call(reqwest::Method::PUT, "/control/faults", Some(faults))
            .await
    }
}

pub fn citizen(id: u64, operator: &str) -> Value {
    json!({
        "id": id,
        "name": "Ana María Pérez",
        "address": "Calle 10 # 5-51, Bogotá",
        "email": "ana.perez@correo.com.co",
        "operatorId": "65a1f0c2e4b0a1b2c3d4e5f6",
        "operatorName": operator,
    })
}

/// Runs each listed test on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! on_both_engines {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test] async fn $test() { super::$test($crate::helpers::spawn($crate::helpers::Engine::Sqlite).await).await; } )*
        }
        mod postgres {
            $( #[tokio::test] async fn $test() { super::$test($crate::helpers::spawn($crate::helpers::Engine::Postgres).await).await; } )*
        }
    };
}
