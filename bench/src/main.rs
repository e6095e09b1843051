//! `tollgate-bench`: measures Tollgate against the gRPC floor and prints (and saves) the figures.
//! The server processes it measures are this same binary's hidden `serve-identity` and
//! `serve-events` commands, so one build holds everything a run needs.
#![forbid(unsafe_code)]

mod h2load;
mod run;

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
    serve: Option<Serve>,
    #[command(flatten)]
    bench: run::BenchArgs,
    #[command(flatten)]
    log: LogArgs,
}

/// The benchmark's server processes.
#[derive(Debug, Subcommand)]
enum Serve {
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
    let result = match cli.serve {
        None => run::run(cli.bench),
        Some(serve) => serve_one(serve),
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
fn serve_one(serve: Serve) -> BenchResult {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let shutdown = tollgate::server::shutdown_signal();
        match serve {
            Serve::ServeIdentity(settings) => {
                let app = identity_service::startup::Application::build(*settings).await?;
                app.run_until_stopped(shutdown).await?;
            }
            Serve::ServeEvents(settings) => {
                let app = event_service::startup::Application::build(*settings).await?;
                app.run_until_stopped(shutdown).await?;
            }
        }
        Ok(())
    })
}
