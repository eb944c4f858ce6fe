//! `Transfer-Encoding: chunked` (RFC 9112 §7.1), decoded incrementally from a connection's
//! buffer. Strict on purpose: a size line is hex digits, an optional extension and CRLF — no
//! bare LF, no sign, no spaces before the digits, no sizes beyond 64 bits — because a proxy that
//! reads chunk boundaries differently from its upstream can be made to smuggle requests.
//! Extensions and trailer fields are read and dropped.

use bytes::{Buf, Bytes, BytesMut};

/// Longest size line or trailer line accepted.
const MAX_LINE: usize = 4096;
/// Most trailer bytes accepted (they are dropped).
const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    Data(u64),
    DataEnd,
    Trailers(usize),
    Done,
}

/// One step of decoding.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Data(Bytes),
    /// The buffer holds no complete next piece: read more.
    NeedMore,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid chunked body: {0}")]
pub struct ChunkError(&'static str);

#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder { state: State::Size }
    }
}

impl ChunkedDecoder {
    /// Decodes what `buffer` holds, consuming it.
    pub fn step(&mut self, buffer: &mut BytesMut) -> Result<Step, ChunkError> {
        loop {
            match self.state {
                State::Size => {
                    let Some(end) = line_end(buffer)? else {
                        return Ok(Step::NeedMore);
                    };
                    let size = chunk_size(&buffer[..end])?;
                    buffer.advance(end + 2);
                    self.state = if size == 0 {
                        State::Trailers(0)
                    } else {
                        State::Data(size)
                    };
                }
                State::Data(remaining) => {
                    if buffer.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    let take = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(buffer.len());
                    let left = remaining - take as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                    return Ok(Step::Data(buffer.split_to(take).freeze()));
                }
                State::DataEnd => {
                    if buffer.len() < 2 {
                        return Ok(Step::NeedMore);
                    }
                    if &buffer[..2] != b"\r\n" {
                        return Err(ChunkError("chunk data not followed by CRLF"));
                    }
                    buffer.advance(2);
                    self.state = State::Size;
                }
                State::Trailers(seen) => {
                    let Some(end) = line_end(buffer)? else {
                        return Ok(Step::NeedMore);
                    };
                    buffer.advance(end + 2);
                    if end == 0 {
                        self.state = State::Done;
                        return Ok(Step::Done);
                    }
                    if seen + end > MAX_TRAILERS {
                        return Err(ChunkError("trailers too large"));
                    }
                    self.state = State::Trailers(seen + end + 2);
                }
                State::Done => return Ok(Step::Done),
            }
        }
    }
}

/// Where the CRLF ending the buffer's first line is; bare LF and overlong lines are refused.
fn line_end(buffer: &[u8]) -> Result<Option<usize>, ChunkError> {
    let window = &buffer[..buffer.len().min(MAX_LINE + 2)];
    match window.iter().position(|b| *b == b'\n') {
        Some(0) => Err(ChunkError("bare LF")),
        Some(lf) if window[lf - 1] == b'\r' => Ok(Some(lf - 1)),
        Some(_) => Err(ChunkError("bare LF")),
        None if buffer.len() > MAX_LINE => Err(ChunkError("line too long")),
        None => Ok(None),
    }
}

/// `1*HEXDIG [ chunk-ext ]`.
fn chunk_size(line: &[u8]) -> Result<u64, ChunkError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(ChunkError("missing chunk size"));
    }
    if digits > 16 {
        return Err(ChunkError("chunk size too large"));
    }
    let mut size = 0u64;
    for digit in &line[..digits] {
        let value = (*digit as char).to_digit(16).unwrap_or(0);
        size = (size << 4) | u64::from(value);
    }
    let rest = &line[digits..];
    let extension = rest.trim_ascii_start();
    if !rest.is_empty() && !extension.starts_with(b";") {
        return Err(ChunkError("invalid chunk size"));
    }
    if extension
        .iter()
        .any(|b| (b.is_ascii_control() && *b != b'\t') || *b == 0x7f)
    {
        return Err(ChunkError("invalid chunk extension"));
    }
    Ok(size)
}

/// Appends one chunk of `data` in chunked framing.
pub fn encode_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let mut digits = [0u8; 16];
    let mut start = digits.len();
    let mut value = data.len();
    loop {
        start -= 1;
        digits[start] = b"0123456789abcdef"[value & 0xf];
        value >>= 4;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The last chunk, without trailers.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8], piece: usize) -> Result<Vec<u8>, ChunkError> {
        let mut decoder = ChunkedDecoder::default();
        let mut buffer = BytesMut::new();
        let mut out = Vec::new();
        let mut rest = input;
        loop {
            match decoder.step(&mut buffer)? {
                Step::Data(data) => out.extend_from_slice(&data),
                Step::Done => return Ok(out),
                Step::NeedMore if rest.is_empty() => return Err(ChunkError("truncated")),
                Step::NeedMore => {
                    let take = piece.min(rest.len());
                    buffer.extend_from_slice(&rest[..take]);
                    rest = &rest[take..];
                }
            }
        }
    }

    #[test]
    fn bodies_decode_whatever_the_read_boundaries() {
        let body = b"5\r\nhello\r\n7;name=value\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\n";
        for piece in [1, 2, 3, 7, 64] {
            assert_eq!(decode_all(body, piece).unwrap(), b"hello, world", "{piece}");
        }
        assert_eq!(
            decode_all(b"A\r\n0123456789\r\n0\r\n\r\n", 4).unwrap(),
            b"0123456789"
        );
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        for bad in [
            &b"5\nhello\r\n0\r\n\r\n"[..],
            b"5\r\nhello\n0\r\n\r\n",
            b" 5\r\nhello\r\n0\r\n\r\n",
            b"+5\r\nhello\r\n0\r\n\r\n",
            b"5 x\r\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"11111111111111111\r\n",
            b"\r\n",
        ] {
            assert!(
                decode_all(bad, 64).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn chunks_encode_in_lower_case_hex() {
        let mut out = Vec::new();
        encode_chunk(&mut out, &[b'x'; 26]);
        assert!(out.starts_with(b"1a\r\nxx"));
        assert!(out.ends_with(b"x\r\n"));
        let mut again = out.clone();
        again.extend_from_slice(LAST_CHUNK);
        assert_eq!(decode_all(&again, 5).unwrap(), vec![b'x'; 26]);
    }

    #[test]
    fn random_input_never_panics() {
        let mut next = crate::h1::test_rng(0x2545_f491_4f6c_dd1du64);
        let alphabet = b"0123456789abcdefABCDEF;= \t\r\nxz";
        for _ in 0..20_000 {
            let length = (next() % 40) as usize;
            let input: Vec<u8> = (0..length)
                .map(|_| alphabet[(next() as usize) % alphabet.len()])
                .collect();
            let _ = decode_all(&input, (next() % 5 + 1) as usize);
        }
    }
}
