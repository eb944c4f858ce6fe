//! Message heads: a request or response line and its fields, parsed once by `httparse` and kept
//! as offsets into the bytes they arrived in (nothing is copied or lower-cased). Each field is
//! classified on the way so the proxy knows, without another lookup, which fields are its own
//! business (framing, hop-by-hop, identity, forwarding) and which it passes on untouched.
//!
//! Framing follows RFC 9112 §6: a request with both `Content-Length` and `Transfer-Encoding`, with
//! conflicting lengths, or with a transfer coding other than `chunked` is refused — the classic
//! request-smuggling disagreements between a proxy and its upstream cannot arise.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::Method;

/// Most fields a head may carry (more: 431).
pub const MAX_FIELDS: usize = 128;

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the sender closes (responses only).
    Close,
}

impl Framing {
    pub fn has_body(self) -> bool {
        !matches!(self, Framing::Empty | Framing::Length(0))
    }
}

/// What a field means to the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Other,
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    /// `Keep-Alive`, `Proxy-*`, `TE`, `Trailer`, `Upgrade` (RFC 9110 §7.6.1), and whatever
    /// `Connection` names.
    HopByHop,
    /// `x-telar-*`: set by the gateway only.
    Identity,
    ForwardedFor,
    ForwardedHost,
    ForwardedProto,
    RequestId,
    Traceparent,
    Authorization,
    Expect,
    Date,
    RateLimit,
}

fn classify(name: &[u8]) -> Kind {
    let is = |expected: &str| name.eq_ignore_ascii_case(expected.as_bytes());
    match name.len() {
        4 if is("host") => Kind::Host,
        4 if is("date") => Kind::Date,
        2 if is("te") => Kind::HopByHop,
        6 if is("expect") => Kind::Expect,
        7 if is("trailer") || is("upgrade") => Kind::HopByHop,
        10 if is("connection") => Kind::Connection,
        10 if is("keep-alive") => Kind::HopByHop,
        11 if is("traceparent") => Kind::Traceparent,
        12 if is("x-request-id") => Kind::RequestId,
        13 if is("authorization") => Kind::Authorization,
        14 if is("content-length") => Kind::ContentLength,
        15 if is("x-forwarded-for") => Kind::ForwardedFor,
        16 if is("x-forwarded-host") => Kind::ForwardedHost,
        16 if is("proxy-connection") => Kind::HopByHop,
        17 if is("transfer-encoding") => Kind::TransferEncoding,
        17 if is("x-forwarded-proto") => Kind::ForwardedProto,
        _ if starts_with_ignore_case(name, b"x-telar-") => Kind::Identity,
        _ if starts_with_ignore_case(name, b"proxy-") => Kind::HopByHop,
        _ if starts_with_ignore_case(name, b"ratelimit-") => Kind::RateLimit,
        _ => Kind::Other,
    }
}

fn starts_with_ignore_case(name: &[u8], prefix: &[u8]) -> bool {
    name.len() >= prefix.len() && name[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// Offsets of one field in its head's bytes.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    name: (u32, u32),
    value: (u32, u32),
    pub kind: Kind,
}

/// Why a head was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadError {
    /// More fields than [`MAX_FIELDS`] (431).
    TooManyFields,
    /// Not HTTP/1.x, or framing that cannot be trusted (400 / 502).
    Invalid(&'static str),
}

/// The fields of a head and the bytes they point into.
#[derive(Debug)]
pub struct Fields {
    raw: Bytes,
    list: Vec<Field>,
}

impl Fields {
    /// Offsets of `parsed`, which points into bytes starting at `base`.
    fn offsets(base: usize, parsed: &[httparse::Header<'_>]) -> Vec<Field> {
        let offset = |part: &[u8]| {
            let start = (part.as_ptr() as usize).saturating_sub(base);
            (start as u32, (start + part.len()) as u32)
        };
        parsed
            .iter()
            .map(|header| Field {
                name: offset(header.name.as_bytes()),
                value: offset(header.value),
                kind: classify(header.name.as_bytes()),
            })
            .collect()
    }

    /// `list` holds offsets into `raw`.
    fn new(raw: Bytes, list: Vec<Field>) -> Self {
        let mut fields = Fields { raw, list };
        fields.mark_connection_listed();
        fields
    }

    /// Fields named by `Connection` stay on this hop too.
    fn mark_connection_listed(&mut self) {
        let connections: Vec<(u32, u32)> = self
            .list
            .iter()
            .filter(|f| f.kind == Kind::Connection)
            .map(|f| f.value)
            .collect();
        for value in connections {
            let raw = self.raw.clone();
            let listed = &raw[value.0 as usize..value.1 as usize];
            for token in listed.split(|b| *b == b',').map(trim) {
                for field in &mut self.list {
                    let name = &raw[field.name.0 as usize..field.name.1 as usize];
                    if field.kind == Kind::Other && name.eq_ignore_ascii_case(token) {
                        field.kind = Kind::HopByHop;
                    }
                }
            }
        }
    }

    fn slice(&self, (start, end): (u32, u32)) -> &[u8] {
        &self.raw[start as usize..end as usize]
    }

    pub fn iter(&self) -> impl Iterator<Item = (Kind, &[u8], &[u8])> {
        self.list
            .iter()
            .map(|f| (f.kind, self.slice(f.name), self.slice(f.value)))
    }

    /// The first value of a field of `kind`.
    pub fn get(&self, kind: Kind) -> Option<&[u8]> {
        self.list
            .iter()
            .find(|f| f.kind == kind)
            .map(|f| self.slice(f.value))
    }

    pub fn all(&self, kind: Kind) -> impl Iterator<Item = &[u8]> {
        self.list
            .iter()
            .filter(move |f| f.kind == kind)
            .map(|f| self.slice(f.value))
    }

    /// Whether a comma-separated field of `kind` lists `token` (case-insensitive).
    pub fn lists(&self, kind: Kind, token: &str) -> bool {
        self.all(kind).any(|value| {
            value
                .split(|b| *b == b',')
                .any(|t| trim(t).eq_ignore_ascii_case(token.as_bytes()))
        })
    }

    /// The declared length: every `Content-Length` must agree and be digits only.
    fn content_length(&self) -> Result<Option<u64>, HeadError> {
        let mut length = None;
        for value in self.all(Kind::ContentLength) {
            for part in value.split(|b| *b == b',').map(trim) {
                let parsed =
                    parse_decimal(part).ok_or(HeadError::Invalid("invalid Content-Length"))?;
                if length.is_some_and(|seen| seen != parsed) {
                    return Err(HeadError::Invalid("conflicting Content-Length fields"));
                }
                length = Some(parsed);
            }
        }
        Ok(length)
    }

    /// `Transfer-Encoding`: `Some(true)` when its last coding is `chunked`.
    fn chunked(&self) -> Option<bool> {
        let mut last = None;
        for value in self.all(Kind::TransferEncoding) {
            for coding in value.split(|b| *b == b',').map(trim) {
                if !coding.is_empty() {
                    last = Some(coding.eq_ignore_ascii_case(b"chunked"));
                }
            }
        }
        last.or_else(|| self.get(Kind::TransferEncoding).map(|_| false))
    }

    fn only_chunked(&self) -> bool {
        let mut codings = self
            .all(Kind::TransferEncoding)
            .flat_map(|value| value.split(|b| *b == b','))
            .map(trim)
            .filter(|coding| !coding.is_empty());
        codings
            .next()
            .is_some_and(|first| first.eq_ignore_ascii_case(b"chunked"))
            && codings.next().is_none()
    }
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |end| end + 1);
    &bytes[start..end]
}

fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0u64, |n, d| n * 10 + u64::from(d - b'0')),
    )
}

/// A request line and its fields.
#[derive(Debug)]
pub struct RequestHead {
    pub method: Method,
    path: (u32, u32),
    query: Option<(u32, u32)>,
    /// HTTP/1.1 (else 1.0).
    pub http11: bool,
    pub fields: Fields,
    pub framing: Framing,
    /// Whether the client wants the connection kept after this exchange.
    pub keep_alive: bool,
    pub expect_continue: bool,
}

impl RequestHead {
    /// Parses the head at the start of `buffer` and splits it off (no copy); `None` while the
    /// head is incomplete. The target must be origin-form (`/path?query`) or absolute-form
    /// (`http://host/path`, whose path is used).
    pub fn parse(buffer: &mut BytesMut) -> Result<Option<Self>, HeadError> {
        let mut parsed = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
        let mut request = httparse::Request::new(&mut []);
        let length = match request.parse_with_uninit_headers(buffer, &mut parsed) {
            Ok(httparse::Status::Complete(length)) => length,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyFields),
            Err(_) => return Err(HeadError::Invalid("malformed request")),
        };
        let (Some(method), Some(target), Some(version)) =
            (request.method, request.path, request.version)
        else {
            return Err(HeadError::Invalid("malformed request line"));
        };
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|_| HeadError::Invalid("invalid method"))?;
        if method == Method::CONNECT {
            return Err(HeadError::Invalid("CONNECT is not supported"));
        }
        if !target.is_ascii() {
            return Err(HeadError::Invalid("invalid request target"));
        }
        let base = buffer.as_ptr() as usize;
        let origin = origin_form(target).ok_or(HeadError::Invalid("invalid request target"))?;
        let origin_start = origin.as_ptr() as usize - base;
        let span = |a: usize, b: usize| (a as u32, b as u32);
        let (path, query) = match origin.find('?') {
            Some(mark) => (
                span(origin_start, origin_start + mark),
                Some(span(origin_start + mark + 1, origin_start + origin.len())),
            ),
            None => (span(origin_start, origin_start + origin.len()), None),
        };
        let http11 = version == 1;
        let list = Fields::offsets(base, request.headers);
        // The head's bytes move out of the buffer; the offsets stay valid (same memory).
        let raw = buffer.split_to(length).freeze();
        let fields = Fields::new(raw, list);
        let framing = match (fields.get(Kind::TransferEncoding), fields.content_length()?) {
            (Some(_), Some(_)) => {
                return Err(HeadError::Invalid(
                    "both Content-Length and Transfer-Encoding",
                ));
            }
            (Some(_), None) if !http11 => {
                return Err(HeadError::Invalid("Transfer-Encoding in HTTP/1.0"));
            }
            (Some(_), None) if fields.only_chunked() => Framing::Chunked,
            (Some(_), None) => {
                return Err(HeadError::Invalid("unsupported Transfer-Encoding"));
            }
            (None, Some(0) | None) => Framing::Empty,
            (None, Some(length)) => Framing::Length(length),
        };
        let keep_alive = if http11 {
            !fields.lists(Kind::Connection, "close")
        } else {
            fields.lists(Kind::Connection, "keep-alive")
        };
        let expect_continue = http11
            && fields
                .get(Kind::Expect)
                .is_some_and(|v| trim(v).eq_ignore_ascii_case(b"100-continue"));
        Ok(Some(RequestHead {
            method,
            path,
            query,
            http11,
            fields,
            framing,
            keep_alive,
            expect_continue,
        }))
    }

    pub fn path(&self) -> &str {
        ascii(self.fields.slice(self.path))
    }

    pub fn query(&self) -> Option<&str> {
        self.query.map(|q| ascii(self.fields.slice(q)))
    }

    pub fn header(&self, kind: Kind) -> Option<&[u8]> {
        self.fields.get(kind)
    }
}

/// The head's bytes were checked to be ASCII where this is used.
fn ascii(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or("")
}

/// `/path?query` of an origin-form or absolute-form target.
fn origin_form(target: &str) -> Option<&str> {
    if target.starts_with('/') {
        return Some(target);
    }
    let rest = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))?;
    match rest.find(['/', '?']) {
        Some(slash) if rest[slash..].starts_with('/') => Some(&rest[slash..]),
        _ => None,
    }
}

/// A status line and its fields.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: u16,
    pub fields: Fields,
    pub framing: Framing,
    /// Whether the upstream keeps the connection open after this response.
    pub keep_alive: bool,
}

impl ResponseHead {
    /// Parses the response head at the start of `buffer` and splits it off; `None` while it
    /// is incomplete. `head_request`: the request was `HEAD` (no body follows).
    pub fn parse(buffer: &mut BytesMut, head_request: bool) -> Result<Option<Self>, HeadError> {
        let mut parsed = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
        let mut response = httparse::Response::new(&mut []);
        let parsing = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut response,
            buffer,
            &mut parsed,
        );
        let length = match parsing {
            Ok(httparse::Status::Complete(length)) => length,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyFields),
            Err(_) => return Err(HeadError::Invalid("malformed response")),
        };
        let (Some(status), Some(version)) = (response.code, response.version) else {
            return Err(HeadError::Invalid("malformed status line"));
        };
        let base = buffer.as_ptr() as usize;
        let list = Fields::offsets(base, response.headers);
        let raw = buffer.split_to(length).freeze();
        let fields = Fields::new(raw, list);
        let http11 = version == 1;
        let no_body =
            head_request || (100..200).contains(&status) || status == 204 || status == 304;
        let framing = if no_body {
            Framing::Empty
        } else {
            match fields.chunked() {
                Some(true) => Framing::Chunked,
                Some(false) => Framing::Close,
                None => match fields.content_length()? {
                    Some(0) => Framing::Empty,
                    Some(length) => Framing::Length(length),
                    None => Framing::Close,
                },
            }
        };
        let keep_alive = framing != Framing::Close
            && if http11 {
                !fields.lists(Kind::Connection, "close")
            } else {
                fields.lists(Kind::Connection, "keep-alive")
            };
        Ok(Some(ResponseHead {
            status,
            fields,
            framing,
            keep_alive,
        }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn request(text: &str) -> Result<RequestHead, HeadError> {
        let mut buffer = BytesMut::from(text.as_bytes());
        let head = RequestHead::parse(&mut buffer)?.ok_or(HeadError::Invalid("partial"));
        assert!(buffer.is_empty());
        head
    }

    #[test]
    fn requests_are_parsed_with_their_framing() {
        let head = request(
            "POST /api/x?a=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nX-Telar-User: admin\r\n\r\n",
        )
        .unwrap();
        assert_eq!(head.method, Method::POST);
        assert_eq!(head.path(), "/api/x");
        assert_eq!(head.query(), Some("a=1"));
        assert_eq!(head.framing, Framing::Length(5));
        assert!(head.keep_alive && head.http11);
        let kinds: Vec<Kind> = head.fields.iter().map(|(kind, _, _)| kind).collect();
        assert_eq!(
            kinds,
            [
                Kind::Host,
                Kind::ContentLength,
                Kind::Connection,
                Kind::HopByHop,
                Kind::Identity
            ]
        );
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        for text in [
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 0x5\r\n\r\n",
            "GET * HTTP/1.1\r\n\r\n",
            "CONNECT h:443 HTTP/1.1\r\n\r\n",
        ] {
            assert!(
                matches!(request(text), Err(HeadError::Invalid(_))),
                "{text:?}"
            );
        }
        let same = request("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(same.unwrap().framing, Framing::Length(5));
        let chunked = request("POST / HTTP/1.1\r\ntransfer-encoding: Chunked\r\n\r\n");
        assert_eq!(chunked.unwrap().framing, Framing::Chunked);
    }

    #[test]
    fn absolute_targets_keep_their_path_and_http10_closes_by_default() {
        let head = request("GET http://example.org/a/b?c HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!((head.path(), head.query()), ("/a/b", Some("c")));
        assert!(!head.keep_alive && !head.http11);
        let head = request("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap();
        assert!(head.keep_alive);
        let head = request("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
        assert!(!head.keep_alive);
    }

    #[test]
    fn responses_are_framed_by_status_method_and_fields() {
        let parse = |text: &str, head: bool| {
            let mut buffer = BytesMut::from(text.as_bytes());
            ResponseHead::parse(&mut buffer, head).unwrap().unwrap()
        };
        let ok = parse("HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", false);
        assert_eq!(
            (ok.status, ok.framing, ok.keep_alive),
            (200, Framing::Length(12), true)
        );
        assert_eq!(
            parse("HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", true).framing,
            Framing::Empty
        );
        assert_eq!(
            parse(
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 12\r\n\r\n",
                false
            )
            .framing,
            Framing::Empty
        );
        let chunked = parse(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            false,
        );
        assert_eq!(chunked.framing, Framing::Chunked);
        let close = parse("HTTP/1.1 200 OK\r\n\r\n", false);
        assert_eq!((close.framing, close.keep_alive), (Framing::Close, false));
        let old = parse("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false);
        assert!(!old.keep_alive);
        let text = b"HTTP/1.1 200 OK\r\nContent-";
        let mut partial = BytesMut::from(&text[..]);
        assert!(matches!(ResponseHead::parse(&mut partial, false), Ok(None)));
        assert_eq!(
            partial.len(),
            text.len(),
            "nothing is consumed from a partial head"
        );
    }

    /// Random damage to valid heads: every outcome is a head or an error, never a panic.
    #[test]
    fn mutated_heads_never_panic() {
        let seeds: [&[u8]; 3] = [
            b"POST /api/x?a=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nConnection: close, x-a\r\nx-a: 1\r\n\r\n",
            b"GET http://h/p HTTP/1.0\r\nTransfer-Encoding: chunked\r\nX-Telar-User: a\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        ];
        let mut next = crate::h1::test_rng(0x9e37_79b9_7f4a_7c15u64);
        for round in 0..20_000 {
            let mut bytes = seeds[round % seeds.len()].to_vec();
            for _ in 0..(next() % 4 + 1) {
                let at = (next() as usize) % bytes.len();
                match next() % 3 {
                    0 => bytes[at] = next() as u8,
                    1 => bytes.insert(at, next() as u8),
                    _ => {
                        bytes.remove(at);
                    }
                }
            }
            let _ = RequestHead::parse(&mut BytesMut::from(&bytes[..]));
            let _ = ResponseHead::parse(&mut BytesMut::from(&bytes[..]), round % 2 == 0);
        }
    }
}
