//! Durability across a process kill: a child process (this test binary, re-run on one helper
//! test) publishes to the embedded bus and reports each publish that returned; the parent kills
//! it with SIGKILL mid-stream, reopens the file, and must receive every reported message.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use telar_bus::{Bus, EmbeddedBus, EmbeddedConfig, Outcome};

use crate::helpers::{event, next, options};

const CHILD_ENV: &str = "TELAR_BUS_KILL_CHILD_DB";

/// Runs only inside the child process the parent test starts (with `TELAR_BUS_KILL_CHILD_DB`
/// set): publishes until killed, printing `published N` after each publish returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_process_publishes_until_killed() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let config = EmbeddedConfig {
        path: path.into(),
        ..EmbeddedConfig::default()
    };
    let bus = Bus::new(EmbeddedBus::open(&config).await.expect("open"));
    let register = bus
        .subscribe(
            "t.kill",
            options("survivors"),
            |_d: telar_bus::Delivery| async {
                Outcome::retry("the parent consumes after the kill")
            },
        )
        .await
        .expect("register the group");
    register.abort();
    for n in 0.. {
        bus.publish(event("t.kill", &format!("s{}", n % 7), n))
            .await
            .expect("publish");
        println!("published {n}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_messages_survive_sigkill_of_the_owner() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bus.db");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "kill::child_process_publishes_until_killed",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the child");
    let stdout = child.stdout.take().expect("child stdout");
    let mut confirmed = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read child");
        if let Some(n) = line
            .strip_prefix("published ")
            .and_then(|n| n.parse::<u64>().ok())
        {
            confirmed = Some(n);
            if n >= 300 {
                break;
            }
        }
    }
    child.kill().expect("SIGKILL the child");
    let _ = child.wait();
    let confirmed = confirmed.expect("the child published");

    let config = EmbeddedConfig {
        path,
        ..EmbeddedConfig::default()
    };
    let bus = Bus::new(
        EmbeddedBus::open(&config)
            .await
            .expect("reopen after the kill"),
    );
    let (sub, mut received) = crate::helpers::ack_all(
        &bus,
        "t.kill",
        options("survivors")
            .lease(Duration::from_secs(2))
            .handler_timeout(Duration::from_secs(1)),
    )
    .await;
    // Every publish that returned before SIGKILL must come (a missing one fails by timeout);
    // later ones may or may not have made it.
    let mut got = std::collections::BTreeSet::new();
    while !(0..=confirmed).all(|n| got.contains(&n)) {
        got.insert(
            next(&mut received)
                .await
                .expect("a message published before the kill"),
        );
    }
    sub.stop().await;
    assert!(
        (0..=confirmed).all(|n| got.contains(&n)),
        "every publish that returned before SIGKILL is delivered after it (0..={confirmed})"
    );
}
