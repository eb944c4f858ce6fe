//! An audit record, what it is made from, and its hash: SHA-256 over the previous record's hash
//! and every stored field, length-prefixed so no two different records hash alike.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use telar_types::Envelope;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The hash before the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What an event says about who did what to what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewRecord {
    /// The event's id: an event is audited once, however often it is delivered.
    pub id: String,
    /// RFC 3339, UTC.
    pub at: String,
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub entity_type: String,
    pub entity_id: String,
    pub source: String,
    /// The event's data as stored (JSON text).
    pub data: String,
}

/// A record of the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditRecord {
    pub seq: i64,
    pub id: String,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub entity_type: String,
    pub entity_id: String,
    pub source: String,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

/// The hash of record `seq` made of `record`, after `prev_hash`.
pub fn chain_hash(prev_hash: &str, seq: i64, record: &NewRecord) -> String {
    let mut hasher = Sha256::new();
    let seq = seq.to_string();
    let at_ms = record.at_ms.to_string();
    for field in [
        prev_hash,
        &seq,
        &record.id,
        &record.at,
        &at_ms,
        &record.actor,
        &record.action,
        &record.entity_type,
        &record.entity_id,
        &record.source,
        &record.data,
    ] {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    hex::encode(hasher.finalize())
}

fn text(value: Option<&serde_json::Value>) -> Option<String> {
    match value? {
        serde_json::Value::String(text) if !text.is_empty() => Some(text.clone()),
        serde_json::Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

impl NewRecord {
    /// What `envelope` says. An `audit.log` event names everything in its data (`actor`,
    /// `action`, `entity_type`, `entity_id`, `details`); any other event is audited as its type
    /// (the action), its subject (the entity, typed by the type's middle segment:
    /// `carpeta.citizen.registered` → `citizen`) and the `actor` extension or data field.
    pub fn from_envelope(envelope: &Envelope) -> Self {
        let data = envelope.data.as_ref();
        let field = |name: &str| text(data.and_then(|d| d.get(name)));
        let explicit = envelope.ty == "audit.log";
        let actor = text(envelope.extensions.get("actor"))
            .or_else(|| field("actor"))
            .unwrap_or_else(|| "system".to_owned());
        let segments: Vec<&str> = envelope.ty.split('.').collect();
        let typed = match segments.as_slice() {
            [_, entity, _] | [_, entity, _, ..] => (*entity).to_owned(),
            _ => String::new(),
        };
        let (action, entity_type, entity_id, details) = if explicit {
            (
                field("action").unwrap_or_else(|| "unspecified".to_owned()),
                field("entity_type").unwrap_or_default(),
                field("entity_id")
                    .or_else(|| envelope.subject.clone())
                    .unwrap_or_default(),
                data.and_then(|d| d.get("details")).cloned(),
            )
        } else {
            (
                envelope.ty.clone(),
                typed,
                envelope.subject.clone().unwrap_or_default(),
                data.cloned(),
            )
        };
        let at = envelope.time.unwrap_or_else(OffsetDateTime::now_utc);
        let at = at.to_offset(time::UtcOffset::UTC);
        NewRecord {
            id: envelope.id.clone(),
            at: at.format(&Rfc3339).unwrap_or_default(),
            at_ms: i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(0),
            actor,
            action,
            entity_type,
            entity_id,
            source: envelope.source.clone(),
            data: details.map_or_else(|| "null".to_owned(), |d| d.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn explicit_and_domain_events_become_records() {
        let explicit = Envelope::new(
            "/identity",
            "audit.log",
            json!({"actor": "u-7", "action": "login.failed", "entity_type": "account", "entity_id": "ana", "details": {"ip": "10.0.0.1"}}),
        );
        let record = NewRecord::from_envelope(&explicit);
        assert_eq!(
            (
                record.actor.as_str(),
                record.action.as_str(),
                record.entity_type.as_str(),
                record.entity_id.as_str()
            ),
            ("u-7", "login.failed", "account", "ana")
        );
        assert_eq!(record.data, r#"{"ip":"10.0.0.1"}"#);
        let domain = Envelope::new(
            "/citizen",
            "carpeta.citizen.registered",
            json!({"id": 1032456789}),
        )
        .with_subject("1032456789");
        let record = NewRecord::from_envelope(&domain);
        assert_eq!(
            (
                record.actor.as_str(),
                record.action.as_str(),
                record.entity_type.as_str(),
                record.entity_id.as_str()
            ),
            (
                "system",
                "carpeta.citizen.registered",
                "citizen",
                "1032456789"
            )
        );
    }

    #[test]
    fn every_field_is_in_the_hash() {
        let record = NewRecord::from_envelope(&Envelope::new("/s", "a.b.c", json!({"x": 1})));
        let base = chain_hash(GENESIS, 1, &record);
        assert_eq!(base.len(), 64);
        assert_ne!(chain_hash(GENESIS, 2, &record), base);
        let mut changed = record.clone();
        changed.actor.push('x');
        assert_ne!(chain_hash(GENESIS, 1, &changed), base);
        // Moving a character between fields changes the hash too (length prefixes).
        let mut moved = record.clone();
        moved.action = "a.b".into();
        moved.entity_type = format!("c{}", record.entity_type);
        assert_ne!(chain_hash(GENESIS, 1, &moved), base);
    }
}
