//! The notification service on an embedded bus: the file mailbox, a real SMTP server (aiosmtpd,
//! started by scripts/services.sh), signed webhooks with retries, dead letters, broken templates.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use telar_bus::{Bus, DeadLetterFilter, EmbeddedBus, EmbeddedConfig};
use telar_notify::{
    DeliveryFilter, EmailConfig, EmailMode, Notification, NotifyConfig, WebhookTarget,
};
use telar_types::Envelope;

struct Setup {
    bus: Bus,
    notification: Notification,
    _dirs: Vec<tempfile::TempDir>,
    mailbox: std::path::PathBuf,
}

async fn setup(configure: impl FnOnce(&mut NotifyConfig)) -> Setup {
    let (db, db_dir) = telar_testkit::sqlite_db("notification").await;
    let bus_dir = tempfile::tempdir().unwrap();
    let bus = Bus::new(
        EmbeddedBus::open(&EmbeddedConfig {
            path: bus_dir.path().join("bus.db"),
            ..EmbeddedConfig::default()
        })
        .await
        .unwrap(),
    );
    let mail_dir = tempfile::tempdir().unwrap();
    let mut config = NotifyConfig {
        email: EmailConfig {
            mode: EmailMode::Mailbox,
            mailbox_dir: mail_dir.path().display().to_string(),
            ..EmailConfig::default()
        },
        retry_backoff_ms: 20,
        max_attempts: 3,
        ..NotifyConfig::default()
    };
    configure(&mut config);
    let notification = telar_notify::build(db, config, telar_kit::KitConfig::default())
        .await
        .unwrap();
    Setup {
        bus,
        notification,
        mailbox: mail_dir.path().to_path_buf(),
        _dirs: vec![db_dir, bus_dir, mail_dir],
    }
}

fn authenticated(email: &str) -> Envelope {
    Envelope::new(
        "/signature",
        "carpeta.document.authenticated",
        json!({"name": "Ana", "title": "Diploma de bachiller", "email": email}),
    )
    .with_subject("doc-1")
}

async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..500 {
        if let Some(value) = check().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never happened: {what}");
}

/// The dead letter of `event_id`, once it is there.
async fn dead_letter(setup: &Setup, event_id: &str) -> telar_bus::DeadLetter {
    eventually("the dead letter", async || {
        let letters = setup
            .bus
            .dead_letters(DeadLetterFilter::default())
            .await
            .unwrap();
        letters.into_iter().find(|l| l.message_id == event_id)
    })
    .await
}

#[tokio::test]
async fn emails_land_in_the_mailbox_once_however_often_the_event_comes() {
    let setup = setup(|_| {}).await;
    let subscription = setup.notification.subscribe(&setup.bus).await.unwrap();
    let event = authenticated("ana@correo.co");
    setup.bus.publish(event.clone()).await.unwrap();
    let path = setup.mailbox.join(format!("{}.eml", event.id));
    let eml = eventually("the .eml file", async || {
        std::fs::read_to_string(&path).ok()
    })
    .await;
    assert!(eml.contains("To: ana@correo.co"), "{eml}");
    assert!(
        eml.contains("Subject: Su documento fue autenticado"),
        "{eml}"
    );
    assert!(eml.contains(&event.id), "the body names the event: {eml}");
    // Delivered again (same id, as after a redelivery): nothing sent twice.
    setup
        .bus
        .publish(Envelope {
            id: event.id.clone(),
            ..authenticated("ana@correo.co")
        })
        .await
        .unwrap();
    let other = Envelope::new(
        "/x",
        "carpeta.citizen.registered",
        json!({"email": "x@y.co"}),
    );
    setup.bus.publish(other.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = setup.notification.deliveries();
    let sent = log
        .list(&DeliveryFilter {
            event_id: Some(event.id.clone()),
            ..DeliveryFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(
        (sent[0].channel.as_str(), sent[0].status.as_str()),
        ("email", "sent")
    );
    // Types not configured are not notified.
    assert!(
        log.list(&DeliveryFilter {
            event_id: Some(other.id),
            ..DeliveryFilter::default()
        })
        .await
        .unwrap()
        .is_empty()
    );
    subscription.stop().await;
}

#[tokio::test]
async fn emails_go_through_a_real_smtp_server() {
    let maildir = std::env::var("TELAR_TEST_SMTP_MAILDIR")
        .unwrap_or_else(|_| "/tmp/telar-smtp/maildir".into());
    let port: u16 = std::env::var("TELAR_TEST_SMTP_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8025);
    let setup = setup(|config| {
        config.email.mode = EmailMode::Smtp;
        config.email.smtp_port = port;
    })
    .await;
    let subscription = setup.notification.subscribe(&setup.bus).await.unwrap();
    let event = authenticated("luis@correo.co");
    setup.bus.publish(event.clone()).await.unwrap();
    let found = eventually("the message in the SMTP server's maildir", async || {
        for folder in ["new", "cur"] {
            let Ok(entries) = std::fs::read_dir(std::path::Path::new(&maildir).join(folder)) else {
                continue;
            };
            for entry in entries.flatten() {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                if text.contains(&event.id) {
                    return Some(text);
                }
            }
        }
        None
    })
    .await;
    assert!(found.contains("luis@correo.co"));
    let sent = setup
        .notification
        .deliveries()
        .list(&DeliveryFilter {
            event_id: Some(event.id.clone()),
            ..DeliveryFilter::default()
        })
        .await
        .unwrap();
    assert!(sent[0].detail.starts_with("smtp 250"), "{sent:?}");
    subscription.stop().await;
}

#[derive(Clone, Default)]
struct Receiver {
    calls: Arc<AtomicUsize>,
    fail_first: usize,
    verified: Arc<Mutex<Vec<Value>>>,
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let call = receiver.calls.fetch_add(1, Ordering::SeqCst);
    if call < receiver.fail_first {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let timestamp: i64 = header(telar_notify::TIMESTAMP_HEADER).parse().unwrap_or(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let genuine = telar_notify::verify_webhook(
        "hook-secret",
        timestamp,
        &header(telar_notify::SIGNATURE_HEADER),
        &body,
        now,
        Duration::from_secs(300),
    );
    if !genuine {
        return StatusCode::UNAUTHORIZED;
    }
    receiver
        .verified
        .lock()
        .unwrap()
        .push(serde_json::from_slice(&body).unwrap());
    StatusCode::NO_CONTENT
}

async fn receiver(fail_first: usize) -> (String, Receiver) {
    let state = Receiver {
        fail_first,
        ..Receiver::default()
    };
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, state)
}

#[tokio::test]
async fn webhooks_are_signed_retried_and_never_repeat_a_sent_email() {
    let (url, state) = receiver(2).await;
    let setup = setup(|config| {
        config.max_attempts = 5;
        config.webhooks = vec![WebhookTarget {
            url: url.clone(),
            secret: "hook-secret".into(),
            events: vec!["carpeta.document.*".into()],
        }];
    })
    .await;
    let subscription = setup.notification.subscribe(&setup.bus).await.unwrap();
    let event = authenticated("ana@correo.co");
    setup.bus.publish(event.clone()).await.unwrap();
    let body = eventually("a verified webhook", async || {
        state.verified.lock().unwrap().first().cloned()
    })
    .await;
    assert_eq!(body["id"], json!(event.id), "the CloudEvent itself");
    assert_eq!(body["type"], "carpeta.document.authenticated");
    let log = setup.notification.deliveries();
    let attempts = log
        .list(&DeliveryFilter {
            event_id: Some(event.id.clone()),
            channel: Some("webhook".into()),
            ..DeliveryFilter::default()
        })
        .await
        .unwrap();
    let statuses: Vec<&str> = attempts.iter().rev().map(|d| d.status.as_str()).collect();
    assert_eq!(statuses, ["failed", "failed", "sent"], "{attempts:?}");
    let emails = log
        .list(&DeliveryFilter {
            event_id: Some(event.id.clone()),
            channel: Some("email".into()),
            ..DeliveryFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        emails.len(),
        1,
        "the email went out once, on the first attempt: {emails:?}"
    );
    // The delivery log over HTTP, filtered.
    let server = telar_testkit::serve(setup.notification.service).await;
    let listed: Vec<Value> = telar_testkit::client()
        .get(server.url(&format!("/deliveries?event_id={}&status=failed", event.id)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed[0]["detail"].as_str().unwrap().contains("503"));
    subscription.stop().await;
}

#[tokio::test]
async fn an_unreachable_target_ends_in_the_dead_letters_and_the_consumer_goes_on() {
    let setup = setup(|config| {
        config.webhooks = vec![WebhookTarget {
            url: "http://127.0.0.1:9/hook".into(),
            secret: "s".into(),
            events: vec![],
        }];
    })
    .await;
    let subscription = setup.notification.subscribe(&setup.bus).await.unwrap();
    let event = authenticated("ana@correo.co");
    setup.bus.publish(event.clone()).await.unwrap();
    let dead = dead_letter(&setup, &event.id).await;
    assert_eq!(dead.attempts, 3);
    assert!(dead.last_error.contains("webhook"), "{}", dead.last_error);
    let later = authenticated("luis@correo.co");
    setup.bus.publish(later.clone()).await.unwrap();
    let path = setup.mailbox.join(format!("{}.eml", later.id));
    eventually("a later event is still handled", async || {
        std::fs::read_to_string(&path).ok()
    })
    .await;
    subscription.stop().await;
}

#[tokio::test]
async fn a_broken_template_shows_on_ready_and_only_its_events_are_refused() {
    let templates = tempfile::tempdir().unwrap();
    std::fs::write(
        templates
            .path()
            .join("carpeta.transfer.confirmed.email.body"),
        "Hola {{ data.name ",
    )
    .unwrap();
    let dir = templates.path().display().to_string();
    let setup = setup(move |config| config.templates_dir = Some(dir)).await;
    let subscription = setup.notification.subscribe(&setup.bus).await.unwrap();
    let broken = Envelope::new(
        "/transfer",
        "carpeta.transfer.confirmed",
        json!({"email": "ana@correo.co"}),
    );
    setup.bus.publish(broken.clone()).await.unwrap();
    let dead = dead_letter(&setup, &broken.id).await;
    assert_eq!(dead.attempts, 1, "no retry can fix a template");
    assert!(
        dead.last_error
            .contains("carpeta.transfer.confirmed.email.body"),
        "{}",
        dead.last_error
    );
    let fine = authenticated("ana@correo.co");
    setup.bus.publish(fine.clone()).await.unwrap();
    let path = setup.mailbox.join(format!("{}.eml", fine.id));
    eventually("other events still go out", async || {
        std::fs::read_to_string(&path).ok()
    })
    .await;
    subscription.stop().await;
    let server = telar_testkit::serve(setup.notification.service).await;
    let ready = telar_testkit::client()
        .get(server.url("/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let text = ready.text().await.unwrap();
    assert!(
        text.contains("carpeta.transfer.confirmed.email.body"),
        "{text}"
    );
}

#[tokio::test]
async fn an_unreachable_smtp_server_is_retried_then_dead_lettered() {
    let setup = setup(|config| {
        config.email.mode = EmailMode::Smtp;
        config.email.smtp_port = 9;
        config.email.timeout_ms = 2_000;
    })
    .await;
    let subscription = setup.notification.subscribe(&setup.bus).await.unwrap();
    let event = authenticated("ana@correo.co");
    setup.bus.publish(event.clone()).await.unwrap();
    let dead = dead_letter(&setup, &event.id).await;
    assert_eq!(dead.attempts, 3);
    assert!(dead.last_error.contains("smtp"), "{}", dead.last_error);
    let failed = setup
        .notification
        .deliveries()
        .list(&DeliveryFilter {
            event_id: Some(event.id.clone()),
            status: Some("failed".into()),
            ..DeliveryFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(failed.len(), 3, "one row per attempt: {failed:?}");
    subscription.stop().await;
}
