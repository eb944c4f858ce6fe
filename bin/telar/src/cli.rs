use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// telar runs event-driven microservice systems: the whole system in one process on a laptop
/// (SQLite, embedded bus, local files) or each service on its own, on PostgreSQL and friends.
#[derive(Debug, Parser)]
#[command(name = "telar", version, about, long_about = None)]
pub struct Cli {
    /// Config file layered over the built-in defaults (then `TELAR_*` env vars, `__` for nesting).
    #[arg(long, short, global = true, env = "TELAR_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start every enabled service of the system on loopback; Ctrl-C drains and stops.
    Up,
    /// Run only the named services (e.g. one process per service in distributed mode).
    Serve(ServeArgs),
    /// Inspect configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Inspect, replay and purge the bus's dead letters.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Inspect a service's orchestrated sagas; retry a parked one, abort a running one.
    #[command(subcommand)]
    Saga(SagaCommand),
    /// A service's projections (read models of its event store): where each stands; rebuild one.
    #[command(subcommand)]
    Projections(ProjectionsCommand),
    /// Issue an access token with the identity service's key, or inspect one.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Check the audit log's hash chain, or export it as JSON lines.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Walk a system's whole story against a running system, checking every answer.
    #[command(subcommand)]
    Demo(DemoCommand),
}

#[derive(Debug, Subcommand)]
pub enum DemoCommand {
    /// Carpeta Ciudadana: register, upload, sign, search, share, and move the citizen to a
    /// second operator (and back). Exit 1 at the first wrong answer.
    Carpeta(DemoCarpetaArgs),
}

#[derive(Debug, clap::Args)]
pub struct DemoCarpetaArgs {
    /// The operator's gateway (default: the configured gateway's address).
    #[arg(long)]
    pub gateway: Option<String>,
    /// A second operator's gateway: the citizen moves there.
    #[arg(long)]
    pub peer: Option<String>,
    /// The second operator's config, whose identity key signs its tokens.
    #[arg(long, default_value = "config/carpeta/operator-b.toml")]
    pub peer_config: std::path::PathBuf,
    /// The second operator's name at the hub.
    #[arg(long, default_value = "Operador B")]
    pub peer_operator: String,
    /// Move the citizen back from the second operator afterwards.
    #[arg(long)]
    pub round_trip: bool,
    /// The citizen's id (default: a random one).
    #[arg(long)]
    pub citizen: Option<String>,
    /// Print one JSON document instead of progress lines.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the chain from the first record; name the first one edited or missing
    /// (exit 1 when the chain is broken).
    Verify(AuditVerifyArgs),
    /// Every record, oldest first, as JSON lines.
    Export(AuditExportArgs),
}

#[derive(Debug, clap::Args)]
pub struct AuditVerifyArgs {
    /// The audit service whose database to read.
    #[arg(long, default_value = "audit")]
    pub service: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct AuditExportArgs {
    #[arg(long, default_value = "audit")]
    pub service: String,
    /// Write here instead of stdout.
    #[arg(long)]
    pub output: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Sign a token for a subject with the identity service's current key (its database).
    Issue(TokenIssueArgs),
    /// Show a token's header and claims (decoded, not verified).
    Inspect(TokenInspectArgs),
}

#[derive(Debug, Args)]
pub struct TokenIssueArgs {
    /// The subject (`sub`).
    #[arg(long)]
    pub sub: String,
    #[arg(long = "role")]
    pub roles: Vec<String>,
    #[arg(long = "permission")]
    pub permissions: Vec<String>,
    #[arg(long)]
    pub org: Option<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 900)]
    pub ttl: i64,
    /// Default: the identity service's configured issuer.
    #[arg(long)]
    pub issuer: Option<String>,
    /// Default: the identity service's configured audience.
    #[arg(long)]
    pub audience: Option<String>,
    /// Print JSON (`{"access_token", "expires_in"}`).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TokenInspectArgs {
    pub token: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Every projection and relay of the service with its checkpoint, and the store's head.
    List(ProjectionsListArgs),
    /// Empty a projection's read model and apply every event from the start (progress bar).
    Rebuild(ProjectionsRebuildArgs),
}

#[derive(Debug, Args)]
pub struct ProjectionsListArgs {
    /// The service whose store to read (its database, from `[database]`).
    #[arg(long)]
    pub service: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ProjectionsRebuildArgs {
    /// The projection (`telar projections list` names them).
    pub name: String,
    /// The service whose store to read (its database, from `[database]`).
    #[arg(long)]
    pub service: String,
    /// Print a JSON summary (and no progress bar).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum SagaCommand {
    /// Sagas, newest first.
    List(SagaListArgs),
    /// One saga with its full step log.
    Show(SagaIdArgs),
    /// Resume the compensation of a saga that needs attention (the service's engine runs it).
    Retry(SagaIdArgs),
    /// Stop a running saga after its current step and compensate it.
    Abort(SagaIdArgs),
}

#[derive(Debug, Args)]
pub struct SagaListArgs {
    /// The service whose sagas to read (its database, from `[database]`).
    #[arg(long)]
    pub service: String,
    /// Only this status: Running, Compensating, Completed, Compensated, NeedsAttention.
    #[arg(long)]
    pub status: Option<String>,
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SagaIdArgs {
    /// The service whose sagas to read (its database, from `[database]`).
    #[arg(long)]
    pub service: String,
    pub id: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Dead letters, oldest first.
    List(DlqListArgs),
    /// One dead letter with its envelope, last error and attempt history.
    Show(DlqShowArgs),
    /// Put dead letters back in their group's queue with fresh attempts.
    Replay(DlqSelectArgs),
    /// Delete dead letters.
    Purge(DlqSelectArgs),
}

#[derive(Debug, Args)]
pub struct DlqListArgs {
    /// Only this consumer group.
    #[arg(long)]
    pub group: Option<String>,
    /// Only this topic (CloudEvents type).
    #[arg(long)]
    pub topic: Option<String>,
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DlqShowArgs {
    pub id: i64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).multiple(true).args(["id", "group", "topic", "all"])))]
pub struct DlqSelectArgs {
    /// One dead letter.
    #[arg(long)]
    pub id: Option<i64>,
    /// Every dead letter of this consumer group.
    #[arg(long)]
    pub group: Option<String>,
    /// Every dead letter of this topic.
    #[arg(long)]
    pub topic: Option<String>,
    /// Every dead letter.
    #[arg(long)]
    pub all: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Service names, e.g. `hub-sim`.
    #[arg(required = true, value_name = "SERVICE")]
    pub services: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the effective config and print it with secrets redacted.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Print JSON instead of TOML.
    #[arg(long)]
    pub json: bool,
}
