//! Signed uploads and downloads on local files (served by the owning service) and on an
//! S3-compatible server (moto, started by scripts/services.sh).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};
use telar_objects::{
    Grant, Objects, ObjectsBackend, ObjectsConfig, ObjectsError, S3Config, UrlSigner,
};

const SECRET: &str = "a-test-secret-of-enough-length";

struct Local {
    objects: Objects,
    _server: telar_testkit::TestServer,
    _dir: tempfile::TempDir,
    base: String,
}

async fn local(max: u64) -> Local {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let config = ObjectsConfig {
        dir: dir.path().join("objects").display().to_string(),
        public_url: base.clone(),
        url_secret: SECRET.into(),
        max_object_bytes: max,
        ..ObjectsConfig::default()
    };
    let objects = Objects::open(&config).unwrap();
    let service = telar_kit::Service::new("files").routes(objects.routes());
    // Served on the address the links point to.
    let server = telar_testkit::serve_on(service, listener);
    Local {
        objects,
        _server: server,
        _dir: dir,
        base,
    }
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[tokio::test]
async fn signed_links_upload_download_ranges_and_confirm() {
    let local = local(1 << 20).await;
    let http = telar_testkit::client();
    let key = Objects::key("citizens/1032456789/diploma.pdf").unwrap();
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let link = local
        .objects
        .presign_put(&key, "application/pdf", 1 << 20, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(link.method, "PUT");
    let uploaded = http
        .put(&link.url)
        .header("content-type", "application/pdf")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status(), 201);
    let info: Value = uploaded.json().await.unwrap();
    assert_eq!(info["size"], 100_000);
    assert_eq!(info["sha256"], sha(&body));

    let confirmed = local
        .objects
        .confirm(&key, Some(100_000), &sha(&body).to_uppercase())
        .await
        .unwrap();
    assert_eq!(confirmed.size, 100_000);
    assert!(matches!(
        local.objects.confirm(&key, Some(99), &sha(&body)).await,
        Err(ObjectsError::SizeMismatch { .. })
    ));
    assert!(matches!(
        local.objects.confirm(&key, None, &sha(b"other")).await,
        Err(ObjectsError::HashMismatch { .. })
    ));

    let link = local
        .objects
        .presign_get(&key, "application/pdf", Duration::from_secs(60))
        .await
        .unwrap();
    let whole = http.get(&link.url).send().await.unwrap();
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.headers()["content-type"], "application/pdf");
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    assert_eq!(whole.bytes().await.unwrap().as_ref(), body.as_slice());
    let part = http
        .get(&link.url)
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.headers()["content-range"], "bytes 10-19/100000");
    assert_eq!(part.bytes().await.unwrap().as_ref(), &body[10..20]);
    let tail = http
        .get(&link.url)
        .header("range", "bytes=-5")
        .send()
        .await
        .unwrap();
    assert_eq!(tail.bytes().await.unwrap().as_ref(), &body[99_995..]);
    let past = http
        .get(&link.url)
        .header("range", "bytes=200000-")
        .send()
        .await
        .unwrap();
    assert_eq!(past.status(), 416);
    assert_eq!(past.headers()["content-range"], "bytes */100000");

    local.objects.delete(&key).await.unwrap();
    assert!(local.objects.head(&key).await.unwrap().is_none());
    let gone = http.get(&link.url).send().await.unwrap();
    assert_eq!(gone.status(), 404);
}

#[tokio::test]
async fn tampered_expired_and_misused_links_get_the_same_403() {
    let local = local(1 << 20).await;
    let http = telar_testkit::client();
    let key = Objects::key("docs/a.pdf").unwrap();
    local
        .objects
        .put(&key, bytes::Bytes::from_static(b"secret document"))
        .await
        .unwrap();
    let get = local
        .objects
        .presign_get(&key, "application/pdf", Duration::from_secs(60))
        .await
        .unwrap();
    let put = local
        .objects
        .presign_put(&key, "application/pdf", 100, Duration::from_secs(60))
        .await
        .unwrap();
    let mut flipped = get.url.clone();
    let last = flipped.pop().unwrap();
    flipped.push(if last == '0' { '1' } else { '0' });
    // Signed by the right key, but expired ten seconds ago.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let grant = Grant {
        op: "get".into(),
        key: key.to_string(),
        expires: now - 10,
        content_type: "application/pdf".into(),
        max_bytes: 0,
    };
    let signature = UrlSigner::new(SECRET.as_bytes()).sign(&grant);
    let expired = format!(
        "{}/objects/docs/a.pdf?op=get&exp={}&ct=application%2Fpdf&max=0&sig={signature}",
        local.base,
        now - 10
    );
    let other_key = get.url.replace("docs/a.pdf", "docs/b.pdf");
    let longer = get.url.replace(
        &format!("exp={}", get.expires_at),
        &format!("exp={}", get.expires_at + 3600),
    );
    let no_signature = format!("{}/objects/docs/a.pdf", local.base);
    let mut bodies = Vec::new();
    for url in [
        flipped,
        expired,
        other_key,
        longer,
        no_signature,
        put.url.clone(),
    ] {
        let response = http.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 403, "{url}");
        let problem: Value = response.json().await.unwrap();
        bodies.push(problem["detail"].clone());
    }
    // A download link does not upload.
    let misuse = http
        .put(&get.url)
        .header("content-type", "application/pdf")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(misuse.status(), 403);
    bodies.push(misuse.json::<Value>().await.unwrap()["detail"].clone());
    assert!(bodies.iter().all(|b| *b == bodies[0]), "{bodies:?}");
    assert_eq!(
        local.objects.get(&key).await.unwrap().as_ref(),
        b"secret document"
    );
}

#[tokio::test]
async fn wrong_types_and_oversized_uploads_are_refused_and_leave_nothing() {
    let local = local(1 << 20).await;
    let http = telar_testkit::client();
    let key = Objects::key("docs/big.pdf").unwrap();
    let link = local
        .objects
        .presign_put(&key, "application/pdf", 1000, Duration::from_secs(60))
        .await
        .unwrap();
    let wrong = http
        .put(&link.url)
        .header("content-type", "text/html")
        .body("<html>")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 415);
    let big = http
        .put(&link.url)
        .header("content-type", "application/pdf")
        .body(vec![0u8; 1001])
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 413);
    let chunks = futures::stream::iter((0..5).map(|_| Ok::<_, std::io::Error>(vec![1u8; 400])));
    let streamed = http
        .put(&link.url)
        .header("content-type", "application/pdf; charset=binary")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), 413);
    assert!(local.objects.head(&key).await.unwrap().is_none());
    // The configured maximum caps what a link may promise.
    let capped = local
        .objects
        .presign_put(&key, "application/pdf", u64::MAX, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(capped.url.contains(&format!("max={}", 1 << 20)));
    for bad in ["../etc/passwd", "/abs", "a//b", &"k".repeat(600)] {
        assert!(
            matches!(Objects::key(bad), Err(ObjectsError::InvalidKey { .. })),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn s3_presigned_links_work_against_an_s3_compatible_server() {
    let endpoint =
        std::env::var("TELAR_TEST_S3_URL").unwrap_or_else(|_| "http://127.0.0.1:5055".into());
    let bucket = format!("telar-{}", uuid::Uuid::new_v4().simple());
    let http = telar_testkit::client();
    let created = http
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!("no S3-compatible server at {endpoint} (scripts/services.sh starts moto): {e}")
        });
    assert!(
        created.status().is_success(),
        "creating the bucket: {}",
        created.status()
    );
    let objects = Objects::open(&ObjectsConfig {
        backend: ObjectsBackend::S3,
        s3: S3Config {
            bucket,
            endpoint,
            access_key_id: "test".into(),
            secret_access_key: "test".into(),
            ..S3Config::default()
        },
        ..ObjectsConfig::default()
    })
    .unwrap();
    let key = Objects::key("citizens/7/acta.pdf").unwrap();
    let body = b"%PDF-1.7 acta de grado".to_vec();
    let put = objects
        .presign_put(&key, "application/pdf", 1 << 20, Duration::from_secs(300))
        .await
        .unwrap();
    assert!(put.url.contains("X-Amz-Signature"), "{}", put.url);
    let uploaded = http.put(&put.url).body(body.clone()).send().await.unwrap();
    assert!(uploaded.status().is_success(), "{}", uploaded.status());
    let info = objects
        .confirm(&key, Some(body.len() as u64), &sha(&body))
        .await
        .unwrap();
    assert_eq!(info.size, body.len() as u64);
    let get = objects
        .presign_get(&key, "application/pdf", Duration::from_secs(300))
        .await
        .unwrap();
    let downloaded = http.get(&get.url).send().await.unwrap();
    assert_eq!(downloaded.bytes().await.unwrap().as_ref(), body.as_slice());
    objects.delete(&key).await.unwrap();
    assert!(objects.head(&key).await.unwrap().is_none());
}
