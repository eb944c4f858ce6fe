//! Log lines built field by field and written straight to the JSON log's sink, without tracing's
//! dispatch and field visitors: for a line per request on a path where a microsecond matters
//! (the gateway's access log). Same shape as every other line: `timestamp`, `level`, `target`,
//! then the fields in the order given. The caller checks the level first with
//! `tracing::enabled!`, so filters apply as usual.

use std::sync::OnceLock;

use crate::json_log::{Sink, line_start, needs_escape, push_json_str};

static SINK: OnceLock<Sink> = OnceLock::new();

/// Lines go where the JSON log layer installed by `init` writes (the first one wins).
pub(crate) fn install(sink: Sink) {
    let _ = SINK.set(sink);
}

/// One line under construction.
pub struct LogLine {
    line: Vec<u8>,
}

impl LogLine {
    /// An info line of `target`, or `None` when no JSON log is installed in this process.
    pub fn info(target: &str) -> Option<Self> {
        SINK.get()?;
        Some(LogLine {
            line: line_start(&tracing::Level::INFO, target),
        })
    }

    /// Names are the caller's identifiers: written as they are.
    fn name(&mut self, name: &'static str) {
        debug_assert!(!needs_escape(name), "field names need no escaping");
        self.line.extend_from_slice(b",\"");
        self.line.extend_from_slice(name.as_bytes());
        self.line.extend_from_slice(b"\":");
    }

    pub fn str(&mut self, name: &'static str, value: &str) -> &mut Self {
        self.name(name);
        push_json_str(&mut self.line, value);
        self
    }

    pub fn u64(&mut self, name: &'static str, value: u64) -> &mut Self {
        self.name(name);
        let mut buffer = itoa_buffer(value);
        self.line.extend_from_slice(buffer.digits());
        self
    }

    /// Finite values as JSON numbers; others as `null`.
    pub fn f64(&mut self, name: &'static str, value: f64) -> &mut Self {
        self.name(name);
        if value.is_finite() {
            let _ = serde_json::to_writer(&mut self.line, &value);
        } else {
            self.line.extend_from_slice(b"null");
        }
        self
    }

    pub fn emit(mut self) {
        self.line.extend_from_slice(b"}\n");
        if let Some(sink) = SINK.get() {
            sink.write(&self.line);
        }
    }
}

/// Decimal digits of `value` without the formatting machinery.
struct Digits {
    bytes: [u8; 20],
    start: usize,
}

impl Digits {
    fn digits(&mut self) -> &[u8] {
        &self.bytes[self.start..]
    }
}

fn itoa_buffer(mut value: u64) -> Digits {
    let mut bytes = [0u8; 20];
    let mut start = bytes.len();
    loop {
        start -= 1;
        bytes[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    Digits { bytes, start }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn lines_have_the_shape_of_every_other_log_line() {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        install(Sink::Buffer(buffer.clone()));
        let mut line = LogLine::info("telar_gateway::access").unwrap_or_else(|| panic!("no sink"));
        line.str("message", "request")
            .str("path", "/api/x \"quoted\"")
            .u64("status", 200)
            .u64("zero", 0)
            .f64("duration_ms", 1.25)
            .f64("bad", f64::NAN);
        line.emit();
        let written = buffer.lock().map(|b| b.clone()).unwrap_or_default();
        let text = String::from_utf8(written).unwrap_or_default();
        assert!(text.ends_with("}\n"));
        let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(value["level"], "info");
        assert_eq!(value["target"], "telar_gateway::access");
        assert_eq!(value["path"], "/api/x \"quoted\"");
        assert_eq!(value["status"], 200);
        assert_eq!(value["zero"], 0);
        assert_eq!(value["duration_ms"], 1.25);
        assert!(value["bad"].is_null());
        assert!(
            value["timestamp"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z'))
        );
    }
}
