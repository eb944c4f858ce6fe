//! The identity service over HTTP, with the verifier other services use.

use telar_auth::{Verifier, VerifierConfig};
use telar_identity::{IdentityConfig, LoginPolicy, NewAccount, build};
use telar_kit::KitConfig;

struct Identity {
    server: telar_testkit::TestServer,
    config: IdentityConfig,
    _dir: tempfile::TempDir,
}

async fn identity() -> Identity {
    identity_with(LoginPolicy::default()).await
}

async fn identity_with(login: LoginPolicy) -> Identity {
    let (db, dir) = telar_testkit::sqlite_db("identity").await;
    let config = IdentityConfig {
        issuer: "http://identity.test".into(),
        audience: "carpeta".into(),
        login,
        ..IdentityConfig::default()
    };
    let (service, accounts) = build(db, config.clone(), KitConfig::default())
        .await
        .expect("identity");
    accounts
        .create_user(NewAccount {
            name: "ana@example.com".into(),
            secret: "correct horse battery staple".into(),
            roles: vec!["ciudadano".into()],
            permissions: vec!["documents:read".into()],
            org_id: Some("op-1".into()),
        })
        .await
        .expect("user");
    accounts
        .create_client(NewAccount {
            name: "hub-client".into(),
            secret: "s3cret-for-services".into(),
            roles: vec!["service".into()],
            permissions: vec!["hub:call".into()],
            org_id: None,
        })
        .await
        .expect("client");
    Identity {
        server: telar_testkit::serve(service).await,
        config,
        _dir: dir,
    }
}

/// `application/x-www-form-urlencoded`.
fn form(fields: &[(&str, &str)]) -> String {
    let encode = |text: &str| {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_owned(),
                other => format!("%{other:02X}"),
            })
            .collect::<String>()
    };
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

async fn post_form(identity: &Identity, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
    telar_testkit::client()
        .post(identity.server.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(fields))
        .send()
        .await
        .expect("post")
}

async fn token(identity: &Identity, fields: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let response = post_form(identity, "/token", fields).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

fn verifier(identity: &Identity) -> Verifier {
    Verifier::new(VerifierConfig {
        jwks_url: Some(identity.server.url("/.well-known/jwks.json")),
        ..VerifierConfig::new(&identity.config.issuer, &identity.config.audience)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_grant_gives_a_token_other_services_verify() {
    let identity = identity().await;
    let (status, body) = token(
        &identity,
        &[
            ("grant_type", "password"),
            ("username", "ana@example.com"),
            ("password", "correct horse battery staple"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    let claims = verifier(&identity)
        .verify(body["access_token"].as_str().expect("access token"))
        .await
        .expect("verifies through the JWKS");
    assert_eq!(claims.roles, ["ciudadano"]);
    assert_eq!(claims.permissions, ["documents:read"]);
    assert_eq!(claims.org_id.as_deref(), Some("op-1"));
    assert!(!claims.jti.is_empty() && claims.exp - claims.iat == 900);

    let discovery: serde_json::Value = telar_testkit::client()
        .get(identity.server.url("/.well-known/openid-configuration"))
        .send()
        .await
        .expect("discovery")
        .json()
        .await
        .expect("json");
    assert_eq!(discovery["issuer"], "http://identity.test");
    assert_eq!(
        discovery["jwks_uri"],
        "http://identity.test/.well-known/jwks.json"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_user_and_a_wrong_password_get_the_same_answer() {
    let identity = identity().await;
    let wrong = token(
        &identity,
        &[
            ("grant_type", "password"),
            ("username", "ana@example.com"),
            ("password", "nope"),
        ],
    )
    .await;
    let unknown = token(
        &identity,
        &[
            ("grant_type", "password"),
            ("username", "who@example.com"),
            ("password", "nope"),
        ],
    )
    .await;
    assert_eq!(wrong, unknown);
    assert_eq!(wrong.0, 400);
    assert_eq!(wrong.1["error"], "invalid_grant");
    let missing = token(
        &identity,
        &[("grant_type", "password"), ("username", "ana@example.com")],
    )
    .await;
    assert_eq!(
        (missing.0, missing.1["error"].as_str()),
        (400, Some("invalid_request"))
    );
    assert!(
        missing.1["error_description"]
            .as_str()
            .unwrap_or_default()
            .contains("password")
    );
    let odd = token(&identity, &[("grant_type", "implicit")]).await;
    assert_eq!(odd.1["error"], "unsupported_grant_type");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_tokens_rotate_and_a_reused_one_revokes_the_family() {
    let identity = identity().await;
    let (_, first) = token(
        &identity,
        &[
            ("grant_type", "password"),
            ("username", "ana@example.com"),
            ("password", "correct horse battery staple"),
        ],
    )
    .await;
    let first_refresh = first["refresh_token"].as_str().expect("refresh").to_owned();
    let (status, second) = token(
        &identity,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &first_refresh),
        ],
    )
    .await;
    assert_eq!(status, 200, "{second}");
    let second_refresh = second["refresh_token"]
        .as_str()
        .expect("rotated")
        .to_owned();
    assert_ne!(first_refresh, second_refresh);
    verifier(&identity)
        .verify(second["access_token"].as_str().expect("access"))
        .await
        .expect("a fresh access token");
    // The first refresh token is used again: a copy is in someone else's hands.
    let (reuse, body) = token(
        &identity,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &first_refresh),
        ],
    )
    .await;
    assert_eq!(
        (reuse, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (after, _) = token(
        &identity,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &second_refresh),
        ],
    )
    .await;
    assert_eq!(after, 400, "the whole family is revoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_accounts_use_client_credentials_and_revocation_ends_a_login() {
    let identity = identity().await;
    let (status, body) = token(
        &identity,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "hub-client"),
            ("client_secret", "s3cret-for-services"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.get("refresh_token").is_none(),
        "service accounts get no refresh token"
    );
    let claims = verifier(&identity)
        .verify(body["access_token"].as_str().expect("access"))
        .await
        .expect("valid");
    assert_eq!(claims.permissions, ["hub:call"]);
    let (bad, body) = token(
        &identity,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "hub-client"),
            ("client_secret", "x"),
        ],
    )
    .await;
    assert_eq!((bad, body["error"].as_str()), (401, Some("invalid_client")));

    let (_, login) = token(
        &identity,
        &[
            ("grant_type", "password"),
            ("username", "ana@example.com"),
            ("password", "correct horse battery staple"),
        ],
    )
    .await;
    let refresh = login["refresh_token"].as_str().expect("refresh").to_owned();
    let revoked = post_form(&identity, "/revoke", &[("token", refresh.as_str())]).await;
    assert_eq!(revoked.status(), 200);
    let (after, _) = token(
        &identity,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert_eq!(after, 400);
}

const RIGHT: &str = "correct horse battery staple";

async fn login(
    identity: &Identity,
    username: &str,
    password: &str,
) -> (u16, serde_json::Value, Option<String>) {
    let response = post_form(
        identity,
        "/token",
        &[
            ("grant_type", "password"),
            ("username", username),
            ("password", password),
        ],
    )
    .await;
    let status = response.status().as_u16();
    let retry = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, response.json().await.unwrap_or_default(), retry)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_lock_the_login_for_longer_each_time() {
    let identity = identity_with(LoginPolicy {
        attempts_per_minute: 1_000,
        failures: 3,
        within_secs: 60,
        lockout_ms: 1_100,
        max_lockout_ms: 60_000,
    })
    .await;
    for _ in 0..3 {
        assert_eq!(login(&identity, "ana@example.com", "wrong").await.0, 400);
    }
    let (status, body, retry) = login(&identity, "ana@example.com", RIGHT).await;
    assert_eq!(status, 429, "locked, even with the right password");
    assert_eq!(body["error"], "temporarily_unavailable");
    assert_eq!(retry.as_deref(), Some("2"));
    let (unknown, unknown_body, _) = login(&identity, "nobody@example.com", "wrong").await;
    assert_eq!(
        (unknown, &unknown_body["error"]),
        (429, &body["error"]),
        "the same answer for an unknown name"
    );

    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    assert_eq!(
        login(&identity, "ana@example.com", RIGHT).await.0,
        200,
        "unlocked"
    );
    for _ in 0..3 {
        login(&identity, "ana@example.com", "wrong").await;
    }
    let (status, _, retry) = login(&identity, "ana@example.com", RIGHT).await;
    assert_eq!(status, 429);
    assert_eq!(
        retry.as_deref(),
        Some("3"),
        "the second lockout is twice as long"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_gets_a_limited_number_of_attempts() {
    let identity = identity_with(LoginPolicy {
        attempts_per_minute: 5,
        failures: 1_000,
        ..LoginPolicy::default()
    })
    .await;
    for n in 0..5 {
        assert_eq!(
            login(&identity, &format!("user{n}@example.com"), "x")
                .await
                .0,
            400
        );
    }
    let (status, _, retry) = login(&identity, "ana@example.com", RIGHT).await;
    assert_eq!(status, 429, "whatever the usernames");
    assert!(retry.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_keys_are_encrypted_at_rest_and_rotate() {
    use base64::Engine;
    let secret = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
    let (db, _dir) = telar_testkit::sqlite_db("identity-keys").await;
    let config = IdentityConfig {
        issuer: "http://identity.test".into(),
        audience: "carpeta".into(),
        keys_secret: Some(secret.clone()),
        rotate_keys_after_secs: 1,
        ..IdentityConfig::default()
    };
    let (service, accounts) = build(db.clone(), config.clone(), KitConfig::default())
        .await
        .expect("identity");
    accounts
        .create_user(NewAccount {
            name: "ana@example.com".into(),
            secret: RIGHT.into(),
            roles: vec![],
            permissions: vec![],
            org_id: None,
        })
        .await
        .expect("user");
    let server = telar_testkit::serve(service).await;
    let identity = Identity {
        server,
        config: config.clone(),
        _dir: tempfile::tempdir().expect("dir"),
    };
    let first = login(&identity, "ana@example.com", RIGHT).await.1["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let stored: String = telar_sql::query("SELECT ring FROM identity_keys WHERE id = 1")
        .fetch_one(&db)
        .await
        .and_then(|row| row.get("ring"))
        .expect("stored keys");
    assert!(
        stored.starts_with("enc:v1:") && !stored.contains("pkcs8"),
        "encrypted at rest"
    );

    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let second = login(&identity, "ana@example.com", RIGHT).await.1["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let jwks: serde_json::Value = telar_testkit::client()
        .get(identity.server.url("/.well-known/jwks.json"))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    assert!(
        jwks["keys"].as_array().is_some_and(|keys| keys.len() >= 2),
        "rotated, and the old key still published: {jwks}"
    );
    let kid = |token: &str| {
        let header = token.split('.').next().unwrap_or_default();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap_or_default();
        serde_json::from_slice::<serde_json::Value>(&bytes).unwrap_or_default()["kid"].clone()
    };
    assert_ne!(kid(&first), kid(&second), "signed by different keys");
    let verifier = verifier(&identity);
    verifier
        .verify(&first)
        .await
        .expect("a token of the old key");
    verifier
        .verify(&second)
        .await
        .expect("a token of the new key");

    // A restart with the same secret reads the keys back; a wrong secret is a clear error.
    build(db.clone(), config.clone(), KitConfig::default())
        .await
        .expect("restart");
    let wrong = IdentityConfig {
        keys_secret: Some(base64::engine::general_purpose::STANDARD.encode([1u8; 32])),
        ..config
    };
    let error = build(db, wrong, KitConfig::default())
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        error.contains("do not open with this keys_secret"),
        "{error}"
    );
}
