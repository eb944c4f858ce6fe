//! Header rules of a proxy: hop-by-hop fields stay on their hop (RFC 9110 §7.6.1), the
//! forwarding trail is extended, request ids and trace context go on.

use http::{HeaderMap, HeaderName, HeaderValue, header};

/// Fields that describe one connection, never forwarded (plus whatever `Connection` names).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
];

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Removes hop-by-hop fields, including those listed in `Connection`. `Transfer-Encoding` goes
/// too: the next hop frames the body itself.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names first: most messages carry none of these, and a removal costs a
    // hash lookup each.
    let present = headers
        .keys()
        .any(|name| name == header::TRANSFER_ENCODING || HOP_BY_HOP.contains(name));
    if !present {
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        let listed: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in listed {
            headers.remove(name);
        }
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(header::TRANSFER_ENCODING);
}

/// Appends the client to `X-Forwarded-For` and records the original host and scheme.
pub fn add_forwarded(headers: &mut HeaderMap, client: &HeaderValue) {
    let chain = match headers.get(FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(previous) => {
            HeaderValue::from_str(&format!("{previous}, {}", client.to_str().unwrap_or("")))
                .unwrap_or_else(|_| client.clone())
        }
        None => client.clone(),
    };
    headers.insert(FORWARDED_FOR, chain);
    if let Some(host) = headers.remove(header::HOST) {
        headers.insert(FORWARDED_HOST, host);
    }
    headers.insert(FORWARDED_PROTO, HeaderValue::from_static("http"));
}

/// A client's `X-Request-ID` if short and printable, else a new UUID v7.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    headers
        .get(REQUEST_ID)
        .filter(|v| {
            let bytes = v.as_bytes();
            !bytes.is_empty() && bytes.len() <= 128 && bytes.iter().all(|b| b.is_ascii_graphic())
        })
        .cloned()
        .unwrap_or_else(new_request_id)
}

/// A UUID v7 (time-ordered) from the clock and the thread's random generator: `Uuid::now_v7`
/// keeps a process-wide monotonic context this path does not need (ids only have to be
/// unique, not strictly ordered within a millisecond).
fn new_request_id() -> HeaderValue {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let random: [u8; 10] = rand::random();
    let id = uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid();
    let mut buffer = uuid::Uuid::encode_buffer();
    HeaderValue::from_str(id.hyphenated().encode_lower(&mut buffer))
        .unwrap_or(HeaderValue::from_static("unknown"))
}

/// The declared body length, if any.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Whether the request carries no body at all (so it can be sent again).
pub fn bodyless(headers: &HeaderMap) -> bool {
    !headers.contains_key(header::TRANSFER_ENCODING) && content_length(headers).unwrap_or(0) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_fields_and_those_connection_names_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        remove_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key(header::ACCEPT));
    }

    #[test]
    fn forwarded_for_is_extended() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("carpeta.gov.co"));
        headers.insert(FORWARDED_FOR, HeaderValue::from_static("203.0.113.9"));
        add_forwarded(&mut headers, &HeaderValue::from_static("10.0.0.1"));
        assert_eq!(headers[FORWARDED_FOR], "203.0.113.9, 10.0.0.1");
        assert_eq!(headers[FORWARDED_HOST], "carpeta.gov.co");
        assert!(!headers.contains_key(header::HOST));
    }

    #[test]
    fn request_ids_are_kept_only_when_printable() {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&headers), "abc-123");
        headers.insert(REQUEST_ID, HeaderValue::from_static("has space"));
        assert_eq!(request_id(&headers).len(), 36);
    }
}
