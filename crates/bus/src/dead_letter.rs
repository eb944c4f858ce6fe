use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One failed delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Attempt {
    pub attempt: u32,
    /// RFC 3339.
    pub at: String,
    pub error: String,
}

/// A message a consumer group gave up on, with why and how it got there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeadLetter {
    pub id: i64,
    pub group: String,
    pub topic: String,
    pub message_id: String,
    /// The envelope as stored (raw JSON text when it does not decode).
    #[schema(value_type = Object)]
    pub envelope: serde_json::Value,
    pub last_error: String,
    pub attempts: u32,
    pub history: Vec<Attempt>,
    /// RFC 3339.
    pub dead_at: String,
}

/// Which dead letters an operation applies to; empty means all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DeadLetterFilter {
    pub id: Option<i64>,
    pub group: Option<String>,
    pub topic: Option<String>,
    /// At most this many (listing only).
    pub limit: Option<u32>,
}

impl DeadLetterFilter {
    pub fn one(id: i64) -> Self {
        DeadLetterFilter {
            id: Some(id),
            ..Self::default()
        }
    }

    pub fn group(group: impl Into<String>) -> Self {
        DeadLetterFilter {
            group: Some(group.into()),
            ..Self::default()
        }
    }
}
