use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What the writer believes the stream's version is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// No check (for streams with a single writer by construction).
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last event has this version.
    Exact(i64),
}

impl std::fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::Exact(version) => write!(f, "{version}"),
        }
    }
}

/// Who and what caused an event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Metadata {
    /// Shared by every event of one business flow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The command or event that caused this one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    /// The user or service that acted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Anything else (trace context, key ids of encrypted fields, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An event to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Unique; a fresh UUID v7 by default.
    pub id: String,
    /// e.g. `DocumentUploaded`.
    pub ty: String,
    /// The version of this type's payload shape (upcasters turn old versions into the current).
    pub type_version: u32,
    pub data: Value,
    pub metadata: Metadata,
}

impl NewEvent {
    pub fn new(ty: impl Into<String>, data: Value) -> Self {
        NewEvent {
            id: telar_types::new_id().to_string(),
            ty: ty.into(),
            type_version: 1,
            data,
            metadata: Metadata::default(),
        }
    }

    pub fn version(mut self, type_version: u32) -> Self {
        self.type_version = type_version;
        self
    }

    pub fn metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    /// Global order across all streams, starting at 1.
    pub position: i64,
    pub stream: String,
    /// 1 for the stream's first event.
    pub version: i64,
    pub id: String,
    #[serde(rename = "type")]
    pub ty: String,
    pub type_version: u32,
    pub data: Value,
    pub metadata: Metadata,
    /// RFC 3339.
    pub recorded_at: String,
}
