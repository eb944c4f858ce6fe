//! `telar-bench-saga crash [--quick] [--kills N] [--sagas M]`: runs sagas in a child process and
//! SIGKILLs it at random moments N times, restarting it each time, then lets a last run finish
//! and checks every saga: it ends Completed, Compensated or NeedsAttention (with a reason), no
//! step and no compensation is recorded twice, no compensation without its step, nothing left
//! running. Prints the counts and a RESULT line (sagas that ended as their definition says).
//!
//! `telar-bench-saga throughput [sqlite|postgres] [--quick]`: 3-step sagas whose steps only
//! persist, against the raw durable commit rate of the same database.
//!
//! `telar-bench-saga worker DB SAGAS` is the child the crash test kills.

mod crash;
mod throughput;
mod workload;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| args.iter().any(|a| a == name);
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<usize>().ok())
    };
    match args.first().map(String::as_str) {
        Some("worker") => {
            let path = args.get(1).ok_or("worker DB SAGAS")?;
            let sagas = args
                .get(2)
                .and_then(|n| n.parse().ok())
                .ok_or("worker DB SAGAS")?;
            workload::worker(std::path::Path::new(path), sagas).await
        }
        Some("crash") => {
            let quick = flag("--quick");
            let kills = value("--kills").unwrap_or(if quick { 8 } else { 50 });
            let sagas = value("--sagas").unwrap_or(if quick { 60 } else { 400 });
            crash::run(kills, sagas).await
        }
        Some("throughput") => {
            let engine = args.get(1).filter(|a| !a.starts_with("--")).cloned();
            throughput::run(engine.as_deref().unwrap_or("sqlite"), flag("--quick")).await
        }
        _ => Err("usage: telar-bench-saga crash|throughput|worker ...".into()),
    }
}
