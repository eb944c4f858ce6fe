//! One module per command; `run` dispatches.

mod audit;
mod config;
mod demo;
mod dlq;
mod projections;
mod saga;
mod serve;
mod token;
mod up;

use crate::cli::{Cli, Command, ConfigCommand, DlqCommand};

/// A command's failure, with the exit code it maps to.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// Bad configuration or arguments: exit 2.
    #[error("{0}")]
    Usage(String),
    /// Anything that went wrong while running: exit 1.
    #[error(transparent)]
    Runtime(#[from] anyhow::Error),
}

impl CommandError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::Usage(_) => 2,
            CommandError::Runtime(_) => 1,
        }
    }
}

pub async fn run(cli: Cli) -> Result<(), CommandError> {
    match cli.command {
        Command::Up => up::run(cli.config.as_deref()).await,
        Command::Serve(args) => serve::run(cli.config.as_deref(), &args.services).await,
        Command::Config(ConfigCommand::Check(args)) => {
            config::check::run(cli.config.as_deref(), args.json)
        }
        Command::Dlq(command) => {
            let bus = dlq::open(cli.config.as_deref()).await?;
            match command {
                DlqCommand::List(args) => dlq::list::run(&bus, args).await,
                DlqCommand::Show(args) => dlq::show::run(&bus, args).await,
                DlqCommand::Replay(args) => dlq::replay::run(&bus, args).await,
                DlqCommand::Purge(args) => dlq::purge::run(&bus, args).await,
            }
        }
        Command::Saga(command) => saga::run(cli.config.as_deref(), command).await,
        Command::Projections(command) => projections::run(cli.config.as_deref(), command).await,
        Command::Token(command) => token::run(cli.config.as_deref(), command).await,
        Command::Audit(command) => audit::run(cli.config.as_deref(), command).await,
        Command::Demo(crate::cli::DemoCommand::Carpeta(args)) => {
            demo::carpeta(cli.config.as_deref(), args).await
        }
    }
}
