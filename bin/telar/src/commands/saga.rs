//! `telar saga`: a service's orchestrated sagas, read from its database. Retry and abort change
//! the saga's state; the service's engine (its scan loop) carries them out.

use std::path::Path;

use telar_saga::{SagaAdmin, SagaRecord, SagaStatus};
use telar_sql::Db;

use crate::cli::SagaCommand;
use crate::commands::CommandError;
use crate::commands::dlq::print_json;
use crate::settings::Settings;

pub async fn run(file: Option<&Path>, command: SagaCommand) -> Result<(), CommandError> {
    let service = match &command {
        SagaCommand::List(args) => &args.service,
        SagaCommand::Show(args) | SagaCommand::Retry(args) | SagaCommand::Abort(args) => {
            &args.service
        }
    };
    let admin = open(file, service).await?;
    match command {
        SagaCommand::List(args) => {
            let status = match args.status.as_deref() {
                None => None,
                Some(text) => Some(SagaStatus::parse(text).ok_or_else(|| {
                    CommandError::Usage(format!(
                        "unknown status `{text}` (Running, Compensating, Completed, Compensated, NeedsAttention)"
                    ))
                })?),
            };
            let sagas = admin.list(status, args.limit).await.map_err(runtime)?;
            if args.json {
                return print_json(&sagas);
            }
            print_table(&sagas);
            Ok(())
        }
        SagaCommand::Show(args) => {
            let saga = admin.get(&args.id).await.map_err(not_found)?;
            let log = admin.log(&args.id).await.map_err(runtime)?;
            if args.json {
                return print_json(&serde_json::json!({"saga": saga, "log": log}));
            }
            print_table(std::slice::from_ref(&saga));
            println!("\nstep log:");
            for entry in log {
                println!(
                    "  {}  {:12} {:12} {:9} attempt {} ({} ms){}",
                    entry.at,
                    entry.step,
                    entry.phase,
                    entry.outcome,
                    entry.attempt,
                    entry.duration_ms,
                    entry.detail.map(|d| format!(": {d}")).unwrap_or_default()
                );
            }
            Ok(())
        }
        SagaCommand::Retry(args) => {
            admin.retry(&args.id).await.map_err(not_found)?;
            done(
                &args.id,
                args.json,
                "compensation resumes when the service's engine scans",
            )
        }
        SagaCommand::Abort(args) => {
            admin.abort(&args.id).await.map_err(not_found)?;
            done(
                &args.id,
                args.json,
                "the saga stops after its current step and compensates",
            )
        }
    }
}

async fn open(file: Option<&Path>, service: &str) -> Result<SagaAdmin, CommandError> {
    let settings = Settings::load(file).map_err(|e| CommandError::Usage(e.to_string()))?;
    let db = Db::connect(&settings.database, service)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the database of {service}: {e}"))?;
    let admin = SagaAdmin::new(db);
    admin.prepare().await.map_err(runtime)?;
    Ok(admin)
}

fn done(id: &str, json: bool, message: &str) -> Result<(), CommandError> {
    if json {
        return print_json(&serde_json::json!({"id": id, "message": message}));
    }
    println!("{id}: {message}");
    Ok(())
}

fn runtime(error: telar_saga::Error) -> CommandError {
    CommandError::Runtime(error.into())
}

/// Unknown ids and wrong states are the user's mistake (exit 2), not a failure.
fn not_found(error: telar_saga::Error) -> CommandError {
    match error {
        telar_saga::Error::NotFound(_) | telar_saga::Error::State { .. } => {
            CommandError::Usage(error.to_string())
        }
        other => runtime(other),
    }
}

fn print_table(sagas: &[SagaRecord]) {
    println!(
        "{:38}  {:16}  {:14}  {:>4}  {:25}  REASON",
        "ID", "TYPE", "STATUS", "STEP", "UPDATED"
    );
    for saga in sagas {
        println!(
            "{:38}  {:16}  {:14}  {:>4}  {:25}  {}",
            saga.id,
            saga.saga_type,
            saga.status.as_str(),
            saga.step,
            saga.updated_at,
            saga.reason.as_deref().unwrap_or("")
        );
    }
}
