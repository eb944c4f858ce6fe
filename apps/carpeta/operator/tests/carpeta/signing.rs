//! signature and sharing on a whole operator.

use std::time::Duration;

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::documents::upload_to;
use crate::helpers::{World, eventually};
use crate::operator::{call, operator, register};

#[tokio::test]
async fn a_signed_document_is_authenticated_at_the_hub_by_link_and_verifiable() {
    let mut world = World::new().await;
    let op = operator(&mut world).await;
    register(&world, &op, "1032456789", "Ana Pérez", "ana@correo.co").await;
    let ana = world.token("1032456789", &["ciudadano"]);
    let bytes = b"%PDF-1.4 diploma".to_vec();
    let id = upload_to(
        &world,
        &op.ingestion,
        &ana,
        "1032456789",
        "Diploma profesional",
        "diploma.pdf",
        &bytes,
    )
    .await;
    let (events, mut published) =
        crate::helpers::capture(&world.bus, "carpeta.document.authenticated", "test").await;

    let luis = world.token("1099999999", &["ciudadano"]);
    let (status, _) = call(
        &world,
        reqwest::Method::POST,
        op.signature.url("/signatures"),
        &luis,
        Some(json!({"document_id": id})),
    )
    .await;
    assert_eq!(status, 403, "another citizen's document");
    let (status, receipt) = call(
        &world,
        reqwest::Method::POST,
        op.signature.url("/signatures"),
        &ana,
        Some(json!({"document_id": id})),
    )
    .await;
    assert_eq!(status, 201, "{receipt}");
    assert_eq!(receipt["status"], "authenticated");
    let sha = hex::encode(Sha256::digest(&bytes));
    assert_eq!(receipt["sha256"], sha.as_str());

    // The hub got a short-lived link to the file, never the file.
    let state = world.hub_state().await;
    let authentication = &state["authentications"][0];
    assert_eq!(authentication["id_citizen"], "1032456789");
    assert_eq!(authentication["document_title"], "Diploma profesional");
    let link = authentication["url_document"].as_str().unwrap();
    assert!(link.starts_with(&op.ingestion.base), "{link}");
    let expires: i64 = link
        .split("exp=")
        .nth(1)
        .and_then(|s| s.split('&').next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    assert!(
        expires - crate::helpers::now() <= 15 * 60,
        "the link lives at most 15 minutes"
    );
    let fetched = world
        .http
        .get(link)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(fetched.as_ref(), bytes.as_slice());

    let event = tokio::time::timeout(Duration::from_secs(10), published.recv())
        .await
        .unwrap()
        .unwrap();
    events.stop().await;
    let data = event.data.unwrap();
    assert_eq!(data["id"].as_str(), Some(id.as_str()));
    assert!(
        data["email"]["$enc"].is_string() && data["name"]["$enc"].is_string(),
        "the citizen's contact travels sealed: {data}"
    );
    let opened = crate::helpers::open_pii(&world, &op.citizen, data).await;
    assert_eq!(
        (opened["email"].as_str(), opened["name"].as_str()),
        (Some("ana@correo.co"), Some("Ana Pérez"))
    );

    let signature = receipt["signature"].as_str().unwrap();
    let (_, verified) = call(
        &world,
        reqwest::Method::POST,
        op.signature.url("/signatures/verify"),
        "",
        Some(json!({"sha256": sha, "signature": signature})),
    )
    .await;
    assert_eq!(verified["valid"], true, "{verified}");
    let other = hex::encode(Sha256::digest(b"another file"));
    let (_, verified) = call(
        &world,
        reqwest::Method::POST,
        op.signature.url("/signatures/verify"),
        "",
        Some(json!({"sha256": other, "signature": signature})),
    )
    .await;
    assert_eq!(verified["valid"], false);
    let (status, again) = call(
        &world,
        reqwest::Method::POST,
        op.signature.url("/signatures"),
        &ana,
        Some(json!({"document_id": id})),
    )
    .await;
    assert_eq!(
        (status, &again["signature"]),
        (200, &receipt["signature"]),
        "signing twice is the same receipt"
    );
    assert_eq!(
        world.hub_state().await["authentications"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    eventually(
        Duration::from_secs(10),
        "the folder to show the authentication",
        || async {
            let (_, folder) = call(
                &world,
                reqwest::Method::GET,
                op.read_models.url("/read-models/citizens/1032456789"),
                &ana,
                None,
            )
            .await;
            (folder["documents"][0]["authenticated"] == true).then_some(())
        },
    )
    .await;
    eventually(
        Duration::from_secs(10),
        "metadata to know it is authenticated",
        || async {
            let url = op.metadata.url("/metadata/documents?owner=1032456789");
            let (_, listed) = call(&world, reqwest::Method::GET, url, &ana, None).await;
            (listed[0]["authenticated"] == true).then_some(())
        },
    )
    .await;
    let text = world
        .http
        .get(op.hub_client.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let authenticated = crate::helpers::metric(
        &text,
        "hub_calls_total",
        &[r#"endpoint="authenticateDocument""#, r#"outcome="success""#],
    );
    assert_eq!(
        authenticated,
        Some(1.0),
        "one hub call for two signing requests"
    );
    assert_eq!(
        world
            .http
            .get(op.iam.url("/ready"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn short_links_count_accesses_and_answer_gone_when_used_up_revoked_or_expired() {
    let mut world = World::new().await;
    let op = operator(&mut world).await;
    let ana = world.token("1032456789", &["ciudadano"]);
    let bytes = b"cedula".to_vec();
    let id = upload_to(
        &world,
        &op.ingestion,
        &ana,
        "1032456789",
        "Cédula",
        "cedula.pdf",
        &bytes,
    )
    .await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let share = |body: serde_json::Value| {
        call(
            &world,
            reqwest::Method::POST,
            op.sharing.url("/shares"),
            &ana,
            Some(body),
        )
    };

    let (status, link) = share(json!({"document_id": id, "max_accesses": 2})).await;
    assert_eq!(status, 201, "{link}");
    let url = link["url"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        let opened = world.http.get(&url).send().await.unwrap();
        assert_eq!(opened.status(), 200, "followed to the file");
        assert_eq!(opened.bytes().await.unwrap().as_ref(), bytes.as_slice());
    }
    let third = no_redirects.get(&url).send().await.unwrap();
    assert_eq!(third.status(), 410, "used up");

    let (_, revocable) = share(json!({"document_id": id})).await;
    let url = revocable["url"].as_str().unwrap().to_owned();
    assert_eq!(no_redirects.get(&url).send().await.unwrap().status(), 303);
    let code = revocable["code"].as_str().unwrap();
    let (status, _) = call(
        &world,
        reqwest::Method::DELETE,
        op.sharing.url(&format!("/shares/{code}")),
        &ana,
        None,
    )
    .await;
    assert_eq!(status, 204);
    let revoked = no_redirects.get(&url).send().await.unwrap();
    assert_eq!(revoked.status(), 410);
    assert!(revoked.text().await.unwrap().contains("revoked"));

    let (_, expiring) = share(json!({"document_id": id, "expires_in_secs": 60})).await;
    telar_sql::query("UPDATE shares SET expires_at = 1 WHERE code = $1")
        .bind(expiring["code"].as_str().unwrap().to_owned())
        .execute(&op.sharing_db)
        .await
        .unwrap();
    let expired = no_redirects
        .get(expiring["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(expired.status(), 410);
    assert!(expired.text().await.unwrap().contains("expired"));

    assert_eq!(
        no_redirects
            .get(op.sharing.url("/s/nope"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let luis = world.token("1099999999", &["ciudadano"]);
    let (status, _) = call(
        &world,
        reqwest::Method::POST,
        op.sharing.url("/shares"),
        &luis,
        Some(json!({"document_id": id})),
    )
    .await;
    assert_eq!(status, 403, "sharing another citizen's document");
    let (status, problem) = share(json!({"document_id": id, "expires_in_secs": 5})).await;
    assert_eq!(status, 422, "{problem}");
    let (_, listed) = call(
        &world,
        reqwest::Method::GET,
        op.sharing.url(&format!("/shares?document_id={id}")),
        &ana,
        None,
    )
    .await;
    assert_eq!(listed.as_array().unwrap().len(), 3);
    eventually(
        Duration::from_secs(10),
        "the folder to count the shares",
        || async {
            let (_, folder) = call(
                &world,
                reqwest::Method::GET,
                op.read_models.url("/read-models/citizens/1032456789"),
                &ana,
                None,
            )
            .await;
            (folder["documents"][0]["shares"] == 3).then_some(())
        },
    )
    .await;
}
