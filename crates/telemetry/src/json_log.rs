//! A tracing layer that writes one JSON object per event, with the fields of every enclosing
//! span (service, request_id, trace_id, ...) lifted to the top level so log tools can index them.

use std::io::Write;
use std::sync::{Arc, Mutex};

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
    Stdout,
    /// An in-memory buffer, for tests that assert on log lines.
    Buffer(Arc<Mutex<Vec<u8>>>),
}

/// Writes JSON lines: `timestamp`, `level`, `target`, `message`, the event's fields and the
/// fields of its spans (innermost wins).
pub struct JsonLogLayer {
    sink: LogSink,
}

impl JsonLogLayer {
    pub fn new(sink: LogSink) -> Self {
        JsonLogLayer { sink }
    }

    fn write_line(&self, line: &[u8]) {
        match &self.sink {
            LogSink::Stdout => {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(line);
            }
            LogSink::Buffer(buffer) => {
                if let Ok(mut buffer) = buffer.lock() {
                    buffer.extend_from_slice(line);
                }
            }
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
        self.write_line(&bytes);
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
