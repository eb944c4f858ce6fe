//! metadata's own copy of each document's description, kept from ingestion's and signature's
//! events; soft-deleted rows keep `deleted_at`.

use serde::{Deserialize, Serialize};
use telar_sql::{Db, Migration, Row, Tx, query};

pub(crate) const MIGRATION: Migration = Migration {
    version: 1,
    name: "document metadata",
    sqlite: "
CREATE TABLE meta_documents (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    title TEXT NOT NULL,
    filename TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    tags TEXT NOT NULL,
    authenticated INTEGER NOT NULL DEFAULT 0,
    deleted_at TEXT,
    updated_at TEXT NOT NULL
);
CREATE INDEX meta_documents_by_owner ON meta_documents (owner);",
    postgres: "
CREATE TABLE meta_documents (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    title TEXT NOT NULL,
    filename TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    tags TEXT NOT NULL,
    authenticated BIGINT NOT NULL DEFAULT 0,
    deleted_at TEXT,
    updated_at TEXT NOT NULL
);
CREATE INDEX meta_documents_by_owner ON meta_documents (owner);",
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DocumentMeta {
    pub id: String,
    pub owner: String,
    pub title: String,
    pub filename: String,
    pub content_type: String,
    pub size: i64,
    pub tags: Vec<String>,
    /// The hub authenticated it.
    pub authenticated: bool,
    /// Set when soft-deleted.
    pub deleted_at: Option<String>,
    pub updated_at: String,
}

fn to_meta(row: &Row) -> telar_sql::Result<DocumentMeta> {
    let tags: String = row.get("tags")?;
    Ok(DocumentMeta {
        id: row.get("id")?,
        owner: row.get("owner")?,
        title: row.get("title")?,
        filename: row.get("filename")?,
        content_type: row.get("content_type")?,
        size: row.get("size")?,
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        authenticated: row.get::<i64>("authenticated")? != 0,
        deleted_at: row.get("deleted_at")?,
        updated_at: row.get("updated_at")?,
    })
}

#[derive(Clone)]
pub(crate) struct Metas {
    pub db: Db,
}

impl Metas {
    pub async fn get(&self, id: &str) -> telar_sql::Result<Option<DocumentMeta>> {
        query("SELECT * FROM meta_documents WHERE id = $1")
            .bind(id.to_owned())
            .fetch_optional(&self.db)
            .await?
            .as_ref()
            .map(to_meta)
            .transpose()
    }

    pub async fn of_owner(
        &self,
        owner: &str,
        with_deleted: bool,
    ) -> telar_sql::Result<Vec<DocumentMeta>> {
        let rows = query("SELECT * FROM meta_documents WHERE owner = $1 AND (deleted_at IS NULL OR $2) ORDER BY title, id")
            .bind(owner.to_owned())
            .bind(with_deleted)
            .fetch_all(&self.db)
            .await?;
        rows.iter().map(to_meta).collect()
    }

    pub async fn upsert(&self, tx: &mut Tx, meta: &DocumentMeta) -> telar_sql::Result<()> {
        query(
            "INSERT INTO meta_documents (id, owner, title, filename, content_type, size, tags, authenticated, deleted_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, $9)
             ON CONFLICT (id) DO UPDATE SET title = excluded.title, filename = excluded.filename,
                 content_type = excluded.content_type, size = excluded.size, tags = excluded.tags,
                 updated_at = excluded.updated_at",
        )
        .bind(meta.id.clone())
        .bind(meta.owner.clone())
        .bind(meta.title.clone())
        .bind(meta.filename.clone())
        .bind(meta.content_type.clone())
        .bind(meta.size)
        .bind(serde_json::to_string(&meta.tags).unwrap_or_default())
        .bind(i64::from(meta.authenticated))
        .bind(meta.updated_at.clone())
        .execute(tx)
        .await?;
        Ok(())
    }

    pub async fn mark(
        &self,
        tx: &mut Tx,
        id: &str,
        column: &'static str,
        at: &str,
    ) -> telar_sql::Result<u64> {
        let sql = match column {
            "authenticated" => {
                "UPDATE meta_documents SET authenticated = 1, updated_at = $1 WHERE id = $2"
            }
            _ => {
                "UPDATE meta_documents SET deleted_at = COALESCE(deleted_at, $1), updated_at = $1 WHERE id = $2"
            }
        };
        query(sql)
            .bind(at.to_owned())
            .bind(id.to_owned())
            .execute(tx)
            .await
    }

    pub async fn forget_owner(&self, tx: &mut Tx, owner: &str) -> telar_sql::Result<u64> {
        query("DELETE FROM meta_documents WHERE owner = $1")
            .bind(owner.to_owned())
            .execute(tx)
            .await
    }
}
