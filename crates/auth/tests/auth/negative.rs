//! The negative tests the issue lists, through the `authenticate` middleware: each is 401 with
//! the same body (no detail leaked).

use axum::Router;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use telar_auth::{Authenticated, Claims, KeyRing, Verifier, VerifierConfig, authenticate};

use crate::{AUDIENCE, ISSUER, claims, now};

fn forge(header: serde_json::Value, payload: &Claims, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(payload).expect("json"))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_forged_or_stale_token_is_401_with_the_same_answer() {
    let ring = KeyRing::generate(now(), 900).expect("keys");
    let other_system = KeyRing::generate(now(), 900).expect("keys");
    let verifier =
        Verifier::new(VerifierConfig::new(ISSUER, AUDIENCE)).with_keys(&ring.jwks(now()));
    let app = Router::new()
        .route(
            "/me",
            get(|Authenticated(c): Authenticated| async move { c.sub }),
        )
        .layer(axum::middleware::from_fn_with_state(verifier, authenticate));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}/me", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let good = ring.sign(&claims(900)).expect("sign");
    let kid = ring.current_kid().expect("kid").to_owned();
    let public_x = serde_json::to_value(&ring.jwks(now()).keys[0]).expect("jwk")["x"]
        .as_str()
        .expect("x")
        .to_owned();
    let mut hs256 = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs256.kid = Some(kid.clone());
    let (head, rest) = good.split_once('.').expect("token");
    let (payload, signature) = rest.split_once('.').expect("token");
    let mut tampered_claims = claims(900);
    tampered_claims.roles = vec!["admin".into()];
    let tampered = format!(
        "{head}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&tampered_claims).expect("json"))
    );
    let mut not_yet = serde_json::to_value(claims(900)).expect("json");
    not_yet["nbf"] = (now() + 600).into();
    let mut nbf_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    nbf_header.kid = Some(kid.clone());
    let no_aud = {
        let mut value = serde_json::to_value(claims(900)).expect("json");
        value.as_object_mut().expect("object").remove("aud");
        value
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "alg none",
            forge(
                serde_json::json!({"alg": "none", "kid": kid}),
                &claims(900),
                "",
            ),
        ),
        (
            "HS256 keyed with the public key",
            jsonwebtoken::encode(
                &hs256,
                &claims(900),
                &jsonwebtoken::EncodingKey::from_secret(public_x.as_bytes()),
            )
            .expect("forge"),
        ),
        (
            "unknown kid",
            forge(
                serde_json::json!({"alg": "EdDSA", "kid": "no-such-key"}),
                &claims(900),
                signature,
            ),
        ),
        (
            "kid with a path",
            forge(
                serde_json::json!({"alg": "EdDSA", "kid": "../../etc/passwd"}),
                &claims(900),
                signature,
            ),
        ),
        (
            "kid with SQL",
            forge(
                serde_json::json!({"alg": "EdDSA", "kid": "x' OR '1'='1"}),
                &claims(900),
                signature,
            ),
        ),
        ("expired", ring.sign(&claims(-120)).expect("sign")),
        (
            "nbf in the future",
            jsonwebtoken::encode(&nbf_header, &not_yet, &encoding_key(&ring)).expect("sign"),
        ),
        (
            "wrong iss",
            ring.sign(&Claims {
                iss: "https://evil.example".into(),
                ..claims(900)
            })
            .expect("sign"),
        ),
        (
            "wrong aud",
            ring.sign(&Claims {
                aud: "heartguard".into(),
                ..claims(900)
            })
            .expect("sign"),
        ),
        (
            "missing aud",
            jsonwebtoken::encode(&nbf_header, &no_aud, &encoding_key(&ring)).expect("sign"),
        ),
        ("payload tampered", tampered),
        (
            "signature truncated",
            format!("{head}.{payload}.{}", &signature[..signature.len() / 2]),
        ),
        (
            "another system's issuer and key",
            other_system.sign(&claims(900)).expect("sign"),
        ),
    ];
    let client = reqwest::Client::new();
    let ok = client
        .get(&base)
        .bearer_auth(&good)
        .send()
        .await
        .expect("send");
    assert_eq!(ok.status(), 200, "the genuine token passes");
    let mut bodies = std::collections::BTreeSet::new();
    for (name, token) in cases {
        let response = client
            .get(&base)
            .bearer_auth(&token)
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 401, "{name}");
        let body: serde_json::Value = response.json().await.expect("problem");
        bodies.insert(body["detail"].to_string());
    }
    assert_eq!(bodies.len(), 1, "one answer for every refusal: {bodies:?}");
}

/// The ring's current private key, for crafting payloads the `Claims` type cannot express.
fn encoding_key(ring: &KeyRing) -> jsonwebtoken::EncodingKey {
    let json = serde_json::to_value(ring).expect("ring");
    let pkcs8 = json["keys"].as_array().and_then(|k| k.last()).expect("key")["pkcs8"]
        .as_str()
        .expect("pkcs8")
        .to_owned();
    let der = base64::engine::general_purpose::STANDARD
        .decode(pkcs8)
        .expect("der");
    jsonwebtoken::EncodingKey::from_ed_der(&der)
}
