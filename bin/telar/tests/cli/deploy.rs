//! The configuration files shipped for deployment (Kubernetes, Docker Compose) and the
//! generated configuration reference are what `telar` accepts and prints.

use super::{run, telar, text};

/// The configuration the Kubernetes manifests mount is one `telar` accepts, and says what they
/// mean: PostgreSQL, NATS, Redis-shared gateway limits, identity found by its Service name.
#[test]
fn the_kubernetes_config_map_is_a_valid_config() {
    let manifest = include_str!("../../../../deploy/k8s/config.yaml");
    let mut toml = String::new();
    let mut inside = false;
    for line in manifest.lines() {
        if line.trim_start().starts_with("telar.toml: |") {
            inside = true;
            continue;
        }
        if inside {
            match line.strip_prefix("    ") {
                Some(content) => toml.push_str(content),
                None if line.trim().is_empty() => {}
                None => break,
            }
            toml.push('\n');
        }
    }
    assert!(
        toml.contains("[database]"),
        "no telar.toml found in the ConfigMap"
    );
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("telar.toml");
    std::fs::write(&file, toml).expect("write");
    let checked = run(telar()
        .args([
            "--config",
            file.to_str().expect("path"),
            "config",
            "check",
            "--json",
        ])
        .env(
            "TELAR_DATABASE__POSTGRES__URL",
            "postgres://telar@postgres:5432/telar",
        ));
    assert!(checked.status.success(), "{}", text(&checked.stderr));
    let config: serde_json::Value = serde_json::from_slice(&checked.stdout).expect("json");
    assert_eq!(config["database"]["backend"], "postgres");
    assert_eq!(config["bus"]["backend"], "nats");
    assert_eq!(
        config["services"]["gateway"]["settings"]["limits"]["backend"],
        "redis"
    );
    assert_eq!(
        config["services"]["gateway"]["settings"]["upstreams"]["identity"]["instances"][0],
        "http://identity:8008"
    );
}

/// The configuration deploy/compose.yaml mounts is one `telar` accepts with the environment the
/// compose file gives its containers (hub-sim's: listening beyond loopback, with a token).
#[test]
fn the_compose_config_is_a_valid_config() {
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/compose.telar.toml"
    );
    let url = "postgres://telar:secret@postgres:5432/telar";
    let checked = run(telar()
        .args(["--config", file, "config", "check", "--json"])
        .env("TELAR_DATABASE__POSTGRES__URL", url)
        .env("TELAR_BUS__DEAD_LETTERS__POSTGRES__URL", url)
        .env("TELAR_CARPETA__AUTH__CLIENT_SECRET", "services-secret")
        .env(
            "TELAR_SERVICES__IDENTITY__SETTINGS__KEYS_SECRET",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        )
        .env("TELAR_SERVICES__HUB_SIM__HOST", "0.0.0.0")
        .env("TELAR_SERVICES__HUB_SIM__SETTINGS__CONTROL_TOKEN", "token"));
    assert!(checked.status.success(), "{}", text(&checked.stderr));
    let config: serde_json::Value = serde_json::from_slice(&checked.stdout).expect("json");
    assert_eq!(config["database"]["backend"], "postgres");
    assert_eq!(config["bus"]["backend"], "nats");
    assert_eq!(config["bus"]["dead_letters"]["backend"], "postgres");
    assert_eq!(
        config["services"]["hub-client"]["settings"]["hub_url"],
        "http://hub-sim:8019"
    );
    assert_eq!(
        config["services"]["ingestion"]["settings"]["objects"]["s3"]["endpoint"],
        "http://s3:5000"
    );
}

/// docs/configuration-reference.md is the effective default configuration, every key: generated
/// from the configuration types, kept equal here.
#[test]
fn the_configuration_reference_is_the_effective_default() {
    let output = run(telar()
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .args(["config", "check"]));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let doc = include_str!("../../../../docs/configuration-reference.md");
    let block = doc
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a toml block");
    assert_eq!(
        block,
        text(&output.stdout),
        "docs/configuration-reference.md is stale: regenerate it with `telar config check`"
    );
}
