//! Building and running the server: bind first (so port 0 works and the address is known before
//! anyone connects), then serve until told to stop, then drain.

use std::future::Future;
use std::net::SocketAddr;

use tollgate::metrics::{Metrics, MetricsServer};
use tollgate::proto::identity::v1::{
    api_key_service_server::ApiKeyServiceServer,
    authorization_service_server::AuthorizationServiceServer,
    role_service_server::RoleServiceServer, user_service_server::UserServiceServer,
};
use tollgate::server::{Health, Listeners, reflection_services, serve_with_drain};
use tonic::transport::server::TcpIncoming;

use crate::Identity;
use crate::config::Settings;
use crate::grpc::GrpcApi;
use crate::store::{self, StoreError};

/// The gRPC services identity-service serves, for health reporting.
pub const SERVICE_NAMES: &[&str] = &[
    "tollgate.identity.v1.UserService",
    "tollgate.identity.v1.ApiKeyService",
    "tollgate.identity.v1.RoleService",
    "tollgate.identity.v1.AuthorizationService",
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
    /// The TLS files cannot be used.
    #[error("invalid TLS configuration: {0}")]
    Tls(String),
    /// The metrics could not be defined (a build problem).
    #[error("cannot set up metrics")]
    Metrics(#[from] prometheus::Error),
    /// The reflection service could not read the descriptors (a build problem).
    #[error("cannot build the reflection service")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The server failed while serving.
    #[error("server error")]
    Serve(#[from] tonic::transport::Error),
}

/// A bound, not yet serving, identity-service.
#[derive(Debug)]
pub struct Application {
    listeners: Listeners,
    identity: Identity,
    metrics: Metrics,
    settings: Settings,
}

impl Application {
    /// Opens the database (applying migrations) and binds the listen address.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let store = store::connect(&settings.database_url)
            .await
            .map_err(|source| StartupError::Database {
                url: settings.database_url.to_string(),
                source,
            })?;
        let listeners = Listeners::bind(settings.listen_addr, settings.metrics_addr).await?;
        let metrics = Metrics::new("identity-service")?;
        let identity = Identity::with_key_cache(store, settings.key_cache_ttl).with_metrics(
            crate::metrics::IdentityMetrics::register(&metrics.registry)?,
        );
        Ok(Self {
            listeners,
            identity,
            metrics,
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
        let (health, health_service) = Health::new(SERVICE_NAMES).await;
        let store = self.identity.store().clone();
        let watcher = health
            .watch_database(move || {
                let store = store.clone();
                async move { store.ping().await.is_ok() }
            })
            .await;
        let (reflection_v1, reflection_v1alpha) =
            reflection_services(SERVICE_NAMES, &[tonic_health::pb::FILE_DESCRIPTOR_SET])?;
        let store_for_metrics = self.identity.store().clone();
        let tls = self.settings.tls.config().map_err(StartupError::Tls)?;
        let api = GrpcApi::new(
            self.identity,
            self.settings.internal_token.clone(),
            self.settings.tls.tls_client_ca.is_some(),
        );
        tracing::info!(
            addr = %self.listeners.grpc_addr,
            database = %self.settings.database_url,
            internal_token = self.settings.internal_token.is_some(),
            tls = tls.is_some(),
            mtls = self.settings.tls.tls_client_ca.is_some(),
            "identity-service listening"
        );
        let metrics_task = self.listeners.metrics.map(|server| {
            let store = store_for_metrics;
            server.serve(self.metrics.clone(), move |m| {
                let (size, idle) = store.pool_stats();
                m.set_pool(size, idle);
            })
        });
        let mut server = tonic::transport::Server::builder();
        if let Some(tls) = tls {
            server = server.tls_config(tls)?;
        }
        let router = server
            .layer(self.metrics.layer())
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(UserServiceServer::new(api.clone()))
            .add_service(ApiKeyServiceServer::new(api.clone()))
            .add_service(RoleServiceServer::new(api.clone()))
            .add_service(AuthorizationServiceServer::new(api));
        let incoming = TcpIncoming::from(self.listeners.grpc).with_nodelay(Some(true));
        let result = serve_with_drain(&health, shutdown, self.settings.shutdown_grace, |signal| {
            router.serve_with_incoming_shutdown(incoming, signal)
        })
        .await;
        watcher.abort();
        if let Some(metrics) = metrics_task {
            metrics.stop().await;
        }
        tracing::info!("identity-service stopped");
        Ok(result?)
    }
}
