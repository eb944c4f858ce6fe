//! The hub's rules, as the real server applies them: what a valid id and email are, which
//! fields each call needs, and the Spanish messages it answers with. No HTTP, no SQL here.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

/// "id needs ≥ 10 consecutive digits" — anywhere in its text, as the hub checks it.
static CITIZEN_ID: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"\d{10,}").ok());

/// The hub's email rule: word characters with `.`/`-` separators, and the domain ending in one
/// or more segments of 2–3 characters (`.co`, `.com`, `.com.co`; not `.info`).
static EMAIL: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"^\w+([.-]?\w+)*@\w+([.-]?\w+)*(\.\w{2,3})+$").ok());

/// Operator ids are 24 hex digits (MongoDB ObjectIds on the real hub).
static OPERATOR_ID: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"^[0-9a-fA-F]{24}$").ok());

pub fn is_valid_citizen_id(text: &str) -> bool {
    CITIZEN_ID.as_ref().is_some_and(|re| re.is_match(text))
}

pub fn is_valid_email(text: &str) -> bool {
    EMAIL.as_ref().is_some_and(|re| re.is_match(text))
}

pub fn is_valid_operator_id(text: &str) -> bool {
    OPERATOR_ID.as_ref().is_some_and(|re| re.is_match(text))
}

/// A 501 answer: the hub's way of saying the input is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected(pub String);

fn missing(field: &str) -> Rejected {
    Rejected(format!(
        "Error de validación: el campo {field} es obligatorio"
    ))
}

/// A required text field: present, a string, not empty.
fn text(body: &Value, field: &str) -> Result<String, Rejected> {
    match body.get(field) {
        Some(Value::String(value)) if !value.trim().is_empty() => Ok(value.clone()),
        Some(Value::String(_)) | None | Some(Value::Null) => Err(missing(field)),
        Some(_) => Err(Rejected(format!(
            "Error de validación: el campo {field} debe ser texto"
        ))),
    }
}

/// A citizen id as the hub reads it: a JSON number, or a string, holding ≥ 10 consecutive digits.
pub fn citizen_id(body: &Value, field: &str) -> Result<String, Rejected> {
    let text = match body.get(field) {
        // One canonical form per id: 1032456789, 1032456789.0 and 1.032456789e9 must not
        // become three citizens. Only non-negative integers are ids.
        Some(Value::Number(number)) => match number.as_u64() {
            Some(id) => id.to_string(),
            None => {
                return Err(Rejected(format!(
                    "Error de validación: el campo {field} debe ser un entero positivo"
                )));
            }
        },
        Some(Value::String(text)) => text.trim().to_owned(),
        None | Some(Value::Null) => return Err(missing(field)),
        Some(_) => {
            return Err(Rejected(format!(
                "Error de validación: el campo {field} debe ser numérico"
            )));
        }
    };
    if is_valid_citizen_id(&text) {
        Ok(text)
    } else {
        Err(Rejected(format!(
            "Error de validación: el campo {field} debe tener al menos 10 dígitos consecutivos"
        )))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CitizenRegistration {
    pub id: String,
    pub name: String,
    pub address: String,
    pub email: String,
    pub operator_id: String,
    pub operator_name: String,
}

pub fn parse_registration(body: &Value) -> Result<CitizenRegistration, Rejected> {
    let id = citizen_id(body, "id")?;
    let name = text(body, "name")?;
    let address = text(body, "address")?;
    let email = text(body, "email")?;
    if !is_valid_email(&email) {
        return Err(Rejected(
            "Error de validación: el campo email no es un correo válido".into(),
        ));
    }
    Ok(CitizenRegistration {
        id,
        name,
        address,
        email,
        operator_id: text(body, "operatorId")?,
        operator_name: text(body, "operatorName")?,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authentication {
    pub id_citizen: String,
    pub url_document: Option<String>,
    pub document_title: Option<String>,
}

/// `idCitizen` must be a positive JSON number; any field explicitly `null` is refused; missing
/// fields are accepted, as on the real hub.
pub fn parse_authentication(body: &Value) -> Result<Authentication, Rejected> {
    for field in ["idCitizen", "UrlDocument", "documentTitle"] {
        if body.get(field).is_some_and(Value::is_null) {
            return Err(Rejected(format!(
                "Error de validación: el campo {field} no puede ser nulo"
            )));
        }
    }
    let id_citizen = match body.get("idCitizen") {
        Some(Value::Number(n)) if n.as_u64().is_some_and(|v| v > 0) => n.to_string(),
        _ => {
            return Err(Rejected(
                "Error de validación: el campo idCitizen debe ser un número positivo".into(),
            ));
        }
    };
    let optional = |field: &str| {
        body.get(field)
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
    };
    Ok(Authentication {
        id_citizen,
        url_document: optional("UrlDocument"),
        document_title: optional("documentTitle"),
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOperator {
    pub name: String,
    pub address: String,
    pub contact_mail: String,
    pub participants: Vec<String>,
}

pub fn parse_operator(body: &Value) -> Result<NewOperator, Rejected> {
    let name = text(body, "name")?;
    let address = text(body, "address")?;
    let contact_mail = text(body, "contactMail")?;
    if !is_valid_email(&contact_mail) {
        return Err(Rejected(
            "Error de validación: el campo contactMail no es un correo válido".into(),
        ));
    }
    let participants = match body.get("participants") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                Rejected("Error de validación: participants debe ser una lista de textos".into())
            })?,
        None | Some(Value::Null) => return Err(missing("participants")),
        Some(_) => {
            return Err(Rejected(
                "Error de validación: participants debe ser una lista de textos".into(),
            ));
        }
    };
    Ok(NewOperator {
        name,
        address,
        contact_mail,
        participants,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferEndpoint {
    pub operator_id: String,
    pub endpoint: String,
}

/// `endPointConfirm` is read and dropped: the real hub never stores it.
pub fn parse_transfer_endpoint(body: &Value) -> Result<TransferEndpoint, Rejected> {
    // Stored ids are lowercase; the hub's ObjectIds compare case-insensitively.
    let operator_id = text(body, "idOperator")?.to_ascii_lowercase();
    if !is_valid_operator_id(&operator_id) {
        return Err(Rejected(
            "Error de validación: idOperator no es un identificador válido".into(),
        ));
    }
    Ok(TransferEndpoint {
        operator_id,
        endpoint: text(body, "endPoint")?,
    })
}

/// A new 24-hex operator id: 4 bytes of seconds then 8 random bytes, like an ObjectId.
pub fn new_operator_id() -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or_default();
    let random: [u8; 8] = rand::random();
    format!("{seconds:08x}{}", hex::encode(random))
}

/// The hub's answers, word for word where the real hub's are known.
pub mod messages {
    pub fn registered_in(id: &str, operator_name: &str) -> String {
        format!(
            "El ciudadano con id: {id} se encuentra registrado en el operador: {operator_name} "
        )
    }
    pub fn created(id: &str) -> String {
        format!("Ciudadano con id: {id} Creado exitosamente")
    }
    pub fn duplicate(id: &str) -> String {
        format!("El ciudadano con id: {id} ya se encuentra registrado en la carpeta ciudadana")
    }
    pub fn unregistered(id: &str) -> String {
        format!("Ciudadano con id: {id} Eliminado exitosamente")
    }
    pub fn authenticated(title: &str, id: &str) -> String {
        format!(
            "El documento: {title} del ciudadano {id} ha sido autenticado exitosamente [Code: 0001]"
        )
    }
    pub const OPERATOR_CREATED: &str = "Operador creado exitosamente";
    pub const ENDPOINT_REGISTERED: &str = "Endpoint de transferencia actualizado exitosamente";
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn citizen_ids_need_ten_consecutive_digits() {
        assert!(is_valid_citizen_id("1032456789"));
        assert!(is_valid_citizen_id("103245678901"));
        assert!(
            is_valid_citizen_id("CC1032456789"),
            "the hub searches, it does not anchor"
        );
        assert!(!is_valid_citizen_id("103245678"));
        assert!(!is_valid_citizen_id("10324-56789"));
        assert!(!is_valid_citizen_id(""));
    }

    #[test]
    fn emails_need_a_tld_of_two_or_three_characters() {
        for good in [
            "ana@example.co",
            "ana.perez@mail.gov.co",
            "a-b@x.com",
            "a_b@x-y.org",
        ] {
            assert!(is_valid_email(good), "{good}");
        }
        for bad in [
            "ana@example.info",
            "ana@example",
            "ana.example.co",
            "@x.co",
            "ana@x.c",
            "a b@x.co",
        ] {
            assert!(!is_valid_email(bad), "{bad}");
        }
    }

    #[test]
    fn registration_requires_every_field() {
        let full = json!({"id": 1032456789u64, "name": "Ana", "address": "Cra 1", "email": "ana@x.co", "operatorId": "op", "operatorName": "Op"});
        assert_eq!(
            parse_registration(&full).map(|r| r.id),
            Ok("1032456789".to_owned())
        );
        for field in [
            "id",
            "name",
            "address",
            "email",
            "operatorId",
            "operatorName",
        ] {
            let mut partial = full.clone();
            partial.as_object_mut().map(|m| m.remove(field));
            let error = parse_registration(&partial).expect_err("incomplete");
            assert!(error.0.contains(field), "{field}: {}", error.0);
        }
    }

    #[test]
    fn numeric_ids_have_one_canonical_form() {
        assert_eq!(
            citizen_id(&json!({"id": 1032456789u64}), "id"),
            Ok("1032456789".to_owned())
        );
        for alias in [
            json!(1032456789.0),
            json!(1.032456789e9),
            json!(-1032456789),
        ] {
            assert!(
                citizen_id(&json!({ "id": alias }), "id").is_err(),
                "{alias}"
            );
        }
    }

    #[test]
    fn authentication_rejects_nulls_and_non_positive_ids() {
        assert!(
            parse_authentication(
                &json!({"idCitizen": 1032456789, "UrlDocument": "u", "documentTitle": "t"})
            )
            .is_ok()
        );
        assert!(
            parse_authentication(&json!({"idCitizen": 1032456789})).is_ok(),
            "missing fields pass"
        );
        assert!(
            parse_authentication(&json!({"idCitizen": 1032456789, "UrlDocument": null})).is_err()
        );
        assert!(parse_authentication(&json!({"idCitizen": "1032456789"})).is_err());
        assert!(parse_authentication(&json!({"idCitizen": 0})).is_err());
        assert!(parse_authentication(&json!({"idCitizen": -5})).is_err());
        assert!(parse_authentication(&json!({"idCitizen": 1.5})).is_err());
    }

    #[test]
    fn operator_ids_are_24_hex() {
        let id = new_operator_id();
        assert!(is_valid_operator_id(&id), "{id}");
        assert_ne!(id, new_operator_id());
        assert!(!is_valid_operator_id("not-an-id"));
    }
}
