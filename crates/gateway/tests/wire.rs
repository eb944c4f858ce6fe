//! The gateway's HTTP/1.1 on the wire, with raw sockets: smuggling-shaped framing refused,
//! pipelined requests, `Expect: 100-continue`, chunked uploads, HTTP/1.0 clients, `HEAD`, and
//! upstreams that close idle keep-alive connections.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use telar_gateway::GatewayConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn public(url: &str) -> GatewayConfig {
    let mut open = route("/", "up");
    open.public = true;
    GatewayConfig {
        routes: vec![open],
        upstreams: [("up".to_owned(), upstream_config(&[url]))].into(),
        ..GatewayConfig::default()
    }
}

/// Reads until `needle` has been seen `times` times.
async fn read_until(stream: &mut TcpStream, needle: &str, times: usize) -> String {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        while String::from_utf8_lossy(&buffer).matches(needle).count() < times {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&buffer));
            buffer.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "timed out: {}",
        String::from_utf8_lossy(&buffer)
    );
    String::from_utf8_lossy(&buffer).into_owned()
}

#[tokio::test]
async fn smuggling_shaped_framing_is_refused_before_the_upstream() {
    let up = upstream().await;
    let gw = start(public(&up.url), &Issuer::new()).await;
    for request in [
        "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
        "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        "POST /upload HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: x\r\nFoo : bar\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: x\r\n folded: value\r\n\r\n",
        "GET /x HTTP/2.0\r\nHost: x\r\n\r\n",
    ] {
        let mut stream = raw(&gw.url).await;
        stream.write_all(request.as_bytes()).await.unwrap();
        let answer = read_all(&mut stream).await;
        assert!(
            answer.starts_with("HTTP/1.1 400"),
            "{request:?} → {answer:?}"
        );
    }
    // A chunked body whose size line ends in a bare LF is cut off with 400, and the request it
    // was hiding never reaches the upstream.
    let mut stream = raw(&gw.url).await;
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_all(&mut stream).await;
    assert!(answer.contains("400"), "{answer:?}");
    assert!(!answer.contains("/smuggled"), "{answer:?}");
    assert_eq!(up.seen.bytes.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let up = upstream().await;
    let gw = start(public(&up.url), &Issuer::new()).await;
    let mut stream = raw(&gw.url).await;
    stream
        .write_all(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\nGET /second HTTP/1.1\r\nHost: x\r\n\r\nGET /third HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_all(&mut stream).await;
    assert_eq!(answer.matches("HTTP/1.1 200 OK").count(), 3, "{answer}");
    let first = answer.find("\"/first\"").unwrap();
    let second = answer.find("\"/second\"").unwrap();
    let third = answer.find("\"/third\"").unwrap();
    assert!(first < second && second < third, "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    assert_eq!(up.seen.hits.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn expect_continue_and_chunked_uploads_reach_the_upstream_whole() {
    let up = upstream().await;
    let gw = start(public(&up.url), &Issuer::new()).await;
    let mut stream = raw(&gw.url).await;
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n")
        .await
        .unwrap();
    let interim = read_until(&mut stream, "\r\n\r\n", 1).await;
    assert_eq!(interim, "HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(b"0123456789").await.unwrap();
    let answer = read_until(&mut stream, "10", 1).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    // Chunks of odd sizes, with an extension and a trailer, arrive as one body.
    let mut stream = raw(&gw.url).await;
    let mut request =
        b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let mut total = 0;
    for size in [1usize, 7, 4096, 13, 70_000] {
        request.extend_from_slice(format!("{size:x};ext=1\r\n").as_bytes());
        request.extend(std::iter::repeat_n(b'z', size));
        request.extend_from_slice(b"\r\n");
        total += size;
    }
    request.extend_from_slice(b"0\r\nX-Check: 1\r\n\r\n");
    for piece in request.chunks(999) {
        stream.write_all(piece).await.unwrap();
    }
    let answer = read_until(&mut stream, &total.to_string(), 1).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert_eq!(up.seen.bytes.load(Ordering::SeqCst), total as u64);
}

#[tokio::test]
async fn http10_clients_get_bodies_of_unknown_length_until_the_close_and_head_gets_none() {
    let up = upstream().await;
    let gw = start(public(&up.url), &Issuer::new()).await;
    // The upstream streams this body (no length): chunked to HTTP/1.1, raw to HTTP/1.0.
    let mut stream = raw(&gw.url).await;
    stream
        .write_all(b"GET /download/100000 HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let answer = read_all(&mut stream).await;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "{head}"
    );
    assert_eq!(body.len(), 100_000);
    let mut stream = raw(&gw.url).await;
    stream
        .write_all(b"GET /download/100000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_all(&mut stream).await;
    assert!(
        answer.contains("transfer-encoding: chunked"),
        "{answer:.300}"
    );
    assert!(answer.ends_with("\r\n0\r\n\r\n"));
    // HEAD: the length of what GET would send, and no body.
    let mut stream = raw(&gw.url).await;
    stream
        .write_all(b"HEAD /anything HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_all(&mut stream).await;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert_eq!(body, "", "{answer}");
}

/// An upstream that reads each request's head, sends `answer` at once (without reading any
/// body) and closes the connection, counting the requests it answered.
async fn one_shot_upstream(answer: &'static [u8]) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut chunk = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk).await {
                        Ok(n) if n > 0 => head.extend_from_slice(&chunk[..n]),
                        _ => return,
                    }
                }
                count.fetch_add(1, Ordering::SeqCst);
                let _ = stream.write_all(answer).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (url, served)
}

#[tokio::test]
async fn connections_an_upstream_closed_while_idle_are_never_used() {
    // Keep-alive by default (HTTP/1.1, no `Connection: close`), yet every connection is closed:
    // each pooled connection is dead by the time the gateway reuses it.
    let (url, served) = one_shot_upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
    let gw = start(public(&url), &Issuer::new()).await;
    let http = client();
    for attempt in 0..20 {
        let response = http.get(gw.at("/again")).send().await.unwrap();
        assert_eq!(response.status(), 200, "request {attempt}");
        assert_eq!(response.text().await.unwrap(), "ok");
    }
    // Each request reached the upstream exactly once.
    assert_eq!(served.load(Ordering::SeqCst), 20);
}

#[tokio::test]
async fn a_drain_finishes_requests_in_flight_and_closes_idle_connections() {
    let up = upstream().await;
    let gw = start(public(&up.url), &Issuer::new()).await;
    // One connection idle after a request, one with a request in flight.
    let mut idle = raw(&gw.url).await;
    idle.write_all(b"GET /warm HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    read_until(&mut idle, "\"/warm\"", 1).await;
    let mut busy = raw(&gw.url).await;
    busy.write_all(b"GET /slow/400 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // The slow request has reached the upstream before the drain starts.
    eventually("the slow request is upstream", || async {
        up.seen.hits.load(Ordering::SeqCst) == 2
    })
    .await;
    gw.shutdown.trigger();
    // The idle connection is closed without an answer; the busy one gets its answer, marked
    // as the connection's last.
    assert_eq!(read_all(&mut idle).await, "");
    let answer = read_all(&mut busy).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    assert!(answer.ends_with("slow"), "{answer}");
}

#[tokio::test]
async fn an_upstream_refusing_a_body_before_reading_it_is_answered_through() {
    let (url, _) = one_shot_upstream(
        b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 8\r\nconnection: close\r\n\r\ntoo big!",
    )
    .await;
    let gw = start(public(&url), &Issuer::new()).await;
    let response = client()
        .post(gw.at("/upload"))
        .body(vec![0u8; 8 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(response.text().await.unwrap(), "too big!");
}
