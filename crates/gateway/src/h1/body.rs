//! Moving a body from one connection to another as it arrives: never buffered whole, re-framed
//! for the next hop (a length stays a length; chunked or close-delimited becomes chunked, or raw
//! bytes to an HTTP/1.0 client), with a size limit and an idle timeout on every read.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::chunked::{ChunkedDecoder, LAST_CHUNK, Step, encode_chunk};
use super::head::Framing;

/// Reads are made with at least this much room (bodies move in pieces of about this size).
const READ_ROOM: usize = 64 * 1024;

/// A connection and what has been read from it but not used yet.
pub struct Conn {
    pub io: TcpStream,
    pub buffer: BytesMut,
}

impl Conn {
    pub fn new(io: TcpStream, capacity: usize) -> Self {
        Conn {
            io,
            buffer: BytesMut::with_capacity(capacity),
        }
    }

    /// Reads what is available (at least one byte, or 0 at the end of the stream).
    pub async fn fill(&mut self, room: usize) -> std::io::Result<usize> {
        if self.buffer.capacity() - self.buffer.len() < room / 2 {
            self.buffer.reserve(room);
        }
        self.io.read_buf(&mut self.buffer).await
    }
}

/// How the body is framed on the way out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encode {
    /// As it arrives: the length was forwarded, or the connection closes after it.
    Raw,
    Chunked,
}

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("reading the body: {0}")]
    Read(std::io::Error),
    #[error("the sender stopped before the end of the body")]
    Incomplete,
    #[error("no body bytes within {0:?}")]
    Idle(Duration),
    #[error(transparent)]
    Invalid(#[from] super::chunked::ChunkError),
    #[error("the body is larger than {0} bytes")]
    TooLarge(u64),
    #[error("writing the body: {0}")]
    Write(std::io::Error),
}

impl BodyError {
    /// The fault lies with the reading side (as opposed to the receiver going away).
    pub fn sender_at_fault(&self) -> bool {
        !matches!(self, BodyError::Write(_))
    }
}

/// Sends `pending` (a head, usually) followed by the body framed by `framing` read from `from`,
/// re-framed by `encode`, to `to`. Small bodies leave in the same write as the head. Returns the
/// body's length.
pub async fn transfer<W: AsyncWrite + Unpin>(
    from: &mut Conn,
    framing: Framing,
    to: &mut W,
    encode: Encode,
    limit: u64,
    idle: Duration,
    pending: &mut Vec<u8>,
) -> Result<u64, BodyError> {
    let mut sent = 0u64;
    match framing {
        Framing::Empty => {}
        Framing::Length(length) => {
            if length > limit {
                return Err(BodyError::TooLarge(limit));
            }
            while sent < length {
                if from.buffer.is_empty() {
                    flush(to, pending).await?;
                    read(from, idle).await?;
                }
                let take = usize::try_from(length - sent)
                    .unwrap_or(usize::MAX)
                    .min(from.buffer.len());
                if pending.is_empty() {
                    to.write_all(&from.buffer[..take])
                        .await
                        .map_err(BodyError::Write)?;
                } else {
                    pending.extend_from_slice(&from.buffer[..take]);
                    flush(to, pending).await?;
                }
                from.buffer.advance(take);
                sent += take as u64;
            }
        }
        Framing::Chunked => {
            let mut decoder = ChunkedDecoder::default();
            loop {
                match decoder.step(&mut from.buffer)? {
                    Step::Data(data) => {
                        sent += data.len() as u64;
                        if sent > limit {
                            return Err(BodyError::TooLarge(limit));
                        }
                        put(pending, encode, &data);
                    }
                    Step::NeedMore => {
                        flush(to, pending).await?;
                        read(from, idle).await?;
                    }
                    Step::Done => break,
                }
            }
            if encode == Encode::Chunked {
                pending.extend_from_slice(LAST_CHUNK);
            }
        }
        Framing::Close => loop {
            if !from.buffer.is_empty() {
                let data = from.buffer.split();
                sent += data.len() as u64;
                if sent > limit {
                    return Err(BodyError::TooLarge(limit));
                }
                put(pending, encode, &data);
            }
            flush(to, pending).await?;
            match tokio::time::timeout(idle, from.fill(READ_ROOM)).await {
                Ok(Ok(0)) => {
                    if encode == Encode::Chunked {
                        pending.extend_from_slice(LAST_CHUNK);
                    }
                    break;
                }
                Ok(Ok(_)) => {}
                Ok(Err(error)) => return Err(BodyError::Read(error)),
                Err(_) => return Err(BodyError::Idle(idle)),
            }
        },
    }
    flush(to, pending).await?;
    Ok(sent)
}

fn put(pending: &mut Vec<u8>, encode: Encode, data: &[u8]) {
    match encode {
        Encode::Raw => pending.extend_from_slice(data),
        Encode::Chunked => encode_chunk(pending, data),
    }
}

async fn flush<W: AsyncWrite + Unpin>(to: &mut W, pending: &mut Vec<u8>) -> Result<(), BodyError> {
    if !pending.is_empty() {
        to.write_all(pending).await.map_err(BodyError::Write)?;
        pending.clear();
    }
    Ok(())
}

/// Reads more of a body; the end of the stream here means the body was cut short.
async fn read(from: &mut Conn, idle: Duration) -> Result<(), BodyError> {
    match tokio::time::timeout(idle, from.fill(READ_ROOM)).await {
        Ok(Ok(0)) => Err(BodyError::Incomplete),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(BodyError::Read(error)),
        Err(_) => Err(BodyError::Idle(idle)),
    }
}
