use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::Hub;
use crate::on_both_engines;

fn operator(name: &str) -> Value {
    json!({"name": name, "address": "Cra 7 # 1-1", "contactMail": "ops@operador.co", "participants": ["Universidad", "Notaría"]})
}

async fn operators_register_list_and_set_transfer_urls(hub: Hub) {
    let empty = hub.call(Method::GET, "/apis/getOperators", None).await;
    assert_eq!(empty.status, 204);

    let first = hub
        .call(
            Method::POST,
            "/apis/registerOperator",
            Some(operator("Operador Uno")),
        )
        .await;
    assert_eq!(first.status, 201);
    assert!(first.body["message"].is_string());
    let id = first.body["idOperator"].as_str().unwrap_or("").to_owned();
    assert!(
        id.len() == 24 && id.chars().all(|c| c.is_ascii_hexdigit()),
        "{id}"
    );

    let twin = hub
        .call(
            Method::POST,
            "/apis/registerOperator",
            Some(operator("Operador Uno")),
        )
        .await;
    assert_eq!(twin.status, 201, "names are not unique");
    assert_ne!(twin.body["idOperator"], first.body["idOperator"]);

    let url = json!({"idOperator": id, "endPoint": " https://uno.example/api/transferCitizen/", "endPointConfirm": "https://uno.example/api/transferCitizenConfirm"});
    let set = hub
        .call(Method::PUT, "/apis/registerTransferEndPoint", Some(url))
        .await;
    assert_eq!(set.status, 200);
    assert!(set.body.is_string());

    let listed = hub.call(Method::GET, "/apis/getOperators", None).await;
    assert_eq!(listed.status, 200);
    let items = listed.body.as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["_id"], id.as_str());
    assert_eq!(items[0]["operatorName"], "Operador Uno");
    assert_eq!(items[0]["participants"], json!(["Universidad", "Notaría"]));
    assert_eq!(
        items[0]["transferAPIURL"], " https://uno.example/api/transferCitizen/",
        "stored exactly as given"
    );
    assert!(
        items[0].get("endPointConfirm").is_none(),
        "confirm URL is never stored"
    );
    assert!(items[1].get("transferAPIURL").is_none(), "absent until set");
}

on_both_engines!(operators_register_list_and_set_transfer_urls);

#[tokio::test]
async fn transfer_endpoint_for_unknown_or_malformed_ids() {
    let hub = crate::helpers::spawn(crate::helpers::Engine::Sqlite).await;
    let unknown =
        json!({"idOperator": "0123456789abcdef01234567", "endPoint": "https://x.example"});
    assert_eq!(
        hub.call(Method::PUT, "/apis/registerTransferEndPoint", Some(unknown))
            .await
            .status,
        204
    );
    let malformed = json!({"idOperator": "42", "endPoint": "https://x.example"});
    assert_eq!(
        hub.call(
            Method::PUT,
            "/apis/registerTransferEndPoint",
            Some(malformed)
        )
        .await
        .status,
        501
    );
}

#[tokio::test]
async fn invalid_operators_are_501() {
    let hub = crate::helpers::spawn(crate::helpers::Engine::Sqlite).await;
    let mut no_mail = operator("X");
    no_mail.as_object_mut().map(|m| m.remove("contactMail"));
    let mut bad_participants = operator("X");
    bad_participants["participants"] = json!("Universidad");
    for body in [no_mail, bad_participants] {
        assert_eq!(
            hub.call(Method::POST, "/apis/registerOperator", Some(body))
                .await
                .status,
            501
        );
    }
    assert_eq!(
        hub.call(Method::GET, "/apis/getOperators", None)
            .await
            .status,
        204
    );
}
