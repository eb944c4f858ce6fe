//! A tracing layer that writes one JSON object per event, with the fields of every enclosing
//! span (service, request_id, trace_id, ...) lifted to the top level so log tools can index them.

use std::io::Write;
use std::sync::{Arc, Mutex, mpsc};

use serde_json::{Map, Value};
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
    /// Standard output, written by a dedicated thread (see [`StdoutWriter`]).
    Stdout,
    /// An in-memory buffer, for tests that assert on log lines.
    Buffer(Arc<Mutex<Vec<u8>>>),
}

/// Writes JSON lines: `timestamp`, `level`, `target`, `message`, the event's fields and the
/// fields of its spans (innermost wins).
pub struct JsonLogLayer {
    sink: Sink,
}

enum Sink {
    Stdout(Arc<StdoutWriter>),
    Buffer(Arc<Mutex<Vec<u8>>>),
}

impl JsonLogLayer {
    pub fn new(sink: LogSink) -> Self {
        let sink = match sink {
            LogSink::Stdout => Sink::Stdout(Arc::new(StdoutWriter::start())),
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

    fn write_line(&self, line: Vec<u8>) {
        match &self.sink {
            Sink::Stdout(writer) => writer.send(line),
            Sink::Buffer(buffer) => {
                if let Ok(mut buffer) = buffer.lock() {
                    buffer.extend_from_slice(&line);
                }
            }
        }
    }
}

enum Message {
    Line(Vec<u8>),
    Flush(mpsc::SyncSender<()>),
}

/// Log lines go through a bounded channel to one thread that writes them in batches: request
/// handlers never wait on a `write` syscall or on each other for the stdout lock. When the
/// channel is full (stdout is not keeping up) senders wait: lines are never dropped.
pub(crate) struct StdoutWriter {
    sender: mpsc::SyncSender<Message>,
}

/// Lines buffered between the application and the writer thread.
const QUEUED_LINES: usize = 16 * 1024;

impl StdoutWriter {
    fn start() -> Self {
        let (sender, receiver) = mpsc::sync_channel::<Message>(QUEUED_LINES);
        let spawned = std::thread::Builder::new()
            .name("telar-log-writer".into())
            .spawn(move || write_batches(&receiver));
        if spawned.is_err() {
            // No thread: fall back to a channel nobody reads, flushed synchronously below.
            let (fallback, _) = mpsc::sync_channel(0);
            return StdoutWriter { sender: fallback };
        }
        StdoutWriter { sender }
    }

    fn send(&self, line: Vec<u8>) {
        if let Err(mpsc::SendError(Message::Line(line))) = self.sender.send(Message::Line(line)) {
            let _ = std::io::stdout().lock().write_all(&line);
        }
    }

    /// Waits (up to two seconds) until every line sent so far is written.
    pub(crate) fn flush(&self) {
        let (ack, done) = mpsc::sync_channel(1);
        if self.sender.send(Message::Flush(ack)).is_ok() {
            let _ = done.recv_timeout(std::time::Duration::from_secs(2));
        }
    }
}

fn write_batches(receiver: &mpsc::Receiver<Message>) {
    let mut batch = Vec::with_capacity(64 * 1024);
    while let Ok(first) = receiver.recv() {
        let mut acks = Vec::new();
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Line(line) => batch.extend_from_slice(&line),
                Message::Flush(ack) => acks.push(ack),
            }
            if batch.len() < 256 * 1024 {
                next = receiver.try_recv().ok();
            }
        }
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(&batch);
        let _ = out.flush();
        batch.clear();
        for ack in acks {
            let _ = ack.send(());
        }
    }
}

/// The recorded fields of a span, kept in the span's extensions.
struct SpanFields(Map<String, Value>);

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().to_owned(), value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), format!("{value:?}").into());
    }
}

impl<S> Layer<S> for JsonLogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Map::new();
        attrs.record(&mut JsonVisitor(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut extensions = span.extensions_mut();
            if let Some(fields) = extensions.get_mut::<SpanFields>() {
                values.record(&mut JsonVisitor(&mut fields.0));
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut line = Map::new();
        let now = OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default();
        line.insert("timestamp".into(), now.into());
        line.insert(
            "level".into(),
            event
                .metadata()
                .level()
                .as_str()
                .to_ascii_lowercase()
                .into(),
        );
        line.insert("target".into(), event.metadata().target().into());
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<SpanFields>() {
                    for (name, value) in &fields.0 {
                        line.insert(name.clone(), value.clone());
                    }
                }
            }
        }
        event.record(&mut JsonVisitor(&mut line));
        let Ok(mut bytes) = serde_json::to_vec(&Value::Object(line)) else {
            return;
        };
        bytes.push(b'\n');
        self.write_line(bytes);
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

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
            tracing::info!(status = 201, "citizen registered");
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
    }
}
