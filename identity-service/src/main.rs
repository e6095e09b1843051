//! `identity-service`: `serve` runs the gRPC server; `tenant create` bootstraps a tenant.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use identity_service::Identity;
use identity_service::config::{DEFAULT_DATABASE_URL, Settings};
use identity_service::startup::Application;
use tollgate::database::DatabaseUrl;
use tollgate::server::shutdown_signal;
use tollgate::telemetry::{LogArgs, error_chain};

#[derive(Debug, Parser)]
#[command(
    name = "identity-service",
    version,
    about = "Tollgate identity-service: users, service accounts, roles, API keys and Authorize"
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
        #[arg(long, env = "IDENTITY_LISTEN_ADDR", default_value = identity_service::config::DEFAULT_LISTEN_ADDR)]
        addr: std::net::SocketAddr,
        #[command(flatten)]
        tls: tollgate::tls::HealthTlsArgs,
    },
    /// Manage tenants directly in the database.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
}

#[derive(Debug, Subcommand)]
enum TenantCommand {
    /// Create a tenant with its first user account and a full-access production key, and print
    /// them once as JSON (the key is in `api_key`; it cannot be shown again).
    Create {
        /// The tenant's name.
        name: String,
        /// The first user account's display name.
        #[arg(long, default_value = "admin")]
        admin_name: String,
        /// The database to write to (the one `serve` uses).
        #[arg(long, env = "IDENTITY_DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_env_values = true)]
        database_url: DatabaseUrl,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli: Cli = tollgate::args::parse();
    if let Err(e) = cli.log.init() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Serve(settings) => serve(*settings).await,
        Command::Health { addr, tls } => {
            return tollgate::server::health_command("identity-service", addr, &tls).await;
        }
        Command::Tenant {
            command:
                TenantCommand::Create {
                    name,
                    admin_name,
                    database_url,
                },
        } => create_tenant(&name, &admin_name, &database_url).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> Result<(), Box<dyn std::error::Error>> {
    // Before building: a SIGTERM during start-up must still drain, not kill.
    let shutdown = shutdown_signal();
    let app = Application::build(settings).await?;
    app.run_until_stopped(shutdown).await?;
    Ok(())
}

async fn create_tenant(
    name: &str,
    admin_name: &str,
    database_url: &DatabaseUrl,
) -> Result<(), Box<dyn std::error::Error>> {
    let created = Identity::open(database_url)
        .await?
        .bootstrap_tenant(name, admin_name, "identity-service tenant create")
        .await?;
    let out = serde_json::json!({
        "tenant_id": created.tenant.id.as_str(),
        "tenant_name": created.tenant.name,
        "user_id": created.user.id.as_str(),
        "api_key_id": created.key.id.as_str(),
        "environment": created.key.environment.as_str(),
        "api_key": created.secret.expose(),
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
