use crate::helpers::spawn;

#[tokio::test]
async fn openapi_describes_the_api_and_the_problem_shape() {
    let app = spawn().await;
    let doc: serde_json::Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(doc["info"]["title"], "kit-test");
    assert!(doc["paths"]["/citizens"]["post"].is_object(), "{doc}");
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    assert!(doc["components"]["schemas"]["NewCitizen"].is_object());
}

#[tokio::test]
async fn docs_ui_is_served_without_internet() {
    let app = spawn().await;
    let page = app
        .client
        .get(app.url("/docs/"))
        .send()
        .await
        .expect("send");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("text");
    assert!(html.contains("swagger-ui"), "{html}");
    for external in ["unpkg.com", "cdn.jsdelivr", "cdnjs"] {
        assert!(!html.contains(external), "docs page loads {external}");
    }
    let script = app
        .client
        .get(app.url("/docs/swagger-ui-bundle.js"))
        .send()
        .await
        .expect("send");
    assert_eq!(script.status(), 200, "assets are bundled in the binary");
    let init = app
        .client
        .get(app.url("/docs/swagger-initializer.js"))
        .send()
        .await
        .expect("send");
    assert!(init.text().await.expect("text").contains("/openapi.json"));
}
