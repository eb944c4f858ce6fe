//! One conformance suite, both backends: tantivy on a temporary directory and PostgreSQL
//! full-text search on the running server.
#![allow(clippy::unwrap_used)]

use telar_search::{
    Document, PostgresIndex, SearchError, SearchIndex, SearchPage, SearchQuery, TantivyIndex,
};

fn doc(id: &str, owner: &str, tags: &[&str], title: &str, body: &str) -> Document {
    Document {
        id: id.into(),
        owner: owner.into(),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        title: title.into(),
        body: body.into(),
    }
}

fn ids(page: &SearchPage) -> Vec<String> {
    let mut ids: Vec<String> = page.hits.iter().map(|h| h.id.clone()).collect();
    ids.sort();
    ids
}

async fn seed(index: &dyn SearchIndex) {
    index
        .index(&[
            doc(
                "d1",
                "c1",
                &["identidad"],
                "Cédula de ciudadanía",
                "Documento de identidad expedido por la Registraduría",
            ),
            doc(
                "d2",
                "c1",
                &["educacion"],
                "Diploma de bachiller",
                "Colegio Nacional, promoción 2019",
            ),
            doc(
                "d3",
                "c2",
                &["educacion"],
                "Diploma universitario",
                "Ingeniería de sistemas y computación",
            ),
        ])
        .await
        .unwrap();
}

async fn spanish_words_accents_owners_tags_and_highlights(index: &dyn SearchIndex) {
    seed(index).await;
    let search = |q: SearchQuery| async move { index.search(&q).await.unwrap() };
    assert_eq!(ids(&search(SearchQuery::text("cedula")).await), ["d1"]);
    assert_eq!(ids(&search(SearchQuery::text("CÉDULA")).await), ["d1"]);
    assert_eq!(
        ids(&search(SearchQuery::text("diplomas")).await),
        ["d2", "d3"]
    );
    assert_eq!(ids(&search(SearchQuery::text("ingenieria")).await), ["d3"]);
    assert_eq!(
        ids(&search(SearchQuery::text("diplomas").owner("c1")).await),
        ["d2"]
    );
    assert_eq!(
        ids(&search(SearchQuery::text("diploma").tag("educacion")).await),
        ["d2", "d3"]
    );
    assert_eq!(
        ids(&search(SearchQuery::text("documento diploma").tag("identidad")).await),
        ["d1"]
    );
    assert_eq!(
        ids(&search(SearchQuery::text("").owner("c1")).await),
        ["d1", "d2"],
        "browse an owner"
    );
    assert_eq!(search(SearchQuery::text("pasaporte")).await.total, 0);
    let page = search(SearchQuery::text("cedula")).await;
    assert_eq!(page.total, 1);
    let hit = &page.hits[0];
    assert_eq!(
        (hit.owner.as_str(), hit.title.as_str()),
        ("c1", "Cédula de ciudadanía")
    );
    assert!(
        hit.highlight.contains("<mark>Cédula</mark>"),
        "{}",
        hit.highlight
    );
    assert!(hit.score > 0.0);
}

async fn any_text_is_a_query_and_bad_pages_are_refused(index: &dyn SearchIndex) {
    index
        .index(&[doc(
            "x",
            "c1",
            &[],
            "Informe <b>técnico</b> & anexos",
            "Señor usuario: 100% válido",
        )])
        .await
        .unwrap();
    for text in [
        "\"); DROP TABLE search_documents; --",
        "(((",
        "*",
        "a AND OR NOT -b \"c",
        "<script>alert(1)</script>",
        "'' OR 1=1",
        "ñ",
        "   ",
        "el la de",
        "\u{0}\u{1f}",
    ] {
        let page = index.search(&SearchQuery::text(text)).await;
        assert!(page.is_ok(), "{text:?}: {page:?}");
    }
    let page = index
        .search(&SearchQuery::text("informe señor"))
        .await
        .unwrap();
    assert_eq!(ids(&page), ["x"]);
    // Highlights are HTML: the document's own markup is escaped, matches are marked.
    let highlight = &page.hits[0].highlight;
    assert!(highlight.contains("<mark>"), "{highlight}");
    assert!(!highlight.contains("<b>"), "{highlight}");
    for (offset, limit) in [(0, 0), (0, 101)] {
        let refused = index
            .search(&SearchQuery::text("informe").page(offset, limit))
            .await;
        assert!(
            matches!(refused, Err(SearchError::Invalid { field: "limit", .. })),
            "{refused:?}"
        );
    }
}

async fn pages_replacements_and_removals(index: &dyn SearchIndex) {
    let many: Vec<Document> = (0..25)
        .map(|n| {
            doc(
                &format!("r{n:02}"),
                if n < 10 { "c1" } else { "c2" },
                &[],
                &format!("Informe mensual {n}"),
                "resultados",
            )
        })
        .collect();
    index.index(&many).await.unwrap();
    let first = index
        .search(&SearchQuery::text("informes").page(0, 10))
        .await
        .unwrap();
    assert_eq!((first.total, first.hits.len()), (25, 10));
    let last = index
        .search(&SearchQuery::text("informes").page(20, 10))
        .await
        .unwrap();
    assert_eq!((last.total, last.hits.len()), (25, 5));
    let mut seen: Vec<String> = Vec::new();
    for offset in [0, 10, 20] {
        let page = index
            .search(&SearchQuery::text("informe").page(offset, 10))
            .await
            .unwrap();
        seen.extend(page.hits.into_iter().map(|h| h.id));
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 25, "pages cover every match once");

    index
        .index(&[doc("r00", "c1", &[], "Certificado laboral", "empresa")])
        .await
        .unwrap();
    assert_eq!(
        index
            .search(&SearchQuery::text("informe"))
            .await
            .unwrap()
            .total,
        24
    );
    assert_eq!(
        ids(&index
            .search(&SearchQuery::text("certificado"))
            .await
            .unwrap()),
        ["r00"]
    );
    index.remove("r00").await.unwrap();
    assert_eq!(
        index
            .search(&SearchQuery::text("certificado"))
            .await
            .unwrap()
            .total,
        0
    );
    index.remove_owner("c2").await.unwrap();
    assert_eq!(
        index
            .search(&SearchQuery::text("informe"))
            .await
            .unwrap()
            .total,
        9
    );
}

mod tantivy {
    use super::*;

    fn open() -> (TantivyIndex, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        (TantivyIndex::open(&dir.path().join("index")).unwrap(), dir)
    }

    #[tokio::test]
    async fn spanish_words_accents_owners_tags_and_highlights() {
        let (index, _dir) = open();
        super::spanish_words_accents_owners_tags_and_highlights(&index).await;
    }

    #[tokio::test]
    async fn any_text_is_a_query_and_bad_pages_are_refused() {
        let (index, _dir) = open();
        super::any_text_is_a_query_and_bad_pages_are_refused(&index).await;
    }

    #[tokio::test]
    async fn pages_replacements_and_removals() {
        let (index, _dir) = open();
        super::pages_replacements_and_removals(&index).await;
    }

    #[tokio::test]
    async fn the_index_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        seed(&TantivyIndex::open(&path).unwrap()).await;
        let reopened = TantivyIndex::open(&path).unwrap();
        assert_eq!(
            reopened
                .search(&SearchQuery::text("cedula"))
                .await
                .unwrap()
                .total,
            1
        );
    }
}

mod postgres {
    use super::*;

    async fn open() -> PostgresIndex {
        PostgresIndex::open(telar_testkit::postgres_db("search").await)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn spanish_words_accents_owners_tags_and_highlights() {
        super::spanish_words_accents_owners_tags_and_highlights(&open().await).await;
    }

    #[tokio::test]
    async fn any_text_is_a_query_and_bad_pages_are_refused() {
        super::any_text_is_a_query_and_bad_pages_are_refused(&open().await).await;
    }

    #[tokio::test]
    async fn pages_replacements_and_removals() {
        super::pages_replacements_and_removals(&open().await).await;
    }

    #[tokio::test]
    async fn sqlite_is_refused_with_a_clear_reason() {
        let (db, _dir) = telar_testkit::sqlite_db("search").await;
        let refused = PostgresIndex::open(db).await.err().unwrap();
        assert!(refused.to_string().contains("TantivyIndex"), "{refused}");
    }
}
