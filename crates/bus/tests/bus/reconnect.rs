//! The broker backends come back by themselves: NATS after its server restarts (a private
//! server, so the shared one is left alone), RabbitMQ after the broker drops the connection.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use telar_bus::{Bus, NatsBus, NatsConfig, RabbitBus, RabbitConfig};

use crate::helpers::{event, next, options};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn nats_server_binary() -> String {
    [
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
        "/usr/local/bin/nats-server",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .map(str::to_owned)
    .expect("nats-server is required (scripts/services.sh installs it)")
}

/// A private JetStream server on `port`, storing in `dir`; answers once it accepts connections.
async fn start_nats(port: u16, dir: &Path) -> Child {
    let child = Command::new(nats_server_binary())
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nats-server");
    let deadline = Instant::now() + Duration::from_secs(15);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "nats-server did not start on {port}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child
}

/// Publishes until the bus accepts (it is reconnecting), at most 20 s.
async fn publish_until_accepted(bus: &Bus, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match bus.publish(event("t.reconnect", &format!("s{n}"), n)).await {
            Ok(()) => return,
            Err(error) => {
                assert!(Instant::now() < deadline, "never reconnected: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn consume_across_an_outage(bus: Bus, outage: impl AsyncFnOnce()) {
    let (sub, mut received) =
        crate::helpers::ack_all(&bus, "t.reconnect", options("survivor")).await;
    bus.publish(event("t.reconnect", "s0", 0))
        .await
        .expect("publish");
    assert_eq!(next(&mut received).await, Some(0));
    outage().await;
    publish_until_accepted(&bus, 1).await;
    assert_eq!(
        next(&mut received).await,
        Some(1),
        "the same subscription consumes after the reconnect"
    );
    sub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_reconnects_after_the_server_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut server = start_nats(port, dir.path()).await;
    let config = NatsConfig {
        url: format!("nats://127.0.0.1:{port}"),
        ..NatsConfig::default()
    };
    let store = telar_testkit::postgres_db("bus_reconnect").await;
    let bus = Bus::new(NatsBus::open(&config, store).await.expect("open"));
    let mut restarted = None;
    consume_across_an_outage(bus, async || {
        let _ = server.kill();
        let _ = server.wait();
        restarted = Some(start_nats(port, dir.path()).await);
    })
    .await;
    if let Some(mut server) = restarted {
        let _ = server.kill();
        let _ = server.wait();
    }
}

/// Asks RabbitMQ to close every connection named `name` (as an operator or a broker restart
/// would).
fn close_rabbit_connections(name: &str) -> usize {
    let listing = Command::new("rabbitmqctl")
        .args([
            "list_connections",
            "pid",
            "client_properties",
            "--no-table-headers",
            "--quiet",
        ])
        .output()
        .expect("rabbitmqctl is required (scripts/services.sh installs RabbitMQ)");
    let listing = String::from_utf8_lossy(&listing.stdout);
    let pids: Vec<&str> = listing
        .lines()
        .filter(|line| line.contains(name))
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    for pid in &pids {
        let closed = Command::new("rabbitmqctl")
            .args(["close_connection", pid, "reconnect test"])
            .status()
            .expect("rabbitmqctl close_connection");
        assert!(closed.success(), "could not close {pid}");
    }
    pids.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_recovers_after_the_broker_closes_the_connection() {
    let name = telar_testkit::unique_name("t");
    let config = RabbitConfig {
        exchange: format!("{name}.events"),
        queue_prefix: name.clone(),
        connection_name: name.clone(),
        ..RabbitConfig::default()
    };
    let store = telar_testkit::postgres_db("bus_reconnect").await;
    let rabbit = RabbitBus::open(&config, store).await.expect("open");
    let bus = Bus::new(rabbit.clone());
    consume_across_an_outage(bus, async || {
        assert!(
            close_rabbit_connections(&name) >= 1,
            "our connection was listed"
        );
    })
    .await;
    let _ = rabbit.remove_topology().await;
}
