//! `telar projections`: a service's projections, read from its database; rebuild one from zero.
//!
//! The projections this binary knows: the platform's `stream-index` (every service with a store)
//! and, as systems land, theirs (registered in `known`).

use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use telar_sql::Db;
use telar_store::{EventStore, Projector, StreamIndex};

use crate::cli::ProjectionsCommand;
use crate::commands::CommandError;
use crate::commands::dlq::print_json;
use crate::settings::Settings;

const KNOWN: &[&str] = &[StreamIndex::NAME];

/// The projector of the projection named `name` on the service's store, if this binary knows it.
async fn projector(
    name: &str,
    store: EventStore,
    db: Db,
) -> Result<Option<Projector>, CommandError> {
    Ok(match name {
        StreamIndex::NAME => {
            let index = StreamIndex::prepare(&db).await.map_err(runtime)?;
            Some(Projector::new(store, db, index).await.map_err(runtime)?)
        }
        _ => None,
    })
}

pub async fn run(file: Option<&Path>, command: ProjectionsCommand) -> Result<(), CommandError> {
    match command {
        ProjectionsCommand::List(args) => {
            let db = open(file, &args.service).await?;
            let store = EventStore::open(db.clone()).await.map_err(runtime)?;
            let head = store.head().await.map_err(runtime)?;
            let checkpoints = telar_store::checkpoints(&db).await.map_err(runtime)?;
            if args.json {
                return print_json(&serde_json::json!({
                    "head": head,
                    "known": KNOWN,
                    "checkpoints": checkpoints,
                }));
            }
            println!("store head: position {head}");
            println!(
                "{:32}  {:>10}  {:>8}  UPDATED",
                "NAME", "POSITION", "BEHIND"
            );
            for checkpoint in &checkpoints {
                println!(
                    "{:32}  {:>10}  {:>8}  {}",
                    checkpoint.name,
                    checkpoint.position,
                    head - checkpoint.position,
                    checkpoint.updated_at
                );
            }
            println!("\nrebuildable here: {}", KNOWN.join(", "));
            Ok(())
        }
        ProjectionsCommand::Rebuild(args) => {
            let db = open(file, &args.service).await?;
            let store = EventStore::open(db.clone()).await.map_err(runtime)?;
            let head = store.head().await.map_err(runtime)?;
            let Some(projector) = projector(&args.name, store, db).await? else {
                return Err(CommandError::Usage(format!(
                    "unknown projection `{}` (known: {})",
                    args.name,
                    KNOWN.join(", ")
                )));
            };
            let bar = if args.json {
                ProgressBar::hidden()
            } else {
                let bar = ProgressBar::new(u64::try_from(head).unwrap_or(0));
                bar.set_style(
                    ProgressStyle::with_template("{bar:40} {pos}/{len} events  {elapsed}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                bar
            };
            let progress = bar.clone();
            let rebuilt = projector
                .rebuild(move |position| {
                    progress.set_position(u64::try_from(position).unwrap_or(0))
                })
                .await
                .map_err(runtime)?;
            bar.finish_and_clear();
            if let telar_store::ProjectionStatus::Stopped { position, reason } = projector.status()
            {
                return Err(CommandError::Runtime(anyhow::anyhow!(
                    "{} stopped at position {position}: {reason}",
                    args.name
                )));
            }
            if args.json {
                return print_json(&rebuilt);
            }
            println!(
                "{}: {} events applied in {} ms (position {})",
                rebuilt.projection, rebuilt.events, rebuilt.millis, rebuilt.position
            );
            Ok(())
        }
    }
}

async fn open(file: Option<&Path>, service: &str) -> Result<Db, CommandError> {
    let settings = Settings::load(file).map_err(|e| CommandError::Usage(e.to_string()))?;
    Db::connect(&settings.database, service)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the database of {service}: {e}").into())
}

fn runtime(error: telar_store::Error) -> CommandError {
    CommandError::Runtime(error.into())
}
