//! The hub's endpoints as typed calls. Each call carries exactly the fields the hub needs — the
//! PII minimisation happens here, by construction: nothing else can reach the wire.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::domain::CitizenId;

/// One call to the hub, as stored in the queue (so the worker can send it again).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "call")]
pub enum HubCall {
    #[serde(rename = "validateCitizen")]
    ValidateCitizen { id: CitizenId },
    #[serde(rename = "registerCitizen")]
    RegisterCitizen {
        id: CitizenId,
        name: String,
        address: String,
        email: String,
        operator_id: String,
        operator_name: String,
    },
    #[serde(rename = "unregisterCitizen")]
    UnregisterCitizen {
        id: CitizenId,
        operator_id: String,
        operator_name: String,
    },
    #[serde(rename = "authenticateDocument")]
    AuthenticateDocument {
        id: CitizenId,
        url: String,
        title: String,
    },
    #[serde(rename = "registerOperator")]
    RegisterOperator {
        name: String,
        address: String,
        contact_mail: String,
        participants: Vec<String>,
    },
    #[serde(rename = "registerTransferEndPoint")]
    RegisterTransferEndpoint {
        operator_id: String,
        endpoint: String,
        endpoint_confirm: String,
    },
    #[serde(rename = "getOperators")]
    GetOperators,
}

impl HubCall {
    /// The endpoint's name: the key of its rate limit, breaker and metrics.
    pub fn endpoint(&self) -> &'static str {
        match self {
            HubCall::ValidateCitizen { .. } => "validateCitizen",
            HubCall::RegisterCitizen { .. } => "registerCitizen",
            HubCall::UnregisterCitizen { .. } => "unregisterCitizen",
            HubCall::AuthenticateDocument { .. } => "authenticateDocument",
            HubCall::RegisterOperator { .. } => "registerOperator",
            HubCall::RegisterTransferEndpoint { .. } => "registerTransferEndPoint",
            HubCall::GetOperators => "getOperators",
        }
    }

    /// The citizen the call is about (the subject of its events).
    pub fn citizen(&self) -> Option<CitizenId> {
        match self {
            HubCall::ValidateCitizen { id }
            | HubCall::RegisterCitizen { id, .. }
            | HubCall::UnregisterCitizen { id, .. }
            | HubCall::AuthenticateDocument { id, .. } => Some(*id),
            _ => None,
        }
    }

    /// Reads change nothing at the hub: they are never queued (a stale answer is no answer).
    pub fn is_read(&self) -> bool {
        matches!(
            self,
            HubCall::ValidateCitizen { .. } | HubCall::GetOperators
        )
    }

    /// Method, path and body, as the real hub expects them (its casing, numbers for ids).
    pub fn request(&self) -> (http::Method, String, Option<Value>) {
        use http::Method;
        match self {
            HubCall::ValidateCitizen { id } => {
                (Method::GET, format!("/apis/validateCitizen/{id}"), None)
            }
            HubCall::RegisterCitizen {
                id,
                name,
                address,
                email,
                operator_id,
                operator_name,
            } => (
                Method::POST,
                "/apis/registerCitizen".into(),
                Some(
                    json!({"id": id.number(), "name": name, "address": address, "email": email,
                            "operatorId": operator_id, "operatorName": operator_name}),
                ),
            ),
            HubCall::UnregisterCitizen {
                id,
                operator_id,
                operator_name,
            } => (
                Method::DELETE,
                "/apis/unregisterCitizen".into(),
                Some(
                    json!({"id": id.number(), "operatorId": operator_id, "operatorName": operator_name}),
                ),
            ),
            HubCall::AuthenticateDocument { id, url, title } => (
                Method::PUT,
                "/apis/authenticateDocument".into(),
                Some(json!({"idCitizen": id.number(), "UrlDocument": url, "documentTitle": title})),
            ),
            HubCall::RegisterOperator {
                name,
                address,
                contact_mail,
                participants,
            } => (
                Method::POST,
                "/apis/registerOperator".into(),
                Some(
                    json!({"name": name, "address": address, "contactMail": contact_mail,
                            "participants": participants}),
                ),
            ),
            HubCall::RegisterTransferEndpoint {
                operator_id,
                endpoint,
                endpoint_confirm,
            } => (
                Method::PUT,
                "/apis/registerTransferEndPoint".into(),
                Some(json!({"idOperator": operator_id, "endPoint": endpoint,
                            "endPointConfirm": endpoint_confirm})),
            ),
            HubCall::GetOperators => (Method::GET, "/apis/getOperators".into(), None),
        }
    }

    /// The idempotency key when the caller gives none: the endpoint and a hash of what is sent,
    /// so the same call made twice is one call.
    pub fn derived_key(&self) -> String {
        let (_, path, body) = self.request();
        let mut hash = Sha256::new();
        hash.update(path.as_bytes());
        hash.update(body.map(|b| b.to_string()).unwrap_or_default().as_bytes());
        format!(
            "{}:{}",
            self.endpoint(),
            hex::encode(&hash.finalize()[..16])
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> CitizenId {
        CitizenId::parse("1032456789").unwrap_or_else(|_| unreachable!())
    }

    fn keys(body: Option<Value>) -> Vec<String> {
        body.and_then(|b| b.as_object().map(|o| o.keys().cloned().collect()))
            .unwrap_or_default()
    }

    #[test]
    fn bodies_carry_exactly_the_contracts_fields() {
        let (_, path, body) = HubCall::RegisterCitizen {
            id: id(),
            name: "Ana".into(),
            address: "Calle 1".into(),
            email: "ana@correo.co".into(),
            operator_id: "65f0c0ffee0000000000000a".into(),
            operator_name: "Uno".into(),
        }
        .request();
        assert_eq!(path, "/apis/registerCitizen");
        assert_eq!(
            body.as_ref().and_then(|b| b.get("id")),
            Some(&json!(1_032_456_789u64))
        );
        assert_eq!(
            keys(body),
            [
                "id",
                "name",
                "address",
                "email",
                "operatorId",
                "operatorName"
            ]
        );
        let (_, _, body) = HubCall::AuthenticateDocument {
            id: id(),
            url: "https://x".into(),
            title: "t".into(),
        }
        .request();
        assert_eq!(keys(body), ["idCitizen", "UrlDocument", "documentTitle"]);
        let (method, path, body) = HubCall::ValidateCitizen { id: id() }.request();
        assert_eq!(
            (method, path.as_str(), body),
            (http::Method::GET, "/apis/validateCitizen/1032456789", None)
        );
    }

    #[test]
    fn the_same_call_has_the_same_key() {
        let a = HubCall::ValidateCitizen { id: id() };
        assert_eq!(a.derived_key(), a.clone().derived_key());
        let b = HubCall::UnregisterCitizen {
            id: id(),
            operator_id: String::new(),
            operator_name: String::new(),
        };
        assert_ne!(a.derived_key(), b.derived_key());
    }
}
