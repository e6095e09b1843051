//! Typed settings of `event-service serve`: defaults in code, overridden by flags or their
//! environment-variable twins, validated once at startup.

use std::net::SocketAddr;
use std::time::Duration;

use tollgate::database::DatabaseUrl;
use tollgate::metadata::InternalToken;
use tollgate::telemetry::parse_duration;

/// Loopback by default, like identity-service.
pub const DEFAULT_LISTEN_ADDR: &str = "127.0.0.1:50052";
/// The embedded default: a SQLite file under `./data/`, created on first start.
pub const DEFAULT_DATABASE_URL: &str = "sqlite:data/events.db";
/// identity-service's default address.
pub const DEFAULT_IDENTITY_URL: &str = "http://127.0.0.1:50051";
/// The published bound on how long a deleted key keeps working: short enough that revocation
/// is felt within seconds, long enough that a busy key costs one `Authorize` call per 10 s.
/// Default `--max-meter-scan-events`: about a second of reading on one core.
pub const DEFAULT_MAX_METER_SCAN_EVENTS: usize = 1_000_000;
pub const DEFAULT_AUTH_CACHE_TTL: &str = "10s";
/// Denials are cached briefly: a key that was just given a role (or a typo being retried)
/// should not wait the full TTL, but a flood of bad keys must not reach identity-service.
pub const DEFAULT_AUTH_DENIAL_TTL: &str = "2s";
/// Entries (key digest × permission) the cache holds at most; about 200 bytes each.
pub const DEFAULT_AUTH_CACHE_CAPACITY: u64 = 100_000;
/// How long an `Authorize` call may take before the request fails closed with UNAVAILABLE.
pub const DEFAULT_IDENTITY_TIMEOUT: &str = "2s";
/// How far in the future an event's timestamp may be (clock skew between producers).
pub const DEFAULT_MAX_FUTURE_SKEW: &str = "5m";
/// Long enough for in-flight requests (all short) to finish, short enough for a rolling update.
pub const DEFAULT_SHUTDOWN_GRACE: &str = "10s";
/// Bytes of event data a `ListEvents` page holds at most before it ends early (its
/// `next_page_token` continues): a page of 1000 large events would otherwise exceed the 4 MiB a
/// gRPC client accepts by default, and hold tens of MiB in the server per request.
pub const DEFAULT_MAX_PAGE_BYTES: &str = "3MiB";
/// Rows (windows × customers) a `GetUsage` report may have: about 3 MiB of response, well inside
/// a client's default receive limit.
pub const DEFAULT_MAX_USAGE_BUCKETS: usize = 50_000;

/// How `event-service serve` runs.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Address to listen on for gRPC (use port 0 for any free port).
    #[arg(long, env = "EVENT_LISTEN_ADDR", default_value = DEFAULT_LISTEN_ADDR)]
    pub listen_addr: SocketAddr,
    /// Where to keep events: `sqlite:<path>` or `postgres://user:password@host/database`.
    #[arg(long, env = "EVENT_DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_env_values = true)]
    pub database_url: DatabaseUrl,
    /// A file holding the database URL (a mounted Secret), instead of --database-url.
    #[arg(long, env = "EVENT_DATABASE_URL_FILE", conflicts_with = "database_url")]
    pub database_url_file: Option<std::path::PathBuf>,
    /// identity-service's gRPC address (`http://` or `https://`).
    #[arg(long, env = "EVENT_IDENTITY_URL", default_value = DEFAULT_IDENTITY_URL)]
    pub identity_url: url::Url,
    /// How long an authorization decision is cached: the bound on how long a deleted key keeps
    /// working. Never longer than the key's own expiry.
    #[arg(long, env = "EVENT_AUTH_CACHE_TTL", default_value = DEFAULT_AUTH_CACHE_TTL, value_parser = parse_duration)]
    pub auth_cache_ttl: Duration,
    /// How long a denial is cached (at most the TTL).
    #[arg(long, env = "EVENT_AUTH_DENIAL_TTL", default_value = DEFAULT_AUTH_DENIAL_TTL, value_parser = parse_duration)]
    pub auth_denial_ttl: Duration,
    /// How many decisions the cache holds at most.
    #[arg(long, env = "EVENT_AUTH_CACHE_CAPACITY", default_value_t = DEFAULT_AUTH_CACHE_CAPACITY)]
    pub auth_cache_capacity: u64,
    /// Timeout of one `Authorize` call.
    #[arg(long, env = "EVENT_IDENTITY_TIMEOUT", default_value = DEFAULT_IDENTITY_TIMEOUT, value_parser = parse_duration)]
    pub identity_timeout: Duration,
    /// Internal credential sent with every `Authorize` call (identity-service's `--internal-token`).
    #[arg(long, env = "TOLLGATE_INTERNAL_TOKEN", hide_env_values = true)]
    pub internal_token: Option<InternalToken>,
    /// A file holding the internal token (a mounted Secret), instead of --internal-token.
    #[arg(
        long,
        env = "TOLLGATE_INTERNAL_TOKEN_FILE",
        conflicts_with = "internal_token"
    )]
    pub internal_token_file: Option<std::path::PathBuf>,
    /// PEM CA that signed identity-service's certificate (required with an https:// URL).
    #[arg(long, env = "EVENT_IDENTITY_CA")]
    pub identity_ca: Option<std::path::PathBuf>,
    /// PEM client certificate presented to identity-service (mutual TLS), with --identity-client-key.
    #[arg(
        long,
        env = "EVENT_IDENTITY_CLIENT_CERT",
        requires = "identity_client_key"
    )]
    pub identity_client_cert: Option<std::path::PathBuf>,
    /// PEM private key of --identity-client-cert.
    #[arg(
        long,
        env = "EVENT_IDENTITY_CLIENT_KEY",
        requires = "identity_client_cert"
    )]
    pub identity_client_key: Option<std::path::PathBuf>,
    /// TLS for event-service's own port.
    #[command(flatten)]
    pub tls: tollgate::tls::ServerTlsArgs,
    /// Address for the Prometheus `/metrics` endpoint; unset: no metrics endpoint.
    #[arg(long, env = "EVENT_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// How far in the future an event's timestamp may be.
    #[arg(long, env = "EVENT_MAX_FUTURE_SKEW", default_value = DEFAULT_MAX_FUTURE_SKEW, value_parser = parse_duration)]
    pub max_future_skew: Duration,
    /// How long shutdown waits for in-flight requests before closing connections.
    #[arg(long, env = "EVENT_SHUTDOWN_GRACE", default_value = DEFAULT_SHUTDOWN_GRACE, value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// Bytes of event data one ListEvents page holds at most (it ends early and continues).
    #[arg(long, env = "EVENT_MAX_PAGE_BYTES", default_value = DEFAULT_MAX_PAGE_BYTES, value_parser = tollgate::limits::parse_size)]
    pub max_page_bytes: usize,
    /// Rows (windows × customers) one GetUsage or GetMeterUsage report may have.
    #[arg(long, env = "EVENT_MAX_USAGE_BUCKETS", default_value_t = DEFAULT_MAX_USAGE_BUCKETS)]
    pub max_usage_buckets: usize,
    /// Events one GetMeterUsage may read where the meter's rollups do not cover the request
    /// (finer windows per customer, ranges off their boundaries).
    #[arg(long, env = "EVENT_MAX_METER_SCAN_EVENTS", default_value_t = DEFAULT_MAX_METER_SCAN_EVENTS)]
    pub max_meter_scan_events: usize,
    /// Bounds on requests (message size, streams, timeouts).
    #[command(flatten)]
    pub limits: tollgate::limits::ServerLimits,
}

impl Settings {
    /// Settings for a database and an identity-service, every other value at its default
    /// (port 0, for tests and for embedding in `tollgate up`).
    pub fn new(database_url: DatabaseUrl, identity_url: url::Url) -> Self {
        let duration = |s: &str| parse_duration(s).unwrap_or_default();
        Self {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url,
            database_url_file: None,
            identity_url,
            auth_cache_ttl: duration(DEFAULT_AUTH_CACHE_TTL),
            auth_denial_ttl: duration(DEFAULT_AUTH_DENIAL_TTL),
            auth_cache_capacity: DEFAULT_AUTH_CACHE_CAPACITY,
            identity_timeout: duration(DEFAULT_IDENTITY_TIMEOUT),
            internal_token: None,
            internal_token_file: None,
            identity_ca: None,
            identity_client_cert: None,
            identity_client_key: None,
            tls: tollgate::tls::ServerTlsArgs::default(),
            metrics_addr: None,
            max_future_skew: duration(DEFAULT_MAX_FUTURE_SKEW),
            shutdown_grace: duration(DEFAULT_SHUTDOWN_GRACE),
            max_page_bytes: tollgate::limits::parse_size(DEFAULT_MAX_PAGE_BYTES).unwrap_or(3 << 20),
            max_usage_buckets: DEFAULT_MAX_USAGE_BUCKETS,
            max_meter_scan_events: DEFAULT_MAX_METER_SCAN_EVENTS,
            limits: tollgate::limits::ServerLimits::default(),
        }
    }

    /// Checks what the flag parsers cannot check one flag at a time.
    pub fn validate(&self) -> Result<(), String> {
        if !matches!(self.identity_url.scheme(), "http" | "https") {
            return Err(format!(
                "--identity-url must be http:// or https://, not {}://",
                self.identity_url.scheme()
            ));
        }
        if self.identity_url.scheme() == "https" && self.identity_ca.is_none() {
            return Err("--identity-url https:// needs --identity-ca (the CA of identity-service's certificate)".to_owned());
        }
        if self.identity_url.scheme() == "http"
            && (self.identity_ca.is_some() || self.identity_client_cert.is_some())
        {
            return Err(
                "--identity-ca and --identity-client-cert need an https:// --identity-url"
                    .to_owned(),
            );
        }
        if self.auth_denial_ttl > self.auth_cache_ttl {
            return Err("--auth-denial-ttl must not be longer than --auth-cache-ttl".to_owned());
        }
        if self.auth_cache_capacity == 0 {
            return Err("--auth-cache-capacity must be at least 1".to_owned());
        }
        if self.max_usage_buckets == 0 {
            return Err("--max-usage-buckets must be at least 1".to_owned());
        }
        if self.max_meter_scan_events == 0 {
            return Err("--max-meter-scan-events must be at least 1".to_owned());
        }
        if self.identity_timeout.is_zero() {
            return Err("--identity-timeout must be more than 0".to_owned());
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
