//! Kill, restart, check.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use telar_saga::{SagaAdmin, SagaStatus};
use telar_sql::query;

use crate::BoxError;
use crate::workload;

pub async fn run(kills: usize, sagas: usize) -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("sagas.db");
    let worker = |path: &std::path::Path| {
        Command::new(std::env::current_exe().expect("the bench binary"))
            .arg("worker")
            .arg(path)
            .arg(sagas.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
    };
    for kill in 0..kills {
        let mut child = worker(&path)?;
        // A random moment: early kills land during start-up and the first steps, later ones in
        // compensations and retries.
        let after = rand::random_range(20..250u64);
        tokio::time::sleep(Duration::from_millis(after)).await;
        child.kill()?;
        child.wait()?;
        eprintln!("[saga-crash] kill {}/{kills} after {after} ms", kill + 1);
    }
    let finished = worker(&path)?.wait_with_output()?;
    if !String::from_utf8_lossy(&finished.stdout).contains("done") {
        return Err("the last run did not finish".into());
    }
    check(&path, sagas, kills).await
}

async fn check(path: &std::path::Path, sagas: usize, kills: usize) -> Result<(), BoxError> {
    let db = workload::open(path).await?;
    let admin = SagaAdmin::new(db.clone());
    let mut counts: HashMap<&'static str, usize> = HashMap::new();
    let mut problems = Vec::new();
    let effects: HashMap<String, i64> = query("SELECT key, runs FROM effects")
        .fetch_all(&db)
        .await?
        .iter()
        .map(|r| Ok((r.get("key")?, r.get("runs")?)))
        .collect::<Result<_, telar_sql::Error>>()?;
    let mut reruns = 0;
    for n in 0..sagas {
        let id = format!("s{n}");
        let saga = admin.get(&id).await?;
        let log = admin.log(&id).await?;
        let succeeded = |step: &str, phase: &str| {
            log.iter()
                .filter(|l| l.step == step && l.phase == phase && l.outcome == "succeeded")
                .count()
        };
        for step in ["reserve", "notify-hub", "confirm"] {
            if succeeded(step, "action") > 1 {
                problems.push(format!("{id}: {step} recorded twice"));
            }
            if succeeded(step, "compensation") > 1 {
                problems.push(format!("{id}: compensation of {step} recorded twice"));
            }
            let key = format!("{id}:{step}");
            let done = effects.contains_key(&key);
            let undone = effects.contains_key(&format!("undo:{key}"));
            if undone && !done {
                problems.push(format!("{id}: {step} compensated without having run"));
            }
            reruns += effects.get(&key).map_or(0, |runs| runs - 1);
            let expected_end = match (n.is_multiple_of(5), n.is_multiple_of(17)) {
                (false, _) => SagaStatus::Completed,
                (true, false) => SagaStatus::Compensated,
                (true, true) => SagaStatus::NeedsAttention,
            };
            if saga.status == SagaStatus::Completed && (undone || !done) {
                problems.push(format!("{id}: completed but {step} is not in effect"));
            }
            if saga.status == SagaStatus::Compensated && done && !undone {
                problems.push(format!("{id}: compensated but {step} is still in effect"));
            }
            if step == "confirm" && saga.status != expected_end {
                problems.push(format!(
                    "{id}: ended {:?}, expected {expected_end:?}",
                    saga.status
                ));
            }
        }
        if saga.status == SagaStatus::NeedsAttention && saga.reason.is_none() {
            problems.push(format!("{id}: needs attention without a reason"));
        }
        let label = match saga.status {
            SagaStatus::Completed => "completed",
            SagaStatus::Compensated => "compensated",
            SagaStatus::NeedsAttention => "needs_attention",
            SagaStatus::Running | SagaStatus::Compensating => {
                problems.push(format!("{id}: left {:?}", saga.status));
                "unfinished"
            }
        };
        *counts.entry(label).or_default() += 1;
    }
    println!(
        "sagas={sagas} kills={kills} completed={} compensated={} needs_attention={} unfinished={} step_reruns_after_kills={reruns} problems={}",
        counts.get("completed").unwrap_or(&0),
        counts.get("compensated").unwrap_or(&0),
        counts.get("needs_attention").unwrap_or(&0),
        counts.get("unfinished").unwrap_or(&0),
        problems.len()
    );
    for problem in problems.iter().take(20) {
        println!("PROBLEM {problem}");
    }
    let correct = sagas - problems.len().min(sagas);
    println!(
        "RESULT name=saga-crash value={correct} reference={sagas} ratio={:.3} unit=sagas",
        correct as f64 / sagas as f64
    );
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{} problems", problems.len()).into())
    }
}
