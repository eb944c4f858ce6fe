//! The extractors on a real router: public, authenticated, role- and permission-guarded routes.

use axum::Router;
use axum::routing::get;
use telar_auth::{
    Authenticated, Claims, KeyRing, Permission, RequirePermission, RequireRole, Role, Verifier,
    VerifierConfig, authenticate,
};

use crate::{AUDIENCE, ISSUER, claims, now};

struct Operador;
impl Role for Operador {
    const NAME: &'static str = "operador";
}

struct ReadDocuments;
impl Permission for ReadDocuments {
    const NAME: &'static str = "documents:read";
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_say_what_they_require() {
    let ring = KeyRing::generate(now(), 900).expect("keys");
    let verifier =
        Verifier::new(VerifierConfig::new(ISSUER, AUDIENCE)).with_keys(&ring.jwks(now()));
    let app = Router::new()
        .route("/public", get(|| async { "hello" }))
        .route(
            "/me",
            get(|Authenticated(c): Authenticated| async move { c.sub }),
        )
        .route(
            "/ops",
            get(|RequireRole(c, _): RequireRole<Operador>| async move { c.sub }),
        )
        .route(
            "/docs",
            get(|RequirePermission(c, _): RequirePermission<ReadDocuments>| async move { c.sub }),
        )
        .layer(axum::middleware::from_fn_with_state(verifier, authenticate));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();
    let status = |path: &str, token: Option<String>| {
        let mut request = client.get(format!("{base}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.expect("send").status().as_u16() }
    };
    let citizen = ring.sign(&claims(900)).expect("sign");
    let operator = ring
        .sign(&Claims {
            roles: vec!["operador".into()],
            permissions: vec![],
            ..claims(900)
        })
        .expect("sign");
    assert_eq!(status("/public", None).await, 200);
    assert_eq!(status("/me", None).await, 401);
    assert_eq!(status("/me", Some(citizen.clone())).await, 200);
    assert_eq!(
        status("/me", Some("garbage".into())).await,
        401,
        "a bad token is refused at once"
    );
    assert_eq!(
        status("/public", Some("garbage".into())).await,
        401,
        "even on a public route"
    );
    assert_eq!(status("/ops", Some(citizen.clone())).await, 403);
    assert_eq!(status("/ops", Some(operator.clone())).await, 200);
    assert_eq!(status("/docs", Some(citizen)).await, 200);
    assert_eq!(status("/docs", Some(operator)).await, 403);
}
