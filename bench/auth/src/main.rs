//! `telar-bench-auth [--quick]`: token verifications per second on one core (full checks:
//! header, key lookup, Ed25519 signature, claims) next to bare Ed25519 signature verification of
//! the same bytes (aws-lc-rs), and Argon2id password checks per second at the service's cost.

use std::time::Instant;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use telar_auth::{Claims, KeyRing, Verifier, VerifierConfig};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 20_000 } else { 200_000 };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let ring = KeyRing::generate(now, 900).expect("keys");
    let claims = Claims {
        sub: "1032456789".into(),
        roles: vec!["ciudadano".into()],
        permissions: vec!["documents:read".into()],
        org_id: Some("op-1".into()),
        iss: "https://identity.local".into(),
        aud: "carpeta".into(),
        exp: now + 900,
        iat: now,
        jti: "bench".into(),
    };
    let token = ring.sign(&claims).expect("sign");
    let verifier = Verifier::new(VerifierConfig::new("https://identity.local", "carpeta"))
        .with_keys(&ring.jwks(now));

    let started = Instant::now();
    for _ in 0..n {
        std::hint::black_box(verifier.verify(&token).await.expect("valid"));
    }
    let ours = n as f64 / started.elapsed().as_secs_f64();

    // The floor: the signature check alone.
    let x_text = public_x(&ring, now);
    let x = URL_SAFE_NO_PAD.decode(x_text).expect("x");
    let key = UnparsedPublicKey::new(&ED25519, x);
    let (signed, signature) = token.rsplit_once('.').expect("token");
    let signature = URL_SAFE_NO_PAD.decode(signature).expect("signature");
    let started = Instant::now();
    for _ in 0..n {
        key.verify(signed.as_bytes(), &signature).expect("valid");
    }
    let raw = n as f64 / started.elapsed().as_secs_f64();

    let argon = argon2::Argon2::default();
    let salt = SaltString::encode_b64(&[7u8; 16]).expect("salt");
    let hash = argon
        .hash_password(b"correct horse battery staple", &salt)
        .expect("hash")
        .to_string();
    let parsed = PasswordHash::new(&hash).expect("parse");
    let logins = if quick { 10 } else { 40 };
    let started = Instant::now();
    for _ in 0..logins {
        argon
            .verify_password(b"correct horse battery staple", &parsed)
            .expect("match");
    }
    let per_s = f64::from(logins) / started.elapsed().as_secs_f64();
    println!("verify telar_per_s={ours:.0} raw_ed25519_per_s={raw:.0} (one core)");
    println!(
        "argon2id m=19456KiB t=2 p=1 logins_per_s={per_s:.1} (one core, {:.0} ms each)",
        1000.0 / per_s
    );
    println!(
        "RESULT name=auth value={ours:.0} reference={raw:.0} ratio={:.3} unit=verifications/s",
        ours / raw
    );
}

/// The public key (`x`) of the ring's current key.
fn public_x(ring: &KeyRing, now: i64) -> String {
    let jwks = ring.jwks(now);
    let jwk = jwks.keys.last().expect("a key");
    match &jwk.algorithm {
        telar_auth::JwkAlgorithm::OctetKeyPair(okp) => okp.x.clone(),
        _ => panic!("an Ed25519 key"),
    }
}
