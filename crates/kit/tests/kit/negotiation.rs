use crate::helpers::spawn;

#[tokio::test]
async fn responses_follow_accept() {
    let app = spawn().await;
    let body = r#"{"id":1032456789,"email":"ana@example.co"}"#;
    let xml = app
        .client
        .post(app.url("/citizens"))
        .header("content-type", "application/json")
        .header("accept", "application/xml")
        .body(body)
        .send()
        .await
        .expect("send");
    assert_eq!(xml.status(), 201);
    assert_eq!(xml.headers()["content-type"], "application/xml");
    let text = xml.text().await.expect("text");
    assert!(
        text.contains("<response><id>1032456789</id><email>ana@example.co</email></response>"),
        "{text}"
    );

    let json = app
        .client
        .post(app.url("/citizens"))
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(body)
        .send()
        .await
        .expect("send");
    assert_eq!(json.headers()["content-type"], "application/json");
}

#[tokio::test]
async fn errors_in_xml_are_problem_xml() {
    let app = spawn().await;
    let response = app
        .client
        .post(app.url("/citizens"))
        .header("content-type", "application/json")
        .header("accept", "application/xml")
        .body(r#"{"id":1,"email":"x"}"#)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 422);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+xml"
    );
    let text = response.text().await.expect("text");
    assert!(
        text.contains("<problem xmlns=\"urn:ietf:rfc:7807\">"),
        "{text}"
    );
    assert!(text.contains("<field>email</field>"), "{text}");
}

#[tokio::test]
async fn unacceptable_accept_gets_406_before_the_handler_runs() {
    let app = spawn().await;
    let response = app
        .client
        .post(app.url("/citizens"))
        .header("content-type", "application/json")
        .header("accept", "image/png")
        .body(r#"{"id":1,"email":"a@b.co"}"#)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 406);
}

#[tokio::test]
async fn request_bodies_are_json_or_xml_by_content_type() {
    let app = spawn().await;
    let xml = app
        .client
        .post(app.url("/citizens"))
        .header("content-type", "application/xml")
        .body("<citizen><id>1032456789</id><email>ana@example.co</email></citizen>")
        .send()
        .await
        .expect("send");
    assert_eq!(xml.status(), 201);
    let echoed: serde_json::Value = xml.json().await.expect("json");
    assert_eq!(echoed["id"], 1032456789);

    let missing = app
        .client
        .post(app.url("/citizens"))
        .body(r#"{"id":1,"email":"a@b.co"}"#)
        .send()
        .await
        .expect("send");
    assert_eq!(missing.status(), 415);
    let problem: serde_json::Value = missing.json().await.expect("json");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or("")
            .contains("Content-Type")
    );

    let text = app
        .client
        .post(app.url("/citizens"))
        .header("content-type", "text/plain")
        .body("hola")
        .send()
        .await
        .expect("send");
    assert_eq!(text.status(), 415);
}
