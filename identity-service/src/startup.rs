//! Building and running the server: bind first (so port 0 works and the address is known before
//! anyone connects), then serve until told to stop, then drain.

use std::future::Future;
use std::net::SocketAddr;

use tollgate::metrics::{Metrics, MetricsServer};
use tollgate::proto::identity::v1::{
    api_key_service_server::ApiKeyServiceServer, audit_service_server::AuditServiceServer,
    authorization_service_server::AuthorizationServiceServer,
    role_service_server::RoleServiceServer, user_service_server::UserServiceServer,
};
use tollgate::server::{Listeners, ServeError, Serving};

use crate::Identity;
use crate::config::Settings;
use crate::grpc::GrpcApi;
use crate::metrics::IdentityMetrics;
use crate::store::StoreError;
use crate::store::sql::SqlStore;

/// The gRPC services identity-service serves, for health reporting.
pub const SERVICE_NAMES: &[&str] = &[
    "tollgate.identity.v1.UserService",
    "tollgate.identity.v1.ApiKeyService",
    "tollgate.identity.v1.RoleService",
    "tollgate.identity.v1.AuthorizationService",
    "tollgate.identity.v1.AuditService",
];

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The database could not be opened or migrated.
    #[error("cannot open the database {url}")]
    Database {
        /// The URL, without its password.
        url: String,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// An address could not be bound.
    #[error(transparent)]
    Bind(#[from] tollgate::server::BindError),
    /// The settings cannot be used together.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The TLS files cannot be used.
    #[error("invalid TLS configuration: {0}")]
    Tls(String),
    /// The metrics could not be defined (a build problem).
    #[error("cannot set up metrics")]
    Metrics(#[from] prometheus::Error),
    /// Serving failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// A bound, not yet serving, identity-service.
#[derive(Debug)]
pub struct Application {
    listeners: Listeners,
    identity: Identity,
    metrics: Metrics,
    tls: Option<tonic::transport::ServerTlsConfig>,
    settings: Settings,
}

impl Application {
    /// Opens the database (applying migrations) and binds the listen address.
    pub async fn build(mut settings: Settings) -> Result<Self, StartupError> {
        settings.read_secret_files().map_err(StartupError::Config)?;
        settings.validate().map_err(StartupError::Config)?;
        let tls = settings.tls.config().map_err(StartupError::Tls)?;
        let store = SqlStore::connect_with(
            &settings.database_url,
            Some(settings.limits.statement_timeout),
        )
        .await
        .map_err(|source| StartupError::Database {
            url: settings.database_url.to_string(),
            source,
        })?;
        let listeners = Listeners::bind(settings.listen_addr, settings.metrics_addr).await?;
        let metrics = Metrics::new("identity-service")?;
        let (identity, _follower) = Identity::serving(
            store,
            settings.key_cache_ttl,
            IdentityMetrics::register(&metrics.registry)?,
        )
        .await
        .map_err(|source| StartupError::Database {
            url: settings.database_url.to_string(),
            source,
        })?;
        Ok(Self {
            listeners,
            identity,
            metrics,
            tls,
            settings,
        })
    }

    /// The bound address (with the real port when the settings asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listeners.grpc_addr
    }

    /// The bound metrics address, if metrics are served.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.listeners
            .metrics
            .as_ref()
            .map(MetricsServer::local_addr)
    }

    /// The domain, for callers embedding the service (bootstrap in `tollgate up`, tests).
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Serves until `shutdown` resolves, then drains within the configured grace period.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartupError> {
        let serving = Serving {
            services: SERVICE_NAMES,
            listeners: self.listeners,
            metrics: self.metrics.clone(),
            database: self.identity.store().clone(),
            grace: self.settings.shutdown_grace,
        };
        let api = GrpcApi::new(
            self.identity,
            self.settings.internal_token.clone(),
            &self.settings.authorize_client_names,
        );
        let settings = self.settings;
        let (tls, layer) = (self.tls, self.metrics.layer());
        let addr = serving.listeners.grpc_addr;
        serving
            .run(shutdown, |served| async move {
                tracing::info!(
                    %addr,
                    database = %settings.database_url,
                    internal_token = settings.internal_token.is_some(),
                    tls = tls.is_some(),
                    mtls = settings.tls.tls_client_ca.is_some(),
                    "identity-service listening"
                );
                let mut server = settings.limits.server();
                if let Some(tls) = tls {
                    server = server.tls_config(tls)?;
                }
                let size = settings.limits.max_message_size;
                let api = api.ending_streams_with(served.health.clone());
                let routes = tollgate::http::beside_grpc(
                    served.routes,
                    crate::http::router(api.clone()),
                    size.min(crate::http::MAX_BODY_BYTES),
                );
                server
                    .layer(layer)
                    .add_routes(routes)
                    .add_service(
                        UserServiceServer::new(api.clone()).max_decoding_message_size(size),
                    )
                    .add_service(
                        ApiKeyServiceServer::new(api.clone()).max_decoding_message_size(size),
                    )
                    .add_service(
                        RoleServiceServer::new(api.clone()).max_decoding_message_size(size),
                    )
                    .add_service(
                        AuditServiceServer::new(api.clone()).max_decoding_message_size(size),
                    )
                    .add_service(
                        AuthorizationServiceServer::new(api).max_decoding_message_size(size),
                    )
                    .serve_with_incoming_shutdown(served.incoming, served.shutdown)
                    .await
            })
            .await?;
        tracing::info!("identity-service stopped");
        Ok(())
    }
}
