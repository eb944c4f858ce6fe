//! ingestion, metadata and iam together: upload, confirm, search, download, delete — and a
//! citizen reaching only their own documents.

use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use telar_carpeta::ingestion::{self, IngestionConfig};
use telar_carpeta::metadata::{self, MetadataConfig};
use telar_kit::KitConfig;

use crate::helpers::{Running, World, eventually};

pub struct Docs {
    pub world: World,
    pub ingestion: Running,
    pub metadata: Running,
    pub read_models: Running,
}

pub async fn docs() -> Docs {
    let mut world = World::new().await;
    let iam = world.iam().await;
    let tokens = world.tokens().await;
    let (listener, base) = World::port().await;
    let files = tempfile::tempdir().unwrap();
    let mut config = IngestionConfig {
        iam_url: iam.base.clone(),
        ..IngestionConfig::default()
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
        KitConfig::default(),
    )
    .await
    .unwrap();
    let ingestion = world.run_on(app, listener);
    let index = tempfile::tempdir().unwrap();
    let config = MetadataConfig {
        iam_url: iam.base.clone(),
        index_dir: index.path().display().to_string(),
        ..MetadataConfig::default()
    };
    world.dirs.push(index);
    let db = world.db("metadata").await;
    let app = metadata::build(
        db,
        world.bus.clone(),
        config,
        world.verifier(),
        tokens,
        KitConfig::default(),
    )
    .await
    .unwrap();
    let metadata = world.run(app).await;
    let db = world.db("read-models").await;
    let tokens = world.tokens().await;
    let app = telar_carpeta::read_models::build(
        db,
        world.bus.clone(),
        Default::default(),
        world.verifier(),
        tokens,
        KitConfig::default(),
    )
    .await
    .unwrap();
    let read_models = world.run(app).await;
    Docs {
        world,
        ingestion,
        metadata,
        read_models,
    }
}

pub async fn call(
    world: &World,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = world.http.request(method, url).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Uploads `bytes` as a confirmed document of `owner`; returns its id.
pub async fn upload(
    docs: &Docs,
    token: &str,
    owner: &str,
    title: &str,
    filename: &str,
    bytes: &[u8],
) -> String {
    upload_to(
        &docs.world,
        &docs.ingestion,
        token,
        owner,
        title,
        filename,
        bytes,
    )
    .await
}

/// The same against any ingestion service.
pub async fn upload_to(
    world: &World,
    ingestion: &Running,
    token: &str,
    owner: &str,
    title: &str,
    filename: &str,
    bytes: &[u8],
) -> String {
    let (status, ticket) = call(
        world,
        reqwest::Method::POST,
        ingestion.url("/documents"),
        token,
        Some(json!({"owner": owner, "title": title, "filename": filename, "content_type": "application/pdf",
                    "size": bytes.len(), "tags": ["Educacion"]})),
    )
    .await;
    assert_eq!(status, 201, "{ticket}");
    let put = world
        .http
        .put(ticket["upload"]["url"].as_str().unwrap())
        .header("content-type", "application/pdf")
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    let id = ticket["document"]["id"].as_str().unwrap().to_owned();
    let sha = hex::encode(Sha256::digest(bytes));
    let (status, document) = call(
        world,
        reqwest::Method::POST,
        ingestion.url(&format!("/documents/{id}/confirm")),
        token,
        Some(json!({"sha256": sha, "size": bytes.len()})),
    )
    .await;
    assert_eq!(
        (status, &document["status"]),
        (200, &json!("ready")),
        "{document}"
    );
    id
}

async fn search(docs: &Docs, token: &str, query: &str) -> (u16, Value) {
    call(
        &docs.world,
        reqwest::Method::GET,
        docs.metadata.url(&format!("/metadata/search?{query}")),
        token,
        None,
    )
    .await
}

#[tokio::test]
async fn a_document_goes_from_upload_link_to_search_and_download_and_away() {
    let docs = docs().await;
    let ana = docs.world.token("1032456789", &["ciudadano"]);
    let bytes = b"%PDF-1.4 diploma de bachiller".repeat(100);
    let id = upload(
        &docs,
        &ana,
        "1032456789",
        "Diploma de Bachiller",
        "diploma_bachiller.pdf",
        &bytes,
    )
    .await;
    let found = eventually(
        Duration::from_secs(10),
        "the document to be searchable",
        || async {
            let (_, found) = search(&docs, &ana, "q=diplomas&owner=1032456789").await;
            (found["total"] == 1).then_some(found)
        },
    )
    .await;
    assert_eq!(found["hits"][0]["id"], id.as_str());
    assert!(
        found["hits"][0]["highlight"]
            .as_str()
            .unwrap()
            .contains("<mark>"),
        "{found}"
    );
    let (_, again) = search(&docs, &ana, "q=diplomas&owner=1032456789").await;
    assert_eq!(
        again["cached"], true,
        "the same search within 120 s is the cached answer"
    );
    let (_, by_tag) = search(&docs, &ana, "tag=educacion&owner=1032456789").await;
    assert_eq!(by_tag["total"], 1);

    let (status, link) = call(
        &docs.world,
        reqwest::Method::GET,
        docs.ingestion.url(&format!("/documents/{id}/download-url")),
        &ana,
        None,
    )
    .await;
    assert_eq!(status, 200, "{link}");
    let downloaded = docs
        .world
        .http
        .get(link["url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(downloaded.as_ref(), bytes.as_slice());

    let folder_url = docs.read_models.url("/read-models/citizens/1032456789");
    let folder = eventually(
        Duration::from_secs(10),
        "the folder view to show the document",
        || async {
            let (_, folder) = call(
                &docs.world,
                reqwest::Method::GET,
                folder_url.clone(),
                &ana,
                None,
            )
            .await;
            (folder["documents"][0]["status"] == "ready").then_some(folder)
        },
    )
    .await;
    assert_eq!(folder["documents"][0]["title"], "Diploma de Bachiller");
    let luis = docs.world.token("1099999999", &["ciudadano"]);
    assert_eq!(
        call(
            &docs.world,
            reqwest::Method::GET,
            folder_url.clone(),
            &luis,
            None
        )
        .await
        .0,
        403
    );

    let (status, _) = call(
        &docs.world,
        reqwest::Method::DELETE,
        docs.ingestion.url(&format!("/documents/{id}")),
        &ana,
        None,
    )
    .await;
    assert_eq!(status, 204);
    eventually(
        Duration::from_secs(10),
        "the folder view to show the deletion",
        || async {
            let (_, folder) = call(
                &docs.world,
                reqwest::Method::GET,
                folder_url.clone(),
                &ana,
                None,
            )
            .await;
            (folder["documents"][0]["status"] == "deleted").then_some(())
        },
    )
    .await;
    eventually(
        Duration::from_secs(10),
        "the deleted document to leave search",
        || async {
            let (_, found) = search(&docs, &ana, "q=diplomas&owner=1032456789").await;
            (found["total"] == 0).then_some(())
        },
    )
    .await;
    let (status, _) = call(
        &docs.world,
        reqwest::Method::GET,
        docs.ingestion.url(&format!("/documents/{id}/download-url")),
        &ana,
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (_, listed) = call(
        &docs.world,
        reqwest::Method::GET,
        docs.metadata
            .url("/metadata/documents?owner=1032456789&deleted=true"),
        &ana,
        None,
    )
    .await;
    assert!(listed[0]["deleted_at"].is_string(), "{listed}");
}

#[tokio::test]
async fn a_citizen_reaches_only_their_own_documents() {
    let docs = docs().await;
    let ana = docs.world.token("1032456789", &["ciudadano"]);
    let luis = docs.world.token("1099999999", &["ciudadano"]);
    let staff = docs.world.token("op-1", &["operador"]);
    let id = upload(
        &docs,
        &ana,
        "1032456789",
        "Cédula de ciudadanía",
        "cedula.pdf",
        b"cedula",
    )
    .await;
    let forbidden = [
        (
            reqwest::Method::GET,
            docs.ingestion.url(&format!("/documents/{id}")),
        ),
        (
            reqwest::Method::GET,
            docs.ingestion.url(&format!("/documents/{id}/download-url")),
        ),
        (
            reqwest::Method::DELETE,
            docs.ingestion.url(&format!("/documents/{id}")),
        ),
        (
            reqwest::Method::GET,
            docs.ingestion.url("/documents?owner=1032456789"),
        ),
        (
            reqwest::Method::GET,
            docs.metadata
                .url("/metadata/search?q=cedula&owner=1032456789"),
        ),
        (
            reqwest::Method::GET,
            docs.metadata.url("/metadata/documents?owner=1032456789"),
        ),
    ];
    for (method, url) in forbidden {
        let (status, problem) = call(&docs.world, method.clone(), url.clone(), &luis, None).await;
        assert_eq!(status, 403, "{method} {url}: {problem}");
    }
    let (status, _) = call(
        &docs.world,
        reqwest::Method::POST,
        docs.ingestion.url("/documents"),
        &luis,
        Some(json!({"owner": "1032456789", "title": "x", "filename": "x.pdf", "content_type": "application/pdf", "size": 3})),
    )
    .await;
    assert_eq!(status, 403, "uploading into another citizen's folder");
    let (status, _) = search(&docs, &luis, "q=cedula").await;
    assert_eq!(status, 422, "a citizen must name the owner");
    // Staff read and download, but upload nothing in a citizen's name.
    assert_eq!(
        call(
            &docs.world,
            reqwest::Method::GET,
            docs.ingestion.url(&format!("/documents/{id}")),
            &staff,
            None
        )
        .await
        .0,
        200
    );
    assert_eq!(
        call(
            &docs.world,
            reqwest::Method::GET,
            docs.ingestion.url(&format!("/documents/{id}/download-url")),
            &staff,
            None
        )
        .await
        .0,
        200
    );
    let found = eventually(
        Duration::from_secs(10),
        "staff to find the document by an unaccented word",
        || async {
            let (_, found) = search(&docs, &staff, "q=cedula").await;
            (found["total"] == 1).then_some(found)
        },
    )
    .await;
    assert_eq!(found["hits"][0]["owner"], "1032456789");
}

#[tokio::test]
async fn an_upload_that_is_not_what_was_announced_is_not_confirmed() {
    let docs = docs().await;
    let ana = docs.world.token("1032456789", &["ciudadano"]);
    let (status, ticket) = call(
        &docs.world,
        reqwest::Method::POST,
        docs.ingestion.url("/documents"),
        &ana,
        Some(json!({"owner": "1032456789", "title": "Acta", "filename": "../../etc/passwd", "content_type": "application/pdf", "size": 10})),
    )
    .await;
    assert_eq!(status, 201, "{ticket}");
    let key = ticket["document"]["object_key"].as_str().unwrap();
    assert!(
        key.starts_with("citizens/1032456789/") && !key.contains(".."),
        "{key}"
    );
    let id = ticket["document"]["id"].as_str().unwrap();
    let confirm_url = docs.ingestion.url(&format!("/documents/{id}/confirm"));
    let sha = hex::encode(Sha256::digest(b"0123456789"));
    let (status, _) = call(
        &docs.world,
        reqwest::Method::POST,
        confirm_url.clone(),
        &ana,
        Some(json!({"sha256": sha, "size": 10})),
    )
    .await;
    assert_eq!(status, 409, "nothing uploaded yet");
    let put = docs
        .world
        .http
        .put(ticket["upload"]["url"].as_str().unwrap())
        .header("content-type", "application/pdf")
        .body("0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    let wrong = hex::encode(Sha256::digest(b"something else"));
    let (status, problem) = call(
        &docs.world,
        reqwest::Method::POST,
        confirm_url.clone(),
        &ana,
        Some(json!({"sha256": wrong, "size": 10})),
    )
    .await;
    assert_eq!(status, 409, "{problem}");
    let (status, problem) = call(
        &docs.world,
        reqwest::Method::POST,
        confirm_url.clone(),
        &ana,
        Some(json!({"sha256": "xyz", "size": 10})),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    let (status, document) = call(
        &docs.world,
        reqwest::Method::GET,
        docs.ingestion.url(&format!("/documents/{id}")),
        &ana,
        None,
    )
    .await;
    assert_eq!((status, &document["status"]), (200, &json!("pending")));
    let (status, _) = call(
        &docs.world,
        reqwest::Method::POST,
        confirm_url,
        &ana,
        Some(json!({"sha256": sha, "size": 10})),
    )
    .await;
    assert_eq!(status, 200);
    for (body, field) in [
        (
            json!({"owner": "1032456789", "title": "", "filename": "a.pdf", "content_type": "application/pdf", "size": 1}),
            "title",
        ),
        (
            json!({"owner": "1032456789", "title": "t", "filename": "a.pdf", "content_type": "pdf", "size": 1}),
            "content_type",
        ),
        (
            json!({"owner": "1032456789", "title": "t", "filename": "a.pdf", "content_type": "application/pdf", "size": 0}),
            "size",
        ),
        (
            json!({"owner": "12", "title": "t", "filename": "a.pdf", "content_type": "application/pdf", "size": 1}),
            "owner",
        ),
    ] {
        let (status, problem) = call(
            &docs.world,
            reqwest::Method::POST,
            docs.ingestion.url("/documents"),
            &ana,
            Some(body),
        )
        .await;
        assert_eq!(status, 422, "{problem}");
        assert!(problem.to_string().contains(field), "{field}: {problem}");
    }
}
