//! An upstream's answer sent on to the client: its status and fields minus those of its hop,
//! the gateway's own fields, and the body streamed as it arrives — in the same write as the
//! head when it is already here. The upstream connection goes back to its pool once the body
//! has been read to its end.

use std::time::Duration;

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

/// Writes `answer` to `client`. `own`: the gateway's fields (request id, rate limits); `keep`:
/// whether the client connection may stay open after this answer.
pub(crate) async fn relay(
    client: &mut Conn,
    answer: Answer,
    request: &RequestHead,
    own: &[u8],
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
    out.extend_from_slice(own);
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
