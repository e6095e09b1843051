//! TLS for both services (rustls): server certificates, client verification for mutual TLS, and
//! event-service's client side towards identity-service. Files are PEM; they are read once at
//! startup so that a bad path is a configuration error, not a failure on first use.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// Server TLS flags, shared by both services.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServerTlsArgs {
    /// PEM certificate chain to serve TLS with (with --tls-key). Unset: plaintext h2c.
    #[arg(long, env = "TOLLGATE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "TOLLGATE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA whose client certificates are verified (mutual TLS). Clients may still connect
    /// without one; what a verified certificate grants is up to the service.
    #[arg(long, env = "TOLLGATE_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
}

fn read(what: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))
}

impl ServerTlsArgs {
    /// The server configuration, or `None` for plaintext.
    pub fn config(&self) -> Result<Option<ServerTlsConfig>, String> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let mut config = ServerTlsConfig::new().identity(Identity::from_pem(
            read("TLS certificate", cert)?,
            read("TLS key", key)?,
        ));
        if let Some(ca) = &self.tls_client_ca {
            config = config
                .client_ca_root(Certificate::from_pem(read("client CA", ca)?))
                .client_auth_optional(true);
        }
        Ok(Some(config))
    }
}

/// TLS flags of a service binary's `health` subcommand, for a server started with `--tls-cert`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct HealthTlsArgs {
    /// PEM CA of the server's certificate: check over TLS. Unset: plaintext h2c.
    #[arg(long = "tls-ca", env = "TOLLGATE_HEALTH_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// The name the server's certificate must carry [default: localhost].
    #[arg(
        long = "tls-domain",
        env = "TOLLGATE_HEALTH_TLS_DOMAIN",
        requires = "tls_ca"
    )]
    pub tls_domain: Option<String>,
}

impl HealthTlsArgs {
    /// The client configuration, or `None` for plaintext. No client certificate: servers ask
    /// for one but do not require it at the handshake, and health needs no authentication.
    pub fn config(&self) -> Result<Option<ClientTlsConfig>, String> {
        let domain = self.tls_domain.as_deref().unwrap_or("localhost");
        self.tls_ca
            .as_deref()
            .map(|ca| client_config(ca, None, domain))
            .transpose()
    }
}

/// Client TLS towards a Tollgate service: the CA that signed its certificate (services inside a
/// cluster use a private CA) and an optional client certificate for mutual TLS.
pub fn client_config(
    ca: &Path,
    client_cert: Option<(&Path, &Path)>,
    domain: &str,
) -> Result<ClientTlsConfig, String> {
    let mut config = ClientTlsConfig::new()
        .domain_name(domain)
        .ca_certificate(Certificate::from_pem(read("CA certificate", ca)?));
    if let Some((cert, key)) = client_cert {
        config = config.identity(Identity::from_pem(
            read("client certificate", cert)?,
            read("client key", key)?,
        ));
    }
    Ok(config)
}
