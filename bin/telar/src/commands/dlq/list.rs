use telar_bus::{Bus, DeadLetterFilter};

use crate::cli::DlqListArgs;
use crate::commands::CommandError;

pub async fn run(bus: &Bus, args: DlqListArgs) -> Result<(), CommandError> {
    let filter = DeadLetterFilter {
        id: None,
        group: args.group,
        topic: args.topic,
        limit: Some(args.limit),
    };
    let letters = bus
        .dead_letters(filter)
        .await
        .map_err(anyhow::Error::from)?;
    if args.json {
        return super::print_json(&letters);
    }
    super::print_table(&letters);
    eprintln!("{} dead letter(s)", letters.len());
    Ok(())
}
