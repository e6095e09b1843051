//! `tollgate`: `up` runs the whole local stack in one process; the other commands manage
//! service accounts, keys and events over gRPC, for people who would otherwise use a dashboard.
#![forbid(unsafe_code)]

mod accounts;
mod audit;
mod events;
mod meters;
mod output;
mod remote;
mod up;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tollgate::telemetry::{LogArgs, error_chain};

#[derive(Debug, Parser)]
#[command(
    name = "tollgate",
    version,
    about = "Tollgate: API keys, service accounts and usage events"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    log: LogArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run identity-service and event-service in one process on SQLite under ./data/, creating
    /// a dev tenant on first start.
    Up(up::UpArgs),
    /// Mint a new admin key for the dev tenant of `tollgate up` (works on the database directly).
    DevKey(up::DevKeyArgs),
    /// Service accounts: create with roles, list, get, update roles, delete.
    #[command(subcommand)]
    ServiceAccounts(accounts::AccountsCommand),
    /// API keys: create (for yourself or a service account), list, rotate, delete.
    #[command(subcommand)]
    Keys(accounts::KeysCommand),
    /// The audit log: who changed which accounts, roles and keys.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Usage events: ingest from JSON, list, usage figures.
    #[command(subcommand)]
    Events(events::EventsCommand),
    /// Meters: define what you bill by, and read its exact usage.
    #[command(subcommand)]
    Meters(meters::MetersCommand),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli: Cli = tollgate::args::parse();
    // `up` logs at info; the admin commands only say what went wrong.
    let quiet = !matches!(cli.command, Command::Up(_));
    let log = if quiet && std::env::var_os("TOLLGATE_LOG_LEVEL").is_none() {
        LogArgs {
            log_level: "warn".into(),
            ..cli.log
        }
    } else {
        cli.log
    };
    if let Err(e) = log.init() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Up(args) => up::up(args).await,
        Command::DevKey(args) => up::dev_key(args).await,
        Command::ServiceAccounts(command) => accounts::accounts(command).await,
        Command::Keys(command) => accounts::keys(command).await,
        Command::Audit(command) => audit::audit(command).await,
        Command::Events(command) => events::events(command).await,
        Command::Meters(command) => meters::meters(command).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// What every command returns.
type CliResult = Result<(), Box<dyn std::error::Error>>;
