use telar_bus::Bus;

use crate::cli::DlqShowArgs;
use crate::commands::CommandError;

pub async fn run(bus: &Bus, args: DlqShowArgs) -> Result<(), CommandError> {
    let letter = bus.dead_letter(args.id).await.map_err(|e| match e {
        telar_bus::Error::DeadLetterNotFound(id) => {
            CommandError::Usage(format!("no dead letter with id {id}"))
        }
        other => CommandError::Runtime(other.into()),
    })?;
    if args.json {
        return super::print_json(&letter);
    }
    super::print_table(std::slice::from_ref(&letter));
    println!("\nattempts:");
    for attempt in &letter.history {
        println!(
            "  #{} at {}: {}",
            attempt.attempt, attempt.at, attempt.error
        );
    }
    println!(
        "\nenvelope:\n{}",
        serde_json::to_string_pretty(&letter.envelope).unwrap_or_default()
    );
    Ok(())
}
