//! Serving plumbing both services share: health reporting, reflection, the shutdown signal and
//! a bounded drain.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// A boxed future, for the shutdown signal handed to tonic.
pub type Signal = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The health service name that stays SERVING while the process runs (liveness probes).
pub const LIVENESS: &str = "liveness";

/// How often the database is pinged to keep the health status true.
pub const DATABASE_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// How long a database check may take before the database counts as unreachable. A ping waits
/// for a pool connection, and a pool waits up to its acquire timeout (10 s on PostgreSQL) for a
/// server that is down: without this bound, a check begun during an outage shorter than that
/// answered once the server was back, and health never left SERVING.
pub const DATABASE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The `grpc.health.v1` status of a service: the overall status (`""`) and that of each named
/// gRPC service move together.
#[derive(Clone)]
pub struct Health {
    reporter: HealthReporter,
    services: Arc<[&'static str]>,
    draining: Arc<tokio::sync::watch::Sender<bool>>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("services", &self.services)
            .finish()
    }
}

impl Health {
    /// A reporter for `services` (fully qualified gRPC service names), NOT_SERVING until told
    /// otherwise, and the `grpc.health.v1.Health` service that reports it.
    pub async fn new(
        services: &[&'static str],
    ) -> (
        Self,
        tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
    ) {
        let (reporter, server) = tonic_health::server::health_reporter();
        let health = Self {
            reporter,
            services: services.into(),
            draining: Arc::new(tokio::sync::watch::channel(false).0),
        };
        health.set(ServingStatus::NotServing).await;
        // `liveness` answers SERVING for as long as the process serves at all, draining
        // included: a liveness probe must not restart a pod because its database is down.
        health
            .reporter
            .set_service_status(LIVENESS, ServingStatus::Serving)
            .await;
        (health, server)
    }

    /// Sets the status of every service. Once draining has begun, only NOT_SERVING is set.
    pub async fn set(&self, status: ServingStatus) {
        if status == ServingStatus::Serving && self.is_draining() {
            return;
        }
        self.reporter.set_service_status("", status).await;
        for service in self.services.iter() {
            self.reporter.set_service_status(*service, status).await;
        }
    }

    /// Marks the service as draining: NOT_SERVING from now on, whatever the database says.
    pub async fn begin_drain(&self) {
        self.draining.send_replace(true);
        self.set(ServingStatus::NotServing).await;
    }

    /// Whether [`Health::begin_drain`] was called.
    pub fn is_draining(&self) -> bool {
        *self.draining.borrow()
    }

    /// Resolves once draining has begun: long-lived streams end then, so that the drain does
    /// not wait for them until its grace period is over.
    pub fn drained(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut draining = self.draining.subscribe();
        async move {
            // The sender lives as long as any Health clone; if all are gone, so is the server.
            let _ = draining.wait_for(|d| *d).await;
        }
    }

    /// Keeps the status in line with the database: SERVING while `ping` succeeds, NOT_SERVING
    /// while it fails, until draining begins. The first check happens before this returns, so
    /// a server started afterwards never answers a health check with a stale status.
    pub async fn watch_database<P, F>(&self, ping: P) -> tokio::task::JoinHandle<()>
    where
        P: Fn() -> F + Send + Sync + 'static,
        F: Future<Output = bool> + Send,
    {
        let first = self.check_database(&ping, None).await;
        let health = self.clone();
        tokio::spawn(async move {
            let mut last = first;
            while !health.is_draining() {
                tokio::time::sleep(DATABASE_CHECK_INTERVAL).await;
                last = health.check_database(&ping, Some(last)).await;
            }
        })
    }

    async fn check_database<P, F>(&self, ping: &P, last: Option<ServingStatus>) -> ServingStatus
    where
        P: Fn() -> F + Sync,
        F: Future<Output = bool> + Send,
    {
        let reachable = tokio::time::timeout(DATABASE_CHECK_TIMEOUT, ping())
            .await
            .unwrap_or(false);
        let status = if reachable {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        if last != Some(status) {
            if status == ServingStatus::NotServing {
                tracing::warn!("database unreachable; health is NOT_SERVING");
            } else {
                tracing::info!("database reachable; health is SERVING");
            }
            self.set(status).await;
        }
        status
    }
}

/// Server reflection, both `grpc.reflection.v1` and `v1alpha` (older clients, grpcio among them,
/// speak only v1alpha), over every Tollgate proto and the extra descriptor sets given (health).
/// Only `services` (and health and reflection) are advertised: the descriptor set holds both
/// services' APIs, and a client must not be told a server offers what it does not.
pub fn reflection_services(
    services: &[&'static str],
    extra: &[&'static [u8]],
) -> Result<
    (
        tonic_reflection::server::v1::ServerReflectionServer<
            impl tonic_reflection::server::v1::ServerReflection,
        >,
        tonic_reflection::server::v1alpha::ServerReflectionServer<
            impl tonic_reflection::server::v1alpha::ServerReflection,
        >,
    ),
    tonic_reflection::server::Error,
> {
    let configure = || {
        let builder = extra.iter().fold(
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(crate::FILE_DESCRIPTOR_SET),
            |builder, set| builder.register_encoded_file_descriptor_set(set),
        );
        services
            .iter()
            .chain(&["grpc.health.v1.Health"])
            .fold(builder, |builder, name| builder.with_service_name(*name))
    };
    Ok((configure().build_v1()?, configure().build_v1alpha()?))
}

/// Resolves on the first SIGINT or SIGTERM.
///
/// The handlers are installed when this is called, not when the future is first polled: a
/// signal that arrives while the service is still starting (before the server polls its
/// shutdown future) would otherwise meet the default action and kill the process undrained.
/// Call it before building the service. Needs a running Tokio runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            tokio::select! {
                () = receive(interrupt, "SIGINT") => tracing::info!("received SIGINT"),
                () = receive(terminate, "SIGTERM") => tracing::info!("received SIGTERM"),
            }
        }
    }
    #[cfg(not(unix))]
    async {
        match tokio::signal::ctrl_c().await {
            Ok(()) => tracing::info!("received SIGINT"),
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGINT");
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Waits for one delivery of a signal whose handler `installed` holds; never resolves if the
/// handler could not be installed (the service then runs until killed, which it logs).
#[cfg(unix)]
async fn receive(installed: std::io::Result<tokio::signal::unix::Signal>, name: &str) {
    match installed {
        Ok(mut signal) => {
            signal.recv().await;
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for {name}");
            std::future::pending::<()>().await;
        }
    }
}

/// What health follows and the pool gauge reads of a service's database: both services' store
/// traits extend it.
#[async_trait::async_trait]
pub trait DatabaseHealth: Send + Sync + std::fmt::Debug + 'static {
    /// Whether the database answers.
    async fn reachable(&self) -> bool;
    /// The connection pools' size and idle connections.
    fn pool_stats(&self) -> (u32, usize);
}

/// What both services serve the same way: health (following the database), reflection, the
/// metrics endpoint, and a bounded drain on shutdown.
#[derive(Debug)]
pub struct Serving {
    /// The gRPC services the server offers, fully qualified, for health and reflection.
    pub services: &'static [&'static str],
    /// The bound listeners.
    pub listeners: Listeners,
    /// The service's metrics, served on the metrics listener if there is one.
    pub metrics: crate::metrics::Metrics,
    /// The database that health follows.
    pub database: Arc<dyn DatabaseHealth>,
    /// How long the drain waits for in-flight requests.
    pub grace: Duration,
}

/// What a service's own server is built from, handed over once health is known.
pub struct Served {
    /// Health and reflection, to add to the service's router.
    pub routes: tonic::service::Routes,
    /// The bound gRPC listener.
    pub incoming: tonic::transport::server::TcpIncoming,
    /// The health status, for what else can make the service unfit to serve.
    pub health: Health,
    /// The signal to hand to `serve_with_incoming_shutdown`.
    pub shutdown: Signal,
}

impl std::fmt::Debug for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Served")
            .field("health", &self.health)
            .finish_non_exhaustive()
    }
}

/// Why a service could not serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The reflection service could not read the descriptors (a build problem).
    #[error("cannot build the reflection service")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The server failed while serving.
    #[error("server error")]
    Serve(#[from] tonic::transport::Error),
}

impl Serving {
    /// Serves until `shutdown` resolves, then drains: health goes NOT_SERVING (so load balancers
    /// stop sending), the server stops accepting and finishes in-flight requests, and whatever is
    /// still open after the grace period is dropped so that shutdown always ends.
    ///
    /// `serve` is called once the first database check has set health, which is therefore
    /// true by the time a service announces that it listens; it builds the service's router
    /// on `Served::routes` and serves it on `Served::incoming` until `Served::shutdown`.
    pub async fn run<F, Fut>(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
        serve: F,
    ) -> Result<(), ServeError>
    where
        F: FnOnce(Served) -> Fut,
        Fut: Future<Output = Result<(), tonic::transport::Error>>,
    {
        let (health, health_service) = Health::new(self.services).await;
        let database = self.database.clone();
        let watcher = health
            .watch_database(move || {
                let database = database.clone();
                async move { database.reachable().await }
            })
            .await;
        let (reflection_v1, reflection_v1alpha) =
            reflection_services(self.services, &[tonic_health::pb::FILE_DESCRIPTOR_SET])?;
        let routes = tonic::service::Routes::new(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);
        let metrics_task = self.listeners.metrics.map(|server| {
            let database = self.database.clone();
            server.serve(self.metrics.clone(), move |m| {
                let (size, idle) = database.pool_stats();
                m.set_pool(size, idle);
            })
        });
        let incoming = tonic::transport::server::TcpIncoming::from(self.listeners.grpc)
            .with_nodelay(Some(true));
        let result = serve_with_drain(&health, shutdown, self.grace, |signal| {
            serve(Served {
                routes,
                incoming,
                health: health.clone(),
                shutdown: signal,
            })
        })
        .await;
        watcher.abort();
        if let Some(metrics) = metrics_task {
            metrics.stop().await;
        }
        Ok(result?)
    }
}

/// Runs a server until `shutdown` resolves, then drains (see [`Serving::run`]).
async fn serve_with_drain<S, F>(
    health: &Health,
    shutdown: S,
    grace: Duration,
    serve: impl FnOnce(Signal) -> F,
) -> Result<(), tonic::transport::Error>
where
    S: Future<Output = ()> + Send + 'static,
    F: Future<Output = Result<(), tonic::transport::Error>>,
{
    let draining = Arc::new(Notify::new());
    let signal: Signal = {
        let draining = draining.clone();
        let health = health.clone();
        Box::pin(async move {
            shutdown.await;
            tracing::info!(grace_secs = grace.as_secs_f64(), "shutting down; draining");
            health.begin_drain().await;
            // notify_one keeps a permit if the deadline task is not yet waiting.
            draining.notify_one();
        })
    };
    let server = serve(signal);
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result,
        _ = async { draining.notified().await; tokio::time::sleep(grace).await } => {
            tracing::warn!("drain grace period over; closing remaining connections");
            Ok(())
        }
    }
}

/// Checks a server's overall `grpc.health.v1` status, for the binaries' `health` subcommand
/// (a container health check), over TLS when `tls` is given. `Ok(true)` only when it answers
/// SERVING within `timeout`.
pub async fn check_health(
    addr: std::net::SocketAddr,
    timeout: Duration,
    tls: Option<tonic::transport::ClientTlsConfig>,
) -> Result<bool, Box<dyn std::error::Error + Send + Sync>> {
    // A wildcard listen address is reached on loopback from inside the same container.
    let host = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => std::net::IpAddr::from([127, 0, 0, 1]),
        ip if ip.is_unspecified() => std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let target = std::net::SocketAddr::new(host, addr.port());
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = tonic::transport::Endpoint::from_shared(format!("{scheme}://{target}"))?
        .connect_timeout(timeout)
        .timeout(timeout);
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls)?;
    }
    let channel = endpoint.connect().await?;
    let response = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await?;
    Ok(response.into_inner().status
        == i32::from(tonic_health::pb::health_check_response::ServingStatus::Serving))
}

/// The `health` subcommand of a service binary: exit 0 if `name` at `addr` is SERVING.
pub async fn health_command(
    name: &str,
    addr: std::net::SocketAddr,
    tls: &crate::tls::HealthTlsArgs,
) -> std::process::ExitCode {
    let tls = match tls.config() {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match check_health(addr, Duration::from_secs(3), tls).await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("{name} at {addr} is NOT_SERVING");
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            // The whole chain: "transport error" alone does not say a certificate was refused.
            let e = crate::telemetry::error_chain(e.as_ref());
            eprintln!("error: cannot check {name} at {addr}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// An address that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}")]
pub struct BindError {
    /// The address.
    pub addr: std::net::SocketAddr,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// A service's listeners, bound before anything serves so that port 0 works and the real
/// addresses are known (and reported) before the first client connects.
#[derive(Debug)]
pub struct Listeners {
    /// The gRPC listener.
    pub grpc: tokio::net::TcpListener,
    /// Its bound address.
    pub grpc_addr: std::net::SocketAddr,
    /// The metrics endpoint, if configured.
    pub metrics: Option<crate::metrics::MetricsServer>,
}

impl Listeners {
    /// Binds the gRPC address and, if given, the metrics address.
    pub async fn bind(
        grpc: std::net::SocketAddr,
        metrics: Option<std::net::SocketAddr>,
    ) -> Result<Self, BindError> {
        let bind_error = |source| BindError { addr: grpc, source };
        let listener = tokio::net::TcpListener::bind(grpc)
            .await
            .map_err(bind_error)?;
        let grpc_addr = listener.local_addr().map_err(bind_error)?;
        let metrics = crate::metrics::MetricsServer::bind_optional(metrics)
            .await
            .map_err(|(addr, source)| BindError { addr, source })?;
        Ok(Self {
            grpc: listener,
            grpc_addr,
            metrics,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Paused time: the check's timeout elapses without waiting for it.
    #[tokio::test(start_paused = true)]
    async fn a_database_check_that_hangs_counts_as_unreachable() {
        let (health, _server) = Health::new(&["tollgate.test.v1.Service"]).await;
        let status = health
            .check_database(
                &|| std::future::pending::<bool>(),
                Some(ServingStatus::Serving),
            )
            .await;
        assert_eq!(status, ServingStatus::NotServing);
        let status = health
            .check_database(&|| async { true }, Some(status))
            .await;
        assert_eq!(status, ServingStatus::Serving);
    }
}
