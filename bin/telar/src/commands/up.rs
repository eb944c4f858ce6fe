//! `telar up`: every enabled service of the system.

use std::path::Path;

use crate::commands::CommandError;
use crate::runner;
use crate::settings::Settings;

pub async fn run(file: Option<&Path>) -> Result<(), CommandError> {
    let settings = Settings::load(file).map_err(|e| CommandError::Usage(e.to_string()))?;
    let names = settings.enabled_services();
    if names.is_empty() {
        return Err(CommandError::Usage(
            "no service is enabled in `services`".into(),
        ));
    }
    runner::run(settings, names).await
}
