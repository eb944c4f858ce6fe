//! The `telar` binary as a user runs it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

mod crash;
mod deploy;
mod ops;
mod trace;

fn telar() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_telar"));
    command.env_remove("TELAR_CONFIG");
    command
}

fn run(command: &mut Command) -> Output {
    command.output().expect("telar runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["up", "--help"],
        vec!["serve", "--help"],
        vec!["config", "--help"],
        vec!["config", "check", "--help"],
        vec!["dlq", "--help"],
        vec!["dlq", "list", "--help"],
        vec!["dlq", "show", "--help"],
        vec!["dlq", "replay", "--help"],
        vec!["dlq", "purge", "--help"],
        vec!["saga", "--help"],
        vec!["saga", "list", "--help"],
        vec!["saga", "show", "--help"],
        vec!["saga", "retry", "--help"],
        vec!["saga", "abort", "--help"],
        vec!["projections", "--help"],
        vec!["projections", "list", "--help"],
        vec!["projections", "rebuild", "--help"],
        vec!["token", "--help"],
        vec!["token", "issue", "--help"],
        vec!["token", "inspect", "--help"],
        vec!["audit", "--help"],
        vec!["audit", "verify", "--help"],
        vec!["audit", "export", "--help"],
    ] {
        let output = run(telar().args(&args));
        assert!(output.status.success(), "{args:?}");
        assert!(text(&output.stdout).contains("Usage:"), "{args:?}");
    }
    let top = text(&run(telar().arg("--help")).stdout);
    for command in [
        "up",
        "serve",
        "config",
        "dlq",
        "saga",
        "projections",
        "token",
    ] {
        assert!(top.contains(command), "{top}");
    }
}

#[test]
fn config_check_prints_the_effective_config_with_env_overrides() {
    let output = run(telar()
        .args(["config", "check"])
        .env("TELAR_SERVICES__HUB_SIM__PORT", "9100")
        .env(
            "TELAR_DATABASE__POSTGRES__URL",
            "postgres://telar:s3cr3t@db.internal:5432/telar",
        ));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let parsed: toml::Value = toml::from_str(&stdout).expect("prints TOML");
    assert_eq!(
        parsed["services"]["hub-sim"]["port"].as_integer(),
        Some(9100)
    );
    assert!(!stdout.contains("s3cr3t"), "password redacted: {stdout}");
    assert!(stdout.contains("telar:***@db.internal"));

    let json = run(telar().args(["config", "check", "--json"]));
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).expect("prints JSON");
    assert_eq!(value["database"]["backend"], "sqlite");
}

#[test]
fn a_wrong_key_or_type_is_a_clear_error_naming_it() {
    let dir = tempfile::tempdir().expect("dir");
    let cases = [
        ("[services.hub-sim]\nprot = 1\n", "prot"),
        ("[services.hub-sim]\nport = \"eighty\"\n", "port"),
        ("[database]\nbackend = \"oracle\"\n", "backend"),
        (
            "[http.cors]\nallowed_origins = [\"not an origin\"]\n",
            "http.cors.allowed_origins[0]",
        ),
    ];
    for (index, (content, named)) in cases.into_iter().enumerate() {
        let file = dir.path().join(format!("bad{index}.toml"));
        std::fs::write(&file, content).expect("write");
        let output = run(telar().arg("--config").arg(&file).args(["config", "check"]));
        assert_eq!(output.status.code(), Some(2), "{content}");
        let stderr = text(&output.stderr);
        assert!(stderr.contains(named), "{content}: {stderr}");
    }
    let output = run(telar()
        .args(["config", "check"])
        .env("TELAR_HTTP__REQUEST_TIMEOUT_MS", "soon"));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("request_timeout_ms"),
        "{}",
        text(&output.stderr)
    );
    let missing = run(telar().args(["--config", "/nonexistent/telar.toml", "config", "check"]));
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn serve_refuses_unknown_services() {
    let exposed = run(telar()
        .args(["config", "check"])
        .env("TELAR_SERVICES__HUB_SIM__HOST", "0.0.0.0"));
    assert_eq!(
        exposed.status.code(),
        Some(2),
        "control API exposed without a token"
    );
    assert!(text(&exposed.stderr).contains("control_token"));
    let output = run(telar().args(["serve", "nope"]));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("hub-sim"),
        "lists known services"
    );
}

/// Every service `telar up` runs.
const SERVICES: &[&str] = &[
    "identity",
    "audit",
    "notification",
    "hub-sim",
    "iam",
    "hub-client",
    "citizen",
    "ingestion",
    "metadata",
    "read-models",
    "signature",
    "sharing",
    "transfer",
    "gateway",
];

/// Starts `telar` with `args` (every service on a free port), reads stderr until the table is
/// complete and returns each service's URL; every listed service must be ready.
fn start(
    args: &[&str],
    envs: &[(&str, String)],
) -> (
    Child,
    BTreeMap<String, String>,
    std::thread::JoinHandle<String>,
) {
    let mut command = telar();
    // Every service on a port the system picks: tests run side by side.
    for service in SERVICES {
        command.env(
            format!(
                "TELAR_SERVICES__{}__PORT",
                service.replace('-', "_").to_uppercase()
            ),
            "0",
        );
    }
    let mut child = command
        .args(args)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let logs = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map(|l| l.unwrap_or_default() + "\n")
            .collect::<String>()
    });
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut urls = BTreeMap::new();
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap_or_default();
        seen.push_str(&line);
        seen.push('\n');
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.len() >= 3 && words[1].starts_with("http://") {
            assert_eq!(words[2], "ready", "{line}");
            urls.insert(words[0].to_owned(), words[1].to_owned());
        }
        if line.contains("Ctrl-C drains") {
            break;
        }
    }
    assert!(!urls.is_empty(), "no URL printed:\n{seen}");
    let rest = std::thread::spawn(move || {
        let stderr: String = lines.map(|l| l.unwrap_or_default() + "\n").collect();
        stderr + &logs.join().unwrap_or_default()
    });
    (child, urls, rest)
}

fn terminate(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

async fn register_and_check(url: &str) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let ready = client
        .get(format!("{url}/ready"))
        .send()
        .await
        .expect("ready");
    assert_eq!(ready.status(), 200);
    let body = serde_json::json!({"id": 1032456789u64, "name": "Ana", "address": "Calle 1", "email": "ana@correo.co", "operatorId": "x", "operatorName": "Op"});
    let created = client
        .post(format!("{url}/apis/registerCitizen"))
        .json(&body)
        .send()
        .await
        .expect("register");
    assert_eq!(created.status(), 201);
    let validated = client
        .get(format!("{url}/apis/validateCitizen/1032456789"))
        .send()
        .await
        .expect("validate");
    assert_eq!(validated.status(), 200);
}

/// The gateway `telar up` starts routes to the identity service it started (found through
/// `service://identity`, on whatever port it got) and answers unknown paths itself.
async fn gateway_fronts_identity(gateway: &str) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let jwks: serde_json::Value = client
        .get(format!("{gateway}/identity/.well-known/jwks.json"))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    assert_eq!(jwks["keys"][0]["alg"], "EdDSA");
    let unknown = client
        .get(format!("{gateway}/nowhere"))
        .send()
        .await
        .expect("unknown");
    assert_eq!(unknown.status(), 404);
    assert!(unknown.headers().contains_key("x-request-id"));
}

/// A citizen with a token from the identity service registers through the gateway; citizen
/// calls hub-client with the services' own client-credentials token, hub-client calls the hub
/// with the operator it registered at start.
/// A `ciudadano` token for `sub` from the identity keys of the system whose data is in `data`.
fn citizen_token(data: &Path, sub: &str) -> String {
    let issued = run(telar()
        .args([
            "token",
            "issue",
            "--sub",
            sub,
            "--role",
            "ciudadano",
            "--audience",
            "telar",
            "--json",
        ])
        .env("TELAR_DATABASE__SQLITE__DIR", data.display().to_string()));
    assert!(issued.status.success(), "{}", text(&issued.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&issued.stdout).expect("json");
    answer["access_token"].as_str().expect("token").to_owned()
}

async fn citizen_registers_through_the_gateway(urls: &BTreeMap<String, String>, data: &Path) {
    let token = &citizen_token(data, "1032456700");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let registered = client
        .post(format!("{}/citizens", urls["gateway"]))
        .bearer_auth(token)
        .json(&serde_json::json!({"id": "1032456700", "name": "Luis Gómez", "address": "Calle 2", "email": "luis@correo.co"}))
        .send()
        .await
        .expect("register");
    let status = registered.status();
    let body = registered.text().await.unwrap_or_default();
    assert_eq!(status, 201, "{body}");
    let validated = client
        .get(format!(
            "{}/apis/validateCitizen/1032456700",
            urls["hub-sim"]
        ))
        .send()
        .await
        .expect("validate")
        .text()
        .await
        .unwrap_or_default();
    assert!(validated.contains("Operador Telar"), "{validated}");

    // A document through the gateway: upload link, PUT through /objects, confirm, then search.
    let gateway = &urls["gateway"];
    let bytes = b"%PDF-1.4 acta de grado".to_vec();
    let ticket: serde_json::Value = client
        .post(format!("{gateway}/documents"))
        .bearer_auth(token)
        .json(&serde_json::json!({"owner": "1032456700", "title": "Acta de grado", "filename": "acta.pdf",
                                  "content_type": "application/pdf", "size": bytes.len()}))
        .send()
        .await
        .expect("upload-url")
        .json()
        .await
        .expect("ticket");
    let upload = ticket["upload"]["url"].as_str().expect("url");
    assert!(
        upload.starts_with(gateway.as_str()),
        "links go through the gateway: {upload}"
    );
    let put = client
        .put(upload)
        .header("content-type", "application/pdf")
        .body(bytes.clone())
        .send()
        .await
        .expect("put");
    assert_eq!(put.status(), 201);
    let id = ticket["document"]["id"].as_str().expect("id");
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    let confirmed = client
        .post(format!("{gateway}/documents/{id}/confirm"))
        .bearer_auth(token)
        .json(&serde_json::json!({"sha256": sha, "size": bytes.len()}))
        .send()
        .await
        .expect("confirm");
    assert_eq!(confirmed.status(), 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let found: serde_json::Value = client
            .get(format!("{gateway}/metadata/search?q=acta&owner=1032456700"))
            .bearer_auth(token)
            .send()
            .await
            .expect("search")
            .json()
            .await
            .expect("json");
        if found["total"] == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not found: {found}");
        // Within the citizen's 60 requests a minute at the gateway.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Signed and authenticated at the hub; the notification service mails the citizen.
    let signed = client
        .post(format!("{gateway}/signatures"))
        .bearer_auth(token)
        .json(&serde_json::json!({"document_id": id}))
        .send()
        .await
        .expect("sign");
    assert_eq!(signed.status(), 201);
    let mailbox = data.join("mailbox");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let mails: Vec<String> = std::fs::read_dir(&mailbox)
            .map(|dir| {
                dir.filter_map(|e| e.ok())
                    .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                    .collect()
            })
            .unwrap_or_default();
        if mails.iter().any(|m| m.contains("luis@correo.co")) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no mail in {}",
            mailbox.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A short link anyone may open, through the gateway, to the file itself.
    let share: serde_json::Value = client
        .post(format!("{gateway}/shares"))
        .bearer_auth(token)
        .json(&serde_json::json!({"document_id": id, "max_accesses": 1}))
        .send()
        .await
        .expect("share")
        .json()
        .await
        .expect("json");
    let link = share["url"].as_str().expect("url");
    assert!(link.starts_with(gateway.as_str()), "{link}");
    let opened = client.get(link).send().await.expect("open");
    assert_eq!(
        opened.bytes().await.expect("bytes").as_ref(),
        bytes.as_slice()
    );
    assert_eq!(client.get(link).send().await.expect("again").status(), 410);
}

/// Every service's `/metrics` passes `promtool check metrics` (installed by scripts/services.sh):
/// help text on every metric, `_total` on counters, no `_count` on anything but histograms.
async fn metrics_pass_promtool(urls: &BTreeMap<String, String>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    for (service, url) in urls {
        let exposition = client
            .get(format!("{url}/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        assert!(
            exposition.contains("http_server_request_count_total"),
            "{service}: {exposition}"
        );
        let mut promtool = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promtool (scripts/services.sh installs it)");
        {
            use std::io::Write;
            let mut stdin = promtool.stdin.take().expect("stdin");
            stdin.write_all(exposition.as_bytes()).expect("write");
        }
        let output = promtool.wait_with_output().expect("promtool");
        assert!(
            output.status.success(),
            "{service}: promtool check metrics:\n{}{}",
            text(&output.stdout),
            text(&output.stderr)
        );
    }
}

/// The environment that keeps an embedded `telar up` (databases, bus, mailbox) inside `dir`.
fn embedded_in(dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("TELAR_DATABASE__SQLITE__DIR", dir.display().to_string()),
        (
            "TELAR_BUS__EMBEDDED__PATH",
            dir.join("bus.db").display().to_string(),
        ),
        (
            "TELAR_SERVICES__NOTIFICATION__SETTINGS__EMAIL__MAILBOX_DIR",
            dir.join("mailbox").display().to_string(),
        ),
    ]
}

#[tokio::test]
async fn up_runs_the_embedded_system_and_drains_on_sigterm() {
    let dir = tempfile::tempdir().expect("dir");
    let (mut child, urls, rest) = start(&["up"], &embedded_in(dir.path()));
    for service in SERVICES {
        assert!(
            urls.contains_key(*service),
            "{service} is not in the table: {urls:?}"
        );
    }
    register_and_check(&urls["hub-sim"]).await;
    gateway_fronts_identity(&urls["gateway"]).await;
    citizen_registers_through_the_gateway(&urls, dir.path()).await;
    metrics_pass_promtool(&urls).await;
    assert!(
        dir.path().join("hub-sim.db").exists(),
        "state in its own SQLite file"
    );
    terminate(&child);
    let status = child.wait().expect("wait");
    assert!(status.success(), "clean exit after SIGTERM");
    let output = rest.join().unwrap_or_default();
    assert!(output.contains("stopped"));
    let last_log = output
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["message"] == "system stopped");
    assert!(
        last_log.is_some(),
        "JSON logs are flushed before exit:\n{output}"
    );
}

#[tokio::test]
async fn serve_runs_one_service_on_postgres() {
    let url = std::env::var("TELAR_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let prefix = format!("cli_{}_", std::process::id());
    let (mut child, urls, rest) = start(
        &[
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/distributed.toml"),
            "serve",
            "hub-sim",
        ],
        &[
            ("TELAR_DATABASE__POSTGRES__URL", url),
            ("TELAR_DATABASE__POSTGRES__SCHEMA_PREFIX", prefix),
        ],
    );
    register_and_check(&urls["hub-sim"]).await;
    terminate(&child);
    assert!(child.wait().expect("wait").success());
    assert!(rest.join().unwrap_or_default().contains("stopped"));
}

/// Two operators as two `telar up` processes on one hub-sim; `telar demo carpeta` walks the
/// whole story and moves the citizen to B and back, checking every answer (exit 0).
#[tokio::test(flavor = "multi_thread")]
async fn demo_walks_the_story_across_two_operators() {
    let dir = tempfile::tempdir().expect("dir");
    let a_dir = dir.path().join("a");
    let b_dir = dir.path().join("b");
    // Each operator's data in its own directory, said in its own config file: the demo reads
    // them to sign tokens with each operator's identity key.
    let a_config = dir.path().join("a.toml");
    std::fs::write(
        &a_config,
        format!(
            "[database.sqlite]\ndir = {:?}\n[bus.embedded]\npath = {:?}\n\
             [services.notification.settings.email]\nmailbox_dir = {:?}\n",
            a_dir.display().to_string(),
            a_dir.join("bus.db").display().to_string(),
            a_dir.join("mailbox").display().to_string(),
        ),
    )
    .expect("a.toml");
    let a_config_arg = a_config.display().to_string();
    let (mut a, a_urls, _a_rest) = start(&["--config", &a_config_arg, "up"], &[]);
    let b_config = dir.path().join("b.toml");
    std::fs::write(
        &b_config,
        format!(
            "[database.sqlite]\ndir = {:?}\n[bus.embedded]\npath = {:?}\n\
             [services.hub-sim]\nenabled = false\n\
             [services.hub-client.settings]\nhub_url = {:?}\n\
             [services.hub-client.settings.operator]\nname = \"Operador B\"\n\
             [services.notification.settings.email]\nmailbox_dir = {:?}\n",
            b_dir.display().to_string(),
            b_dir.join("bus.db").display().to_string(),
            a_urls["hub-sim"],
            b_dir.join("mailbox").display().to_string(),
        ),
    )
    .expect("b.toml");
    let b_config_arg = b_config.display().to_string();
    let (mut b, b_urls, _b_rest) = start(&["--config", &b_config_arg, "up"], &[]);
    let demo = run(telar().args([
        "demo",
        "carpeta",
        "--gateway",
        &a_urls["gateway"],
        "--peer",
        &b_urls["gateway"],
        "--peer-config",
        &b_config_arg,
        "--round-trip",
        "--json",
        "--config",
        &a_config_arg,
    ]));
    terminate(&a);
    terminate(&b);
    let _ = a.wait();
    let _ = b.wait();
    let report: serde_json::Value = serde_json::from_slice(&demo.stdout).unwrap_or_default();
    assert!(
        demo.status.success(),
        "{}\n{}",
        serde_json::to_string_pretty(&report).unwrap_or_default(),
        text(&demo.stderr)
    );
    assert_eq!(report["ok"], true);
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["step"].as_str())
        .collect();
    for wanted in [
        "register the citizen",
        "sign and authenticate",
        "search in Spanish",
        "share by short link",
        "move to Operador B",
        "move back to Operador Telar",
    ] {
        assert!(steps.contains(&wanted), "{wanted} in {steps:?}");
    }
}
