//! Typed settings of `identity-service serve`: defaults in code, overridden by flags or their
//! environment-variable twins, validated once at startup.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tollgate::database::DatabaseUrl;

/// Loopback by default: a fresh install must not expose key management to the network until an
/// operator chooses an address.
pub const DEFAULT_LISTEN_ADDR: &str = "127.0.0.1:50051";
/// The embedded default: a SQLite file under `./data/`, created on first start.
pub const DEFAULT_DATABASE_URL: &str = "sqlite:data/identity.db";
/// Long enough for in-flight requests (all short) to finish, short enough for a rolling update.
pub const DEFAULT_SHUTDOWN_GRACE: &str = "10s";
/// A shorter internal credential would be guessable.
pub const MIN_INTERNAL_TOKEN_LEN: usize = 16;

/// A shared secret that internal callers of `Authorize` present. `Debug` never prints it.
#[derive(Clone)]
pub struct InternalToken(SecretString);

impl InternalToken {
    /// Whether `presented` is the token. Compares SHA-256 digests so that the comparison time
    /// says nothing about how much of a guess was right.
    pub fn matches(&self, presented: &[u8]) -> bool {
        use sha2::{Digest, Sha256};
        Sha256::digest(self.0.expose_secret().as_bytes()) == Sha256::digest(presented)
    }

    /// The token, for clients that must send it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl std::str::FromStr for InternalToken {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() < MIN_INTERNAL_TOKEN_LEN {
            return Err(format!(
                "the internal token must be at least {MIN_INTERNAL_TOKEN_LEN} characters"
            ));
        }
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the internal token must be printable ASCII without spaces".to_owned());
        }
        Ok(Self(SecretString::from(s.to_owned())))
    }
}

impl fmt::Debug for InternalToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InternalToken(***)")
    }
}

/// How `identity-service serve` runs.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Address to listen on for gRPC (use port 0 for any free port).
    #[arg(long, env = "IDENTITY_LISTEN_ADDR", default_value = DEFAULT_LISTEN_ADDR)]
    pub listen_addr: SocketAddr,
    /// Where to keep data: `sqlite:<path>` or `postgres://user:password@host/database`.
    #[arg(long, env = "IDENTITY_DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_env_values = true)]
    pub database_url: DatabaseUrl,
    /// Shared secret that callers of Authorize must send in `x-tollgate-internal-token`.
    /// Unset: Authorize is open to anyone who can reach the port (fine on loopback only).
    #[arg(long, env = "TOLLGATE_INTERNAL_TOKEN", hide_env_values = true)]
    pub internal_token: Option<InternalToken>,
    /// How long shutdown waits for in-flight requests before closing connections.
    #[arg(long, env = "IDENTITY_SHUTDOWN_GRACE", default_value = DEFAULT_SHUTDOWN_GRACE, value_parser = tollgate::telemetry::parse_duration)]
    pub shutdown_grace: Duration,
}

impl Settings {
    /// Settings for a database, with every other value at its default (port 0, for tests and
    /// for embedding in `tollgate up`).
    pub fn with_database(database_url: DatabaseUrl) -> Self {
        Self {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url,
            internal_token: None,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}
