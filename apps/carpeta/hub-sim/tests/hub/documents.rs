use reqwest::Method;
use serde_json::json;

use crate::helpers::{Engine, spawn};

#[tokio::test]
async fn authenticate_document_answers_code_0001() {
    let hub = spawn(Engine::Sqlite).await;
    let body = json!({"idCitizen": 1032456789u64, "UrlDocument": "https://files.example/doc?sig=x", "documentTitle": "Diploma"});
    let answer = hub
        .call(Method::PUT, "/apis/authenticateDocument", Some(body))
        .await;
    assert_eq!(answer.status, 200);
    assert!(answer.text().ends_with("[Code: 0001]"), "{}", answer.text());
    let state = hub.call(Method::GET, "/control/state", None).await;
    assert_eq!(
        state.body["authentications"][0]["url_document"],
        "https://files.example/doc?sig=x"
    );
}

#[tokio::test]
async fn authenticate_document_rejects_bad_ids_and_nulls() {
    let hub = spawn(Engine::Sqlite).await;
    for body in [
        json!({"idCitizen": "1032456789", "UrlDocument": "u", "documentTitle": "t"}),
        json!({"idCitizen": -1, "UrlDocument": "u", "documentTitle": "t"}),
        json!({"idCitizen": 1032456789u64, "UrlDocument": null, "documentTitle": "t"}),
        json!({"idCitizen": 1032456789u64, "UrlDocument": "u", "documentTitle": null}),
    ] {
        let answer = hub
            .call(
                Method::PUT,
                "/apis/authenticateDocument",
                Some(body.clone()),
            )
            .await;
        assert_eq!(answer.status, 501, "{body}");
        assert!(answer.body.is_string());
    }
}
