//! A destination operator killed (SIGKILL) in the middle of downloading a transferred citizen's
//! documents finishes the transfer when it starts again: the receiving saga resumes from its
//! last completed step, stores each document once, registers the citizen at the hub and
//! confirms to the origin with `req_status: 1`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use sha2::Digest;

use super::{citizen_token, embedded_in, start, terminate};

const ID: &str = "1032456722";

/// The origin: serves two files — the second one hangs on its first request (the destination
/// is killed while it waits) — and records the confirmations it receives.
async fn origin(
    downloading: tokio::sync::mpsc::UnboundedSender<()>,
    confirmations: tokio::sync::mpsc::UnboundedSender<Value>,
) -> String {
    let second_requests = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new()
        .route(
            "/files/uno.pdf",
            axum::routing::get(|| async { "%PDF uno" }),
        )
        .route(
            "/files/dos.pdf",
            axum::routing::get(move || {
                let second_requests = second_requests.clone();
                let downloading = downloading.clone();
                async move {
                    if second_requests.fetch_add(1, Ordering::SeqCst) == 0 {
                        let _ = downloading.send(());
                        std::future::pending::<()>().await;
                    }
                    "%PDF dos"
                }
            }),
        )
        .route(
            "/confirm",
            axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
                let confirmations = confirmations.clone();
                async move {
                    let _ = confirmations.send(body);
                    "ok"
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_destination_killed_mid_download_finishes_the_transfer_on_restart() {
    let (downloading_tx, mut downloading) = tokio::sync::mpsc::unbounded_channel();
    let (confirm_tx, mut confirmations) = tokio::sync::mpsc::unbounded_channel();
    let origin = origin(downloading_tx, confirm_tx).await;
    let dir = tempfile::tempdir().expect("dir");
    let env = embedded_in(dir.path());
    let (child, urls, _rest) = start(&["up"], &env);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let accepted = client
        .post(format!("{}/api/transferCitizen", urls["gateway"]))
        .json(&json!({
            "id": 1032456722u64,
            "citizenName": "Rosa Díaz",
            "citizenEmail": "rosa@correo.co",
            "urlDocuments": {
                "Uno": [format!("{origin}/files/uno.pdf")],
                "Dos": [format!("{origin}/files/dos.pdf")],
            },
            "confirmAPI": format!("{origin}/confirm"),
        }))
        .send()
        .await
        .expect("transfer");
    assert_eq!(accepted.status(), 201, "accepted");
    tokio::time::timeout(Duration::from_secs(30), downloading.recv())
        .await
        .expect("the destination starts downloading the second document")
        .expect("signal");

    // Killed outright while the download hangs: no drain, no cleanup.
    let mut child = child;
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    assert!(
        confirmations.try_recv().is_err(),
        "nothing was confirmed before the crash"
    );

    let (child, urls, rest) = start(&["up"], &env);
    let confirmation = tokio::time::timeout(Duration::from_secs(60), confirmations.recv())
        .await
        .expect("the restarted destination confirms")
        .expect("confirmation");
    assert_eq!(confirmation, json!({"id": 1032456722u64, "req_status": 1}));

    let token = citizen_token(dir.path(), ID);
    // The saga marks the citizen registered as its last step, after the confirmation.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let citizen: Value = client
            .get(format!("{}/citizens/{ID}", urls["gateway"]))
            .bearer_auth(&token)
            .send()
            .await
            .expect("citizen")
            .json()
            .await
            .expect("json");
        if citizen["status"] == "registered" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still not registered: {citizen}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let listed: Value = client
        .get(format!("{}/documents?owner={ID}", urls["gateway"]))
        .bearer_auth(&token)
        .send()
        .await
        .expect("documents")
        .json()
        .await
        .expect("json");
    let mut documents: Vec<(String, String)> = listed
        .as_array()
        .expect("a list")
        .iter()
        .map(|d| {
            (
                d["title"].as_str().unwrap_or_default().to_owned(),
                d["sha256"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    documents.sort();
    let sha = |text: &str| hex::encode(sha2::Sha256::digest(text.as_bytes()));
    assert_eq!(
        documents,
        vec![
            ("Dos".to_owned(), sha("%PDF dos")),
            ("Uno".to_owned(), sha("%PDF uno")),
        ],
        "each document stored once, intact"
    );
    let validated: Value = client
        .get(format!("{}/apis/validateCitizen/{ID}", urls["hub-sim"]))
        .send()
        .await
        .expect("validate")
        .json()
        .await
        .unwrap_or(Value::Null);
    assert!(
        validated.to_string().contains("Operador Telar"),
        "registered at the hub with the destination: {validated}"
    );
    terminate(&child);
    let mut child = child;
    assert!(child.wait().expect("wait").success());
    drop(rest);
}
