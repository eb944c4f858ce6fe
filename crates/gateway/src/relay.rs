//! An upstream's answer sent on to the client: its status and fields minus those of its hop,
//! the gateway's own fields, and the body streamed as it arrives — in the same write as the
//! head when it is already here. The upstream connection goes back to its pool once the body
//! has been read to its end.

use std::time::Duration;

use telar_resilience::Decision;

use crate::h1::body::{Conn, Encode, transfer};
use crate::h1::head::{Framing, Kind, RequestHead};
use crate::h1::write::{date, field, number, status_line};
use crate::proxy::{Answer, Failure};

pub(crate) struct Relayed {
    /// The client connection can carry another request.
    pub keep: bool,
    /// The upstream broke off in the middle of the body.
    pub failure: Option<Failure>,
}

/// What the gateway adds to every relayed response: the request id and the caller's rate-limit
/// budget.
pub(crate) struct Own<'a> {
    pub request_id: &'a str,
    pub decision: Option<Decision>,
}

impl Own<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        field(out, b"x-request-id", self.request_id.as_bytes());
        if let Some(decision) = self.decision {
            out.extend_from_slice(b"ratelimit-limit: ");
            number(out, u64::from(decision.limit));
            out.extend_from_slice(b"\r\nratelimit-remaining: ");
            number(out, u64::from(decision.remaining));
            out.extend_from_slice(b"\r\nratelimit-reset: ");
            number(out, reset_secs(decision));
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// Seconds until a decision's window frees a call, rounded up.
pub(crate) fn reset_secs(decision: Decision) -> u64 {
    u64::try_from(decision.retry_after.as_millis().div_ceil(1000)).unwrap_or(u64::MAX)
}

/// Writes `answer` to `client` with the gateway's own fields; `keep`: whether the client
/// connection may stay open after this answer.
pub(crate) async fn relay(
    client: &mut Conn,
    answer: Answer,
    request: &RequestHead,
    own: &Own<'_>,
    keep: bool,
    out: &mut Vec<u8>,
    idle: Duration,
) -> Relayed {
    let Answer {
        head,
        mut conn,
        pool,
    } = answer;
    let framing = head.framing;
    // A body of unknown length goes chunked to an HTTP/1.1 client; an HTTP/1.0 client reads
    // it until the connection closes.
    let (encode, keep) = match framing {
        Framing::Chunked | Framing::Close if request.http11 => (Encode::Chunked, keep),
        Framing::Chunked | Framing::Close => (Encode::Raw, false),
        Framing::Empty | Framing::Length(_) => (Encode::Raw, keep),
    };
    let bodyless_status = (100..200).contains(&head.status) || head.status == 204;
    out.clear();
    status_line(out, head.status);
    let mut dated = false;
    for (kind, name, value) in head.fields.iter() {
        match kind {
            Kind::Connection
            | Kind::HopByHop
            | Kind::TransferEncoding
            | Kind::RequestId
            | Kind::RateLimit => {}
            // The length of a HEAD or 304 answer describes the representation: it goes on.
            Kind::ContentLength => {
                if framing == Framing::Empty && !bodyless_status {
                    field(out, name, value);
                }
            }
            Kind::Date => {
                dated = true;
                field(out, name, value);
            }
            _ => field(out, name, value),
        }
    }
    if !dated {
        date(out);
    }
    own.write(out);
    match (framing, encode) {
        (Framing::Length(length), _) => {
            out.extend_from_slice(b"content-length: ");
            number(out, length);
            out.extend_from_slice(b"\r\n");
        }
        (Framing::Chunked | Framing::Close, Encode::Chunked) => {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        }
        _ => {}
    }
    if !keep {
        out.extend_from_slice(b"connection: close\r\n");
    } else if !request.http11 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    match transfer(
        &mut conn,
        framing,
        &mut client.io,
        encode,
        u64::MAX,
        idle,
        out,
    )
    .await
    {
        Ok(_) => {
            if head.keep_alive {
                pool.give_back(conn);
            }
            Relayed {
                keep,
                failure: None,
            }
        }
        Err(error) => {
            tracing::debug!(%error, "response body not relayed to its end");
            out.clear();
            Relayed {
                keep: false,
                failure: error.sender_at_fault().then_some(Failure::Protocol),
            }
        }
    }
}
