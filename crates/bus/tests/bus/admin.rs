//! The dead-letter admin routes, mounted on a kit service.

use telar_bus::{Outcome, admin_routes};
use telar_kit::Service;
use telar_testkit::Shutdown;

use crate::helpers::{dead_letters, embedded, event, eventually, options};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_shown_replayed_and_purged_over_http() {
    let t = embedded().await;
    let sub = t
        .bus
        .subscribe(
            "t.admin",
            options("admin"),
            |_d: telar_bus::Delivery| async { Outcome::reject("bad payload") },
        )
        .await
        .expect("subscribe");
    t.bus
        .publish(event("t.admin", "a", 1))
        .await
        .expect("publish");
    t.bus
        .publish(event("t.admin", "b", 2))
        .await
        .expect("publish");
    eventually("two dead letters", || {
        let bus = t.bus.clone();
        async move { dead_letters(&bus, "admin").await.len() == 2 }
    })
    .await;
    sub.stop().await;

    let service = Service::new("admin-test").api(admin_routes(t.bus.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let shutdown = Shutdown::new();
    tokio::spawn(service.run(listener, shutdown.signal()));
    let client = reqwest::Client::new();

    let listed: serde_json::Value = client
        .get(format!("{base}/admin/dlq?group=admin"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let letters = listed.as_array().cloned().unwrap_or_default();
    assert_eq!(letters.len(), 2);
    assert_eq!(letters[0]["last_error"], "bad payload");
    let id = letters[0]["id"].as_i64().unwrap_or(0);

    let shown = client
        .get(format!("{base}/admin/dlq/{id}"))
        .send()
        .await
        .expect("show");
    assert_eq!(shown.status(), 200);
    let missing = client
        .get(format!("{base}/admin/dlq/999999"))
        .send()
        .await
        .expect("show missing");
    assert_eq!(missing.status(), 404);
    let typo = client
        .post(format!("{base}/admin/dlq/replay"))
        .json(&serde_json::json!({"grp": "admin"}))
        .send()
        .await
        .expect("typo");
    assert_eq!(
        typo.status(),
        422,
        "unknown filter fields are refused, not read as `all`"
    );

    let replayed: serde_json::Value = client
        .post(format!("{base}/admin/dlq/replay"))
        .json(&serde_json::json!({"id": id}))
        .send()
        .await
        .expect("replay")
        .json()
        .await
        .expect("json");
    assert_eq!(replayed["count"], 1);
    let purged: serde_json::Value = client
        .post(format!("{base}/admin/dlq/purge"))
        .json(&serde_json::json!({"group": "admin"}))
        .send()
        .await
        .expect("purge")
        .json()
        .await
        .expect("json");
    assert_eq!(purged["count"], 1);
    assert!(dead_letters(&t.bus, "admin").await.is_empty());
    shutdown.trigger();
}
