//! `telar config check`: validate, then print the effective config with secrets redacted.

use std::path::Path;

use crate::commands::CommandError;
use crate::settings::Settings;

pub fn run(file: Option<&Path>, json: bool) -> Result<(), CommandError> {
    let settings = Settings::load(file).map_err(|e| CommandError::Usage(e.to_string()))?;
    let redacted = settings.redacted();
    let text = if json {
        serde_json::to_string_pretty(&redacted).map_err(anyhow::Error::from)?
    } else {
        toml::to_string_pretty(&redacted).map_err(anyhow::Error::from)?
    };
    println!("{text}");
    eprintln!("config ok ({})", settings.source_description(file));
    Ok(())
}
