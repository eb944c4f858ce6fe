//! The simulator's state in its own database.

use serde::Serialize;
use telar_sql::{Db, Result, query};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

use crate::domain::{Authentication, CitizenRegistration, NewOperator};

#[derive(Clone)]
pub(crate) struct Store {
    db: Db,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct CitizenRecord {
    pub id: String,
    pub name: String,
    pub address: String,
    pub email: String,
    pub operator_id: String,
    pub operator_name: String,
    pub registered_at: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct OperatorRecord {
    pub id: String,
    pub name: String,
    pub address: String,
    pub contact_mail: String,
    pub participants: Vec<String>,
    pub transfer_api_url: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct AuthenticationRecord {
    pub id_citizen: String,
    pub url_document: Option<String>,
    pub document_title: Option<String>,
    pub authenticated_at: String,
}

fn now() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

impl Store {
    pub fn new(db: Db) -> Self {
        Store { db }
    }

    pub async fn find_citizen(&self, id: &str) -> Result<Option<CitizenRecord>> {
        let row = query("SELECT * FROM citizens WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.db)
            .await?;
        row.map(|row| citizen(&row)).transpose()
    }

    /// Inserts unless the id is taken (by any operator); `false` means duplicate. Safe under
    /// concurrent registrations of the same id: exactly one insert wins.
    pub async fn insert_citizen(&self, citizen: &CitizenRegistration) -> Result<bool> {
        let inserted = query(
            "INSERT INTO citizens (id, name, address, email, operator_id, operator_name, registered_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&citizen.id)
        .bind(&citizen.name)
        .bind(&citizen.address)
        .bind(&citizen.email)
        .bind(&citizen.operator_id)
        .bind(&citizen.operator_name)
        .bind(now())
        .execute(&self.db)
        .await?;
        Ok(inserted == 1)
    }

    pub async fn delete_citizen(&self, id: &str) -> Result<bool> {
        let deleted = query("DELETE FROM citizens WHERE id = $1")
            .bind(id)
            .execute(&self.db)
            .await?;
        Ok(deleted > 0)
    }

    pub async fn record_authentication(&self, auth: &Authentication) -> Result<()> {
        query("INSERT INTO authentications (id_citizen, url_document, document_title, authenticated_at) VALUES ($1, $2, $3, $4)")
            .bind(&auth.id_citizen)
            .bind(auth.url_document.clone())
            .bind(auth.document_title.clone())
            .bind(now())
            .execute(&self.db)
            .await?;
        Ok(())
    }

    pub async fn insert_operator(&self, id: &str, operator: &NewOperator) -> Result<()> {
        let participants =
            serde_json::to_string(&operator.participants).unwrap_or_else(|_| "[]".into());
        query("INSERT INTO operators (id, name, address, contact_mail, participants, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(id)
            .bind(&operator.name)
            .bind(&operator.address)
            .bind(&operator.contact_mail)
            .bind(participants)
            .bind(now())
            .execute(&self.db)
            .await?;
        Ok(())
    }

    /// Stores the URL exactly as given (leading spaces included, as the real hub does).
    pub async fn set_transfer_endpoint(&self, operator_id: &str, endpoint: &str) -> Result<bool> {
        let updated = query("UPDATE operators SET transfer_api_url = $1 WHERE id = $2")
            .bind(endpoint)
            .bind(operator_id)
            .execute(&self.db)
            .await?;
        Ok(updated > 0)
    }

    pub async fn operators(&self) -> Result<Vec<OperatorRecord>> {
        let rows = query("SELECT * FROM operators ORDER BY seq")
            .fetch_all(&self.db)
            .await?;
        rows.iter()
            .map(|row| {
                let participants: String = row.get("participants")?;
                Ok(OperatorRecord {
                    id: row.get("id")?,
                    name: row.get("name")?,
                    address: row.get("address")?,
                    contact_mail: row.get("contact_mail")?,
                    participants: serde_json::from_str(&participants).unwrap_or_default(),
                    transfer_api_url: row.get("transfer_api_url")?,
                    created_at: row.get("created_at")?,
                })
            })
            .collect()
    }

    pub async fn citizens(&self) -> Result<Vec<CitizenRecord>> {
        let rows = query("SELECT * FROM citizens ORDER BY seq")
            .fetch_all(&self.db)
            .await?;
        rows.iter().map(citizen).collect()
    }

    pub async fn authentications(&self) -> Result<Vec<AuthenticationRecord>> {
        let rows = query("SELECT * FROM authentications ORDER BY seq")
            .fetch_all(&self.db)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(AuthenticationRecord {
                    id_citizen: row.get("id_citizen")?,
                    url_document: row.get("url_document")?,
                    document_title: row.get("document_title")?,
                    authenticated_at: row.get("authenticated_at")?,
                })
            })
            .collect()
    }

    /// Forgets every citizen, operator and authentication, in one transaction.
    pub async fn reset(&self) -> Result<()> {
        let mut tx = self.db.begin().await?;
        for statement in [
            "DELETE FROM citizens",
            "DELETE FROM operators",
            "DELETE FROM authentications",
        ] {
            query(statement).execute(&mut tx).await?;
        }
        tx.commit().await
    }
}

fn citizen(row: &telar_sql::Row) -> Result<CitizenRecord> {
    Ok(CitizenRecord {
        id: row.get("id")?,
        name: row.get("name")?,
        address: row.get("address")?,
        email: row.get("email")?,
        operator_id: row.get("operator_id")?,
        operator_name: row.get("operator_name")?,
        registered_at: row.get("registered_at")?,
    })
}
