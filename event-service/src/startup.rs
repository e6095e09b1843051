//! Building and running the server: bind first (so port 0 works), then serve until told to stop,
//! then drain, and let the writer commit what is queued before returning.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tollgate::metrics::{Metrics, MetricsServer};
use tollgate::proto::events::v1::event_service_server::EventServiceServer;
use tollgate::proto::events::v1::meter_service_server::MeterServiceServer;
use tollgate::server::{Listeners, ServeError, Serving};

use crate::authz::cache::AuthCache;
use crate::authz::client::IdentityClient;
use crate::authz::layer::AuthLayer;
use crate::authz::revocations::{self, RevocationMetrics};
use crate::config::Settings;
use crate::events::{EventLimits, Events};
use crate::grpc::EventApi;
use crate::grpc::meters::MeterApi;
use crate::meters::{MeterLimits, Meters};
use crate::metrics::EventMetrics;
use crate::store::sql::SqlStore;
use crate::store::{EventStore, StoreError};
use crate::writer::{Failure, Ingestor};

/// The gRPC services event-service serves, for health reporting.
pub const SERVICE_NAMES: &[&str] = &[
    "tollgate.events.v1.EventService",
    "tollgate.events.v1.MeterService",
];

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
    /// Serving failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// The write path failed for good (a failed sync, a writer that panicked): the service
    /// stopped so that it is restarted.
    #[error("stopped because the write path failed: {0}")]
    WritePathFailed(String),
}

/// A bound, not yet serving, event-service.
#[derive(Debug)]
pub struct Application {
    listeners: Listeners,
    store: Arc<dyn EventStore>,
    events: Events,
    meters: Meters,
    writer: JoinHandle<()>,
    failure: Failure,
    auth: Arc<AuthCache>,
    revocations: RevocationMetrics,
    server_tls: Option<tonic::transport::ServerTlsConfig>,
    metrics: Metrics,
    settings: Settings,
}

impl Application {
    /// Validates the settings, opens the database (applying migrations), starts the writer and
    /// binds the listen address. identity-service is connected to on first use.
    pub async fn build(mut settings: Settings) -> Result<Self, StartupError> {
        settings.read_secret_files().map_err(StartupError::Config)?;
        settings.validate().map_err(StartupError::Config)?;
        let metrics = Metrics::new("event-service")?;
        let event_metrics = EventMetrics::register(&metrics.registry)?;
        let revocations = RevocationMetrics::register(&metrics.registry)?;
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
        let sql = Arc::new(
            SqlStore::connect_with(
                &settings.database_url,
                Some(settings.limits.statement_timeout),
            )
            .await
            .map_err(|source| StartupError::Database {
                url: settings.database_url.to_string(),
                source,
            })?,
        );
        let store: Arc<dyn EventStore> = sql.clone();
        let listeners = Listeners::bind(settings.listen_addr, settings.metrics_addr).await?;
        let (ingestor, writer) = Ingestor::start(store.clone(), event_metrics);
        let failure = ingestor.failure().clone();
        let events = Events::new(
            store.clone(),
            ingestor,
            EventLimits {
                max_future_skew: settings.max_future_skew,
                max_page_bytes: settings.max_page_bytes,
                max_usage_buckets: settings.max_usage_buckets,
            },
        );
        let meters = Meters::new(
            sql,
            MeterLimits {
                max_rows: settings.max_usage_buckets,
                max_events: settings.max_meter_scan_events,
            },
        );
        Ok(Self {
            listeners,
            store,
            events,
            meters,
            writer,
            failure,
            auth,
            revocations,
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
        let serving = Serving {
            services: SERVICE_NAMES,
            listeners: self.listeners,
            metrics: self.metrics.clone(),
            database: self.store.clone(),
            grace: self.settings.shutdown_grace,
        };
        let settings = self.settings;
        let (tls, events, auth) = (self.server_tls, self.events, self.auth.clone());
        // Meters created before are backfilled while the service serves.
        let backfill = tokio::spawn(self.meters.clone().run_backfill());
        // Staged meter deltas are added to the rollups while the service serves.
        let fold = tokio::spawn(self.meters.clone().run_fold());
        let meters = self.meters;
        // Revocations are followed while the service serves.
        let follower = tokio::spawn(revocations::follow(
            self.auth.clone(),
            self.revocations,
            settings.auth_cache_ttl,
        ));
        let metrics_layer = self.metrics.layer();
        let addr = serving.listeners.grpc_addr;
        // A write path that failed for good stops the service as a signal would, and the
        // process then exits with an error.
        let failure = self.failure.clone();
        let shutdown = async move {
            tokio::select! {
                () = shutdown => {}
                reason = failure.wait() => {
                    tracing::error!(%reason, "stopping: the write path failed");
                }
            }
        };
        let served = serving
            .run(shutdown, |served| async move {
                tracing::info!(
                    %addr,
                    database = %settings.database_url,
                    identity = %settings.identity_url,
                    auth_cache_ttl = ?settings.auth_cache_ttl,
                    "event-service listening"
                );
                // Outermost, the metrics layer sees every request, refusals included. The auth
                // layer wraps every route: it lets health, reflection and the HTTP routes through
                // and checks EventService and MeterService requests before routing, so no gRPC
                // handler runs unauthorized. An HTTP handler authorizes first, with the same
                // decision cache (`authz::layer::authorize`).
                let mut server = settings.limits.server();
                if let Some(tls) = tls {
                    server = server.tls_config(tls)?;
                }
                let (events, meters) = (EventApi::new(events), MeterApi::new(meters));
                let size = settings.limits.max_message_size;
                let routes = tollgate::http::beside_grpc(
                    served.routes,
                    crate::http::router(events.clone(), meters.clone(), auth.clone()),
                    size,
                );
                server
                    .layer(metrics_layer)
                    .layer(AuthLayer::new(auth))
                    .add_routes(routes)
                    .add_service(EventServiceServer::new(events).max_decoding_message_size(size))
                    .add_service(MeterServiceServer::new(meters).max_decoding_message_size(size))
                    .serve_with_incoming_shutdown(served.incoming, served.shutdown)
                    .await
            })
            .await;
        follower.abort();
        backfill.abort();
        // A fold cut short rolls back: its staged rows stay for the next one, here or elsewhere.
        fold.abort();
        // The router (and with it every ingest handle) is gone; the writer ends once the queue
        // is empty.
        if let Err(e) = self.writer.await {
            tracing::error!(error = %e, "ingest writer failed");
        }
        tracing::info!(
            identity_calls = self.auth.identity_calls(),
            "event-service stopped"
        );
        served?;
        match self.failure.get() {
            Some(reason) => Err(StartupError::WritePathFailed(reason)),
            None => Ok(()),
        }
    }
}
