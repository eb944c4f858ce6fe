//! `telar dlq`: the dead letters of the configured bus.

pub mod list;
pub mod purge;
pub mod replay;
pub mod show;

use std::path::Path;

use telar_bus::{Bus, DeadLetter, DeadLetterFilter};

use crate::cli::DlqSelectArgs;
use crate::commands::CommandError;
use crate::settings::Settings;

pub async fn open(file: Option<&Path>) -> Result<Bus, CommandError> {
    let settings = Settings::load(file).map_err(|e| CommandError::Usage(e.to_string()))?;
    let bus = settings.bus.open().await.map_err(|e| {
        anyhow::anyhow!(
            "cannot open the {} bus at {}: {e}",
            settings.bus.backend.as_str(),
            settings.bus.location()
        )
    })?;
    Ok(bus)
}

pub fn filter(args: &DlqSelectArgs) -> DeadLetterFilter {
    DeadLetterFilter {
        id: args.id,
        group: args.group.clone(),
        topic: args.topic.clone(),
        limit: None,
    }
}

pub fn print_json<T: serde::Serialize>(value: &T) -> Result<(), CommandError> {
    println!(
        "{}",
        serde_json::to_string_pretty(value).map_err(anyhow::Error::from)?
    );
    Ok(())
}

pub fn print_table(letters: &[DeadLetter]) {
    println!(
        "{:>6}  {:20}  {:32}  {:>8}  {:25}  LAST ERROR",
        "ID", "GROUP", "TOPIC", "ATTEMPTS", "DEAD AT"
    );
    for letter in letters {
        let error: String = letter.last_error.chars().take(60).collect();
        println!(
            "{:>6}  {:20}  {:32}  {:>8}  {:25}  {}",
            letter.id, letter.group, letter.topic, letter.attempts, letter.dead_at, error
        );
    }
}
