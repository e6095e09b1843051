//! Prometheus metrics: one registry per service (no global recorder, so that `tollgate up` and
//! tests can run several services in one process), a tower layer counting requests by RPC and
//! status code with latency histograms, and the `/metrics` endpoint on its own address.

use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};
use tower::{Layer, Service};

/// Latency buckets (seconds) for RPCs and database work: 50 µs to 5 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0,
];

/// A service's registry and the metrics every service has.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Where every metric of the service is registered.
    pub registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    pool: IntGaugeVec,
}

impl Metrics {
    /// A registry for `service` (a `service` label on every metric), with the request and pool
    /// metrics and the process metrics (memory, CPU, file descriptors) registered.
    pub fn new(service: &str) -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(
            Some("tollgate".into()),
            Some([("service".to_owned(), service.to_owned())].into()),
        )?;
        let requests = IntCounterVec::new(
            Opts::new(
                "grpc_requests_total",
                "gRPC requests by method and status code",
            ),
            &["method", "code"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "grpc_request_duration_seconds",
                "gRPC request latency until the response headers",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["method"],
        )?;
        let pool = IntGaugeVec::new(
            Opts::new("db_pool_connections", "database pool connections by state"),
            &["state"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(pool.clone()))?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Self {
            registry,
            requests,
            latency,
            pool,
        })
    }

    /// Records the database pool's size and idle connections (called before each scrape).
    pub fn set_pool(&self, size: u32, idle: usize) {
        let idle = i64::try_from(idle).unwrap_or(i64::MAX);
        self.pool.with_label_values(&["idle"]).set(idle);
        self.pool
            .with_label_values(&["in_use"])
            .set(i64::from(size) - idle);
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// The layer that records every request.
    pub fn layer(&self) -> MetricsLayer {
        MetricsLayer {
            metrics: Arc::new(self.clone()),
        }
    }
}

/// Records each request's method, gRPC status code and latency.
#[derive(Debug, Clone)]
pub struct MetricsLayer {
    metrics: Arc<Metrics>,
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Measured<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Measured {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// A service whose requests are measured.
#[derive(Debug, Clone)]
pub struct Measured<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Measured<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        // Only methods some Tollgate server offers are label values; every other path (a
        // client's typo, or a flood of made-up ones before any key is checked) is `unknown`, so
        // that no request can grow the label set.
        let method = known_method(request.uri().path()).unwrap_or("unknown");
        let metrics = self.metrics.clone();
        let started = Instant::now();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await;
            // An HTTP route labels its answer with its pattern and the gRPC code it stands for.
            let route = response
                .as_ref()
                .ok()
                .and_then(|r| r.extensions().get::<crate::http::RouteLabel>().copied());
            let method = route.map_or(method, |r| r.route);
            metrics
                .latency
                .with_label_values(&[method])
                .observe(started.elapsed().as_secs_f64());
            // A unary RPC that fails answers with its status in the headers (trailers-only);
            // one that succeeds has no grpc-status header and ends with OK in its trailers.
            let code = match &response {
                Ok(_) if route.is_some_and(|r| r.code != tonic::Code::Ok) => {
                    Cow::Owned(format!("{:?}", route.map_or(tonic::Code::Ok, |r| r.code)))
                }
                Ok(r) => r
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .filter(|c| *c != 0)
                    // Only failures pay for formatting their code's name.
                    .map_or(Cow::Borrowed("Ok"), |c| {
                        Cow::Owned(format!("{:?}", tonic::Code::from(c)))
                    }),
                Err(_) => Cow::Borrowed("Unavailable"),
            };
            metrics
                .requests
                .with_label_values(&[method, code.as_ref()])
                .inc();
            response
        })
    }
}

/// Every method path (`/package.Service/Method`) of the Tollgate, health and reflection services.
static KNOWN_METHODS: std::sync::LazyLock<std::collections::HashSet<String>> =
    std::sync::LazyLock::new(|| {
        use prost::Message;
        [
            crate::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ]
        .iter()
        .filter_map(|set| prost_types::FileDescriptorSet::decode(*set).ok())
        .flat_map(|set| set.file)
        .flat_map(|file| {
            let package = file.package().to_owned();
            file.service.into_iter().flat_map(move |service| {
                let prefix = format!("/{package}.{}/", service.name());
                service
                    .method
                    .into_iter()
                    .map(move |method| format!("{prefix}{}", method.name()))
            })
        })
        .collect()
    });

/// The path as a `'static` label value if it names a known method.
fn known_method(path: &str) -> Option<&'static str> {
    KNOWN_METHODS.get(path).map(String::as_str)
}

/// A bound `/metrics` endpoint, not yet serving.
#[derive(Debug)]
pub struct MetricsServer {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
}

impl MetricsServer {
    /// Binds `addr`.
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        Ok(Self { listener, addr })
    }

    /// Binds `addr` if one is configured.
    pub async fn bind_optional(
        addr: Option<SocketAddr>,
    ) -> Result<Option<Self>, (SocketAddr, std::io::Error)> {
        match addr {
            Some(addr) => Self::bind(addr).await.map(Some).map_err(|e| (addr, e)),
            None => Ok(None),
        }
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves `GET /metrics` until the returned handle is stopped; `refresh` runs before each
    /// scrape to update gauges that are read rather than counted (pool sizes).
    pub fn serve(
        self,
        metrics: Metrics,
        refresh: impl Fn(&Metrics) + Send + Sync + 'static,
    ) -> MetricsHandle {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async {
            let _ = stopped.await;
        };
        let refresh = Arc::new(refresh);
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let (metrics, refresh) = (metrics.clone(), refresh.clone());
                async move {
                    refresh(&metrics);
                    (
                        [(http::header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
                        metrics.render(),
                    )
                }
            }),
        );
        let addr = self.addr;
        let task = tokio::spawn(async move {
            tracing::info!(%addr, "metrics listening");
            if let Err(e) = axum::serve(self.listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %e, "metrics server failed");
            }
        });
        MetricsHandle { stop, task }
    }
}

/// A serving `/metrics` endpoint.
#[derive(Debug)]
pub struct MetricsHandle {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl MetricsHandle {
    /// Stops serving and waits until it has.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_known_methods_are_label_values() {
        for path in [
            "/tollgate.events.v1.EventService/IngestEvent",
            "/tollgate.identity.v1.AuthorizationService/Authorize",
            "/grpc.health.v1.Health/Check",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ] {
            assert_eq!(super::known_method(path), Some(path));
        }
        for path in [
            "/tollgate.events.v1.EventService/Nope",
            "/x/y",
            "/",
            "/metrics",
        ] {
            assert_eq!(super::known_method(path), None);
        }
    }
}
