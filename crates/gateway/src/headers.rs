//! Header rules of a proxy, applied while the upstream request's head is written (the client's
//! fields are copied as they arrived, minus those the gateway owns): hop-by-hop fields stay on
//! their hop (RFC 9110 §7.6.1), `x-telar-*` comes from the verified token only, the forwarding
//! trail is extended, request ids and trace context go on, and the body is framed anew.

use crate::h1::head::{Framing, Kind, RequestHead};
use crate::h1::write::{field, number};
use crate::identity::Identity;

/// A client's `X-Request-ID` if short and printable, else a new UUID v7.
pub fn request_id(head: &RequestHead) -> String {
    head.header(Kind::RequestId)
        .filter(|bytes| {
            !bytes.is_empty() && bytes.len() <= 128 && bytes.iter().all(u8::is_ascii_graphic)
        })
        .and_then(|bytes| std::str::from_utf8(bytes).ok())
        .map_or_else(new_request_id, str::to_owned)
}

/// A UUID v7 (time-ordered) from the clock and the thread's random generator: `Uuid::now_v7`
/// keeps a process-wide monotonic context this path does not need (ids only have to be
/// unique, not strictly ordered within a millisecond).
fn new_request_id() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let random: [u8; 10] = rand::random();
    let id = uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid();
    id.hyphenated().to_string()
}

/// What the gateway adds to a forwarded request.
pub struct Forward<'a> {
    pub identity: Option<&'a Identity>,
    pub client_ip: &'a str,
    pub request_id: &'a str,
    pub traceparent: &'a str,
}

/// Appends the fields of the upstream request (all but the request line and `Host`, which
/// depend on the instance), ending with the empty line.
pub fn forward_fields(out: &mut Vec<u8>, head: &RequestHead, add: &Forward<'_>) {
    let has_host = head.header(Kind::Host).is_some();
    let mut forwarded_for: Vec<&[u8]> = Vec::new();
    for (kind, name, value) in head.fields.iter() {
        match kind {
            Kind::Other | Kind::Authorization | Kind::Date | Kind::RateLimit => {
                field(out, name, value);
            }
            Kind::ForwardedFor => forwarded_for.push(value),
            Kind::ForwardedHost if !has_host => field(out, name, value),
            // Set below, framed anew, or owned by this hop.
            Kind::Host
            | Kind::ForwardedHost
            | Kind::ForwardedProto
            | Kind::ContentLength
            | Kind::TransferEncoding
            | Kind::Connection
            | Kind::HopByHop
            | Kind::Identity
            | Kind::RequestId
            | Kind::Traceparent
            | Kind::Expect => {}
        }
    }
    if let Some(identity) = add.identity {
        for (name, value) in &identity.headers {
            field(out, name.as_str().as_bytes(), value.as_bytes());
        }
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    for previous in forwarded_for {
        out.extend_from_slice(previous);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(add.client_ip.as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(host) = head.header(Kind::Host) {
        field(out, b"x-forwarded-host", host);
    }
    out.extend_from_slice(b"x-forwarded-proto: http\r\n");
    field(out, b"x-request-id", add.request_id.as_bytes());
    field(out, b"traceparent", add.traceparent.as_bytes());
    match head.framing {
        Framing::Length(length) => {
            out.extend_from_slice(b"content-length: ");
            number(out, length);
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::Empty | Framing::Close => {}
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use bytes::BytesMut;

    use super::*;

    fn forwarded(request: &str) -> String {
        let mut buffer = BytesMut::from(request.as_bytes());
        let head = RequestHead::parse(&mut buffer).unwrap().unwrap();
        let mut out = Vec::new();
        let add = Forward {
            identity: None,
            client_ip: "10.0.0.1",
            request_id: "rid",
            traceparent: "00-aa-bb-01",
        };
        forward_fields(&mut out, &head, &add);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn hop_by_hop_fields_and_those_connection_names_are_removed() {
        let out = forwarded(
            "POST /x HTTP/1.1\r\nConnection: keep-alive, x-secret\r\nKeep-Alive: timeout=5\r\nx-secret: 1\r\nTE: trailers\r\nUpgrade: websocket\r\nTransfer-Encoding: chunked\r\nAccept: */*\r\nX-Telar-User: admin\r\nExpect: 100-continue\r\n\r\n",
        );
        assert_eq!(
            out,
            "Accept: */*\r\nx-forwarded-for: 10.0.0.1\r\nx-forwarded-proto: http\r\nx-request-id: rid\r\ntraceparent: 00-aa-bb-01\r\ntransfer-encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn forwarded_for_is_extended_and_host_recorded() {
        let out = forwarded(
            "GET /x HTTP/1.1\r\nHost: carpeta.gov.co\r\nX-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Host: evil\r\nX-Request-ID: theirs\r\n\r\n",
        );
        assert!(
            out.contains("x-forwarded-for: 203.0.113.9, 10.0.0.1\r\n"),
            "{out}"
        );
        assert!(
            out.contains("x-forwarded-host: carpeta.gov.co\r\n"),
            "{out}"
        );
        assert!(!out.contains("evil") && !out.contains("theirs"), "{out}");
    }

    #[test]
    fn request_ids_are_kept_only_when_printable() {
        let id = |text: &str| {
            let mut buffer = BytesMut::from(text.as_bytes());
            request_id(&RequestHead::parse(&mut buffer).unwrap().unwrap())
        };
        assert_eq!(
            id("GET / HTTP/1.1\r\nX-Request-ID: abc-123\r\n\r\n"),
            "abc-123"
        );
        assert_eq!(
            id("GET / HTTP/1.1\r\nX-Request-ID: has space\r\n\r\n").len(),
            36
        );
    }
}
