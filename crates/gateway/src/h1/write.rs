//! Writing heads: the request line and fields sent upstream, status lines and fields sent back,
//! and whole responses the gateway makes itself (errors, its own API).

use std::cell::RefCell;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use http::{HeaderMap, Response, StatusCode};
use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Appends `name: value\r\n`.
pub fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends a decimal number.
pub fn number(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// Appends `HTTP/1.1 <code> <reason>\r\n` (the canonical reason; the upstream's is not kept).
pub fn status_line(out: &mut Vec<u8>, status: u16) {
    out.extend_from_slice(b"HTTP/1.1 ");
    number(out, u64::from(status));
    out.push(b' ');
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
}

thread_local! {
    /// The `Date` value, made once a second per thread.
    static DATE: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
}

/// Appends a `Date` field for now.
pub fn date(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let second = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != second || cached.1.is_empty() {
            *cached = (second, httpdate::fmt_http_date(now));
        }
        field(out, b"date", cached.1.as_bytes());
    });
}

/// Writes a response the gateway made itself: its fields, `Content-Length` (the body is
/// collected first: these are error bodies and the gateway's own small documents) and, when
/// `close`, `Connection: close`. A `HEAD` request gets the fields only.
pub async fn response(
    to: &mut TcpStream,
    response: Response<Body>,
    head_request: bool,
    close: bool,
    out: &mut Vec<u8>,
    timeout: Duration,
) -> std::io::Result<()> {
    let (parts, body) = response.into_parts();
    let body = match tokio::time::timeout(timeout, body.collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(error)) => return Err(std::io::Error::other(error)),
        Err(_) => return Err(std::io::ErrorKind::TimedOut.into()),
    };
    out.clear();
    status_line(out, parts.status.as_u16());
    own_fields(out, &parts.headers);
    date(out);
    out.extend_from_slice(b"content-length: ");
    number(out, body.len() as u64);
    out.extend_from_slice(b"\r\n");
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_request {
        out.extend_from_slice(&body);
    }
    let written = to.write_all(out).await;
    out.clear();
    written
}

/// The fields of a response the gateway made, minus those it frames itself.
fn own_fields(out: &mut Vec<u8>, headers: &HeaderMap) {
    for (name, value) in headers {
        if name == http::header::CONTENT_LENGTH
            || name == http::header::TRANSFER_ENCODING
            || name == http::header::CONNECTION
            || name == http::header::DATE
        {
            continue;
        }
        field(out, name.as_str().as_bytes(), value.as_bytes());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_and_numbers() {
        let mut out = Vec::new();
        status_line(&mut out, 404);
        number(&mut out, 0);
        number(&mut out, 18_446_744_073_709_551_615);
        assert_eq!(out, b"HTTP/1.1 404 Not Found\r\n018446744073709551615");
    }

    #[test]
    fn dates_are_http_dates() {
        let mut out = Vec::new();
        date(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("date: ") && text.ends_with(" GMT\r\n"),
            "{text}"
        );
        assert_eq!(text.len(), "date: Sun, 06 Nov 1994 08:49:37 GMT\r\n".len());
    }
}
