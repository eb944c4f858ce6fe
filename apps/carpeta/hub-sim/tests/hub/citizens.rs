use reqwest::Method;
use serde_json::json;

use crate::helpers::{Hub, citizen};
use crate::on_both_engines;

async fn register_then_validate(hub: Hub) {
    let free = hub.validate("1032456789").await;
    assert_eq!(free.status, 204, "free id");
    assert!(free.body.is_null(), "204 has no body");

    let created = hub.register(1032456789, "Operador Uno").await;
    assert_eq!(created.status, 201);
    assert_eq!(created.content_type, "application/json");
    assert_eq!(
        created.text(),
        "Ciudadano con id: 1032456789 Creado exitosamente"
    );

    let taken = hub.validate("1032456789").await;
    assert_eq!(taken.status, 200);
    assert!(
        taken
            .text()
            .ends_with("registrado en el operador: Operador Uno "),
        "{}",
        taken.text()
    );
}

async fn duplicates_are_refused_across_operators(hub: Hub) {
    assert_eq!(hub.register(1032456789, "Operador Uno").await.status, 201);
    let again = hub.register(1032456789, "Operador Dos").await;
    assert_eq!(again.status, 501);
    assert!(
        again.text().contains("ya se encuentra registrado"),
        "{}",
        again.text()
    );
}

async fn concurrent_duplicate_registrations_yield_one_201(hub: Hub) {
    let attempts =
        (0..20).map(|i| hub.register(1099887766, if i % 2 == 0 { "Uno" } else { "Dos" }));
    let answers = futures::future::join_all(attempts).await;
    let created = answers.iter().filter(|a| a.status == 201).count();
    let duplicates = answers.iter().filter(|a| a.status == 501).count();
    assert_eq!((created, duplicates), (1, 19));
}

async fn unregister_by_id_ignoring_operator(hub: Hub) {
    assert_eq!(hub.register(1032456789, "Operador Uno").await.status, 201);
    let body = json!({"id": 1032456789u64, "operatorId": "someone-else", "operatorName": "Otro"});
    let removed = hub
        .call(
            Method::DELETE,
            "/apis/unregisterCitizen",
            Some(body.clone()),
        )
        .await;
    assert_eq!(removed.status, 200);
    assert!(removed.body.is_string());
    assert_eq!(hub.validate("1032456789").await.status, 204);
    let again = hub
        .call(Method::DELETE, "/apis/unregisterCitizen", Some(body))
        .await;
    assert_eq!(again.status, 204, "not registered");
}

on_both_engines!(
    register_then_validate,
    duplicates_are_refused_across_operators,
    concurrent_duplicate_registrations_yield_one_201,
    unregister_by_id_ignoring_operator,
);

#[tokio::test]
async fn validation_failures_are_501_strings() {
    let hub = crate::helpers::spawn(crate::helpers::Engine::Sqlite).await;
    let mut short_id = citizen(1, "Op");
    short_id["id"] = json!(103245678);
    let mut long_tld = citizen(1032456789, "Op");
    long_tld["email"] = json!("ana@example.info");
    let mut missing = citizen(1032456789, "Op");
    missing.as_object_mut().map(|m| m.remove("address"));
    let mut null_name = citizen(1032456789, "Op");
    null_name["name"] = json!(null);
    for (body, field) in [
        (short_id, "id"),
        (long_tld, "email"),
        (missing, "address"),
        (null_name, "name"),
    ] {
        let answer = hub
            .call(Method::POST, "/apis/registerCitizen", Some(body))
            .await;
        assert_eq!(answer.status, 501, "{field}");
        assert!(answer.text().contains(field), "{field}: {}", answer.text());
    }
    assert_eq!(
        hub.validate("103245678").await.status,
        501,
        "malformed id in the path"
    );
    let state = hub.call(Method::GET, "/control/state", None).await;
    assert_eq!(state.body["citizens"], json!([]), "nothing half-written");
}

#[tokio::test]
async fn without_json_content_type_the_body_is_ignored() {
    let hub = crate::helpers::spawn(crate::helpers::Engine::Sqlite).await;
    let request = hub
        .client
        .post(hub.url("/apis/registerCitizen"))
        .header("content-type", "text/plain")
        .body(citizen(1032456789, "Op").to_string());
    let answer = hub.send(request).await;
    assert_eq!(answer.status, 501);
    let request = hub
        .client
        .post(hub.url("/apis/registerCitizen"))
        .body(citizen(1032456789, "Op").to_string());
    assert_eq!(
        hub.send(request).await.status,
        501,
        "no content type at all"
    );
}

#[tokio::test]
async fn state_survives_a_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("hub-sim.db");
    let first = crate::helpers::spawn_on(
        telar_sql::Db::sqlite(&path, &Default::default())
            .await
            .expect("db"),
    )
    .await;
    assert_eq!(first.register(1032456789, "Op").await.status, 201);
    first.shutdown.trigger();
    first.server.await.expect("task").expect("clean stop");

    let second = crate::helpers::spawn_on(
        telar_sql::Db::sqlite(&path, &Default::default())
            .await
            .expect("db"),
    )
    .await;
    assert_eq!(second.validate("1032456789").await.status, 200);
}
