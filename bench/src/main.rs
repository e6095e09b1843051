//! `tollgate-bench`: measures Tollgate against the gRPC floor and prints (and saves) the figures.
//! The server processes it measures are this same binary's hidden `serve-identity` and
//! `serve-events` commands, so one build holds everything a run needs.
#![forbid(unsafe_code)]

mod faults;
mod h2load;
mod host;
mod pg_cluster;
mod revocation;
mod run;
mod scale;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tollgate::telemetry::{LogArgs, error_chain};

#[derive(Debug, Parser)]
#[command(
    name = "tollgate-bench",
    version,
    about = "Measure Tollgate against the gRPC floor (health checks) and print and save the figures",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    bench: run::BenchArgs,
    #[command(flatten)]
    log: LogArgs,
}

/// The benchmark's other runs, and its server processes.
#[derive(Debug, Subcommand)]
enum Command {
    /// Measure how long a revoked key keeps working on another replica (p50/p99 over trials).
    Revocation(revocation::RevocationArgs),
    /// Inject faults under load into 2 + 2 replicas on a private PostgreSQL cluster, and check
    /// that nothing acknowledged was lost and nothing unauthorized got through.
    Faults(faults::FaultsArgs),
    /// Measure meters, filtered reads and the write path at billing scale (`--events 10000000`).
    Scale(scale::ScaleArgs),
    /// Run identity-service (as `identity-service serve`).
    #[command(hide = true)]
    ServeIdentity(Box<identity_service::config::Settings>),
    /// Run event-service (as `event-service serve`).
    #[command(hide = true)]
    ServeEvents(Box<event_service::config::Settings>),
}

/// What every command returns.
type BenchResult = Result<(), Box<dyn std::error::Error>>;

fn main() -> ExitCode {
    let cli: Cli = tollgate::args::parse();
    if let Err(e) = cli.log.init() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        None => run::run(cli.bench),
        Some(Command::Revocation(args)) => revocation::run(args),
        Some(Command::Scale(args)) => scale::run(args),
        Some(Command::Faults(args)) => faults::run(args),
        Some(Command::ServeIdentity(settings)) => serve_one(async move |shutdown| {
            let app = identity_service::startup::Application::build(*settings).await?;
            Ok(app.run_until_stopped(shutdown).await?)
        }),
        Some(Command::ServeEvents(settings)) => serve_one(async move |shutdown| {
            let app = event_service::startup::Application::build(*settings).await?;
            Ok(app.run_until_stopped(shutdown).await?)
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// Runs one service until SIGTERM, on a runtime of its own.
fn serve_one<F>(serve: impl FnOnce(tollgate::server::Signal) -> F) -> BenchResult
where
    F: std::future::Future<Output = BenchResult>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // The signal handlers need the runtime.
    runtime.block_on(async { serve(Box::pin(tollgate::server::shutdown_signal())).await })
}
