//! The CloudEvents 1.0 envelope in structured JSON mode.
//!
//! Parsing validates the required context attributes (`specversion`, `id`, `source`, `type`),
//! the optional ones that have a format (`time`, extension names), and that `data` and
//! `data_base64` are not both present. Unknown extensions are kept and written back unchanged.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

/// The only CloudEvents version this envelope speaks.
pub const SPEC_VERSION: &str = "1.0";

/// Why a value is not a valid CloudEvents envelope; the attribute is always named.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("attribute `{0}` is required and must be a non-empty string")]
    Missing(&'static str),
    #[error("attribute `specversion` must be \"1.0\", got {0:?}")]
    SpecVersion(String),
    #[error("attribute `time` must be an RFC 3339 timestamp, got {0:?}")]
    Time(String),
    #[error("attribute `{0}` must be a string")]
    NotAString(String),
    #[error("extension name `{0}` must be 1-20 lowercase ASCII letters or digits")]
    ExtensionName(String),
    #[error("`data` and `data_base64` are mutually exclusive")]
    BothData,
    #[error("invalid envelope json: {0}")]
    Json(String),
}

/// A CloudEvents 1.0 event. `subject` carries the aggregate id and is the ordering key.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub id: String,
    pub source: String,
    pub ty: String,
    pub subject: Option<String>,
    pub time: Option<OffsetDateTime>,
    pub datacontenttype: Option<String>,
    pub dataschema: Option<String>,
    pub data: Option<Value>,
    pub data_base64: Option<String>,
    /// W3C trace context of the operation that produced the event.
    pub traceparent: Option<String>,
    /// The id shared by every event of one business flow.
    pub correlationid: Option<String>,
    /// The id of the event or command that caused this one.
    pub causationid: Option<String>,
    /// Any other extension attribute, kept as received.
    pub extensions: BTreeMap<String, Value>,
}

impl Envelope {
    /// A new JSON event with a fresh time-ordered id and the current time.
    pub fn new(source: impl Into<String>, ty: impl Into<String>, data: Value) -> Self {
        Envelope {
            id: Uuid::now_v7().to_string(),
            source: source.into(),
            ty: ty.into(),
            subject: None,
            time: Some(OffsetDateTime::now_utc()),
            datacontenttype: Some("application/json".to_owned()),
            dataschema: None,
            data: Some(data),
            data_base64: None,
            traceparent: None,
            correlationid: None,
            causationid: None,
            extensions: BTreeMap::new(),
        }
    }

    /// Sets the subject (aggregate id, ordering key).
    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Marks this event as caused by `cause`: same correlation, causation = cause's id,
    /// and the cause's trace context unless one is already set.
    pub fn caused_by(mut self, cause: &Envelope) -> Self {
        self.causationid = Some(cause.id.clone());
        self.correlationid = Some(
            cause
                .correlationid
                .clone()
                .unwrap_or_else(|| cause.id.clone()),
        );
        if self.traceparent.is_none() {
            self.traceparent = cause.traceparent.clone();
        }
        self
    }

    /// The correlation id, falling back to the event's own id for the first event of a flow.
    pub fn correlation(&self) -> &str {
        self.correlationid.as_deref().unwrap_or(&self.id)
    }

    /// Parses and validates a structured-mode JSON envelope.
    pub fn from_json(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        crate::envelope_json::parse(bytes)
    }

    /// Validates a JSON value as an envelope.
    pub fn from_value(value: Value) -> Result<Self, EnvelopeError> {
        let Value::Object(mut map) = value else {
            return Err(EnvelopeError::Json("an envelope is a JSON object".into()));
        };
        let specversion =
            take_string(&mut map, "specversion")?.ok_or(EnvelopeError::Missing("specversion"))?;
        if specversion != SPEC_VERSION {
            return Err(EnvelopeError::SpecVersion(specversion));
        }
        let id = required(&mut map, "id")?;
        let source = required(&mut map, "source")?;
        let ty = required(&mut map, "type")?;
        let time = match take_string(&mut map, "time")? {
            Some(text) => Some(
                OffsetDateTime::parse(&text, &Rfc3339).map_err(|_| EnvelopeError::Time(text))?,
            ),
            None => None,
        };
        let data = map.remove("data");
        let data_base64 = take_string(&mut map, "data_base64")?;
        if data.is_some() && data_base64.is_some() {
            return Err(EnvelopeError::BothData);
        }
        let envelope = Envelope {
            id,
            source,
            ty,
            subject: take_string(&mut map, "subject")?,
            time,
            datacontenttype: take_string(&mut map, "datacontenttype")?,
            dataschema: take_string(&mut map, "dataschema")?,
            data,
            data_base64,
            traceparent: take_string(&mut map, "traceparent")?,
            correlationid: take_string(&mut map, "correlationid")?,
            causationid: take_string(&mut map, "causationid")?,
            extensions: BTreeMap::new(),
        };
        let mut extensions = BTreeMap::new();
        for (name, value) in map {
            if !is_valid_extension_name(&name) {
                return Err(EnvelopeError::ExtensionName(name));
            }
            extensions.insert(name, value);
        }
        Ok(Envelope {
            extensions,
            ..envelope
        })
    }

    /// The structured-mode JSON value of this envelope.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The structured-mode JSON bytes of this envelope.
    pub fn to_json(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        self.write_json(&mut bytes);
        bytes
    }

    /// Appends the structured-mode JSON bytes of this envelope to `buffer` (reuse one buffer
    /// when serializing many): the same bytes as its `Serialize` impl through `serde_json`,
    /// with strings that need no escaping copied in one go (every published envelope is
    /// written here).
    pub fn write_json(&self, buffer: &mut Vec<u8>) {
        use crate::json::{push_json_str, push_json_value};
        let field = |buffer: &mut Vec<u8>, name: &str| {
            buffer.push(b',');
            push_json_str(buffer, name);
            buffer.push(b':');
        };
        buffer.extend_from_slice(b"{\"specversion\":");
        push_json_str(buffer, SPEC_VERSION);
        field(buffer, "id");
        push_json_str(buffer, &self.id);
        field(buffer, "source");
        push_json_str(buffer, &self.source);
        field(buffer, "type");
        push_json_str(buffer, &self.ty);
        for (name, value) in self.optional_attributes() {
            if let Some(value) = value {
                field(buffer, name);
                push_json_str(buffer, value);
            }
        }
        if let Some(time) = self.time {
            let mark = buffer.len();
            field(buffer, "time");
            buffer.push(b'"');
            if time.format_into(&mut *buffer, &Rfc3339).is_ok() {
                buffer.push(b'"');
            } else {
                buffer.truncate(mark);
            }
        }
        if let Some(data) = &self.data {
            field(buffer, "data");
            push_json_value(buffer, data);
        }
        for (name, value) in &self.extensions {
            field(buffer, name);
            push_json_value(buffer, value);
        }
        buffer.push(b'}');
    }

    /// The optional string attributes, in the order they are written.
    fn optional_attributes(&self) -> [(&'static str, &Option<String>); 7] {
        [
            ("subject", &self.subject),
            ("datacontenttype", &self.datacontenttype),
            ("dataschema", &self.dataschema),
            ("data_base64", &self.data_base64),
            ("traceparent", &self.traceparent),
            ("correlationid", &self.correlationid),
            ("causationid", &self.causationid),
        ]
    }
}

impl Serialize for Envelope {
    /// Written field by field (no intermediate `Value`: publishing serializes every envelope).
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("specversion", SPEC_VERSION)?;
        map.serialize_entry("id", &self.id)?;
        map.serialize_entry("source", &self.source)?;
        map.serialize_entry("type", &self.ty)?;
        for (name, value) in self.optional_attributes() {
            if let Some(value) = value {
                map.serialize_entry(name, value)?;
            }
        }
        if let Some(time) = self.time
            && let Ok(text) = time.format(&Rfc3339)
        {
            map.serialize_entry("time", &text)?;
        }
        if let Some(data) = &self.data {
            map.serialize_entry("data", data)?;
        }
        for (name, value) in &self.extensions {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Envelope {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Envelope::from_value(value).map_err(serde::de::Error::custom)
    }
}

fn take_string(
    map: &mut serde_json::Map<String, Value>,
    name: &'static str,
) -> Result<Option<String>, EnvelopeError> {
    match map.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(EnvelopeError::NotAString(name.to_owned())),
    }
}

fn required(
    map: &mut serde_json::Map<String, Value>,
    name: &'static str,
) -> Result<String, EnvelopeError> {
    match take_string(map, name)? {
        Some(text) if !text.is_empty() => Ok(text),
        _ => Err(EnvelopeError::Missing(name)),
    }
}

/// CloudEvents: extension names are lowercase ASCII letters or digits, 20 characters at most
/// (the spec says SHOULD for the length; we hold producers to it).
pub(crate) fn is_valid_extension_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 20
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The examples of the CloudEvents JSON format specification (section 3 and appendix).
    fn spec_examples() -> Vec<Value> {
        vec![
            json!({
                "specversion" : "1.0",
                "type" : "com.example.someevent",
                "source" : "/mycontext",
                "id" : "A234-1234-1234",
                "time" : "2018-04-05T17:31:00Z",
                "comexampleextension1" : "value",
                "comexampleothervalue" : 5,
                "datacontenttype" : "application/xml",
                "data" : "<much wow=\"xml\"/>"
            }),
            json!({
                "specversion" : "1.0",
                "type" : "com.example.someevent",
                "source" : "/mycontext",
                "id" : "A234-1234-1234",
                "time" : "2018-04-05T17:31:00Z",
                "comexampleextension1" : "value",
                "comexampleothervalue" : 5,
                "datacontenttype" : "application/vnd.apache.thrift.binary",
                "data_base64" : "... base64 encoded string ..."
            }),
            json!({
                "specversion" : "1.0",
                "type" : "com.example.someevent",
                "source" : "/mycontext",
                "subject": null,
                "id" : "C234-1234-1234",
                "time" : "2018-04-05T17:31:00Z",
                "comexampleextension1" : "value",
                "comexampleothervalue" : 5,
                "datacontenttype" : "application/json",
                "data" : {
                    "appinfoA" : "abc",
                    "appinfoB" : 123,
                    "appinfoC" : true
                }
            }),
            json!({
                "specversion" : "1.0",
                "type" : "com.example.someevent",
                "source" : "/mycontext",
                "id" : "B234-1234-1234",
                "time" : "2018-04-05T17:31:00.123+01:00",
                "datacontenttype" : "text/plain",
                "data" : "a string payload"
            }),
        ]
    }

    fn without_nulls(value: Value) -> Value {
        match value {
            Value::Object(map) => {
                Value::Object(map.into_iter().filter(|(_, v)| !v.is_null()).collect())
            }
            other => other,
        }
    }

    #[test]
    fn spec_examples_round_trip_unchanged() {
        for example in spec_examples() {
            let envelope = Envelope::from_value(example.clone()).expect("spec example is valid");
            let written: Value = serde_json::from_slice(&envelope.to_json()).expect("valid json");
            assert_eq!(written, without_nulls(example));
        }
    }

    #[test]
    fn spec_example_attributes_are_read() {
        let envelope = Envelope::from_value(spec_examples().remove(2)).expect("valid");
        assert_eq!(envelope.ty, "com.example.someevent");
        assert_eq!(envelope.source, "/mycontext");
        assert_eq!(
            envelope.data.as_ref().and_then(|d| d["appinfoB"].as_i64()),
            Some(123)
        );
        assert_eq!(envelope.extensions["comexampleothervalue"], json!(5));
        assert_eq!(
            envelope.time.map(|t| t.unix_timestamp()),
            Some(1_522_949_460)
        );
    }

    #[test]
    fn each_required_attribute_is_named_when_missing() {
        for name in ["id", "source", "type", "specversion"] {
            let mut example = spec_examples().remove(0);
            example.as_object_mut().map(|m| m.remove(name));
            let error = Envelope::from_value(example).expect_err("must be rejected");
            assert!(error.to_string().contains(name), "{error} names {name}");
        }
    }

    #[test]
    fn invalid_attributes_are_rejected() {
        let cases = [
            (json!({"specversion": "0.3"}), "specversion"),
            (json!({"time": "yesterday"}), "time"),
            (json!({"id": ""}), "id"),
            (json!({"source": 5}), "source"),
            (json!({"Bad-Name": "x"}), "Bad-Name"),
            (json!({"data_base64": "Zm9v"}), "mutually exclusive"),
        ];
        for (patch, expected) in cases {
            let mut example = spec_examples().remove(0);
            for (key, value) in patch.as_object().into_iter().flatten() {
                example[key] = value.clone();
            }
            let error = Envelope::from_value(example).expect_err("must be rejected");
            assert!(
                error.to_string().contains(expected),
                "{error} mentions {expected}"
            );
        }
    }

    #[test]
    fn telar_extensions_round_trip_and_propagate() {
        let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let mut command = Envelope::new(
            "/carpeta/citizen",
            "carpeta.citizen.registered",
            json!({"id": 1}),
        )
        .with_subject("1032456789");
        command.traceparent = Some(traceparent.into());
        let next = Envelope::new("/carpeta/hub-client", "carpeta.hub.call_queued", json!({}))
            .caused_by(&command);
        assert_eq!(next.causationid.as_deref(), Some(command.id.as_str()));
        assert_eq!(next.correlation(), command.id);
        assert_eq!(next.traceparent.as_deref(), Some(traceparent));

        let parsed = Envelope::from_json(&next.to_json()).expect("own output is valid");
        assert_eq!(parsed.correlationid, next.correlationid);
        assert_eq!(parsed.causationid, next.causationid);
        assert_eq!(parsed.traceparent, next.traceparent);
        assert_eq!(parsed.id, next.id);
        assert!(
            parsed.extensions.is_empty(),
            "known extensions are not duplicated"
        );
    }

    /// The one-pass byte parser and the `Value` path agree on every input: same envelope or
    /// same error.
    #[test]
    fn parsing_bytes_matches_validating_a_value() {
        let mut inputs: Vec<Value> = spec_examples();
        for patch in [
            json!({"specversion": "0.3"}),
            json!({"specversion": 1}),
            json!({"time": "yesterday"}),
            json!({"time": null}),
            json!({"id": ""}),
            json!({"id": ["x"]}),
            json!({"source": 5}),
            json!({"type": {"a": 1}}),
            json!({"subject": true}),
            json!({"traceparent": 1.5}),
            json!({"Bad-Name": "x"}),
            json!({"ext1": {"nested": [1, 2]}}),
            json!({"data_base64": "Zm9v"}),
            json!({"data": null}),
            json!({"data": {"é\"": "ñ"}}),
        ] {
            let mut example = spec_examples().remove(0);
            for (key, value) in patch.as_object().into_iter().flatten() {
                example[key] = value.clone();
            }
            inputs.push(example);
        }
        for input in inputs {
            let bytes = serde_json::to_vec(&input).expect("json");
            assert_eq!(
                Envelope::from_json(&bytes),
                Envelope::from_value(input.clone()),
                "{input}"
            );
        }
        for bad in [&b"[1]"[..], b"\"x\"", b"{\"id\": ", b"{} trailing"] {
            assert!(
                matches!(Envelope::from_json(bad), Err(EnvelopeError::Json(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn written_bytes_are_serde_jsons() {
        let mut envelopes: Vec<Envelope> = spec_examples()
            .into_iter()
            .map(|example| Envelope::from_value(example).expect("valid"))
            .collect();
        let mut ours = Envelope::new(
            "/a",
            "t.e",
            json!({"p": "x".repeat(300), "q": "a\"b\n", "n": [1, 2.5]}),
        )
        .with_subject("s-1");
        ours.traceparent = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
        ours.extensions.insert("position".into(), json!(7));
        envelopes.push(ours);
        for envelope in envelopes {
            let mut written = Vec::new();
            envelope.write_json(&mut written);
            assert_eq!(
                String::from_utf8(written).expect("utf-8"),
                serde_json::to_string(&envelope).expect("json")
            );
        }
    }

    #[test]
    fn serde_goes_through_validation() {
        let bad = json!({"specversion": "1.0", "id": "x", "type": "t"});
        let error = serde_json::from_value::<Envelope>(bad).expect_err("source is missing");
        assert!(error.to_string().contains("source"));
    }
}
