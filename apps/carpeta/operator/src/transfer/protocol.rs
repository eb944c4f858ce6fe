//! The operator-to-operator transfer protocol, read tolerantly (`shared/systems/carpeta.md`,
//! "The operator-to-operator transfer protocol"): both dialects (`urlDocuments`/`confirmAPI` and
//! `Documents`/`confirmationURL`), one URL or a list per document, `id` as a number or a numeric
//! string, `req_status` as a number or a string. Written strictly: `id` and `req_status` as JSON
//! numbers.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::domain::CitizenId;

/// A transfer as a destination receives it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Incoming {
    pub id: CitizenId,
    pub name: String,
    pub email: String,
    /// Document name → its download URLs.
    pub documents: BTreeMap<String, Vec<String>>,
    /// Where to send `req_status`, exactly as given (trailing slashes kept).
    pub confirm_url: String,
}

/// The field that is wrong, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: &'static str,
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> Invalid {
    Invalid {
        field,
        reason: reason.into(),
    }
}

/// A citizen id given as a number or as a numeric string.
pub fn read_id(value: &Value) -> Option<CitizenId> {
    match value {
        Value::Number(n) => n.as_u64().and_then(|n| CitizenId::from_number(n).ok()),
        Value::String(s) => CitizenId::parse(s).ok(),
        _ => None,
    }
}

fn is_http(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

pub fn read_incoming(body: &Value) -> Result<Incoming, Invalid> {
    let id = read_id(&body["id"])
        .ok_or_else(|| invalid("id", "must be a 10-digit citizen id (number or string)"))?;
    let name = body["citizenName"]
        .as_str()
        .map(str::trim)
        .unwrap_or_default();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(invalid("citizenName", "must be 1 to 200 characters"));
    }
    let email = body["citizenEmail"]
        .as_str()
        .map(str::trim)
        .unwrap_or_default()
        .to_lowercase();
    if email.is_empty() || email.len() > 254 || !email.contains('@') {
        return Err(invalid("citizenEmail", "must be an email address"));
    }
    let (field, raw) = match (body.get("urlDocuments"), body.get("Documents")) {
        (Some(v), _) => ("urlDocuments", v),
        (None, Some(v)) => ("Documents", v),
        (None, None) => ("urlDocuments", &Value::Null),
    };
    let mut documents = BTreeMap::new();
    match raw {
        Value::Null => {}
        Value::Object(map) => {
            for (name, urls) in map {
                let list: Vec<String> = match urls {
                    Value::String(url) => vec![url.trim().to_owned()],
                    Value::Array(items) => items
                        .iter()
                        .filter_map(Value::as_str)
                        .map(|u| u.trim().to_owned())
                        .collect(),
                    _ => {
                        return Err(invalid(
                            "urlDocuments",
                            format!("`{name}`: a URL or a list of URLs"),
                        ));
                    }
                };
                if list.is_empty() || list.iter().any(|u| !is_http(u)) {
                    return Err(invalid(
                        "urlDocuments",
                        format!("`{name}`: every URL must be http(s)"),
                    ));
                }
                documents.insert(name.clone(), list);
            }
        }
        _ => {
            return Err(invalid(
                if field == "Documents" {
                    "Documents"
                } else {
                    "urlDocuments"
                },
                "must be an object of name → URL(s)",
            ));
        }
    }
    if documents.len() > 500 {
        return Err(invalid("urlDocuments", "at most 500 documents"));
    }
    let confirm_url = body
        .get("confirmAPI")
        .or_else(|| body.get("confirmationURL"))
        .and_then(Value::as_str)
        .map(str::trim)
        .unwrap_or_default()
        .to_owned();
    if !is_http(&confirm_url) {
        return Err(invalid("confirmAPI", "must be an http(s) URL"));
    }
    Ok(Incoming {
        id,
        name: name.to_owned(),
        email,
        documents,
        confirm_url,
    })
}

/// What an origin sends.
pub fn outgoing(
    id: CitizenId,
    name: &str,
    email: &str,
    documents: &BTreeMap<String, Vec<String>>,
    confirm_url: &str,
) -> Value {
    json!({"id": id.number(), "citizenName": name, "citizenEmail": email,
           "urlDocuments": documents, "confirmAPI": confirm_url})
}

/// A confirmation: `(id, accepted)`. `req_status` 1 (number or "1") is success; anything else
/// is failure.
pub fn read_confirm(body: &Value) -> Result<(CitizenId, bool), Invalid> {
    let id = read_id(&body["id"]).ok_or_else(|| invalid("id", "must be a 10-digit citizen id"))?;
    let accepted = match &body["req_status"] {
        Value::Number(n) => n.as_i64() == Some(1),
        Value::String(s) => s.trim() == "1",
        Value::Bool(b) => *b,
        Value::Null => return Err(invalid("req_status", "is required (1 or 0)")),
        _ => false,
    };
    Ok((id, accepted))
}

pub fn confirm_body(id: CitizenId, accepted: bool) -> Value {
    json!({"id": id.number(), "req_status": i32::from(accepted)})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_dialects_and_every_url_shape_are_read() {
        let modern = json!({"id": 1032456789u64, "citizenName": "Ana", "citizenEmail": "Ana@Correo.co",
            "urlDocuments": {"diploma": ["https://a/1", "https://a/2"], "cedula": "https://a/3"},
            "confirmAPI": "https://origin.co/api/transferCitizenConfirm/"});
        let old = json!({"id": "1032456789", "citizenName": "Ana", "citizenEmail": "ana@correo.co",
            "Documents": {"diploma": ["https://a/1", "https://a/2"], "cedula": ["https://a/3"]},
            "confirmationURL": "https://origin.co/api/transferCitizenConfirm/"});
        let a = read_incoming(&modern).unwrap_or_else(|e| panic!("{e:?}"));
        let b = read_incoming(&old).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(a, b);
        assert_eq!(
            a.confirm_url, "https://origin.co/api/transferCitizenConfirm/",
            "trailing slash kept"
        );
        assert_eq!(a.documents["cedula"], vec!["https://a/3".to_owned()]);
    }

    #[test]
    fn bad_transfers_name_the_field() {
        let base = json!({"id": 1032456789u64, "citizenName": "Ana", "citizenEmail": "ana@correo.co",
                          "urlDocuments": {}, "confirmAPI": "https://o/c"});
        for (field, value, named) in [
            ("id", json!("12ab"), "id"),
            ("citizenName", json!(""), "citizenName"),
            ("confirmAPI", json!("ftp://x"), "confirmAPI"),
            (
                "urlDocuments",
                json!({"x": "file:///etc/passwd"}),
                "urlDocuments",
            ),
            ("urlDocuments", json!([1, 2]), "urlDocuments"),
        ] {
            let mut body = base.clone();
            body[field] = value;
            assert_eq!(read_incoming(&body).map_err(|e| e.field), Err(named));
        }
    }

    #[test]
    fn confirmations_in_any_shape() {
        assert_eq!(
            read_confirm(&json!({"id": 1032456789u64, "req_status": 1})).map(|c| c.1),
            Ok(true)
        );
        assert_eq!(
            read_confirm(&json!({"id": "1032456789", "req_status": "1"})).map(|c| c.1),
            Ok(true)
        );
        assert_eq!(
            read_confirm(&json!({"id": 1032456789u64, "req_status": 0})).map(|c| c.1),
            Ok(false)
        );
        assert!(read_confirm(&json!({"id": 1032456789u64})).is_err());
        assert_eq!(
            confirm_body(
                CitizenId::parse("1032456789").unwrap_or_else(|_| unreachable!()),
                true
            )["req_status"],
            json!(1)
        );
    }
}
