//! Typed settings of `identity-service serve`: defaults in code, overridden by flags or their
//! environment-variable twins, validated once at startup.

use std::net::SocketAddr;
use std::time::Duration;

use tollgate::database::DatabaseUrl;
use tollgate::metadata::InternalToken;

/// Loopback by default: a fresh install must not expose key management to the network until an
/// operator chooses an address.
pub const DEFAULT_LISTEN_ADDR: &str = "127.0.0.1:50051";
/// The embedded default: a SQLite file under `./data/`, created on first start.
pub const DEFAULT_DATABASE_URL: &str = "sqlite:data/identity.db";
/// Key records are cached this long. On one replica a delete takes effect at once; with
/// replicas sharing PostgreSQL, another replica may answer from its copy this much longer, so it
/// adds to the revocation bound. One second keeps that addition small while a busy key still
/// costs one database read per second instead of one per `Authorize`.
pub const DEFAULT_KEY_CACHE_TTL: &str = "1s";
/// Long enough for in-flight requests (all short) to finish, short enough for a rolling update.
pub const DEFAULT_SHUTDOWN_GRACE: &str = "10s";
/// How `identity-service serve` runs.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Address to listen on for gRPC (use port 0 for any free port).
    #[arg(long, env = "IDENTITY_LISTEN_ADDR", default_value = DEFAULT_LISTEN_ADDR)]
    pub listen_addr: SocketAddr,
    /// Where to keep data: `sqlite:<path>` or `postgres://user:password@host/database`.
    #[arg(long, env = "IDENTITY_DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_env_values = true)]
    pub database_url: DatabaseUrl,
    /// A file holding the database URL (a mounted Secret), instead of --database-url.
    #[arg(
        long,
        env = "IDENTITY_DATABASE_URL_FILE",
        conflicts_with = "database_url"
    )]
    pub database_url_file: Option<std::path::PathBuf>,
    /// Shared secret that callers of Authorize must send in `x-tollgate-internal-token`.
    /// Unset: Authorize is open to anyone who can reach the port (fine on loopback only).
    #[arg(long, env = "TOLLGATE_INTERNAL_TOKEN", hide_env_values = true)]
    pub internal_token: Option<InternalToken>,
    /// A file holding the internal token (a mounted Secret), instead of --internal-token.
    #[arg(
        long,
        env = "TOLLGATE_INTERNAL_TOKEN_FILE",
        conflicts_with = "internal_token"
    )]
    pub internal_token_file: Option<std::path::PathBuf>,
    /// Address for the Prometheus `/metrics` endpoint; unset: no metrics endpoint.
    #[arg(long, env = "IDENTITY_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// How long key records are cached for Authorize (0s disables the cache). Deletes on this
    /// replica take effect at once; other replicas see them within this time.
    #[arg(long, env = "IDENTITY_KEY_CACHE_TTL", default_value = DEFAULT_KEY_CACHE_TTL, value_parser = tollgate::telemetry::parse_duration)]
    pub key_cache_ttl: Duration,
    /// TLS; with a client CA, a verified client certificate carrying one of
    /// --authorize-client-names authenticates Authorize callers (as the internal token does).
    #[command(flatten)]
    pub tls: tollgate::tls::ServerTlsArgs,
    /// The names (DNS subject alternative names) of the client certificates that may call
    /// Authorize over mutual TLS, comma-separated; a certificate of the CA with another name
    /// may not.
    #[arg(long, env = "IDENTITY_AUTHORIZE_CLIENT_NAMES", value_delimiter = ',')]
    pub authorize_client_names: Vec<String>,
    /// Let Authorize answer without the internal credential on an address other than loopback:
    /// only where the network itself lets nobody but event-service reach the port.
    #[arg(long, env = "IDENTITY_ALLOW_OPEN_AUTHORIZE")]
    pub allow_open_authorize: bool,
    /// How long shutdown waits for in-flight requests before closing connections.
    #[arg(long, env = "IDENTITY_SHUTDOWN_GRACE", default_value = DEFAULT_SHUTDOWN_GRACE, value_parser = tollgate::telemetry::parse_duration)]
    pub shutdown_grace: Duration,
    /// Bounds on requests (message size, streams, timeouts).
    #[command(flatten)]
    pub limits: tollgate::limits::ServerLimits,
}

impl Settings {
    /// Settings for a database, with every other value at its default (port 0, for tests and
    /// for embedding in `tollgate up`).
    pub fn with_database(database_url: DatabaseUrl) -> Self {
        Self {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url,
            database_url_file: None,
            internal_token: None,
            internal_token_file: None,
            metrics_addr: None,
            key_cache_ttl: Duration::from_secs(1),
            tls: tollgate::tls::ServerTlsArgs::default(),
            authorize_client_names: Vec::new(),
            allow_open_authorize: false,
            shutdown_grace: Duration::from_secs(10),
            limits: tollgate::limits::ServerLimits::default(),
        }
    }
}

impl Settings {
    /// Checks what the flag parsers cannot check one flag at a time: above all, that `Authorize`
    /// (which tells whoever asks what a key digest may do, and records its use) is open to
    /// anyone only where that is meant.
    pub fn validate(&self) -> Result<(), String> {
        let mtls = self.tls.tls_client_ca.is_some();
        if mtls && self.authorize_client_names.is_empty() {
            return Err(
                "--tls-client-ca needs --authorize-client-names: the certificate names that may \
                 call Authorize (any certificate of the CA would otherwise do)"
                    .to_owned(),
            );
        }
        if !mtls && !self.authorize_client_names.is_empty() {
            return Err("--authorize-client-names needs --tls-client-ca".to_owned());
        }
        for name in &self.authorize_client_names {
            rustls_pki_types::ServerName::try_from(name.as_str())
                .map_err(|_| format!("--authorize-client-names: {name:?} is not a DNS name"))?;
        }
        let open = self.internal_token.is_none() && !mtls;
        if open && !self.listen_addr.ip().is_loopback() && !self.allow_open_authorize {
            return Err(format!(
                "Authorize would answer anyone who reaches {}: set --internal-token (or mutual \
                 TLS with --tls-client-ca and --authorize-client-names), listen on loopback, or \
                 pass --allow-open-authorize if the network admits nobody else",
                self.listen_addr
            ));
        }
        Ok(())
    }
}

impl Settings {
    /// Reads the secrets given as files into the settings they stand for.
    pub fn read_secret_files(&mut self) -> Result<(), String> {
        if let Some(path) = &self.database_url_file {
            self.database_url = tollgate::args::parse_secret_file(path)?;
        }
        if let Some(path) = &self.internal_token_file {
            self.internal_token = Some(tollgate::args::parse_secret_file(path)?);
        }
        Ok(())
    }
}
