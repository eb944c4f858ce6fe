//! The views and how each event changes them.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use telar_sql::{Db, Migration, Tx, query};
use telar_types::Envelope;

use crate::domain::events;

pub(crate) const MIGRATION: Migration = Migration {
    version: 1,
    name: "read models",
    sqlite: "
CREATE TABLE rm_citizens (id TEXT PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE rm_documents (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, title TEXT NOT NULL, status TEXT NOT NULL,
    authenticated INTEGER NOT NULL DEFAULT 0, shares INTEGER NOT NULL DEFAULT 0, updated_at TEXT NOT NULL);
CREATE INDEX rm_documents_by_owner ON rm_documents (owner);
CREATE TABLE rm_transfers (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, citizen TEXT NOT NULL, event TEXT NOT NULL,
    detail TEXT NOT NULL, at TEXT NOT NULL);",
    postgres: "
CREATE TABLE rm_citizens (id TEXT PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE rm_documents (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, title TEXT NOT NULL, status TEXT NOT NULL,
    authenticated BIGINT NOT NULL DEFAULT 0, shares BIGINT NOT NULL DEFAULT 0, updated_at TEXT NOT NULL);
CREATE INDEX rm_documents_by_owner ON rm_documents (owner);
CREATE TABLE rm_transfers (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, citizen TEXT NOT NULL, event TEXT NOT NULL,
    detail TEXT NOT NULL, at TEXT NOT NULL);",
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FolderDocument {
    pub id: String,
    pub title: String,
    /// `ready` or `deleted`.
    pub status: String,
    pub authenticated: bool,
    pub shares: i64,
    pub updated_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FolderView {
    pub citizen: String,
    pub name: String,
    /// `registered`, `registration_failed`, `transferring`, `transferred` or `unknown`.
    pub status: String,
    pub documents: Vec<FolderDocument>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TransferView {
    /// The event's type without `carpeta.` (e.g. `transfer.requested`).
    pub event: String,
    #[schema(value_type = Object)]
    pub detail: Value,
    pub at: String,
}

#[derive(Clone)]
pub(crate) struct Views {
    pub db: Db,
}

impl Views {
    pub fn handles(ty: &str) -> bool {
        ty.starts_with("carpeta.citizen.")
            || ty.starts_with("carpeta.document.")
            || ty.starts_with("carpeta.transfer.")
    }

    pub async fn apply(&self, tx: &mut Tx, envelope: &Envelope) -> telar_sql::Result<()> {
        let data = envelope.data.clone().unwrap_or_default();
        let subject = envelope.subject.clone().unwrap_or_default();
        let at = envelope
            .time
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(crate::shared::now_rfc3339);
        let text = |field: &str| data[field].as_str().unwrap_or_default().to_owned();
        let citizen_status = |status: &'static str| {
            query(
                "INSERT INTO rm_citizens (id, name, status, updated_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO UPDATE SET status = excluded.status,
                   name = CASE WHEN excluded.name = '' THEN rm_citizens.name ELSE excluded.name END,
                   updated_at = excluded.updated_at",
            )
            .bind(subject.clone())
            .bind(text("name"))
            .bind(status)
            .bind(at.clone())
        };
        match envelope.ty.as_str() {
            events::CITIZEN_REGISTERED => {
                citizen_status("registered").execute(&mut *tx).await?;
            }
            events::CITIZEN_UPDATED => {
                citizen_status("registered").execute(&mut *tx).await?;
            }
            events::CITIZEN_REGISTRATION_FAILED => {
                citizen_status("registration_failed")
                    .execute(&mut *tx)
                    .await?;
            }
            events::CITIZEN_TRANSFERRED => {
                citizen_status("transferred").execute(&mut *tx).await?;
                // Gone to another operator: their name is not kept here either.
                query("UPDATE rm_citizens SET name = '' WHERE id = $1")
                    .bind(subject.clone())
                    .execute(&mut *tx)
                    .await?;
                query("DELETE FROM rm_documents WHERE owner = $1")
                    .bind(subject.clone())
                    .execute(&mut *tx)
                    .await?;
            }
            events::DOCUMENT_UPLOADED => {
                query(
                    "INSERT INTO rm_documents (id, owner, title, status, updated_at) VALUES ($1, $2, $3, 'ready', $4)
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(text("id"))
                .bind(subject.clone())
                .bind(text("title"))
                .bind(at.clone())
                .execute(&mut *tx)
                .await?;
            }
            events::DOCUMENT_DELETED => {
                query("UPDATE rm_documents SET status = 'deleted', updated_at = $1 WHERE id = $2")
                    .bind(at.clone())
                    .bind(text("id"))
                    .execute(&mut *tx)
                    .await?;
            }
            events::DOCUMENT_AUTHENTICATED => {
                query("UPDATE rm_documents SET authenticated = 1, updated_at = $1 WHERE id = $2")
                    .bind(at.clone())
                    .bind(text("id"))
                    .execute(&mut *tx)
                    .await?;
            }
            events::DOCUMENT_SHARED => {
                query("UPDATE rm_documents SET shares = shares + 1, updated_at = $1 WHERE id = $2")
                    .bind(at.clone())
                    .bind(text("id"))
                    .execute(&mut *tx)
                    .await?;
            }
            ty if ty.starts_with("carpeta.transfer.") => {
                query(
                    "INSERT INTO rm_transfers (citizen, event, detail, at) VALUES ($1, $2, $3, $4)",
                )
                .bind(subject.clone())
                .bind(ty.trim_start_matches("carpeta.").to_owned())
                .bind(data.to_string())
                .bind(at.clone())
                .execute(&mut *tx)
                .await?;
                let status = match ty {
                    events::TRANSFER_REQUESTED => Some("transferring"),
                    events::TRANSFER_FAILED => Some("registered"),
                    events::TRANSFER_RECEIVED => Some("registered"),
                    _ => None,
                };
                if let Some(status) = status {
                    citizen_status(status).execute(&mut *tx).await?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    pub async fn folder(&self, citizen: &str) -> telar_sql::Result<Option<FolderView>> {
        let head = query("SELECT name, status FROM rm_citizens WHERE id = $1")
            .bind(citizen.to_owned())
            .fetch_optional(&self.db)
            .await?;
        let rows = query("SELECT id, title, status, authenticated, shares, updated_at FROM rm_documents WHERE owner = $1 ORDER BY title, id")
            .bind(citizen.to_owned())
            .fetch_all(&self.db)
            .await?;
        if head.is_none() && rows.is_empty() {
            return Ok(None);
        }
        let documents = rows
            .iter()
            .map(|row| {
                Ok(FolderDocument {
                    id: row.get("id")?,
                    title: row.get("title")?,
                    status: row.get("status")?,
                    authenticated: row.get::<i64>("authenticated")? != 0,
                    shares: row.get("shares")?,
                    updated_at: row.get("updated_at")?,
                })
            })
            .collect::<telar_sql::Result<Vec<_>>>()?;
        let (name, status) = match head {
            Some(row) => (row.get("name")?, row.get("status")?),
            None => (String::new(), "unknown".to_owned()),
        };
        Ok(Some(FolderView {
            citizen: citizen.to_owned(),
            name,
            status,
            documents,
        }))
    }

    pub async fn transfers(&self, citizen: &str) -> telar_sql::Result<Vec<TransferView>> {
        let rows = query(
            "SELECT event, detail, at FROM rm_transfers WHERE citizen = $1 ORDER BY seq DESC",
        )
        .bind(citizen.to_owned())
        .fetch_all(&self.db)
        .await?;
        rows.iter()
            .map(|row| {
                let detail: String = row.get("detail")?;
                Ok(TransferView {
                    event: row.get("event")?,
                    detail: serde_json::from_str(&detail).unwrap_or(Value::Null),
                    at: row.get("at")?,
                })
            })
            .collect()
    }
}
