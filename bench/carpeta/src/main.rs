//! `bench/run carpeta [--quick]`: the whole Carpeta system in one `telar up` process (release,
//! embedded default), driven through its gateway — citizen registrations (each also registered
//! at the hub through hub-client) and document cycles (upload link, PUT, confirm with SHA-256,
//! search) — next to the same calls made straight to the services (the reference: what the
//! gateway costs). Also the system's idle RSS, against the target of < 60 MB (a tenth of twelve
//! Python service processes). Protective limits are raised so they never trigger.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const CONCURRENCY: usize = 16;

struct System {
    child: Child,
    urls: BTreeMap<String, String>,
    env: Vec<(String, String)>,
    telar: String,
    _dir: tempfile::TempDir,
}

impl Drop for System {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn start(telar: &str) -> System {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().display().to_string();
    let mut env: Vec<(String, String)> = vec![
        ("TELAR_DATABASE__SQLITE__DIR".into(), data.clone()),
        ("TELAR_BUS__EMBEDDED__PATH".into(), format!("{data}/bus.db")),
        (
            "TELAR_SERVICES__NOTIFICATION__SETTINGS__EMAIL__MAILBOX_DIR".into(),
            format!("{data}/mailbox"),
        ),
        (
            "TELAR_SERVICES__HUB_CLIENT__SETTINGS__CALLS_PER_MINUTE".into(),
            "100000000".into(),
        ),
        (
            "TELAR_SERVICES__GATEWAY__SETTINGS__LIMITS__ROLES__OPERADOR".into(),
            "1000000000".into(),
        ),
        (
            "TELAR_SERVICES__GATEWAY__SETTINGS__LIMITS__ROLES__CIUDADANO".into(),
            "1000000000".into(),
        ),
        // Signed-link uploads carry no token: they count against the client address.
        (
            "TELAR_SERVICES__GATEWAY__SETTINGS__LIMITS__ANONYMOUS_LIMIT".into(),
            "1000000000".into(),
        ),
        ("TELAR_TELEMETRY__LOG__LEVEL".into(), "warn".into()),
    ];
    for service in [
        "gateway",
        "identity",
        "audit",
        "notification",
        "hub-sim",
        "hub-client",
        "iam",
        "citizen",
        "ingestion",
        "metadata",
        "read-models",
        "signature",
        "sharing",
        "transfer",
    ] {
        env.push((
            format!(
                "TELAR_SERVICES__{}__PORT",
                service.replace('-', "_").to_uppercase()
            ),
            "0".into(),
        ));
    }
    let mut child = Command::new(telar)
        .arg("up")
        .envs(env.iter().cloned())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("telar up");
    let stderr = child.stderr.take().expect("stderr");
    let mut urls = BTreeMap::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap_or_default();
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.len() >= 3 && words[1].starts_with("http://") {
            urls.insert(words[0].to_owned(), words[1].to_owned());
        }
        if line.contains("Ctrl-C drains") {
            break;
        }
    }
    assert!(
        urls.contains_key("gateway"),
        "telar up did not start: {urls:?}"
    );
    System {
        child,
        urls,
        env,
        telar: telar.to_owned(),
        _dir: dir,
    }
}

fn token(system: &System, sub: &str, role: &str) -> String {
    let output = Command::new(&system.telar)
        .args([
            "token", "issue", "--sub", sub, "--role", role, "--ttl", "3600", "--json",
        ])
        .envs(system.env.iter().cloned())
        .output()
        .expect("token issue");
    let answer: Value = serde_json::from_slice(&output.stdout).expect("token json");
    answer["access_token"].as_str().expect("token").to_owned()
}

fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(str::to_owned)
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

struct Run {
    per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Runs `count` operations, `CONCURRENCY` at a time; `op(n)` returns whether it succeeded.
async fn load<F, Fut>(count: usize, op: F) -> Run
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let failures = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut latencies: Vec<f64> = futures::stream::iter(0..count)
        .map(|n| {
            let failures = failures.clone();
            let fut = op(n);
            async move {
                let t = Instant::now();
                if !fut.await {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                t.elapsed().as_secs_f64() * 1000.0
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    let failed = failures.load(Ordering::Relaxed);
    assert_eq!(failed, 0, "{failed} of {count} operations failed");
    latencies.sort_by(f64::total_cmp);
    Run {
        per_s: count as f64 / elapsed,
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
    }
}

async fn register(http: &reqwest::Client, base: &str, token: &str, id: u64) -> bool {
    let body = json!({"id": id.to_string(), "name": "Ana Pérez", "address": "Calle 1", "email": format!("c{id}@correo.co")});
    match http
        .post(format!("{base}/citizens"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
    {
        Ok(response) if response.status().as_u16() == 201 => true,
        Ok(response) => {
            let status = response.status();
            eprintln!(
                "registration {id}: {status} {}",
                response.text().await.unwrap_or_default()
            );
            false
        }
        Err(error) => {
            eprintln!("registration {id}: {error}");
            false
        }
    }
}

/// Upload link, PUT, confirm, search: one document's cycle.
async fn cycle(
    http: &reqwest::Client,
    documents: &str,
    search: &str,
    token: &str,
    owner: &str,
    n: usize,
) -> bool {
    let bytes = format!("%PDF-1.4 diploma número {n} de {owner}").into_bytes();
    let body = json!({"owner": owner, "title": format!("Diploma {n}"), "filename": "diploma.pdf",
                      "content_type": "application/pdf", "size": bytes.len()});
    let response = match http
        .post(format!("{documents}/documents"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
    {
        Ok(response) => response,
        Err(error) => {
            eprintln!("upload link {n}: {error}");
            return false;
        }
    };
    let status = response.status();
    let ticket: Value = response.json().await.unwrap_or_default();
    let Some(url) = ticket["upload"]["url"].as_str() else {
        eprintln!("upload link {n}: {status} {ticket}");
        return false;
    };
    match http
        .put(url)
        .header("content-type", "application/pdf")
        .body(bytes.clone())
        .send()
        .await
    {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => {
            eprintln!(
                "upload {n}: {} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            );
            return false;
        }
        Err(error) => {
            eprintln!("upload {n}: {error}");
            return false;
        }
    }
    let id = ticket["document"]["id"].as_str().unwrap_or_default();
    let sha = hex::encode(Sha256::digest(&bytes));
    let confirmed = http
        .post(format!("{documents}/documents/{id}/confirm"))
        .bearer_auth(token)
        .json(&json!({"sha256": sha, "size": bytes.len()}))
        .send()
        .await;
    match confirmed {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => {
            eprintln!(
                "confirm {n}: {} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            );
            return false;
        }
        Err(error) => {
            eprintln!("confirm {n}: {error}");
            return false;
        }
    }
    match http
        .get(format!("{search}/metadata/search?q=diploma&owner={owner}"))
        .bearer_auth(token)
        .send()
        .await
    {
        Ok(r) if r.status().is_success() => true,
        Ok(r) => {
            eprintln!(
                "search {n}: {} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            );
            false
        }
        Err(error) => {
            eprintln!("search {n}: {error}");
            false
        }
    }
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let telar = std::env::var("TELAR").unwrap_or_else(|_| "target/release/telar".into());
    let (registrations, cycles) = if quick { (200, 100) } else { (2_000, 1_000) };
    let system = start(&telar);
    // Idle: every service up, nothing asked yet, background tasks settled.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss = rss_mb(system.child.id());
    let staff = token(&system, "bench-staff", "operador");
    let owner = "1999999999";
    let citizen = token(&system, owner, "ciudadano");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let gateway = system.urls["gateway"].clone();
    let direct_citizen = system.urls["citizen"].clone();
    let (direct_ingestion, direct_metadata) = (
        system.urls["ingestion"].clone(),
        system.urls["metadata"].clone(),
    );

    // Warm-up (connections, JWKS, caches), not measured.
    load(50, |n| {
        register(&http, &gateway, &staff, 1_100_000_000 + n as u64)
    })
    .await;
    let reg_gateway = load(registrations, |n| {
        register(&http, &gateway, &staff, 1_200_000_000 + n as u64)
    })
    .await;
    let reg_direct = load(registrations, |n| {
        register(&http, &direct_citizen, &staff, 1_300_000_000 + n as u64)
    })
    .await;
    let cyc_gateway = load(cycles, |n| {
        cycle(&http, &gateway, &gateway, &citizen, owner, n)
    })
    .await;
    let cyc_direct = load(cycles, |n| {
        cycle(
            &http,
            &direct_ingestion,
            &direct_metadata,
            &citizen,
            owner,
            cycles + n,
        )
    })
    .await;
    let loaded_rss = rss_mb(system.child.id());

    println!(
        "carpeta: one `telar up` process (release, embedded SQLite, fsync on commit), {CONCURRENCY} concurrent clients"
    );
    println!("  registrations (each also at the hub through hub-client): {registrations}");
    println!(
        "    gateway {:>8.1}/s  p50 {:>6.2} ms  p99 {:>6.2} ms",
        reg_gateway.per_s, reg_gateway.p50_ms, reg_gateway.p99_ms
    );
    println!(
        "    direct  {:>8.1}/s  p50 {:>6.2} ms  p99 {:>6.2} ms",
        reg_direct.per_s, reg_direct.p50_ms, reg_direct.p99_ms
    );
    println!("  document cycles (upload link, PUT, confirm, search): {cycles}");
    println!(
        "    gateway {:>8.1}/s  p50 {:>6.2} ms  p99 {:>6.2} ms",
        cyc_gateway.per_s, cyc_gateway.p50_ms, cyc_gateway.p99_ms
    );
    println!(
        "    direct  {:>8.1}/s  p50 {:>6.2} ms  p99 {:>6.2} ms",
        cyc_direct.per_s, cyc_direct.p50_ms, cyc_direct.p99_ms
    );
    println!(
        "  RSS of the whole system: idle {idle_rss:.1} MB (target < 60 MB), after the load {loaded_rss:.1} MB"
    );
    println!(
        "RESULT name=carpeta value={:.1} reference={:.1} ratio={:.3} unit=registrations/s",
        reg_gateway.per_s,
        reg_direct.per_s,
        reg_gateway.per_s / reg_direct.per_s
    );
}
