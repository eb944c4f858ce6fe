//! The embedded backend: a tantivy index in a directory, analyzed for Spanish (lower case, stop
//! words, accents folded, then the Snowball stemmer — on documents and queries alike; folding
//! first makes "ingenieria" and "ingeniería" one stem, as in PostgreSQL's configuration).

use std::path::Path;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{AllQuery, BooleanQuery, BoostQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions, Value,
};
use tantivy::snippet::SnippetGenerator;
use tantivy::tokenizer::{
    AsciiFoldingFilter, Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer,
    StopWordFilter, TextAnalyzer,
};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::{Document, Hit, SearchError, SearchIndex, SearchPage, SearchQuery, check, escape_html};

const ANALYZER: &str = "es";

fn err(error: impl std::fmt::Display) -> SearchError {
    SearchError::Index(error.to_string())
}

fn spanish() -> TextAnalyzer {
    let builder = TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(60))
        .filter(LowerCaser);
    match StopWordFilter::new(Language::Spanish) {
        Some(stop) => builder
            .filter(stop)
            .filter(AsciiFoldingFilter)
            .filter(Stemmer::new(Language::Spanish))
            .build(),
        None => builder
            .filter(AsciiFoldingFilter)
            .filter(Stemmer::new(Language::Spanish))
            .build(),
    }
}

#[derive(Clone, Copy)]
struct Fields {
    id: Field,
    owner: Field,
    tags: Field,
    title: Field,
    body: Field,
}

struct Inner {
    index: Index,
    writer: Mutex<IndexWriter>,
    reader: IndexReader,
    fields: Fields,
}

/// Search on local files. Cheap to clone.
#[derive(Clone)]
pub struct TantivyIndex {
    inner: Arc<Inner>,
}

impl TantivyIndex {
    /// Opens the index in `dir`, creating it if needed.
    pub fn open(dir: &Path) -> Result<Self, SearchError> {
        let text = TextOptions::default()
            .set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(ANALYZER)
                    .set_index_option(IndexRecordOption::WithFreqsAndPositions),
            )
            .set_stored();
        let mut schema = Schema::builder();
        let fields = Fields {
            id: schema.add_text_field("id", STRING | STORED),
            owner: schema.add_text_field("owner", STRING | STORED),
            tags: schema.add_text_field("tags", STRING),
            title: schema.add_text_field("title", text.clone()),
            body: schema.add_text_field("body", text),
        };
        std::fs::create_dir_all(dir).map_err(err)?;
        let directory = tantivy::directory::MmapDirectory::open(dir).map_err(err)?;
        let index = Index::open_or_create(directory, schema.build()).map_err(err)?;
        index.tokenizers().register(ANALYZER, spanish());
        let writer = index.writer(50_000_000).map_err(err)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(err)?;
        Ok(TantivyIndex {
            inner: Arc::new(Inner {
                index,
                writer: Mutex::new(writer),
                reader,
                fields,
            }),
        })
    }

    /// Runs `write` on the writer, commits and makes the result visible to searches.
    async fn write(
        &self,
        write: impl FnOnce(&mut IndexWriter, Fields) -> Result<(), SearchError> + Send + 'static,
    ) -> Result<(), SearchError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut writer = inner.writer.lock().map_err(err)?;
            write(&mut writer, inner.fields)?;
            writer.commit().map_err(err)?;
            inner.reader.reload().map_err(err)
        })
        .await
        .map_err(err)?
    }

    fn run(inner: &Inner, query: &SearchQuery) -> Result<SearchPage, SearchError> {
        let fields = inner.fields;
        let mut analyzer = spanish();
        let mut stream = analyzer.token_stream(&query.text);
        let mut words: Vec<Box<dyn Query>> = Vec::new();
        while let Some(token) = stream.next() {
            for (field, boost) in [(fields.title, 2.0), (fields.body, 1.0)] {
                let term = Term::from_field_text(field, &token.text);
                let term: Box<dyn Query> =
                    Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs));
                words.push(Box::new(BoostQuery::new(term, boost)));
            }
        }
        let mut filters: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        if let Some(owner) = &query.owner {
            let term = Term::from_field_text(fields.owner, owner);
            filters.push((
                Occur::Must,
                Box::new(TermQuery::new(term, IndexRecordOption::Basic)),
            ));
        }
        for tag in &query.tags {
            let term = Term::from_field_text(fields.tags, tag);
            filters.push((
                Occur::Must,
                Box::new(TermQuery::new(term, IndexRecordOption::Basic)),
            ));
        }
        if words.is_empty() && (filters.is_empty() || !query.text.trim().is_empty()) {
            // Nothing to look for (no words, or only stop words and symbols).
            return Ok(SearchPage {
                total: 0,
                hits: Vec::new(),
            });
        }
        let matching: Box<dyn Query> = if words.is_empty() {
            Box::new(AllQuery)
        } else {
            Box::new(BooleanQuery::new(
                words.into_iter().map(|q| (Occur::Should, q)).collect(),
            ))
        };
        let mut clauses = vec![(Occur::Must, matching.box_clone())];
        clauses.extend(filters);
        let full = BooleanQuery::new(clauses);
        let searcher = inner.reader.searcher();
        let top = TopDocs::with_limit(query.limit)
            .and_offset(query.offset)
            .order_by_score();
        let (total, top) = searcher.search(&full, &(Count, top)).map_err(err)?;
        let mut snippets = [fields.title, fields.body]
            .map(|field| SnippetGenerator::create(&searcher, &*matching, field).ok());
        for generator in snippets.iter_mut().flatten() {
            generator.set_max_num_chars(160);
        }
        let mut hits = Vec::with_capacity(top.len());
        for (score, address) in top {
            let doc: TantivyDocument = searcher.doc(address).map_err(err)?;
            let text = |field: Field| {
                doc.get_first(field)
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            };
            let mut highlight = String::new();
            for (generator, field) in snippets.iter().zip([fields.title, fields.body]) {
                let Some(generator) = generator else { continue };
                let mut snippet = generator.snippet(&text(field));
                if snippet.highlighted().is_empty() {
                    continue;
                }
                snippet.set_snippet_prefix_postfix("<mark>", "</mark>");
                highlight = snippet.to_html();
                break;
            }
            if highlight.is_empty() {
                highlight = escape_html(&text(fields.title));
            }
            hits.push(Hit {
                id: text(fields.id),
                owner: text(fields.owner),
                title: text(fields.title),
                score,
                highlight,
            });
        }
        Ok(SearchPage {
            total: total as u64,
            hits,
        })
    }
}

impl SearchIndex for TantivyIndex {
    fn index<'a>(&'a self, documents: &'a [Document]) -> BoxFuture<'a, Result<(), SearchError>> {
        let documents = documents.to_vec();
        Box::pin(self.write(move |writer, fields| {
            for document in documents {
                writer.delete_term(Term::from_field_text(fields.id, &document.id));
                let mut doc = TantivyDocument::default();
                doc.add_text(fields.id, &document.id);
                doc.add_text(fields.owner, &document.owner);
                for tag in &document.tags {
                    doc.add_text(fields.tags, tag);
                }
                doc.add_text(fields.title, &document.title);
                doc.add_text(fields.body, &document.body);
                writer.add_document(doc).map_err(err)?;
            }
            Ok(())
        }))
    }

    fn remove<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), SearchError>> {
        let id = id.to_owned();
        Box::pin(self.write(move |writer, fields| {
            writer.delete_term(Term::from_field_text(fields.id, &id));
            Ok(())
        }))
    }

    fn remove_owner<'a>(&'a self, owner: &'a str) -> BoxFuture<'a, Result<(), SearchError>> {
        let owner = owner.to_owned();
        Box::pin(self.write(move |writer, fields| {
            writer.delete_term(Term::from_field_text(fields.owner, &owner));
            Ok(())
        }))
    }

    fn search<'a>(
        &'a self,
        query: &'a SearchQuery,
    ) -> BoxFuture<'a, Result<SearchPage, SearchError>> {
        Box::pin(async move {
            check(query)?;
            let inner = self.inner.clone();
            let query = query.clone();
            tokio::task::spawn_blocking(move || Self::run(&inner, &query))
                .await
                .map_err(err)?
        })
    }
}

impl std::fmt::Debug for TantivyIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TantivyIndex({:?})", self.inner.index.directory())
    }
}
