//! A tracing layer that writes one JSON object per event, with the fields of every enclosing
//! span (service, request_id, trace_id, ...) lifted to the top level so log tools can index them.
//!
//! The hot path is cheap on purpose (one log line per request): span fields are kept already
//! JSON-encoded, the line is written straight into a byte buffer, and lines are appended to a
//! shared buffer that a writer thread flushes to stdout every few milliseconds (or at once when
//! it grows), so request handlers never make a `write` syscall or wake another thread.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// Where log lines go.
#[derive(Clone)]
pub enum LogSink {
    /// Standard output, through [`StdoutWriter`].
    Stdout,
    /// An in-memory buffer, for tests that assert on log lines.
    Buffer(Arc<Mutex<Vec<u8>>>),
}

/// Writes JSON lines: `timestamp`, `level`, `target`, the fields of the enclosing spans
/// (outermost first), then the event's own fields including `message`.
pub struct JsonLogLayer {
    sink: Sink,
}

#[derive(Clone)]
pub(crate) enum Sink {
    Stdout(Arc<StdoutWriter>),
    Buffer(Arc<Mutex<Vec<u8>>>),
}

impl JsonLogLayer {
    pub fn new(sink: LogSink) -> Self {
        let sink = match sink {
            LogSink::Stdout => Sink::Stdout(StdoutWriter::start()),
            LogSink::Buffer(buffer) => Sink::Buffer(buffer),
        };
        JsonLogLayer { sink }
    }

    /// The stdout writer, to flush it at exit.
    pub(crate) fn stdout_writer(&self) -> Option<Arc<StdoutWriter>> {
        match &self.sink {
            Sink::Stdout(writer) => Some(writer.clone()),
            Sink::Buffer(_) => None,
        }
    }

    fn write_line(&self, line: &[u8]) {
        self.sink.write(line);
    }

    /// Where this layer writes (for lines written without tracing, see `LogLine`).
    pub(crate) fn sink(&self) -> Sink {
        self.sink.clone()
    }
}

impl Sink {
    pub(crate) fn write(&self, line: &[u8]) {
        match self {
            Sink::Stdout(writer) => writer.append(line),
            Sink::Buffer(buffer) => {
                if let Ok(mut buffer) = buffer.lock() {
                    buffer.extend_from_slice(line);
                }
            }
        }
    }
}

/// Pending bytes are written by the flusher thread this often.
const FLUSH_EVERY: Duration = Duration::from_millis(10);
/// Past this many pending bytes in one shard (stdout is not keeping up) the logging thread
/// writes itself: back-pressure instead of unbounded memory or dropped lines.
const WRITE_INLINE_AT: usize = 4 * 1024 * 1024;
/// Independent buffers, so threads logging at the same time rarely share a lock.
const SHARDS: usize = 8;

/// Pending lines, sharded by thread, and the thread that drains them to stdout. Lines of one
/// thread stay in order; lines of different threads may interleave within a flush interval
/// (each carries its timestamp).
pub(crate) struct StdoutWriter {
    shards: [Mutex<Vec<u8>>; SHARDS],
    /// Dropping it (with the writer) tells the flusher thread to flush once more and exit.
    _stop: Mutex<mpsc::Sender<()>>,
}

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
}

impl StdoutWriter {
    fn start() -> Arc<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        let writer = Arc::new(StdoutWriter {
            shards: std::array::from_fn(|_| Mutex::new(Vec::new())),
            _stop: Mutex::new(stop),
        });
        let flusher = Arc::downgrade(&writer);
        let _ = std::thread::Builder::new()
            .name("telar-log-writer".into())
            .spawn(move || {
                // Flush every interval; exit once the writer is dropped (its `Drop` flushes).
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(FLUSH_EVERY) {
                    match flusher.upgrade() {
                        Some(writer) => writer.flush(),
                        None => return,
                    }
                }
            });
        writer
    }

    fn append(&self, line: &[u8]) {
        let shard = SHARD.with(|shard| *shard);
        let Ok(mut pending) = self.shards[shard].lock() else {
            write_out(line);
            return;
        };
        pending.extend_from_slice(line);
        if pending.len() >= WRITE_INLINE_AT {
            let batch = std::mem::take(&mut *pending);
            drop(pending);
            write_out(&batch);
        }
    }

    /// Writes everything pending now (every interval, at exit, and on drop).
    pub(crate) fn flush(&self) {
        for shard in &self.shards {
            let batch = match shard.lock() {
                Ok(mut pending) if !pending.is_empty() => {
                    let capacity = pending.capacity();
                    std::mem::replace(&mut *pending, Vec::with_capacity(capacity))
                }
                _ => continue,
            };
            write_out(&batch);
        }
    }
}

impl Drop for StdoutWriter {
    fn drop(&mut self) {
        self.flush();
    }
}

fn write_out(batch: &[u8]) {
    if batch.is_empty() {
        return;
    }
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(batch);
    let _ = out.flush();
}

/// A span's fields, already rendered as `,"name":value` JSON members (one allocation per span;
/// a field recorded twice appears twice and JSON readers keep the last).
struct SpanFields(Vec<u8>);

/// Writes each field as a `,"name":value` member straight into a line buffer.
struct FieldWriter<'a>(&'a mut Vec<u8>);

impl FieldWriter<'_> {
    fn name(&mut self, field: &Field) {
        let name = field.name();
        self.0.push(b',');
        // Field names are identifiers in practice; escape only the rare one that needs it.
        if !needs_escape(name) {
            self.0.push(b'"');
            self.0.extend_from_slice(name.as_bytes());
            self.0.push(b'"');
        } else {
            let _ = serde_json::to_writer(&mut *self.0, name);
        }
        self.0.push(b':');
    }

    fn json<T: serde::Serialize + ?Sized>(&mut self, field: &Field, value: &T) {
        self.name(field);
        if serde_json::to_writer(&mut *self.0, value).is_err() {
            self.0.extend_from_slice(b"null");
        }
    }
}

impl Visit for FieldWriter<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        if is_exporter_only(field) {
            return;
        }
        self.json(field, &value);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        if is_exporter_only(field) {
            return;
        }
        self.json(field, &value);
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        if is_exporter_only(field) {
            return;
        }
        self.json(field, &value);
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        if is_exporter_only(field) {
            return;
        }
        self.json(field, &value);
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if is_exporter_only(field) {
            return;
        }
        self.name(field);
        push_json_str(self.0, value);
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if is_exporter_only(field) {
            return;
        }
        self.json(field, &value.to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if is_exporter_only(field) {
            return;
        }
        self.name(field);
        push_json_str(self.0, &format!("{value:?}"));
    }
}

/// `otel.kind`, `otel.name`, …: instructions to the span exporter, not facts worth a log
/// column.
fn is_exporter_only(field: &Field) -> bool {
    field.name().starts_with("otel.")
}

pub(crate) use telar_types::json::{needs_escape, push_json_str};

pub(crate) fn level_json(level: &tracing::Level) -> &'static [u8] {
    match *level {
        tracing::Level::ERROR => b"\"error\"",
        tracing::Level::WARN => b"\"warn\"",
        tracing::Level::INFO => b"\"info\"",
        tracing::Level::DEBUG => b"\"debug\"",
        tracing::Level::TRACE => b"\"trace\"",
    }
}

impl<S> Layer<S> for JsonLogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Vec::with_capacity(192);
        attrs.record(&mut FieldWriter(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut extensions = span.extensions_mut();
            if let Some(fields) = extensions.get_mut::<SpanFields>() {
                values.record(&mut FieldWriter(&mut fields.0));
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut line = line_start(event.metadata().level(), event.metadata().target());
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<SpanFields>() {
                    line.extend_from_slice(&fields.0);
                }
            }
        }
        event.record(&mut FieldWriter(&mut line));
        line.extend_from_slice(b"}\n");
        self.write_line(&line);
    }
}

/// `{"timestamp":…,"level":…,"target":…` — how every line starts.
pub(crate) fn line_start(level: &tracing::Level, target: &str) -> Vec<u8> {
    let mut line = Vec::with_capacity(512);
    line.extend_from_slice(b"{\"timestamp\":\"");
    let _ = OffsetDateTime::now_utc().format_into(&mut line, &Rfc3339);
    line.extend_from_slice(b"\",\"level\":");
    line.extend_from_slice(level_json(level));
    line.extend_from_slice(b",\"target\":");
    push_json_str(&mut line, target);
    line
}

#[cfg(test)]
mod tests {
    use serde_json::Value;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[test]
    fn escaping_is_spotted_at_every_position() {
        assert!(!needs_escape(
            "01a20b14-0034-771d-9082-386b44a62e0e/api/ciudadanos/ñandú"
        ));
        for bad in ['"', '\\', '\n', '\u{1}', '\u{1f}'] {
            for at in 0..20 {
                let mut text: String = "x".repeat(20);
                text.replace_range(at..=at, &bad.to_string());
                assert!(needs_escape(&text), "{bad:?} at {at}");
            }
        }
        assert!(!needs_escape(&"\u{7f}é~ ".repeat(9)));
    }

    #[test]
    fn lines_carry_the_fields_of_enclosing_spans() {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let subscriber =
            tracing_subscriber::registry().with(JsonLogLayer::new(LogSink::Buffer(buffer.clone())));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "request",
                service = "hub-sim",
                request_id = "r-1",
                trace_id = tracing::field::Empty
            );
            span.record("trace_id", "0af7651916cd43dd8448eb211c80319c");
            let _entered = span.enter();
            tracing::info!(
                status = 201,
                detail = "quote \" and\nnewline",
                "citizen registered"
            );
        });
        let text = String::from_utf8(buffer.lock().map(|b| b.clone()).unwrap_or_default())
            .unwrap_or_default();
        let line: Value = serde_json::from_str(text.trim()).expect("one json line");
        assert_eq!(line["service"], "hub-sim");
        assert_eq!(line["request_id"], "r-1");
        assert_eq!(line["trace_id"], "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(line["message"], "citizen registered");
        assert_eq!(line["status"], 201);
        assert_eq!(line["level"], "info");
        assert_eq!(
            line["detail"], "quote \" and\nnewline",
            "values are escaped"
        );
    }
}
