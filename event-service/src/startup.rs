//! Building and running the server: bind first (so port 0 works), then serve until told to stop,
//! then drain, and let the writer commit what is queued before returning.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tollgate::metrics::{Metrics, MetricsServer};
use tollgate::proto::events::v1::event_service_server::EventServiceServer;
use tollgate::server::{Health, Listeners, reflection_services, serve_with_drain};
use tonic::transport::server::TcpIncoming;

use crate::authz::cache::AuthCache;
use crate::authz::client::IdentityClient;
use crate::authz::layer::AuthLayer;
use crate::config::Settings;
use crate::events::Events;
use crate::events::ingest::Ingestor;
use crate::grpc::EventApi;
use crate::metrics::EventMetrics;
use crate::store::{self, EventStore, StoreError};

/// The gRPC services event-service serves, for health reporting.
pub const SERVICE_NAMES: &[&str] = &["tollgate.events.v1.EventService"];

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The settings contradict each other.
    #[error("invalid configuration: {0}")]
    Config(String),
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

/// A bound, not yet serving, event-service.
#[derive(Debug)]
pub struct Application {
    listeners: Listeners,
    store: Arc<dyn EventStore>,
    events: Events,
    writer: JoinHandle<()>,
    auth: Arc<AuthCache>,
    server_tls: Option<tonic::transport::ServerTlsConfig>,
    metrics: Metrics,
    settings: Settings,
}

impl Application {
    /// Validates the settings, opens the database (applying migrations), starts the writer and
    /// binds the listen address. identity-service is connected to on first use.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        settings.validate().map_err(StartupError::Config)?;
        let metrics = Metrics::new("event-service")?;
        let event_metrics = EventMetrics::register(&metrics.registry)?;
        let identity_tls = match &settings.identity_ca {
            Some(ca) => Some(
                tollgate::tls::client_config(
                    ca,
                    settings
                        .identity_client_cert
                        .as_deref()
                        .zip(settings.identity_client_key.as_deref()),
                    settings.identity_url.host_str().unwrap_or_default(),
                )
                .map_err(StartupError::Config)?,
            ),
            None => None,
        };
        let server_tls = settings.tls.config().map_err(StartupError::Config)?;
        let client = IdentityClient::new(
            &settings.identity_url,
            settings.identity_timeout,
            settings.internal_token.as_ref(),
            identity_tls,
            event_metrics.clone(),
        )
        .map_err(StartupError::Config)?;
        let auth = Arc::new(AuthCache::new(
            client,
            settings.auth_cache_ttl,
            settings.auth_denial_ttl,
            settings.auth_cache_capacity,
            event_metrics.clone(),
        ));
        let store = store::connect(&settings.database_url)
            .await
            .map_err(|source| StartupError::Database {
                url: settings.database_url.to_string(),
                source,
            })?;
        let listeners = Listeners::bind(settings.listen_addr, settings.metrics_addr).await?;
        let (ingestor, writer) = Ingestor::start(store.clone(), event_metrics);
        let events = Events::new(store.clone(), ingestor, settings.max_future_skew);
        Ok(Self {
            listeners,
            store,
            events,
            writer,
            auth,
            server_tls,
            metrics,
            settings,
        })
    }

    /// The bound address.
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

    /// The authorization cache, to read how many calls reached identity-service.
    pub fn auth_cache(&self) -> Arc<AuthCache> {
        self.auth.clone()
    }

    /// Serves until `shutdown` resolves, drains within the grace period, then waits for the
    /// writer to commit every queued event (each of which a caller is still waiting on).
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartupError> {
        let (health, health_service) = Health::new(SERVICE_NAMES).await;
        let store = self.store.clone();
        let watcher = health
            .watch_database(move || {
                let store = store.clone();
                async move { store.ping().await.is_ok() }
            })
            .await;
        let (reflection_v1, reflection_v1alpha) =
            reflection_services(SERVICE_NAMES, &[tonic_health::pb::FILE_DESCRIPTOR_SET])?;
        tracing::info!(
            addr = %self.listeners.grpc_addr,
            database = %self.settings.database_url,
            identity = %self.settings.identity_url,
            auth_cache_ttl = ?self.settings.auth_cache_ttl,
            "event-service listening"
        );
        let metrics_task = self.listeners.metrics.map(|server| {
            let store = self.store.clone();
            server.serve(self.metrics.clone(), move |m| {
                let (size, idle) = store.pool_stats();
                m.set_pool(size, idle);
            })
        });
        // Outermost, the metrics layer sees every request, refusals included. The auth layer
        // wraps every route: it lets health and reflection through and checks EventService
        // requests before routing, so no handler runs unauthorized.
        let mut server = tonic::transport::Server::builder();
        if let Some(tls) = self.server_tls {
            server = server.tls_config(tls)?;
        }
        let router = server
            .layer(self.metrics.layer())
            .layer(AuthLayer::new(self.auth.clone()))
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(EventServiceServer::new(EventApi::new(self.events)));
        let incoming = TcpIncoming::from(self.listeners.grpc).with_nodelay(Some(true));
        let result = serve_with_drain(&health, shutdown, self.settings.shutdown_grace, |signal| {
            router.serve_with_incoming_shutdown(incoming, signal)
        })
        .await;
        watcher.abort();
        if let Some(metrics) = metrics_task {
            metrics.stop().await;
        }
        // The router (and with it every ingest handle) is gone; the writer ends once the queue
        // is empty.
        if let Err(e) = self.writer.await {
            tracing::error!(error = %e, "ingest writer failed");
        }
        tracing::info!(
            identity_calls = self.auth.identity_calls(),
            "event-service stopped"
        );
        Ok(result?)
    }
}
