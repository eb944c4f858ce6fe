use telar_bus::Bus;

use crate::cli::DlqSelectArgs;
use crate::commands::CommandError;

pub async fn run(bus: &Bus, args: DlqSelectArgs) -> Result<(), CommandError> {
    let purged = bus
        .purge(super::filter(&args))
        .await
        .map_err(anyhow::Error::from)?;
    if args.json {
        return super::print_json(&serde_json::json!({ "purged": purged }));
    }
    eprintln!("purged {purged} dead letter(s)");
    Ok(())
}
