//! Reading a structured-mode JSON envelope straight into its fields: one pass over the bytes,
//! no intermediate `Value` for the envelope itself (every consumed message is parsed). Only
//! `data` and extension values become `Value`s. Validation and its order are those of
//! `Envelope::from_value`, so both paths answer the same error for the same input.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::envelope::{Envelope, EnvelopeError, SPEC_VERSION, is_valid_extension_name};

/// A string attribute as found: absent (or `null`), a string, or something else.
#[derive(Default)]
enum Slot {
    #[default]
    Absent,
    Text(String),
    NotAString,
}

impl Slot {
    fn take(self, name: &'static str) -> Result<Option<String>, EnvelopeError> {
        match self {
            Slot::Absent => Ok(None),
            Slot::Text(text) => Ok(Some(text)),
            Slot::NotAString => Err(EnvelopeError::NotAString(name.to_owned())),
        }
    }

    fn required(self, name: &'static str) -> Result<String, EnvelopeError> {
        match self.take(name)? {
            Some(text) if !text.is_empty() => Ok(text),
            _ => Err(EnvelopeError::Missing(name)),
        }
    }
}

impl<'de> Deserialize<'de> for Slot {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SlotVisitor;
        impl<'de> Visitor<'de> for SlotVisitor {
            type Value = Slot;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Slot, E> {
                Ok(Slot::Text(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Slot, E> {
                Ok(Slot::Text(v))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Slot, E> {
                Ok(Slot::Absent)
            }
            fn visit_none<E: de::Error>(self) -> Result<Slot, E> {
                Ok(Slot::Absent)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Slot, E> {
                Ok(Slot::NotAString)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Slot, E> {
                Ok(Slot::NotAString)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Slot, E> {
                Ok(Slot::NotAString)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Slot, E> {
                Ok(Slot::NotAString)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Slot, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Slot::NotAString)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Slot, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Slot::NotAString)
            }
        }
        deserializer.deserialize_any(SlotVisitor)
    }
}

/// An object key, borrowed from the input when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// The attributes as read, before validation.
#[derive(Default)]
struct Raw {
    specversion: Slot,
    id: Slot,
    source: Slot,
    ty: Slot,
    time: Slot,
    subject: Slot,
    datacontenttype: Slot,
    dataschema: Slot,
    data: Option<Value>,
    data_base64: Slot,
    traceparent: Slot,
    correlationid: Slot,
    causationid: Slot,
    extensions: BTreeMap<String, Value>,
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an envelope is a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        let mut raw = Raw::default();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let slot = match key.as_ref() {
                "specversion" => &mut raw.specversion,
                "id" => &mut raw.id,
                "source" => &mut raw.source,
                "type" => &mut raw.ty,
                "time" => &mut raw.time,
                "subject" => &mut raw.subject,
                "datacontenttype" => &mut raw.datacontenttype,
                "dataschema" => &mut raw.dataschema,
                "data_base64" => &mut raw.data_base64,
                "traceparent" => &mut raw.traceparent,
                "correlationid" => &mut raw.correlationid,
                "causationid" => &mut raw.causationid,
                "data" => {
                    raw.data = Some(map.next_value()?);
                    continue;
                }
                _ => {
                    raw.extensions.insert(key.into_owned(), map.next_value()?);
                    continue;
                }
            };
            *slot = map.next_value()?;
        }
        Ok(raw)
    }
}

/// Parses and validates `bytes` (see `Envelope::from_json`).
pub(crate) fn parse(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
    let json = |e: serde_json::Error| EnvelopeError::Json(e.to_string());
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let raw = de::Deserializer::deserialize_map(&mut deserializer, RawVisitor).map_err(json)?;
    deserializer.end().map_err(json)?;
    let specversion = raw
        .specversion
        .take("specversion")?
        .ok_or(EnvelopeError::Missing("specversion"))?;
    if specversion != SPEC_VERSION {
        return Err(EnvelopeError::SpecVersion(specversion));
    }
    let id = raw.id.required("id")?;
    let source = raw.source.required("source")?;
    let ty = raw.ty.required("type")?;
    let time = match raw.time.take("time")? {
        Some(text) => {
            Some(OffsetDateTime::parse(&text, &Rfc3339).map_err(|_| EnvelopeError::Time(text))?)
        }
        None => None,
    };
    let data_base64 = raw.data_base64.take("data_base64")?;
    if raw.data.is_some() && data_base64.is_some() {
        return Err(EnvelopeError::BothData);
    }
    let envelope = Envelope {
        id,
        source,
        ty,
        subject: raw.subject.take("subject")?,
        time,
        datacontenttype: raw.datacontenttype.take("datacontenttype")?,
        dataschema: raw.dataschema.take("dataschema")?,
        data: raw.data,
        data_base64,
        traceparent: raw.traceparent.take("traceparent")?,
        correlationid: raw.correlationid.take("correlationid")?,
        causationid: raw.causationid.take("causationid")?,
        extensions: BTreeMap::new(),
    };
    for name in raw.extensions.keys() {
        if !is_valid_extension_name(name) {
            return Err(EnvelopeError::ExtensionName(name.clone()));
        }
    }
    Ok(Envelope {
        extensions: raw.extensions,
        ..envelope
    })
}
