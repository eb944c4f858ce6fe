//! What the gateway refuses before any upstream is involved: limits and bans per role and per
//! address (memory and Redis), slow and malformed clients, oversized headers.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use telar_gateway::{GatewayConfig, LimitBackend, LimitsConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn limited(url: &str, limits: LimitsConfig) -> GatewayConfig {
    let mut public = route("/public", "up");
    public.public = true;
    GatewayConfig {
        routes: vec![route("/api", "up"), public],
        upstreams: [("up".to_owned(), upstream_config(&[url]))].into(),
        limits,
        ..GatewayConfig::default()
    }
}

fn small_limits(backend: LimitBackend) -> LimitsConfig {
    LimitsConfig {
        backend,
        roles: BTreeMap::from([("ciudadano".into(), 5), ("operador".into(), 10)]),
        anonymous_limit: 3,
        ban_after: 3,
        ..LimitsConfig::default()
    }
}

async fn limits_per_role_with_bans(backend: LimitBackend) {
    let up = upstream().await;
    let issuer = Issuer::new();
    let gw = start(limited(&up.url, small_limits(backend)), &issuer).await;
    let http = client();
    // A fresh user per run: Redis keeps buckets between runs.
    let citizen_id = uuid::Uuid::new_v4().to_string();
    let citizen = issuer.token(&citizen_id, &["ciudadano"], 300);
    let operator = issuer.token(&uuid::Uuid::new_v4().to_string(), &["operador"], 300);
    for remaining in (0..5).rev() {
        let response = http
            .get(gw.at("/api/x"))
            .bearer_auth(&citizen)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["ratelimit-limit"], "5");
        assert_eq!(
            response.headers()["ratelimit-remaining"],
            remaining.to_string().as_str()
        );
    }
    let refused = http
        .get(gw.at("/api/x"))
        .bearer_auth(&citizen)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(refused.headers()["ratelimit-remaining"], "0");
    assert_eq!(json(refused).await["code"], "rate_limited");
    // Another role, another bucket.
    for _ in 0..10 {
        let response = http
            .get(gw.at("/api/x"))
            .bearer_auth(&operator)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    // Two more violations make three: banned.
    http.get(gw.at("/api/x"))
        .bearer_auth(&citizen)
        .send()
        .await
        .unwrap();
    let banned = http
        .get(gw.at("/api/x"))
        .bearer_auth(&citizen)
        .send()
        .await
        .unwrap();
    assert_eq!(banned.status(), 429);
    let retry_after: u64 = banned.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        retry_after > 60,
        "a ban lasts longer than the window: {retry_after}"
    );
    assert_eq!(json(banned).await["code"], "banned");
    // The ops view names the banned bucket; only operators may read it.
    let status = http
        .get(gw.at("/ops/ratelimit/status"))
        .bearer_auth(&citizen)
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), 403);
    let status = json(
        http.get(gw.at("/ops/ratelimit/status"))
            .bearer_auth(&operator)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status["limits"]["ciudadano"], 5);
    let keys = status["keys"].as_array().unwrap();
    // This run's bucket: Redis also holds other tests' (and earlier runs') buckets.
    let bucket = format!("ciudadano:{citizen_id}");
    let entry = keys.iter().find(|k| k["key"] == bucket.as_str()).unwrap();
    assert!(entry["banned_for_secs"].as_u64().unwrap() > 60);
    assert_eq!(entry["bans"], 1);
    assert_eq!(up.seen.hits.load(Ordering::SeqCst), 15);
}

#[tokio::test]
async fn memory_limits_per_role_with_bans() {
    limits_per_role_with_bans(LimitBackend::Memory).await;
}

#[tokio::test]
async fn redis_limits_per_role_with_bans() {
    limits_per_role_with_bans(LimitBackend::Redis).await;
}

#[tokio::test]
async fn two_gateways_share_one_budget_through_redis() {
    let up = upstream().await;
    let issuer = Issuer::new();
    let config = limited(&up.url, small_limits(LimitBackend::Redis));
    let (a, b) = (
        start(config.clone(), &issuer).await,
        start(config, &issuer).await,
    );
    let citizen_id = uuid::Uuid::new_v4().to_string();
    let citizen = issuer.token(&citizen_id, &["ciudadano"], 300);
    let http = client();
    let mut ok = 0;
    for i in 0..8 {
        let gw = if i % 2 == 0 { &a } else { &b };
        if http
            .get(gw.at("/api/x"))
            .bearer_auth(&citizen)
            .send()
            .await
            .unwrap()
            .status()
            == 200
        {
            ok += 1;
        }
    }
    assert_eq!(ok, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_exactly_under_concurrent_load() {
    let up = upstream().await;
    let issuer = Issuer::new();
    let mut limits = small_limits(LimitBackend::Memory);
    limits.roles.insert("ciudadano".into(), 40);
    limits.ban_after = 1000;
    let gw = start(limited(&up.url, limits), &issuer).await;
    let citizen = issuer.token("c-1", &["ciudadano"], 300);
    let http = client();
    let calls = (0..200).map(|_| {
        let (http, url, token) = (http.clone(), gw.at("/api/x"), citizen.clone());
        tokio::spawn(async move {
            http.get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
        })
    });
    let statuses = futures::future::join_all(calls).await;
    let ok = statuses
        .iter()
        .filter(|s| s.as_ref().unwrap().as_u16() == 200)
        .count();
    let limited = statuses
        .iter()
        .filter(|s| s.as_ref().unwrap().as_u16() == 429)
        .count();
    assert_eq!((ok, limited), (40, 160));
}

#[tokio::test]
async fn anonymous_callers_are_limited_by_address_unless_allowlisted() {
    let up = upstream().await;
    let issuer = Issuer::new();
    let gw = start(
        limited(&up.url, small_limits(LimitBackend::Memory)),
        &issuer,
    )
    .await;
    let http = client();
    let statuses: Vec<u16> =
        futures::future::join_all((0..5).map(|_| http.get(gw.at("/public/x")).send()))
            .await
            .into_iter()
            .map(|r| r.unwrap().status().as_u16())
            .collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 3);

    let mut allowed = small_limits(LimitBackend::Memory);
    allowed.allowlist = vec!["127.0.0.0/8".into()];
    let gw = start(limited(&up.url, allowed), &issuer).await;
    for _ in 0..10 {
        assert_eq!(
            http.get(gw.at("/public/x")).send().await.unwrap().status(),
            200
        );
    }
}

#[tokio::test]
async fn slow_clients_are_cut_off_after_the_header_timeout() {
    let up = upstream().await;
    let issuer = Issuer::new();
    let mut config = limited(&up.url, LimitsConfig::default());
    config.edge.header_read_timeout_ms = 500;
    let gw = start(config, &issuer).await;
    let mut stream = raw(&gw.url).await;
    stream
        .write_all(b"GET /public/x HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    // One header byte every 100 ms never completes the request.
    let mut closed = false;
    for _ in 0..50 {
        if stream.write_all(b"X").await.is_err() {
            closed = true;
            break;
        }
        let mut byte = [0u8; 512];
        if let Ok(read) =
            tokio::time::timeout(Duration::from_millis(100), stream.read(&mut byte)).await
        {
            closed = true;
            let _ = read;
            break;
        }
    }
    assert!(closed, "the slow client is still connected after 5 s");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(up.seen.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn malformed_and_oversized_requests_get_4xx_without_reaching_upstream() {
    let up = upstream().await;
    let issuer = Issuer::new();
    let gw = start(limited(&up.url, LimitsConfig::default()), &issuer).await;
    for garbage in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET /public/x HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        b"GET /public/x HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n",
        b"\x00\x01\x02\x03\r\n\r\n",
    ] {
        let mut stream = raw(&gw.url).await;
        stream.write_all(garbage).await.unwrap();
        let answer = read_all(&mut stream).await;
        assert!(
            answer.starts_with("HTTP/1.1 400"),
            "{garbage:?} → {answer:?}"
        );
    }
    let mut stream = raw(&gw.url).await;
    let huge = format!(
        "GET /public/x HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let _ = stream.write_all(huge.as_bytes()).await;
    let answer = read_all(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
    // The gateway is fine afterwards.
    let response = client().get(gw.at("/public/x")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(up.seen.hits.load(Ordering::SeqCst), 1);
}
