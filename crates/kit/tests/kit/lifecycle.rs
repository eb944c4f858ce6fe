use std::time::Duration;

use crate::helpers::spawn;

#[tokio::test]
async fn shutdown_drains_an_in_flight_request_then_stops() {
    let app = spawn().await;
    let client = app.client.clone();
    let url = app.url("/slow?ms=300");
    let in_flight = tokio::spawn(async move { client.get(url).send().await });
    app.state.slow_started.notified().await;
    app.shutdown.trigger();

    let response = in_flight
        .await
        .expect("task")
        .expect("in-flight request completes");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.expect("text"), "\"done\"");
    let stopped = tokio::time::timeout(Duration::from_secs(5), app.server).await;
    assert!(
        matches!(stopped, Ok(Ok(Ok(())))),
        "server returns after draining"
    );
    let after = reqwest::Client::new()
        .get(app.base.clone() + "/health")
        .send()
        .await;
    assert!(after.is_err(), "no new connections after shutdown");
}
