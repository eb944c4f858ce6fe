//! Full-text search for telar services, Spanish-aware (stemming, stop words, accents folded:
//! "cedula" finds "Cédula", "diplomas" finds "Diploma"). One trait, two backends, one conformance
//! suite: tantivy on local files (embedded mode) and PostgreSQL full-text search with the
//! `spanish` configuration and `unaccent` (distributed mode). Queries are plain text: any
//! character is accepted, none is query syntax.

mod postgres;
mod tantivy_index;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

pub use postgres::PostgresIndex;
pub use tantivy_index::TantivyIndex;

/// What is indexed: a document of an owner (a citizen), with tags to filter on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    pub id: String,
    pub owner: String,
    #[serde(default)]
    pub tags: Vec<String>,
    pub title: String,
    #[serde(default)]
    pub body: String,
}

/// A search: words (any text), optional owner and tags (all must match), a page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchQuery {
    pub text: String,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub offset: usize,
    #[serde(default = "default_limit")]
    pub limit: usize,
}

fn default_limit() -> usize {
    20
}

impl SearchQuery {
    pub fn text(text: impl Into<String>) -> Self {
        SearchQuery {
            text: text.into(),
            owner: None,
            tags: Vec::new(),
            offset: 0,
            limit: default_limit(),
        }
    }

    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }

    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    pub fn page(mut self, offset: usize, limit: usize) -> Self {
        self.offset = offset;
        self.limit = limit;
        self
    }

    /// At most this many hits per page.
    pub const MAX_LIMIT: usize = 100;
}

/// One match, best first. `highlight` is a fragment of the title or body with the matched words
/// in `<mark>…</mark>` (the rest HTML-escaped).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    pub id: String,
    pub owner: String,
    pub title: String,
    pub score: f32,
    pub highlight: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchPage {
    /// Matches in all pages.
    pub total: u64,
    pub hits: Vec<Hit>,
}

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("search index: {0}")]
    Index(String),
    #[error(transparent)]
    Sql(#[from] telar_sql::Error),
    #[error("invalid `{field}`: {reason}")]
    Invalid { field: &'static str, reason: String },
}

impl telar_types::Classify for SearchError {
    fn code(&self) -> telar_types::ErrorCode {
        match self {
            SearchError::Invalid { .. } => telar_types::ErrorCode::InvalidArgument,
            SearchError::Index(_) => telar_types::ErrorCode::Internal,
            SearchError::Sql(error) => error.code(),
        }
    }
}

/// A search index. Indexing an id again replaces the document.
pub trait SearchIndex: Send + Sync + 'static {
    fn index<'a>(&'a self, documents: &'a [Document]) -> BoxFuture<'a, Result<(), SearchError>>;
    fn remove<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), SearchError>>;
    /// Every document of `owner` (a citizen who leaves the operator).
    fn remove_owner<'a>(&'a self, owner: &'a str) -> BoxFuture<'a, Result<(), SearchError>>;
    fn search<'a>(
        &'a self,
        query: &'a SearchQuery,
    ) -> BoxFuture<'a, Result<SearchPage, SearchError>>;
}

pub(crate) fn check(query: &SearchQuery) -> Result<(), SearchError> {
    if query.limit == 0 || query.limit > SearchQuery::MAX_LIMIT {
        return Err(SearchError::Invalid {
            field: "limit",
            reason: format!("must be 1..={}", SearchQuery::MAX_LIMIT),
        });
    }
    if query.text.len() > 1000 {
        return Err(SearchError::Invalid {
            field: "text",
            reason: "longer than 1000 bytes".into(),
        });
    }
    Ok(())
}

/// `text` without control characters (PostgreSQL refuses NUL; none carries meaning in a search).
pub(crate) fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// HTML-escapes `text` (highlights are HTML fragments).
pub(crate) fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
