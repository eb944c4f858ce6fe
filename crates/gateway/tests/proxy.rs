//! Routing, identity at the edge, header rules, upstream protection, streaming and reloads,
//! against real upstream servers on loopback.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::Ordering;

use common::*;
use futures::StreamExt;
use telar_gateway::{ErrorConfig, ErrorStyle, GatewayConfig};

fn config(routes: Vec<telar_gateway::RouteConfig>, upstreams: &[(&str, &[&str])]) -> GatewayConfig {
    GatewayConfig {
        routes,
        upstreams: upstreams
            .iter()
            .map(|(name, urls)| ((*name).to_owned(), upstream_config(urls)))
            .collect(),
        ..GatewayConfig::default()
    }
}

#[tokio::test]
async fn routes_by_longest_prefix_with_strip_methods_and_public_routes() {
    let (citizens, docs) = (upstream().await, upstream().await);
    let issuer = Issuer::new();
    let mut stripped = route("/api/documents", "docs");
    stripped.strip_prefix = true;
    stripped.methods = vec!["GET".into()];
    let mut public = route("/api/citizens/public", "citizens");
    public.public = true;
    let gw = start(
        config(
            vec![route("/api/citizens", "citizens"), stripped, public],
            &[("citizens", &[&citizens.url]), ("docs", &[&docs.url])],
        ),
        &issuer,
    )
    .await;
    let token = issuer.token("1032456789", &["ciudadano"], 300);
    let http = client();

    let body = json(
        http.get(gw.at("/api/citizens/7?x=1"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(body["uri"], "/api/citizens/7?x=1");
    let body = json(
        http.get(gw.at("/api/documents/3"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(body["uri"], "/3");
    assert_eq!(docs.seen.hits.load(Ordering::SeqCst), 1);

    let refused = http
        .delete(gw.at("/api/documents/3"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 405);
    assert_eq!(refused.headers()["allow"], "GET");
    let unknown = http
        .get(gw.at("/nowhere"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let problem = json(unknown).await;
    assert_eq!(problem["code"], "unknown_service");
    assert!(
        problem["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );

    // Public: no token needed; a private route next to it still needs one.
    let open = http
        .get(gw.at("/api/citizens/public/validate"))
        .send()
        .await
        .unwrap();
    assert_eq!(open.status(), 200);
    let closed = http.get(gw.at("/api/citizens/7")).send().await.unwrap();
    assert_eq!(closed.status(), 401);
    assert_eq!(closed.headers()["www-authenticate"], "Bearer");
    // Dot segments never reach an upstream (sent raw: HTTP clients normalize them away).
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(gw.url.trim_start_matches("http://"))
        .await
        .unwrap();
    let request = format!(
        "GET /api/documents/%2e%2e/admin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(docs.seen.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn identity_is_forwarded_and_never_taken_from_the_client() {
    let up = upstream().await;
    let issuer = Issuer::new();
    let mut public = route("/open", "up");
    public.public = true;
    let gw = start(
        config(vec![route("/api", "up"), public], &[("up", &[&up.url])]),
        &issuer,
    )
    .await;
    let http = client();
    let token = issuer.token("1032456789", &["ciudadano", "operador"], 300);

    let body = json(
        http.get(gw.at("/api/me"))
            .bearer_auth(&token)
            .header("x-telar-user", "admin")
            .header("X-Telar-Roles", "superadmin")
            .header("x-telar-injected", "1")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let headers = &body["headers"];
    assert_eq!(headers["x-telar-user"], "1032456789");
    assert_eq!(headers["x-telar-roles"], "ciudadano,operador");
    assert_eq!(headers["x-telar-permissions"], "documents:read");
    assert_eq!(headers["x-telar-org"], "op-1");
    assert!(headers.get("x-telar-injected").is_none());

    // Anonymous on a public route: the spoofed headers are dropped too.
    let body = json(
        http.get(gw.at("/open/x"))
            .header("x-telar-user", "admin")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(body["headers"].get("x-telar-user").is_none());
    // A bad token on a public route is ignored, not trusted.
    let body = json(
        http.get(gw.at("/open/x"))
            .bearer_auth("not.a.token")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(body["headers"].get("x-telar-user").is_none());

    // Expired, tampered, foreign: 401 with the same body shape, upstream never called.
    let hits = up.seen.hits.load(Ordering::SeqCst);
    let expired = issuer.token("1", &["ciudadano"], -120);
    let mut tampered = token.clone();
    tampered.pop();
    let foreign = Issuer::new().token("1", &["operador"], 300);
    for bad in [expired, tampered, foreign, "x".repeat(40)] {
        let response = http
            .get(gw.at("/api/me"))
            .bearer_auth(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
        assert_eq!(json(response).await["code"], "unauthenticated");
    }
    assert_eq!(up.seen.hits.load(Ordering::SeqCst), hits);
}

#[tokio::test]
async fn hop_by_hop_headers_stop_and_request_ids_and_traces_go_on() {
    let up = upstream().await;
    let issuer = Issuer::new();
    let gw = start(
        config(vec![route("/api", "up")], &[("up", &[&up.url])]),
        &issuer,
    )
    .await;
    let token = issuer.token("7", &["operador"], 300);
    let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let response = client()
        .get(gw.at("/api/x"))
        .bearer_auth(&token)
        .header("connection", "keep-alive, x-private")
        .header("x-private", "secret")
        .header("proxy-authorization", "Basic Zm9vOmJhcg==")
        .header("x-request-id", "req-42")
        .header("traceparent", parent)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "req-42");
    assert_eq!(response.headers()["ratelimit-limit"], "200");
    let headers = json(response).await["headers"].clone();
    assert!(headers.get("x-private").is_none());
    assert!(headers.get("proxy-authorization").is_none());
    assert_eq!(headers["x-request-id"], "req-42");
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    let forwarded = headers["traceparent"].as_str().unwrap();
    assert!(forwarded.starts_with("00-0af7651916cd43dd8448eb211c80319c-"));
    assert_ne!(
        forwarded, parent,
        "the gateway is a hop of its own in the trace"
    );
    // Without one, a trace starts here.
    let headers = json(
        client()
            .get(gw.at("/api/x"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await["headers"]
        .clone();
    assert!(
        headers["traceparent"]
            .as_str()
            .is_some_and(|t| t.len() == 55)
    );
    assert!(
        headers["x-request-id"]
            .as_str()
            .is_some_and(|id| id.len() == 36)
    );
}

#[tokio::test]
async fn idempotent_requests_are_retried_on_another_instance_and_posts_are_not() {
    let (failing, healthy) = (upstream().await, upstream().await);
    failing.shutdown.trigger();
    let issuer = Issuer::new();
    let gw = start(
        config(
            vec![route("/api", "up"), route("/status", "bad")],
            &[
                ("up", &[&failing.url, &healthy.url]),
                ("bad", &[&healthy.url]),
            ],
        ),
        &issuer,
    )
    .await;
    let token = issuer.token("7", &["operador"], 300);
    let http = client();
    // Round-robin meets the dead instance on every other request; a GET never shows it.
    for _ in 0..4 {
        let response = http
            .get(gw.at("/api/x"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let status = response.status();
        assert_eq!(status, 200, "{}", response.text().await.unwrap());
    }
    // A 503 from the upstream: GET is tried twice, POST once.
    let before = healthy.seen.hits.load(Ordering::SeqCst);
    let response = http
        .get(gw.at("/status/503"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(healthy.seen.hits.load(Ordering::SeqCst), before + 2);
    let response = http
        .post(gw.at("/status/503"))
        .bearer_auth(&token)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(healthy.seen.hits.load(Ordering::SeqCst), before + 3);
}

#[tokio::test]
async fn a_failing_upstream_opens_its_breaker_and_recovers_through_half_open() {
    let up = upstream().await;
    let issuer = Issuer::new();
    let mut cfg = config(
        vec![route("/status", "up"), route("/ok", "up")],
        &[("up", &[&up.url])],
    );
    let upstream_cfg = cfg.upstreams.get_mut("up").unwrap();
    upstream_cfg.attempts = 1;
    upstream_cfg.breaker.consecutive_failures = 3;
    upstream_cfg.breaker.open_secs = 1;
    let gw = start(cfg, &issuer).await;
    let token = issuer.token("7", &["operador"], 300);
    let http = client();
    for _ in 0..3 {
        let response = http
            .get(gw.at("/status/500"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            500,
            "the upstream's own answer passes through"
        );
    }
    // Open: refused at the gateway, the upstream is not called.
    let hits = up.seen.hits.load(Ordering::SeqCst);
    let refused = http
        .get(gw.at("/ok"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(json(refused).await["code"], "service_unavailable");
    assert_eq!(up.seen.hits.load(Ordering::SeqCst), hits);
    // After open_secs one probe goes through; it succeeds and the breaker closes.
    eventually("the breaker lets a probe through", || async {
        http.get(gw.at("/ok"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status()
            == 200
    })
    .await;
    let response = http
        .get(gw.at("/ok"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn timeouts_refusals_and_the_envelope_style() {
    let (up, dead) = (upstream().await, upstream().await);
    dead.shutdown.trigger();
    let issuer = Issuer::new();
    let mut slow = route("/slow", "up");
    slow.timeout_ms = Some(200);
    let mut cfg = config(
        vec![slow, route("/dead", "dead")],
        &[("up", &[&up.url]), ("dead", &[&dead.url])],
    );
    cfg.errors = ErrorConfig {
        style: ErrorStyle::Envelope,
        prefix: Some("HG-GW".into()),
        ids: Default::default(),
    };
    let gw = start(cfg, &issuer).await;
    let token = issuer.token("7", &["operador"], 300);
    let http = client();
    let response = http
        .get(gw.at("/slow/2000"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 504);
    let body = json(response).await;
    assert_eq!(body["error"]["id"], "HG-GW-SERVICE-TIMEOUT");
    assert_eq!(body["code"], 504);
    let response = http
        .get(gw.at("/dead/x"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(
        json(response).await["error"]["id"],
        "HG-GW-SERVICE-UNAVAILABLE"
    );
    let response = http
        .get(gw.at("/unknown"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(json(response).await["error"]["id"], "HG-GW-UNKNOWN-SERVICE");
}

fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_both_ways_with_flat_memory() {
    const SIZE: u64 = 256 * 1024 * 1024;
    let up = upstream().await;
    let issuer = Issuer::new();
    let mut small = route("/small", "up");
    small.max_body_bytes = Some(1024);
    let gw = start(
        config(
            vec![route("/upload", "up"), route("/download", "up"), small],
            &[("up", &[&up.url])],
        ),
        &issuer,
    )
    .await;
    let token = issuer.token("7", &["operador"], 300);
    let http = reqwest::Client::new();
    let before = peak_rss_mib();
    let chunk = bytes::Bytes::from(vec![1u8; 256 * 1024]);
    let chunks = SIZE / chunk.len() as u64;
    let stream =
        futures::stream::iter(0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone()));
    let response = http
        .post(gw.at("/upload"))
        .bearer_auth(&token)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), SIZE.to_string());
    let response = http
        .get(gw.at(&format!("/download/{SIZE}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let mut total = 0u64;
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        total += chunk.unwrap().len() as u64;
    }
    assert_eq!(total, SIZE);
    let grown = peak_rss_mib().saturating_sub(before);
    assert!(
        grown < 64,
        "peak memory grew by {grown} MiB moving 2 × 256 MiB"
    );

    // Over the route's limit: by Content-Length at once, chunked as soon as it is crossed.
    let response = http
        .post(gw.at("/small"))
        .bearer_auth(&token)
        .body(vec![0u8; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let chunked = futures::stream::iter(0..8).map(|_| Ok::<_, std::io::Error>(vec![0u8; 512]));
    let response = http
        .post(gw.at("/small"))
        .bearer_auth(&token)
        .body(reqwest::Body::wrap_stream(chunked))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
}

#[tokio::test]
async fn routes_reload_from_their_file_and_a_bad_file_keeps_the_last_good_table() {
    let (one, two) = (upstream().await, upstream().await);
    let issuer = Issuer::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.toml");
    let table = |url: &str| {
        format!(
            "[[routes]]\nprefix = \"/api\"\nupstream = \"svc\"\n\n[upstreams.svc]\ninstances = [\"{url}\"]\n"
        )
    };
    std::fs::write(&file, table(&one.url)).unwrap();
    let cfg = GatewayConfig {
        routes_file: Some(file.clone()),
        ..GatewayConfig::default()
    };
    let gw = start(cfg, &issuer).await;
    tokio::spawn(
        gw.gateway
            .clone()
            .watch(std::time::Duration::from_millis(50), gw.shutdown.signal()),
    );
    let token = issuer.token("7", &["operador"], 300);
    let http = client();
    // A slow request in flight while the table changes finishes on the old route.
    let slow = tokio::spawn({
        let (http, url, token) = (http.clone(), gw.at("/api/slow/500"), token.clone());
        async move {
            http.get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    eventually("the slow request reached upstream one", || async {
        one.seen.hits.load(Ordering::SeqCst) == 1
    })
    .await;
    std::fs::write(&file, table(&two.url)).unwrap();
    eventually("the new table routes to upstream two", || async {
        http.get(gw.at("/api/x"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        two.seen.hits.load(Ordering::SeqCst) > 0
    })
    .await;
    assert_eq!(slow.await.unwrap(), 200);

    std::fs::write(
        &file,
        "[[routes]]\nprefix = \"/api\"\nupstream = \"missing\"\n",
    )
    .unwrap();
    eventually("/ready reports the refused table", || async {
        http.get(gw.at("/ready")).send().await.unwrap().status() == 503
    })
    .await;
    let ready = http
        .get(gw.at("/ready"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(ready.contains("no upstream named `missing`"), "{ready}");
    let hits = two.seen.hits.load(Ordering::SeqCst);
    let response = http
        .get(gw.at("/api/x"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(two.seen.hits.load(Ordering::SeqCst), hits + 1);
}
