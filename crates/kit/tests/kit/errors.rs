use crate::helpers::spawn;

async fn problem(response: reqwest::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    (status, response.json().await.expect("problem json"))
}

#[tokio::test]
async fn unknown_paths_and_methods_are_problems() {
    let app = spawn().await;
    let (status, body) =
        problem(app.client.get(app.url("/nope")).send().await.expect("send")).await;
    assert_eq!(status, 404);
    assert_eq!(body["code"], "not_found");
    let (status, _) = problem(
        app.client
            .delete(app.url("/citizens"))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(status, 405);
}

#[tokio::test]
async fn server_errors_are_opaque_and_carry_the_request_id() {
    let app = spawn().await;
    let response = app
        .client
        .get(app.url("/boom"))
        .header("x-request-id", "trace-me-1")
        .send()
        .await
        .expect("send");
    let (status, body) = problem(response).await;
    assert_eq!(status, 500);
    assert_eq!(body["request_id"], "trace-me-1");
    assert!(
        !body.to_string().contains("hunter2"),
        "cause leaked: {body}"
    );
}

#[tokio::test]
async fn a_panicking_handler_answers_500_and_the_server_lives_on() {
    let app = spawn().await;
    let (status, _) = problem(
        app.client
            .get(app.url("/panic"))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(status, 500);
    let health = app
        .client
        .get(app.url("/health"))
        .send()
        .await
        .expect("send");
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn validation_errors_name_the_field() {
    let app = spawn().await;
    let cases = [
        (r#"{"id":1,"email":"no-at"}"#, 422, "email"),
        (r#"{"id":"one","email":"a@b.co"}"#, 422, "id"),
        (r#"{"email":"a@b.co"}"#, 422, "id"),
        (r#"{"id":1,"email":"a@b.co","extra":true}"#, 422, "extra"),
    ];
    for (body, expected_status, field) in cases {
        let response = app
            .client
            .post(app.url("/citizens"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("send");
        let (status, problem) = problem(response).await;
        assert_eq!(status, expected_status, "{body}");
        assert_eq!(problem["errors"][0]["field"], field, "{body}: {problem}");
    }
    let response = app
        .client
        .post(app.url("/citizens"))
        .header("content-type", "application/json")
        .body("{\"id\":")
        .send()
        .await
        .expect("send");
    assert_eq!(problem(response).await.0, 400, "malformed json");
}
