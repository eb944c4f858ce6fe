//! ingestion's table: one row per document, `pending` until its upload is confirmed, then
//! `ready`; `deleted` keeps the row (the object is gone).

use serde::{Deserialize, Serialize};
use telar_sql::{Db, Migration, Row, Tx, query};

pub(crate) const MIGRATION: Migration = Migration {
    version: 1,
    name: "documents",
    sqlite: "
CREATE TABLE documents (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    title TEXT NOT NULL,
    filename TEXT NOT NULL,
    content_type TEXT NOT NULL,
    declared_size INTEGER NOT NULL,
    tags TEXT NOT NULL,
    object_key TEXT NOT NULL,
    status TEXT NOT NULL,
    size INTEGER,
    sha256 TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX documents_by_owner ON documents (owner, status);",
    postgres: "
CREATE TABLE documents (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    title TEXT NOT NULL,
    filename TEXT NOT NULL,
    content_type TEXT NOT NULL,
    declared_size BIGINT NOT NULL,
    tags TEXT NOT NULL,
    object_key TEXT NOT NULL,
    status TEXT NOT NULL,
    size BIGINT,
    sha256 TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX documents_by_owner ON documents (owner, status);",
};

/// A document as ingestion knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Document {
    pub id: String,
    /// The citizen's id.
    pub owner: String,
    pub title: String,
    pub filename: String,
    pub content_type: String,
    /// What the upload link allows.
    pub declared_size: i64,
    pub tags: Vec<String>,
    /// `citizens/{owner}/{id}-{filename}`.
    pub object_key: String,
    /// `pending`, `ready` or `deleted`.
    pub status: String,
    /// Confirmed size and SHA-256 (hex), once `ready`.
    pub size: Option<i64>,
    pub sha256: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

fn to_document(row: &Row) -> telar_sql::Result<Document> {
    let tags: String = row.get("tags")?;
    Ok(Document {
        id: row.get("id")?,
        owner: row.get("owner")?,
        title: row.get("title")?,
        filename: row.get("filename")?,
        content_type: row.get("content_type")?,
        declared_size: row.get("declared_size")?,
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        object_key: row.get("object_key")?,
        status: row.get("status")?,
        size: row.get("size")?,
        sha256: row.get("sha256")?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
    })
}

#[derive(Clone)]
pub(crate) struct Documents {
    pub db: Db,
}

impl Documents {
    pub async fn get(&self, id: &str) -> telar_sql::Result<Option<Document>> {
        query("SELECT * FROM documents WHERE id = $1")
            .bind(id.to_owned())
            .fetch_optional(&self.db)
            .await?
            .as_ref()
            .map(to_document)
            .transpose()
    }

    pub async fn of_owner(
        &self,
        owner: &str,
        with_deleted: bool,
    ) -> telar_sql::Result<Vec<Document>> {
        let rows = query("SELECT * FROM documents WHERE owner = $1 AND (status <> 'deleted' OR $2) ORDER BY created_at, id")
            .bind(owner.to_owned())
            .bind(with_deleted)
            .fetch_all(&self.db)
            .await?;
        rows.iter().map(to_document).collect()
    }

    pub async fn insert(&self, document: &Document) -> telar_sql::Result<()> {
        query(
            "INSERT INTO documents (id, owner, title, filename, content_type, declared_size, tags, object_key,
                                    status, size, sha256, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(document.id.clone())
        .bind(document.owner.clone())
        .bind(document.title.clone())
        .bind(document.filename.clone())
        .bind(document.content_type.clone())
        .bind(document.declared_size)
        .bind(serde_json::to_string(&document.tags).unwrap_or_default())
        .bind(document.object_key.clone())
        .bind(document.status.clone())
        .bind(document.size)
        .bind(document.sha256.clone())
        .bind(document.created_at.clone())
        .bind(document.updated_at.clone())
        .execute(&self.db)
        .await?;
        Ok(())
    }

    /// Moves `id` from `from` to `to` (with the confirmed size and hash); `false` when it was not in `from`.
    pub async fn transition(
        &self,
        tx: &mut Tx,
        id: &str,
        from: &str,
        to: &str,
        confirmed: Option<(i64, String)>,
        at: &str,
    ) -> telar_sql::Result<bool> {
        let (size, sha256) = confirmed.unzip();
        let changed = query(
            "UPDATE documents SET status = $1, size = COALESCE($2, size), sha256 = COALESCE($3, sha256), updated_at = $4
             WHERE id = $5 AND status = $6",
        )
        .bind(to.to_owned())
        .bind(size)
        .bind(sha256)
        .bind(at.to_owned())
        .bind(id.to_owned())
        .bind(from.to_owned())
        .execute(tx)
        .await?;
        Ok(changed == 1)
    }
}
