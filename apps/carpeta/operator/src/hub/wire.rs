//! The HTTP exchange with the hub, read tolerantly: any 2xx is success, 204 is "nothing there",
//! 501 is a business answer, bodies may be a JSON string, any JSON value or plain text.

use std::time::{Duration, Instant};
use telar_kit::SendTraced;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::calls::HubCall;

/// What the hub answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HubAnswer {
    pub status: u16,
    /// The body as JSON when it parses, else as a string (`null` when empty).
    pub body: Value,
}

impl HubAnswer {
    /// The body as text: the string itself, an object's `message`, else the JSON.
    pub fn message(&self) -> String {
        match &self.body {
            Value::Null => String::new(),
            Value::String(text) => text.trim().to_owned(),
            Value::Object(map) => match map.get("message").or_else(|| map.get("Message")) {
                Some(Value::String(text)) => text.trim().to_owned(),
                _ => self.body.to_string(),
            },
            other => other.to_string(),
        }
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// 5xx but 501 (the hub's business refusals) may succeed later; everything else is final.
    pub fn is_transient(&self) -> bool {
        telar_resilience::status_is_transient(self.status)
    }
}

/// Why no answer came back.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WireError {
    #[error("the hub did not answer within {0} ms")]
    Timeout(u64),
    #[error("the hub could not be reached: {0}")]
    Connect(String),
}

#[derive(Clone)]
pub struct Wire {
    base: String,
    http: reqwest::Client,
    timeout: Duration,
}

/// Reads a hub body whatever its shape.
pub fn read_body(bytes: &[u8]) -> Value {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    if text.is_empty() {
        return Value::Null;
    }
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

impl Wire {
    pub fn new(base: &str, timeout: Duration) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Wire {
            base: base.trim().trim_end_matches('/').to_owned(),
            http,
            timeout,
        })
    }

    /// Sends `call` once. Server-to-server: no `Origin` header (the hub answers 500 to origins
    /// outside its list), `Content-Type: application/json` on every body (without it the hub
    /// reads an empty body).
    pub async fn send(&self, call: &HubCall) -> Result<(HubAnswer, Duration), WireError> {
        let (method, path, body) = call.request();
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header(http::header::ACCEPT, "application/json");
        if let Some(body) = body {
            request = request
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let started = Instant::now();
        let timeout_ms = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
        let response = request.send_traced().await.map_err(|e| {
            if e.is_timeout() {
                WireError::Timeout(timeout_ms)
            } else {
                WireError::Connect(e.to_string())
            }
        })?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|e| {
            if e.is_timeout() {
                WireError::Timeout(timeout_ms)
            } else {
                WireError::Connect(e.to_string())
            }
        })?;
        Ok((
            HubAnswer {
                status,
                body: read_body(&bytes),
            },
            started.elapsed(),
        ))
    }
}

/// An operator as listed by getOperators, whichever dialect the hub used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Operator {
    pub id: String,
    pub name: String,
    /// Where this operator receives transfers, trimmed; `None` when it never registered one.
    pub transfer_url: Option<String>,
    pub participants: Vec<String>,
}

fn field<'a>(item: &'a Value, names: &[&str]) -> Option<&'a Value> {
    names.iter().find_map(|name| item.get(*name))
}

fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.trim().to_owned()).filter(|s| !s.is_empty()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// getOperators' list: `_id` or `OperatorId`, `operatorName` or `OperatorName`,
/// `transferAPIURL` with or without a leading space. Items without an id are skipped.
pub fn read_operators(body: &Value) -> Vec<Operator> {
    let Some(items) = body.as_array() else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let id = text(field(item, &["_id", "OperatorId", "operatorId", "id"]))?;
            let name =
                text(field(item, &["operatorName", "OperatorName", "name"])).unwrap_or_default();
            let transfer_url = text(field(
                item,
                &[
                    "transferAPIURL",
                    "TransferAPIURL",
                    "transferApiUrl",
                    "transferAPIUrl",
                ],
            ));
            let participants = field(item, &["participants", "Participants"])
                .and_then(Value::as_array)
                .map(|list| list.iter().filter_map(|v| text(Some(v))).collect())
                .unwrap_or_default();
            Some(Operator {
                id,
                name,
                transfer_url,
                participants,
            })
        })
        .collect()
}

/// registerOperator's id: `{idOperator}` (the real hub) or a bare string (the Swagger).
pub fn read_operator_id(body: &Value) -> Option<String> {
    let candidate = match body {
        Value::Object(_) => text(field(body, &["idOperator", "IdOperator", "id", "_id"])),
        Value::String(s) => Some(s.trim().to_owned()),
        _ => None,
    }?;
    let hex = regex::Regex::new("[0-9a-fA-F]{24}").ok()?;
    Some(
        hex.find(&candidate)
            .map_or(candidate.clone(), |m| m.as_str().to_owned()),
    )
}

/// validateCitizen's "…registrado en el operador: {name} ": the operator's name.
pub fn read_registered_operator(message: &str) -> Option<String> {
    let (_, name) = message.rsplit_once("operador:")?;
    Some(name.trim().trim_end_matches('.').trim().to_owned()).filter(|n| !n.is_empty())
}

/// registerCitizen's 501 for a citizen some operator already has.
pub fn is_duplicate(message: &str) -> bool {
    message
        .to_lowercase()
        .contains("ya se encuentra registrado")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn bodies_of_every_shape_are_read() {
        assert_eq!(read_body(b"\"Creado\""), json!("Creado"));
        assert_eq!(
            read_body(b"Creado exitosamente"),
            json!("Creado exitosamente")
        );
        assert_eq!(read_body(b"  "), Value::Null);
        let answer = HubAnswer {
            status: 201,
            body: json!({"message": "ok ", "idOperator": "x"}),
        };
        assert_eq!(answer.message(), "ok");
    }

    #[test]
    fn operators_in_both_dialects() {
        let body = json!([
            {"_id": "65f0c0ffee0000000000000a", "operatorName": "Uno", "participants": ["a"],
             "transferAPIURL": " https://uno.co/api/transferCitizen/"},
            {"OperatorId": "65f0c0ffee0000000000000b", "OperatorName": "Dos"},
            {"operatorName": "sin id"}
        ]);
        let list = read_operators(&body);
        assert_eq!(list.len(), 2);
        assert_eq!(
            list[0].transfer_url.as_deref(),
            Some("https://uno.co/api/transferCitizen/")
        );
        assert_eq!(list[1].name, "Dos");
        assert_eq!(list[1].transfer_url, None);
    }

    #[test]
    fn operator_ids_and_names_in_answers() {
        let id = "65f0c0ffee0000000000000a";
        assert_eq!(
            read_operator_id(&json!({"message": "m", "idOperator": id})).as_deref(),
            Some(id)
        );
        assert_eq!(read_operator_id(&json!(id)).as_deref(), Some(id));
        assert_eq!(
            read_registered_operator(
                "El ciudadano 1032456789 ya se encuentra registrado en el operador: Operador Uno "
            )
            .as_deref(),
            Some("Operador Uno")
        );
        assert!(is_duplicate("El ciudadano ya se encuentra registrado"));
    }
}
