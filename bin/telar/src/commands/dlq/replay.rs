//! Replays one by one so a long replay shows progress and can be interrupted without losing
//! what was already replayed.

use indicatif::{ProgressBar, ProgressStyle};
use telar_bus::{Bus, DeadLetterFilter};

use crate::cli::DlqSelectArgs;
use crate::commands::CommandError;

pub async fn run(bus: &Bus, args: DlqSelectArgs) -> Result<(), CommandError> {
    let letters = bus
        .dead_letters(super::filter(&args))
        .await
        .map_err(anyhow::Error::from)?;
    let progress = if args.json || letters.len() < 2 {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new(letters.len() as u64);
        if let Ok(style) = ProgressStyle::with_template("replaying {bar:40} {pos}/{len} {eta}") {
            bar.set_style(style);
        }
        bar
    };
    let mut replayed = 0;
    for letter in &letters {
        replayed += bus
            .replay(DeadLetterFilter::one(letter.id))
            .await
            .map_err(anyhow::Error::from)?;
        progress.inc(1);
    }
    progress.finish_and_clear();
    if args.json {
        return super::print_json(&serde_json::json!({ "replayed": replayed }));
    }
    eprintln!("replayed {replayed} dead letter(s)");
    Ok(())
}
