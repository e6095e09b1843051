//! `tollgate up` and `tollgate dev-key`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::watch;
use tollgate::database::DatabaseUrl;
use tollgate::server::shutdown_signal;
use tollgate::telemetry::parse_duration;

use crate::CliResult;

/// Flags of `tollgate up`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Folder of the two SQLite databases (created on first start).
    #[arg(long, env = "TOLLGATE_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// identity-service's address.
    #[arg(long, env = "IDENTITY_LISTEN_ADDR", default_value = identity_service::config::DEFAULT_LISTEN_ADDR)]
    identity_addr: SocketAddr,
    /// event-service's address.
    #[arg(long, env = "EVENT_LISTEN_ADDR", default_value = event_service::config::DEFAULT_LISTEN_ADDR)]
    events_addr: SocketAddr,
    /// Name of the dev tenant created on first start.
    #[arg(long, default_value = "dev")]
    tenant: String,
    /// event-service's authorization cache TTL (the revocation bound).
    #[arg(long, env = "EVENT_AUTH_CACHE_TTL", default_value = event_service::config::DEFAULT_AUTH_CACHE_TTL, value_parser = parse_duration)]
    auth_cache_ttl: Duration,
}

/// Flags of `tollgate dev-key`.
#[derive(Debug, clap::Args)]
pub struct DevKeyArgs {
    /// The folder `tollgate up` uses.
    #[arg(long, env = "TOLLGATE_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// The tenant to mint a key for.
    #[arg(long, default_value = "dev")]
    tenant: String,
}

/// Runs both services until SIGINT/SIGTERM.
pub async fn up(args: UpArgs) -> CliResult {
    // Installed first, so a Ctrl-C during start-up stops both services cleanly.
    let shutdown = shutdown_signal();
    let mut identity_settings = identity_service::config::Settings::with_database(
        DatabaseUrl::Sqlite(args.data_dir.join("identity.db")),
    );
    identity_settings.listen_addr = args.identity_addr;
    let identity = identity_service::startup::Application::build(identity_settings).await?;
    let identity_url = url::Url::parse(&format!("http://{}", identity.local_addr()))?;

    let mut event_settings = event_service::config::Settings::new(
        DatabaseUrl::Sqlite(args.data_dir.join("events.db")),
        identity_url.clone(),
    );
    event_settings.listen_addr = args.events_addr;
    event_settings.auth_cache_ttl = args.auth_cache_ttl;
    event_settings.auth_denial_ttl = event_settings.auth_denial_ttl.min(args.auth_cache_ttl);
    let events = event_service::startup::Application::build(event_settings).await?;

    let domain = identity.identity().clone();
    let created = match domain.store().find_tenant_by_name(&args.tenant).await? {
        Some(_) => None,
        None => Some(
            domain
                .bootstrap_tenant(&args.tenant, "dev-admin", "tollgate up")
                .await?,
        ),
    };
    println!(
        "Tollgate is running (SQLite under {}/). Ctrl-C stops it.",
        args.data_dir.display()
    );
    println!("  identity-service  {identity_url}");
    println!("  event-service     http://{}/", events.local_addr());
    println!(
        "  HTTP/JSON         the same ports, under /v1/ (OpenAPI: {identity_url}openapi.json)"
    );
    match created {
        Some(t) => {
            println!();
            println!(
                "Created the dev tenant {:?} ({}). Its admin key, shown only now:",
                args.tenant, t.tenant.id
            );
            println!("  export TOLLGATE_API_KEY={}", t.secret.expose());
        }
        None => {
            println!();
            println!(
                "The dev tenant {:?} exists. Need an admin key? Run: tollgate dev-key",
                args.tenant
            );
        }
    }

    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let until = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let (identity_result, events_result) = tokio::join!(
        identity.run_until_stopped(until(stopped.clone())),
        events.run_until_stopped(until(stopped)),
    );
    identity_result?;
    events_result?;
    Ok(())
}

/// Prints a new admin key for the dev tenant.
pub async fn dev_key(args: DevKeyArgs) -> CliResult {
    let url = DatabaseUrl::Sqlite(args.data_dir.join("identity.db"));
    if !args.data_dir.join("identity.db").exists() {
        return Err(format!(
            "no database under {}/: run `tollgate up` first",
            args.data_dir.display()
        )
        .into());
    }
    let domain = identity_service::Identity::open(&url).await?;
    let (_, user, key, secret) = domain
        .issue_admin_key(&args.tenant, "dev-key", "tollgate dev-key")
        .await?;
    eprintln!(
        "New admin key {} for {} of tenant {:?}, shown only now:",
        key.id, user.id, args.tenant
    );
    println!("export TOLLGATE_API_KEY={}", secret.expose());
    Ok(())
}
