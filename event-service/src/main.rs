//! `event-service serve`: the usage-event gRPC server.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use event_service::config::Settings;
use event_service::startup::Application;
use tollgate::server::shutdown_signal;
use tollgate::telemetry::{LogArgs, error_chain};

#[derive(Debug, Parser)]
#[command(
    name = "event-service",
    version,
    about = "Tollgate event-service: usage events, authorized by identity-service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    log: LogArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gRPC server.
    Serve(Box<Settings>),
    /// Check a running server's grpc.health.v1 status: exit 0 if SERVING, 1 otherwise
    /// (a container health check).
    Health {
        /// The server's address (its listen address; 0.0.0.0 is checked on loopback).
        #[arg(long, env = "EVENT_LISTEN_ADDR", default_value = event_service::config::DEFAULT_LISTEN_ADDR)]
        addr: std::net::SocketAddr,
        #[command(flatten)]
        tls: tollgate::tls::HealthTlsArgs,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli: Cli = tollgate::args::parse();
    if let Err(e) = cli.log.init() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let settings = match cli.command {
        Command::Serve(settings) => *settings,
        Command::Health { addr, tls } => {
            return tollgate::server::health_command("event-service", addr, &tls).await;
        }
    };
    let result = async {
        // Before building: a SIGTERM during start-up must still drain, not kill.
        let shutdown = shutdown_signal();
        let app = Application::build(settings).await?;
        app.run_until_stopped(shutdown).await
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}
