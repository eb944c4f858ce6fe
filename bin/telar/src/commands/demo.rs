//! `telar demo carpeta`: the whole story against a running system, every answer checked.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail, ensure};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::cli::DemoCarpetaArgs;
use crate::commands::CommandError;
use crate::settings::Settings;

/// One operator as the demo sees it: its gateway and tokens signed with its identity key.
struct Side {
    gateway: String,
    citizen: String,
    staff: String,
}

struct Demo {
    http: reqwest::Client,
    json: bool,
    steps: Vec<Value>,
    started: Instant,
}

async fn token(settings: &Settings, sub: &str, role: &str) -> anyhow::Result<String> {
    let db = telar_sql::Db::connect(&settings.database, telar_identity::NAME)
        .await
        .context("opening the identity database (run the demo where the system keeps its data)")?;
    let config = telar_identity::IdentityConfig {
        keys_secret: std::env::var("TELAR_IDENTITY_KEYS_SECRET").ok(),
        ..settings.services.identity.settings.clone()
    };
    let claims = telar_auth::Claims {
        sub: sub.into(),
        roles: vec![role.into()],
        permissions: Vec::new(),
        org_id: None,
        iss: String::new(),
        aud: String::new(),
        exp: 0,
        iat: 0,
        jti: String::new(),
    };
    let token = telar_identity::issue_token(db.clone(), &config, claims, 3600).await?;
    db.close().await;
    Ok(token)
}

async fn side(settings: &Settings, gateway: String, citizen: &str) -> anyhow::Result<Side> {
    Ok(Side {
        citizen: token(settings, citizen, "ciudadano").await?,
        staff: token(settings, "demo-staff", "operador").await?,
        gateway: gateway.trim_end_matches('/').to_owned(),
    })
}

impl Demo {
    /// Records a step that began at `clock`: prints it, keeps it for `--json`.
    fn done(
        &mut self,
        name: &str,
        clock: Instant,
        outcome: anyhow::Result<String>,
    ) -> anyhow::Result<()> {
        let ms = clock.elapsed().as_millis();
        let (ok, detail) = match &outcome {
            Ok(detail) => (true, detail.clone()),
            Err(error) => (false, format!("{error:#}")),
        };
        if !self.json {
            let mark = if ok { "✓" } else { "✗" };
            println!("  {mark} {name:<28} {detail} ({ms} ms)");
        }
        self.steps
            .push(json!({"step": name, "ok": ok, "detail": detail, "ms": ms}));
        outcome.map(|_| ())
    }

    async fn call(
        &self,
        method: reqwest::Method,
        url: String,
        token: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut request = self.http.request(method, &url).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{url} did not answer"))?;
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        // The demo never expects to be refused: a wrong token or role is a wrong setup, said now.
        ensure!(
            !matches!(status, 401 | 403),
            "{url} refused the demo's token ({status}): {body}"
        );
        Ok((status, body))
    }

    /// Polls `check` every 300 ms for up to `within`.
    async fn until<F, Fut>(
        &self,
        within: Duration,
        what: &str,
        mut check: F,
    ) -> anyhow::Result<Value>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<Option<Value>>>,
    {
        let deadline = Instant::now() + within;
        loop {
            if let Some(value) = check().await? {
                return Ok(value);
            }
            if Instant::now() > deadline {
                bail!("{what}: not within {} s", within.as_secs());
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

fn expect(status: u16, wanted: &[u16], body: &Value, what: &str) -> anyhow::Result<()> {
    ensure!(
        wanted.contains(&status),
        "{what}: expected {wanted:?}, got {status}: {body}"
    );
    Ok(())
}

pub async fn carpeta(file: Option<&Path>, args: DemoCarpetaArgs) -> Result<(), CommandError> {
    let settings = Settings::load(file).map_err(|e| CommandError::Usage(e.to_string()))?;
    let citizen = args.citizen.clone().unwrap_or_else(|| {
        (1_000_000_000u64 + rand::random_range(0..8_999_999_999u64)).to_string()
    });
    if telar_carpeta::domain::CitizenId::parse(&citizen).is_err() {
        return Err(CommandError::Usage(
            "--citizen: must be 10 digits, not starting with 0".into(),
        ));
    }
    let gateway = args.gateway.clone().unwrap_or_else(|| {
        let (host, port) = settings
            .address_of("gateway")
            .unwrap_or(("127.0.0.1".into(), 8000));
        format!("http://{host}:{port}")
    });
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(anyhow::Error::from)?;
    let mut demo = Demo {
        http,
        json: args.json,
        steps: Vec::new(),
        started: Instant::now(),
    };
    if !args.json {
        println!("telar demo carpeta · citizen {citizen} · {gateway}");
    }
    let outcome = story(&mut demo, &settings, &args, &gateway, &citizen).await;
    let elapsed = demo.started.elapsed().as_millis();
    if args.json {
        crate::commands::dlq::print_json(
            &json!({"ok": outcome.is_ok(), "citizen": citizen, "ms": elapsed, "steps": demo.steps}),
        )?;
    } else if outcome.is_ok() {
        println!("every answer was right ({elapsed} ms)");
    }
    outcome.map_err(CommandError::Runtime)
}

async fn story(
    demo: &mut Demo,
    settings: &Settings,
    args: &DemoCarpetaArgs,
    gateway: &str,
    id: &str,
) -> anyhow::Result<()> {
    let home = side(settings, gateway.to_owned(), id).await?;

    let clock = Instant::now();
    let health = format!("{gateway}/health");
    let answered = match demo.http.get(&health).send().await {
        Ok(response) if response.status().is_success() => Ok(health.clone()),
        Ok(response) => Err(anyhow!("{health} answered {}", response.status())),
        Err(error) => Err(anyhow!(
            "{health}: {error} — is the system running (`telar up`)?"
        )),
    };
    demo.done("gateway answers", clock, answered)?;

    let clock = Instant::now();
    let body = json!({"id": id, "name": "Ana María Pérez", "address": "Calle 26 # 13-19", "email": format!("demo.{id}@correo.co")});
    let registered = register(demo, &home, id, body).await;
    demo.done("register the citizen", clock, registered)?;

    let mut uploaded = Vec::new();
    for (title, file) in [
        ("Diploma de bachiller", "diploma.pdf"),
        ("Cédula de ciudadanía", "cedula.pdf"),
        ("Acta de grado", "acta.pdf"),
    ] {
        let clock = Instant::now();
        let bytes = format!("%PDF-1.4 {title} de {id}").into_bytes();
        let result = upload(demo, &home, id, title, file, &bytes).await;
        let detail = result
            .as_ref()
            .map(|doc| format!("{doc} ({} bytes, SHA-256 checked)", bytes.len()))
            .map_err(|e| anyhow!("{e:#}"));
        demo.done(&format!("upload «{title}»"), clock, detail)?;
        uploaded.push((result?, bytes));
    }

    let (document, bytes) = &uploaded[0];
    let clock = Instant::now();
    let signed = sign(demo, &home, document).await;
    demo.done("sign and authenticate", clock, signed)?;

    let clock = Instant::now();
    let searched = demo
        .until(
            Duration::from_secs(30),
            "the search to find the diploma",
            || async {
                let url = format!("{gateway}/metadata/search?q=diplomas&owner={id}");
                let (_, found) = demo
                    .call(reqwest::Method::GET, url, &home.citizen, None)
                    .await?;
                Ok((found["total"].as_u64().unwrap_or(0) >= 1).then_some(found))
            },
        )
        .await
        .map(|found| {
            format!(
                "“diplomas” → {}",
                found["hits"][0]["highlight"].as_str().unwrap_or("?")
            )
        });
    demo.done("search in Spanish", clock, searched)?;

    let clock = Instant::now();
    let shared = share(demo, &home, document, bytes).await;
    demo.done("share by short link", clock, shared)?;

    let Some(peer_gateway) = &args.peer else {
        return Ok(());
    };
    let peer_settings =
        Settings::load(Some(&args.peer_config)).map_err(|e| anyhow!("--peer-config: {e}"))?;
    let peer = side(&peer_settings, peer_gateway.clone(), id).await?;
    let expected: Vec<String> = uploaded
        .iter()
        .map(|(_, b)| hex::encode(Sha256::digest(b)))
        .collect();
    let clock = Instant::now();
    let moved = transfer(demo, &home, &peer, &args.peer_operator, id, &expected).await;
    demo.done(&format!("move to {}", args.peer_operator), clock, moved)?;
    if args.round_trip {
        let own_name = settings.services.hub_client.settings.operator.name.clone();
        let clock = Instant::now();
        let back = transfer(demo, &peer, &home, &own_name, id, &expected).await;
        demo.done(&format!("move back to {own_name}"), clock, back)?;
    }
    Ok(())
}

async fn register(demo: &Demo, side: &Side, id: &str, body: Value) -> anyhow::Result<String> {
    let gateway = &side.gateway;
    let (status, answer) = demo
        .call(
            reqwest::Method::POST,
            format!("{gateway}/citizens"),
            &side.citizen,
            Some(body),
        )
        .await?;
    expect(status, &[201, 202], &answer, "POST /citizens")?;
    if status == 201 {
        return Ok("201 registered, at the hub too".into());
    }
    demo.until(
        Duration::from_secs(90),
        "registration at the hub",
        || async {
            let (_, c) = demo
                .call(
                    reqwest::Method::GET,
                    format!("{gateway}/citizens/{id}"),
                    &side.staff,
                    None,
                )
                .await?;
            Ok((c["status"] == "registered").then_some(c))
        },
    )
    .await?;
    Ok("202, then registered once the hub took it".into())
}

async fn upload(
    demo: &Demo,
    side: &Side,
    owner: &str,
    title: &str,
    file: &str,
    bytes: &[u8],
) -> anyhow::Result<String> {
    let gateway = &side.gateway;
    let body = json!({"owner": owner, "title": title, "filename": file, "content_type": "application/pdf", "size": bytes.len(), "tags": ["demo"]});
    let (status, ticket) = demo
        .call(
            reqwest::Method::POST,
            format!("{gateway}/documents"),
            &side.citizen,
            Some(body),
        )
        .await?;
    expect(status, &[201], &ticket, "POST /documents")?;
    let url = ticket["upload"]["url"]
        .as_str()
        .ok_or_else(|| anyhow!("no upload link in {ticket}"))?;
    let put = demo
        .http
        .put(url)
        .header("content-type", "application/pdf")
        .body(bytes.to_vec())
        .send()
        .await?;
    ensure!(
        put.status().is_success(),
        "PUT to the upload link answered {}",
        put.status()
    );
    let document = ticket["document"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let sha = hex::encode(Sha256::digest(bytes));
    let (status, confirmed) = demo
        .call(
            reqwest::Method::POST,
            format!("{gateway}/documents/{document}/confirm"),
            &side.citizen,
            Some(json!({"sha256": sha, "size": bytes.len()})),
        )
        .await?;
    expect(status, &[200], &confirmed, "confirm")?;
    ensure!(
        confirmed["status"] == "ready",
        "confirmed but not ready: {confirmed}"
    );
    Ok(document)
}

async fn sign(demo: &Demo, side: &Side, document: &str) -> anyhow::Result<String> {
    let gateway = &side.gateway;
    let (status, receipt) = demo
        .call(
            reqwest::Method::POST,
            format!("{gateway}/signatures"),
            &side.citizen,
            Some(json!({"document_id": document})),
        )
        .await?;
    expect(status, &[201, 202], &receipt, "POST /signatures")?;
    let receipt = if status == 202 {
        demo.until(
            Duration::from_secs(90),
            "the hub to authenticate the document",
            || async {
                let (_, r) = demo
                    .call(
                        reqwest::Method::GET,
                        format!("{gateway}/signatures/{document}"),
                        &side.staff,
                        None,
                    )
                    .await?;
                Ok((r["status"] == "authenticated").then_some(r))
            },
        )
        .await?
    } else {
        receipt
    };
    let (status, verified) = demo
        .call(
            reqwest::Method::POST,
            format!("{gateway}/signatures/verify"),
            "",
            Some(json!({"sha256": receipt["sha256"], "signature": receipt["signature"]})),
        )
        .await?;
    expect(status, &[200], &verified, "POST /signatures/verify")?;
    ensure!(
        verified["valid"] == true,
        "the signature does not verify: {verified}"
    );
    Ok(format!(
        "authenticated at the hub; signature {}… verifies",
        receipt["signature"]
            .as_str()
            .unwrap_or("")
            .chars()
            .take(12)
            .collect::<String>()
    ))
}

async fn share(demo: &Demo, side: &Side, document: &str, bytes: &[u8]) -> anyhow::Result<String> {
    let gateway = &side.gateway;
    let (status, link) = demo
        .call(
            reqwest::Method::POST,
            format!("{gateway}/shares"),
            &side.citizen,
            Some(json!({"document_id": document, "max_accesses": 1})),
        )
        .await?;
    expect(status, &[201], &link, "POST /shares")?;
    let url = link["url"]
        .as_str()
        .ok_or_else(|| anyhow!("no url in {link}"))?;
    let first = demo.http.get(url).send().await?;
    ensure!(
        first.status().is_success(),
        "opening the link answered {}",
        first.status()
    );
    ensure!(
        first.bytes().await?.as_ref() == bytes,
        "the link did not lead to the document"
    );
    let second = demo.http.get(url).send().await?.status().as_u16();
    ensure!(second == 410, "a used-up link answered {second}, not 410");
    Ok(format!("{url} opened once, then 410"))
}

/// Moves the citizen from `from` to `to` and checks both sides.
async fn transfer(
    demo: &Demo,
    from: &Side,
    to: &Side,
    to_name: &str,
    id: &str,
    expected: &[String],
) -> anyhow::Result<String> {
    let (status, operators) = demo
        .call(
            reqwest::Method::GET,
            format!("{}/transfers/operators", from.gateway),
            &from.citizen,
            None,
        )
        .await?;
    expect(status, &[200], &operators, "GET /transfers/operators")?;
    let destination = operators
        .as_array()
        .and_then(|list| list.iter().find(|o| o["name"] == to_name))
        .and_then(|o| o["id"].as_str())
        .ok_or_else(|| anyhow!("the hub lists no operator named {to_name}: {operators}"))?
        .to_owned();
    let (status, started) = demo
        .call(
            reqwest::Method::POST,
            format!("{}/transfers", from.gateway),
            &from.citizen,
            Some(json!({"citizen_id": id, "operator_id": destination})),
        )
        .await?;
    expect(status, &[202], &started, "POST /transfers")?;
    let transfer = started["id"].as_str().unwrap_or_default().to_owned();
    let ended = demo
        .until(Duration::from_secs(180), "the transfer to end", || async {
            let (_, detail) = demo
                .call(
                    reqwest::Method::GET,
                    format!("{}/transfers/{transfer}", from.gateway),
                    &from.staff,
                    None,
                )
                .await?;
            let status = detail["transfer"]["status"]
                .as_str()
                .unwrap_or("running")
                .to_owned();
            Ok((status != "running").then_some(detail))
        })
        .await?;
    ensure!(
        ended["transfer"]["status"] == "completed",
        "the transfer failed: {}",
        ended["transfer"]
    );
    demo.until(
        Duration::from_secs(120),
        "the destination to register the citizen",
        || async {
            let (_, c) = demo
                .call(
                    reqwest::Method::GET,
                    format!("{}/citizens/{id}", to.gateway),
                    &to.staff,
                    None,
                )
                .await?;
            Ok((c["status"] == "registered").then_some(c))
        },
    )
    .await?;
    let (status, listed) = demo
        .call(
            reqwest::Method::GET,
            format!("{}/documents?owner={id}", to.gateway),
            &to.citizen,
            None,
        )
        .await?;
    expect(status, &[200], &listed, "GET /documents at the destination")?;
    let mut arrived: Vec<String> = listed
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["sha256"].as_str().map(str::to_owned))
        .collect();
    arrived.sort();
    let mut wanted = expected.to_vec();
    wanted.sort();
    ensure!(
        arrived == wanted,
        "the destination holds {arrived:?}, not {wanted:?}"
    );
    let (status, gone) = demo
        .call(
            reqwest::Method::GET,
            format!("{}/citizens/{id}", from.gateway),
            &from.staff,
            None,
        )
        .await?;
    ensure!(
        status == 404,
        "the origin still has the citizen ({status}: {gone})"
    );
    Ok(format!(
        "{} documents arrived intact; the origin keeps nothing",
        arrived.len()
    ))
}
