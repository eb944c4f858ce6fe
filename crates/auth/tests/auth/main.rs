//! Signing keys, rotation, JWKS and the verifier's refusals; the axum extractors.

mod extract;
mod negative;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use telar_auth::{Claims, KeyRing, Verifier, VerifierConfig};

pub const ISSUER: &str = "https://identity.carpeta.local";
pub const AUDIENCE: &str = "carpeta";

pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

pub fn claims(exp_in: i64) -> Claims {
    Claims {
        sub: "1032456789".into(),
        roles: vec!["ciudadano".into()],
        permissions: vec!["documents:read".into()],
        org_id: Some("op-1".into()),
        iss: ISSUER.into(),
        aud: AUDIENCE.into(),
        exp: now() + exp_in,
        iat: now(),
        jti: "t1".into(),
    }
}

fn verifier(ring: &KeyRing) -> Verifier {
    Verifier::new(VerifierConfig::new(ISSUER, AUDIENCE)).with_keys(&ring.jwks(now()))
}

#[tokio::test]
async fn a_signed_token_verifies_with_its_claims() {
    let ring = KeyRing::generate(now(), 900).expect("keys");
    let token = ring.sign(&claims(900)).expect("sign");
    let verified = verifier(&ring).verify(&token).await.expect("valid");
    assert_eq!(verified.sub, "1032456789");
    assert_eq!(verified.org_id.as_deref(), Some("op-1"));
    assert_eq!(
        (
            verified.iss.as_str(),
            verified.aud.as_str(),
            verified.jti.as_str()
        ),
        (ISSUER, AUDIENCE, "t1")
    );
    assert!(verified.has_role("ciudadano") && verified.has_permission("documents:read"));
}

#[tokio::test]
async fn expired_wrong_audience_or_issuer_are_refused() {
    let ring = KeyRing::generate(now(), 900).expect("keys");
    let verifier = verifier(&ring);
    let within_skew = ring.sign(&claims(-10)).expect("sign");
    assert!(
        verifier.verify(&within_skew).await.is_ok(),
        "10 s late is within the 30 s skew"
    );
    let expired = ring.sign(&claims(-60)).expect("sign");
    let error = verifier.verify(&expired).await.expect_err("expired");
    assert!(error.to_string().contains("xpired"), "{error}");
    let other_audience = ring
        .sign(&Claims {
            aud: "heartguard".into(),
            ..claims(900)
        })
        .expect("sign");
    assert!(verifier.verify(&other_audience).await.is_err());
    let other_issuer = ring
        .sign(&Claims {
            iss: "https://evil.example".into(),
            ..claims(900)
        })
        .expect("sign");
    assert!(verifier.verify(&other_issuer).await.is_err());
    assert!(verifier.verify("not a token").await.is_err());
}

#[tokio::test]
async fn forged_algorithms_are_refused() {
    let ring = KeyRing::generate(now(), 900).expect("keys");
    let verifier = verifier(&ring);
    let kid = ring.current_kid().expect("kid").to_owned();
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(900)).expect("json"));
    // alg "none", unsigned.
    let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"none","kid":"{kid}"}}"#));
    assert!(
        verifier
            .verify(&format!("{header}.{payload}."))
            .await
            .is_err()
    );
    // HS256 keyed with the *published* public key: the classic key-confusion attack.
    let jwks = ring.jwks(now());
    let public_x = serde_json::to_value(&jwks.keys[0]).expect("jwk")["x"]
        .as_str()
        .expect("x")
        .to_owned();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(kid);
    let forged = jsonwebtoken::encode(
        &header,
        &claims(900),
        &jsonwebtoken::EncodingKey::from_secret(public_x.as_bytes()),
    )
    .expect("forge");
    let error = verifier.verify(&forged).await.expect_err("HMAC refused");
    assert!(error.to_string().contains("EdDSA only"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_keeps_old_tokens_valid_and_unknown_kids_refetch_at_a_limited_rate() {
    let ring = Arc::new(std::sync::Mutex::new(
        KeyRing::generate(now(), 900).expect("keys"),
    ));
    let fetches = Arc::new(AtomicU32::new(0));
    let (served, count) = (ring.clone(), fetches.clone());
    let app = axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || {
            let (served, count) = (served.clone(), count.clone());
            async move {
                count.fetch_add(1, Ordering::SeqCst);
                let jwks = served.lock().expect("ring").jwks(now());
                axum::Json(jwks)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/.well-known/jwks.json",
        listener.local_addr().expect("addr")
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let verifier = Verifier::new(VerifierConfig {
        jwks_url: Some(url),
        refetch_every: Duration::from_millis(200),
        ..VerifierConfig::new(ISSUER, AUDIENCE)
    });

    let old_token = ring.lock().expect("ring").sign(&claims(900)).expect("sign");
    verifier
        .verify(&old_token)
        .await
        .expect("fetched the JWKS on first sight");
    ring.lock().expect("ring").rotate(now()).expect("rotate");
    let new_token = ring.lock().expect("ring").sign(&claims(900)).expect("sign");
    // The new kid is unknown, but the last fetch was just now: no refetch storm.
    assert!(verifier.verify(&new_token).await.is_err());
    assert_eq!(fetches.load(Ordering::SeqCst), 1, "rate-limited");
    tokio::time::sleep(Duration::from_millis(250)).await;
    verifier
        .verify(&new_token)
        .await
        .expect("refetched after the interval");
    assert_eq!(fetches.load(Ordering::SeqCst), 2);

    // Once the interval has passed it refetches; the rotated JWKS carries both keys, the old one
    // until its tokens have expired.
    let jwks = ring.lock().expect("ring").jwks(now());
    assert_eq!(jwks.keys.len(), 2, "old and new key published");
    let later = Verifier::new(VerifierConfig::new(ISSUER, AUDIENCE)).with_keys(&jwks);
    later
        .verify(&old_token)
        .await
        .expect("old tokens still valid");
    later.verify(&new_token).await.expect("new tokens valid");
    let retired = ring.lock().expect("ring").jwks(now() + 901);
    assert_eq!(
        retired.keys.len(),
        1,
        "the old key leaves once its tokens have expired"
    );
}

/// The first burst of requests after start (or after a rotation) carries a key id the verifier
/// has not fetched yet: every one of them waits for the one fetch instead of being refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_verifications_share_one_fetch_and_all_pass() {
    let ring = KeyRing::generate(now(), 900).expect("keys");
    let jwks = ring.jwks(now());
    let fetches = Arc::new(AtomicU32::new(0));
    let count = fetches.clone();
    let app = axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || {
            let (jwks, count) = (jwks.clone(), count.clone());
            async move {
                count.fetch_add(1, Ordering::SeqCst);
                // A slow issuer: the burst arrives while the fetch is in flight.
                tokio::time::sleep(Duration::from_millis(200)).await;
                axum::Json(jwks)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/.well-known/jwks.json",
        listener.local_addr().expect("addr")
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let verifier = Verifier::new(VerifierConfig {
        jwks_url: Some(url),
        ..VerifierConfig::new(ISSUER, AUDIENCE)
    });
    let token = ring.sign(&claims(900)).expect("sign");
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (verifier, token) = (verifier.clone(), token.clone());
        burst.spawn(async move { verifier.verify(&token).await.is_ok() });
    }
    let mut passed = 0;
    while let Some(ok) = burst.join_next().await {
        passed += usize::from(ok.expect("task"));
    }
    assert_eq!(passed, 50, "every request of the burst verified");
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "one fetch for all of them"
    );
}
