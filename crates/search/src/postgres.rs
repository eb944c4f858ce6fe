//! The distributed backend: PostgreSQL full-text search. A `telar_spanish` configuration (the
//! `spanish` one with `unaccent` before the Snowball stemmer) builds a weighted `tsvector`
//! (title A, body B) in a generated column with a GIN index. Query words are OR-ed like in the
//! embedded backend; `plainto_tsquery` reads any text as plain words.

use futures::future::BoxFuture;
use telar_sql::{Db, Dialect, query};

use crate::{
    Document, Hit, SearchError, SearchIndex, SearchPage, SearchQuery, check, clean, escape_html,
};

/// Search in the service's PostgreSQL schema. Cheap to clone.
#[derive(Clone)]
pub struct PostgresIndex {
    db: Db,
}

const SETUP: &[&str] = &[
    // Several services may create the extension at once: the loser's error is not one.
    "DO $$ BEGIN
        CREATE EXTENSION IF NOT EXISTS unaccent SCHEMA public;
     EXCEPTION WHEN unique_violation OR duplicate_object THEN NULL; END $$",
    "DO $$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_ts_config
                       WHERE cfgname = 'telar_spanish' AND cfgnamespace = current_schema()::regnamespace) THEN
            CREATE TEXT SEARCH CONFIGURATION telar_spanish (COPY = pg_catalog.spanish);
            ALTER TEXT SEARCH CONFIGURATION telar_spanish
                ALTER MAPPING FOR hword, hword_part, word WITH public.unaccent, pg_catalog.spanish_stem;
        END IF;
     EXCEPTION WHEN unique_violation OR duplicate_object THEN NULL; END $$",
    "CREATE TABLE IF NOT EXISTS search_documents (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        tags JSONB NOT NULL,
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        tsv tsvector GENERATED ALWAYS AS (
            setweight(to_tsvector('telar_spanish', title), 'A') ||
            setweight(to_tsvector('telar_spanish', body), 'B')) STORED
     )",
    "CREATE INDEX IF NOT EXISTS search_documents_tsv ON search_documents USING gin (tsv)",
    "CREATE INDEX IF NOT EXISTS search_documents_owner ON search_documents (owner)",
];

/// Marks around matches in `ts_headline` output, replaced by `<mark>` once the rest is escaped.
const START: char = '\u{1}';
const STOP: char = '\u{2}';

impl PostgresIndex {
    pub async fn open(db: Db) -> Result<Self, SearchError> {
        if db.dialect() != Dialect::Postgres {
            return Err(SearchError::Index(
                "PostgresIndex needs PostgreSQL; the embedded mode uses TantivyIndex".into(),
            ));
        }
        for statement in SETUP {
            query(statement).execute(&db).await?;
        }
        Ok(PostgresIndex { db })
    }

    async fn run(&self, search: &SearchQuery) -> Result<SearchPage, SearchError> {
        let tags = serde_json::to_string(&search.tags).unwrap_or_else(|_| "[]".into());
        let text = clean(&search.text).trim().to_owned();
        // Words OR-ed: plainto_tsquery's `&` between lexemes becomes `|` (lexemes never hold `&`).
        let count = query(
            "WITH q AS (SELECT replace(plainto_tsquery('telar_spanish', $1)::text, ' & ', ' | ')::tsquery AS q)
             SELECT count(*) AS total FROM search_documents, q
             WHERE ($1 = '' OR tsv @@ q.q)
               AND ($2::text IS NULL OR owner = $2)
               AND tags @> $3::jsonb",
        )
        .bind(text.clone())
        .bind(search.owner.clone())
        .bind(tags.clone())
        .fetch_one(&self.db)
        .await?;
        let total: i64 = count.get("total")?;
        let rows = query(
            "WITH q AS (SELECT replace(plainto_tsquery('telar_spanish', $1)::text, ' & ', ' | ')::tsquery AS q)
             SELECT id, owner, title,
                    ts_rank_cd(tsv, q.q)::float8 AS score,
                    ts_headline('telar_spanish', title || E'\\n' || body, q.q,
                                'StartSel=' || chr(1) || ', StopSel=' || chr(2) || ', MaxWords=30, MinWords=8') AS headline
             FROM search_documents, q
             WHERE ($1 = '' OR tsv @@ q.q)
               AND ($2::text IS NULL OR owner = $2)
               AND tags @> $3::jsonb
             ORDER BY score DESC, id
             LIMIT $4 OFFSET $5",
        )
        .bind(text.clone())
        .bind(search.owner.clone())
        .bind(tags)
        .bind(search.limit as i64)
        .bind(search.offset as i64)
        .fetch_all(&self.db)
        .await?;
        let mut hits = Vec::with_capacity(rows.len());
        for row in rows {
            let headline: String = row.get("headline")?;
            let title: String = row.get("title")?;
            let highlight = if text.is_empty() || !headline.contains(START) {
                escape_html(&title)
            } else {
                escape_html(&headline)
                    .replace(START, "<mark>")
                    .replace(STOP, "</mark>")
                    .replace('\n', " ")
            };
            hits.push(Hit {
                id: row.get("id")?,
                owner: row.get("owner")?,
                title,
                score: row.get::<f64>("score")? as f32,
                highlight,
            });
        }
        Ok(SearchPage {
            total: u64::try_from(total).unwrap_or(0),
            hits,
        })
    }
}

impl SearchIndex for PostgresIndex {
    fn index<'a>(&'a self, documents: &'a [Document]) -> BoxFuture<'a, Result<(), SearchError>> {
        Box::pin(async move {
            let mut tx = self.db.begin().await?;
            for document in documents {
                query(
                    "INSERT INTO search_documents (id, owner, tags, title, body)
                     VALUES ($1, $2, $3::jsonb, $4, $5)
                     ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, tags = excluded.tags,
                         title = excluded.title, body = excluded.body",
                )
                .bind(document.id.clone())
                .bind(document.owner.clone())
                .bind(serde_json::to_string(&document.tags).unwrap_or_else(|_| "[]".into()))
                .bind(clean(&document.title))
                .bind(clean(&document.body))
                .execute(&mut tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn remove<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), SearchError>> {
        Box::pin(async move {
            query("DELETE FROM search_documents WHERE id = $1")
                .bind(id.to_owned())
                .execute(&self.db)
                .await?;
            Ok(())
        })
    }

    fn remove_owner<'a>(&'a self, owner: &'a str) -> BoxFuture<'a, Result<(), SearchError>> {
        Box::pin(async move {
            query("DELETE FROM search_documents WHERE owner = $1")
                .bind(owner.to_owned())
                .execute(&self.db)
                .await?;
            Ok(())
        })
    }

    fn search<'a>(
        &'a self,
        search: &'a SearchQuery,
    ) -> BoxFuture<'a, Result<SearchPage, SearchError>> {
        Box::pin(async move {
            check(search)?;
            self.run(search).await
        })
    }
}
