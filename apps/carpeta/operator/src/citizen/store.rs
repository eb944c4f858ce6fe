//! The citizen service's table. Status: `registered` (the hub has them with this operator),
//! `pending_hub` (the hub registration is queued), `rejected` (the hub refused it later),
//! `transferring` / `transferred` (set by the transfer flow).

use serde::{Deserialize, Serialize};
use telar_sql::{Db, Migration, Row, Tx, query};

pub(crate) const MIGRATION: Migration = Migration {
    version: 1,
    name: "citizens",
    sqlite: "
CREATE TABLE citizens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    address TEXT NOT NULL,
    email TEXT NOT NULL,
    status TEXT NOT NULL,
    hub_call INTEGER,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);",
    postgres: "
CREATE TABLE citizens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    address TEXT NOT NULL,
    email TEXT NOT NULL,
    status TEXT NOT NULL,
    hub_call BIGINT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);",
};

/// A citizen as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Citizen {
    pub id: String,
    pub name: String,
    pub address: String,
    pub email: String,
    /// `registered`, `pending_hub`, `rejected`, `transferring` or `transferred`.
    pub status: String,
    /// The queued hub call while `pending_hub`.
    pub hub_call: Option<i64>,
    pub created_at: String,
    pub updated_at: String,
}

fn to_citizen(row: &Row) -> telar_sql::Result<Citizen> {
    Ok(Citizen {
        id: row.get("id")?,
        name: row.get("name")?,
        address: row.get("address")?,
        email: row.get("email")?,
        status: row.get("status")?,
        hub_call: row.get("hub_call")?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
    })
}

#[derive(Clone)]
pub(crate) struct Citizens {
    pub db: Db,
}

impl Citizens {
    pub async fn get(&self, id: &str) -> telar_sql::Result<Option<Citizen>> {
        query("SELECT id, name, address, email, status, hub_call, created_at, updated_at FROM citizens WHERE id = $1")
            .bind(id.to_owned())
            .fetch_optional(&self.db)
            .await?
            .as_ref()
            .map(to_citizen)
            .transpose()
    }

    pub async fn get_in(&self, tx: &mut Tx, id: &str) -> telar_sql::Result<Option<Citizen>> {
        query("SELECT id, name, address, email, status, hub_call, created_at, updated_at FROM citizens WHERE id = $1")
            .bind(id.to_owned())
            .fetch_optional(tx)
            .await?
            .as_ref()
            .map(to_citizen)
            .transpose()
    }

    /// Name or email containing `text` (case-insensitive), or an id starting with it.
    pub async fn search(&self, text: &str, limit: i64) -> telar_sql::Result<Vec<Citizen>> {
        let like = format!("%{}%", text.to_lowercase().replace(['%', '_'], ""));
        let prefix = format!("{}%", text.replace(['%', '_'], ""));
        let rows = query(
            "SELECT id, name, address, email, status, hub_call, created_at, updated_at FROM citizens
             WHERE lower(name) LIKE $1 OR lower(email) LIKE $1 OR id LIKE $2 ORDER BY id LIMIT $3",
        )
        .bind(like)
        .bind(prefix)
        .bind(limit)
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(to_citizen).collect()
    }

    pub async fn insert(&self, tx: &mut Tx, citizen: &Citizen) -> telar_sql::Result<()> {
        query(
            "INSERT INTO citizens (id, name, address, email, status, hub_call, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(citizen.id.clone())
        .bind(citizen.name.clone())
        .bind(citizen.address.clone())
        .bind(citizen.email.clone())
        .bind(citizen.status.clone())
        .bind(citizen.hub_call)
        .bind(citizen.created_at.clone())
        .bind(citizen.updated_at.clone())
        .execute(tx)
        .await?;
        Ok(())
    }

    pub async fn update(&self, tx: &mut Tx, citizen: &Citizen) -> telar_sql::Result<()> {
        query(
            "UPDATE citizens SET name = $1, address = $2, email = $3, status = $4, hub_call = $5, updated_at = $6
             WHERE id = $7",
        )
        .bind(citizen.name.clone())
        .bind(citizen.address.clone())
        .bind(citizen.email.clone())
        .bind(citizen.status.clone())
        .bind(citizen.hub_call)
        .bind(citizen.updated_at.clone())
        .bind(citizen.id.clone())
        .execute(tx)
        .await?;
        Ok(())
    }

    pub async fn delete(&self, tx: &mut Tx, id: &str) -> telar_sql::Result<()> {
        query("DELETE FROM citizens WHERE id = $1")
            .bind(id.to_owned())
            .execute(tx)
            .await?;
        Ok(())
    }
}
