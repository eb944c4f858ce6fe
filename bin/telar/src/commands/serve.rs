//! `telar serve NAME...`: only the named services, whether enabled or not.

use std::path::Path;

use crate::catalog;
use crate::commands::CommandError;
use crate::runner;
use crate::settings::Settings;

pub async fn run(file: Option<&Path>, services: &[String]) -> Result<(), CommandError> {
    let settings = Settings::load(file).map_err(|e| CommandError::Usage(e.to_string()))?;
    for name in services {
        if !catalog::NAMES.contains(&name.as_str()) {
            return Err(CommandError::Usage(format!(
                "unknown service `{name}`; known services: {}",
                catalog::NAMES.join(", ")
            )));
        }
    }
    runner::run(settings, services.to_vec()).await
}
