//! `telar-bench-search [--quick]`: 100,000 synthetic Spanish documents (10,000 with `--quick`)
//! indexed in batches of 1,000 into tantivy and into PostgreSQL (a fresh schema on the running
//! server), then the same 1,000 one- and two-word queries (200 with `--quick`) against each:
//! documents indexed per second and query p50/p99. Ends with `RESULT name=search …`: tantivy's
//! indexing rate against PostgreSQL's.

use std::time::{Duration, Instant};

use telar_search::{Document, PostgresIndex, SearchIndex, SearchQuery, TantivyIndex};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const KINDS: &[&str] = &[
    "Cédula de ciudadanía",
    "Diploma de bachiller",
    "Diploma universitario",
    "Acta de grado",
    "Certificado laboral",
    "Registro civil de nacimiento",
    "Pasaporte",
    "Licencia de conducción",
    "Historia clínica",
    "Certificado de afiliación",
    "Declaración de renta",
    "Tarjeta profesional",
    "Escritura pública",
    "Contrato de arrendamiento",
    "Póliza de seguro",
    "Extracto bancario",
];
const WORDS: &[&str] = &[
    "documento",
    "identidad",
    "expedido",
    "registraduría",
    "nacional",
    "colegio",
    "universidad",
    "ingeniería",
    "sistemas",
    "medicina",
    "derecho",
    "economía",
    "administración",
    "promoción",
    "graduación",
    "título",
    "profesional",
    "empresa",
    "cargo",
    "salario",
    "vinculación",
    "certificación",
    "entidad",
    "salud",
    "pensión",
    "cesantías",
    "notaría",
    "municipio",
    "departamento",
    "bogotá",
    "medellín",
    "cali",
    "barranquilla",
    "cartagena",
    "bucaramanga",
    "ciudadano",
    "firma",
    "sello",
    "vigencia",
    "fecha",
    "número",
    "folio",
    "libro",
    "anexo",
    "original",
    "copia",
    "auténtica",
    "apostilla",
    "traducción",
    "oficial",
    "ministerio",
    "educación",
    "trabajo",
    "transporte",
    "hacienda",
    "tributaria",
    "banco",
    "cuenta",
    "crédito",
    "vivienda",
    "propiedad",
    "inmueble",
    "matrícula",
    "inmobiliaria",
    "vehículo",
    "placa",
    "tránsito",
    "categoría",
    "examen",
    "laboratorio",
    "diagnóstico",
    "tratamiento",
    "hospital",
    "clínica",
    "médico",
    "especialista",
    "consulta",
    "urgencias",
    "vacunación",
];

/// A small deterministic generator (the same documents and queries every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % below
    }
}

fn documents(count: usize) -> Vec<Document> {
    let mut rng = Lcg(7);
    (0..count)
        .map(|n| {
            let words = 30 + rng.next(50);
            let body: Vec<&str> = (0..words).map(|_| WORDS[rng.next(WORDS.len())]).collect();
            Document {
                id: format!("doc-{n}"),
                owner: format!("{}", 1_000_000_000 + rng.next(20_000)),
                tags: vec![
                    KINDS[n % KINDS.len()]
                        .split(' ')
                        .next()
                        .unwrap_or("otro")
                        .to_lowercase(),
                ],
                title: format!("{} {}", KINDS[n % KINDS.len()], n),
                body: body.join(" "),
            }
        })
        .collect()
}

fn queries(count: usize) -> Vec<String> {
    let mut rng = Lcg(11);
    (0..count)
        .map(|n| {
            let first = WORDS[rng.next(WORDS.len())];
            if n % 2 == 0 {
                first.to_owned()
            } else {
                // Unaccented and plural forms: what people type.
                format!(
                    "{first}s {}",
                    KINDS[rng.next(KINDS.len())].split(' ').next().unwrap_or("")
                )
            }
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

async fn measure(
    name: &str,
    index: &dyn SearchIndex,
    docs: &[Document],
    queries: &[String],
) -> Result<f64, BoxError> {
    let started = Instant::now();
    for batch in docs.chunks(1000) {
        index.index(batch).await?;
    }
    let rate = docs.len() as f64 / started.elapsed().as_secs_f64();
    let mut latencies = Vec::with_capacity(queries.len());
    let mut found = 0u64;
    for text in queries {
        let started = Instant::now();
        let page = index.search(&SearchQuery::text(text.as_str())).await?;
        latencies.push(started.elapsed());
        found += page.total;
    }
    latencies.sort();
    println!(
        "{name:9} indexed {} docs at {rate:.0} docs/s; {} queries p50 {:.2} ms p99 {:.2} ms (mean matches {:.0})",
        docs.len(),
        queries.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        found as f64 / queries.len() as f64
    );
    Ok(rate)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let quick = std::env::args().any(|a| a == "--quick");
    let (count, query_count) = if quick {
        (10_000, 200)
    } else {
        (100_000, 1_000)
    };
    let docs = documents(count);
    let queries = queries(query_count);

    let dir = tempfile::tempdir()?;
    let tantivy = TantivyIndex::open(&dir.path().join("index"))?;
    let tantivy_rate = measure("tantivy", &tantivy, &docs, &queries).await?;

    let url = std::env::var("TELAR_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!("bench_search_{}", std::process::id());
    let config = telar_sql::PostgresConfig {
        url,
        ..telar_sql::PostgresConfig::default()
    };
    let db = telar_sql::Db::postgres(&config, &schema).await?;
    let postgres = PostgresIndex::open(db.clone()).await?;
    let postgres_rate = measure("postgres", &postgres, &docs, &queries).await?;
    telar_sql::generated_query(format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&db)
        .await?;
    db.close().await;

    println!(
        "RESULT name=search value={tantivy_rate:.0} reference={postgres_rate:.0} ratio={:.3} unit=docs/s",
        tantivy_rate / postgres_rate
    );
    Ok(())
}
