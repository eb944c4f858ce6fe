//! Choreography tracking with AlpesPartners' rule table, as its design writes it.

use std::time::Duration;

use serde_json::json;
use telar_saga::{Choreography, Tracker};
use telar_sql::Db;
use telar_types::Envelope;

/// `reglas_coreografia` from `seeds/alpes-partners.md`, word for word, and how each end reads.
fn alpes() -> Choreography {
    Choreography::from_json(
        "partner-onboarding",
        &json!({
            "CreatePartner": ["PartnerCreated", "PartnerCreationFailed"],
            "PartnerCreated": ["ContratoCreado", "ContratoCreadoFailed"],
            "PartnerCreationFailed": [],
            "ContratoCreado": ["ContratoAprobado", "ContratoRechazado"],
            "ContratoCreadoFailed": [],
            "ContratoAprobado": [],
            "ContratoRechazado": ["RevisionContrato"],
            "RevisionContrato": []
        }),
        &json!({
            "PartnerCreationFailed": "Failed",
            "ContratoCreadoFailed": "Failed",
            "ContratoAprobado": "Completed",
            "RevisionContrato": "PendingReview"
        }),
    )
    .expect("the seed's rules are valid")
}

fn event(saga: &str, ty: &str) -> Envelope {
    let mut envelope = Envelope::new("/alpes", ty, json!({"partner_id": "dd4e7783"}));
    envelope.correlationid = Some(saga.to_owned());
    envelope
}

async fn track_all(tracker: &Tracker, saga: &str, types: &[&str]) -> String {
    let mut status = String::new();
    for ty in types {
        status = tracker
            .track(&event(saga, ty))
            .await
            .expect("track")
            .expect("a known type")
            .status;
    }
    status
}

pub async fn the_alpes_rules_track_every_ending(db: Db) {
    let tracker = Tracker::open(db, [alpes()]).await.expect("tracker");
    let ok = [
        "CreatePartner",
        "PartnerCreated",
        "ContratoCreado",
        "ContratoAprobado",
    ];
    assert_eq!(track_all(&tracker, "s-ok", &ok).await, "Completed");
    assert_eq!(
        track_all(
            &tracker,
            "s-fail",
            &["CreatePartner", "PartnerCreationFailed"]
        )
        .await,
        "Failed"
    );
    let review = [
        "CreatePartner",
        "PartnerCreated",
        "ContratoCreado",
        "ContratoRechazado",
        "RevisionContrato",
    ];
    assert_eq!(
        track_all(&tracker, "s-review", &review).await,
        "PendingReview"
    );
    let log = tracker.log(Some("s-ok"), 100).await.expect("log");
    assert_eq!(
        log.iter()
            .map(|e| (e.event_type.as_str(), e.status.as_str()))
            .collect::<Vec<_>>(),
        ok.iter().map(|t| (*t, "PROCESSED")).collect::<Vec<_>>()
    );
    assert_eq!(log[0].data["partner_id"], "dd4e7783", "payload kept");
    assert!(log.iter().all(|e| e.processed_at.is_some()));
}

pub async fn a_transition_the_rules_forbid_is_flagged(db: Db) {
    let tracker = Tracker::open(db, [alpes()]).await.expect("tracker");
    let status = track_all(&tracker, "s-bad", &["CreatePartner", "ContratoAprobado"]).await;
    assert_eq!(status, "PendingReview");
    let saga = tracker.saga("s-bad").await.expect("saga");
    assert_eq!(saga.violations, 1);
    let log = tracker.log(Some("s-bad"), 10).await.expect("log");
    assert_eq!(log[1].status, "FAILED");
    assert_eq!(
        log[1].error.as_deref(),
        Some("transition CreatePartner → ContratoAprobado is not allowed")
    );
    // A saga that does not start with a start type is flagged too.
    assert_eq!(
        track_all(&tracker, "s-orphan", &["ContratoCreado"]).await,
        "PendingReview"
    );
}

pub async fn redelivered_events_change_nothing(db: Db) {
    let tracker = Tracker::open(db, [alpes()]).await.expect("tracker");
    let first = event("s-dup", "CreatePartner");
    tracker.track(&first).await.expect("track");
    tracker.track(&first).await.expect("track again");
    tracker
        .track(&event("s-dup", "PartnerCreated"))
        .await
        .expect("track");
    assert_eq!(tracker.log(Some("s-dup"), 10).await.expect("log").len(), 2);
    assert_eq!(tracker.saga("s-dup").await.expect("saga").violations, 0);
}

pub async fn sagas_past_their_deadline_are_flagged_stuck(db: Db) {
    let tracker = Tracker::open(db, [alpes().deadline(Duration::ZERO)])
        .await
        .expect("tracker");
    track_all(&tracker, "s-slow", &["CreatePartner", "PartnerCreated"]).await;
    track_all(
        &tracker,
        "s-done",
        &["CreatePartner", "PartnerCreationFailed"],
    )
    .await;
    let stuck = tracker.flag_stuck().await.expect("stuck");
    assert_eq!(stuck.len(), 1);
    assert_eq!(stuck[0].correlation_id, "s-slow");
    assert!(tracker.saga("s-slow").await.expect("saga").stuck);
}

#[test]
fn rules_with_an_undeclared_ending_are_refused() {
    let error = Choreography::from_json("x", &json!({"A": ["B"], "B": []}), &json!({}))
        .expect_err("B ends but is not declared");
    assert!(error.to_string().contains('B'), "{error}");
}
