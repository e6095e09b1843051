//! The benchmark run: measures Tollgate against the gRPC floor.
//!
//! The servers run as separate processes (this binary's hidden `serve-identity`/`serve-events`),
//! pinned to one core while the load generator is pinned to another when there are two. The
//! floor is `grpc.health.v1/Check` on the same server process in the same run, so every figure
//! can be read as a fraction of what a trivial RPC costs on this machine.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Value, json};
use tollgate::database::DatabaseUrl;
use tollgate::process::{ServiceProcess, cpu_time};
use tollgate::proto::events::v1 as ev;
use tollgate::proto::identity::v1 as id;
use tollgate::telemetry::parse_duration;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;

use crate::BenchResult;
use crate::h2load::{H2Client, encode};
use crate::host::{Conditions, Counters};

pub(crate) type BoxError = Box<dyn std::error::Error>;

/// Flags of `tollgate-bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// How long each throughput or latency figure is measured (after a 1 s warm-up).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    duration: Duration,
    /// Requests in flight for throughput figures, on one HTTP/2 connection.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Events loaded (in batches of 1000) for the ListEvents and GetUsage figures.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Length of the run that counts `Authorize` calls behind the cache.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    cache_run: Duration,
    /// Also measure batched ingest on PostgreSQL: a server URL on which a fresh database is
    /// created (and dropped afterwards).
    #[arg(long, env = "TOLLGATE_BENCH_POSTGRES_URL")]
    postgres_url: Option<url::Url>,
    /// Where to write the JSON summary.
    #[arg(long, default_value = "bench-results.json")]
    out: PathBuf,
    /// Do not pin servers and load generator to separate cores.
    #[arg(long)]
    no_pin: bool,
}

/// `a / b`, or 0 when `b` measured nothing.
pub(crate) fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

/// Latencies and counts of one measured run.
#[derive(Debug)]
pub(crate) struct Stats {
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    seconds: f64,
    pub(crate) latencies: Vec<Duration>,
    /// Cores' worth of CPU used while measuring: (load generator, server), when recorded.
    cpu: Option<(f64, f64)>,
    /// What the machine did meanwhile, where `/proc` tells it.
    machine: Option<Conditions>,
}

impl Stats {
    pub(crate) fn per_second(&self) -> f64 {
        self.per_second_without(0.0)
    }

    /// The rate over the run's time less `excluded` seconds of it (work counted against the run
    /// that finished after it); 0 when no time is left.
    pub(crate) fn per_second_without(&self, excluded: f64) -> f64 {
        let seconds = self.seconds - excluded;
        if seconds > 0.0 {
            self.requests as f64 / seconds
        } else {
            0.0
        }
    }

    pub(crate) fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.latencies.len() as f64).ceil() as usize;
        self.latencies[rank.clamp(1, self.latencies.len()) - 1]
    }

    /// Counts `seconds` more against the run (work it caused that finished after it).
    pub(crate) fn add_seconds(&mut self, seconds: f64) {
        self.seconds += seconds;
    }

    /// Both runs as one: their requests over their combined time.
    pub(crate) fn merge(mut self, other: Stats) -> Stats {
        self.requests += other.requests;
        self.errors += other.errors;
        self.first_error = self.first_error.or(other.first_error);
        self.seconds += other.seconds;
        self.latencies.extend(other.latencies);
        self.latencies.sort_unstable();
        self.cpu = None;
        self.machine = match (self.machine, other.machine) {
            (Some(a), Some(b)) => Some(a.merge(b)),
            _ => None,
        };
        self
    }

    pub(crate) fn json(&self) -> Value {
        json!({
            "requests": self.requests, "errors": self.errors, "seconds": self.seconds,
            "per_second": self.per_second(), "p50_ms": ms(self.percentile(50.0)),
            "p90_ms": ms(self.percentile(90.0)), "p99_ms": ms(self.percentile(99.0)),
            "max_ms": ms(self.latencies.last().copied().unwrap_or_default()),
            "first_error": self.first_error,
            "load_generator_cpu": self.cpu.map(|c| c.0), "server_cpu": self.cpu.map(|c| c.1),
            "machine": self.machine.map(|m| m.json()),
        })
    }
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs `call` from `concurrency` tasks until `duration` has passed. `call` gets a sequence
/// number, unique across tasks.
pub(crate) async fn load<F, Fut>(concurrency: usize, duration: Duration, call: F) -> Stats
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), tonic::Status>> + Send,
{
    load_from(0, concurrency, duration, call).await
}

/// `load` with sequence numbers from `first` on.
async fn load_from<F, Fut>(first: u64, concurrency: usize, duration: Duration, call: F) -> Stats
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), tonic::Status>> + Send,
{
    let sequence = Arc::new(AtomicU64::new(first));
    let counters = Counters::now();
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (call, sequence) = (call.clone(), sequence.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let (mut errors, mut first_error) = (0, None);
                while Instant::now() < deadline {
                    let n = sequence.fetch_add(1, Ordering::Relaxed);
                    let t = Instant::now();
                    let result = call(n).await;
                    latencies.push(t.elapsed());
                    if let Err(e) = result {
                        errors += 1;
                        first_error
                            .get_or_insert_with(|| format!("{:?}: {}", e.code(), e.message()));
                    }
                }
                (latencies, errors, first_error)
            })
        })
        .collect();
    let mut stats = Stats {
        requests: 0,
        errors: 0,
        first_error: None,
        seconds: 0.0,
        latencies: Vec::new(),
        cpu: None,
        machine: None,
    };
    for task in tasks {
        if let Ok((latencies, errors, first_error)) = task.await {
            stats.errors += errors;
            stats.first_error = stats.first_error.or(first_error);
            stats.latencies.extend(latencies);
        }
    }
    stats.seconds = start.elapsed().as_secs_f64();
    if let (Some(before), Some(after)) = (counters, Counters::now()) {
        stats.machine = Some(Conditions::between(before, after, stats.seconds));
    }
    stats.requests = stats.latencies.len() as u64;
    stats.latencies.sort_unstable();
    stats
}

/// `load` after a one-second warm-up whose figures are dropped. The run's sequence numbers
/// continue the warm-up's, so an ingest run never resends a warm-up event id.
pub(crate) async fn measure<F, Fut>(concurrency: usize, duration: Duration, call: F) -> Stats
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), tonic::Status>> + Send,
{
    let warm = load(concurrency, Duration::from_secs(1), call.clone()).await;
    load_from(warm.requests, concurrency, duration, call).await
}

/// `measure` of a floor, also recording how busy the load generator (this process) and the
/// server were: a floor is the server's only if the server's core is the full one.
async fn measure_floor<F, Fut>(
    server: &ServiceProcess,
    concurrency: usize,
    duration: Duration,
    call: F,
) -> Stats
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), tonic::Status>> + Send,
{
    let warm = load(concurrency, Duration::from_secs(1), call.clone()).await;
    let before = (cpu_time(std::process::id()), server.cpu_time());
    let mut stats = load_from(warm.requests, concurrency, duration, call).await;
    let after = (cpu_time(std::process::id()), server.cpu_time());
    if let ((Some(c0), Some(s0)), (Some(c1), Some(s1))) = (before, after) {
        let busy = |a: Duration, b: Duration| (b - a).as_secs_f64() / stats.seconds;
        stats.cpu = Some((busy(c0, c1), busy(s0, s1)));
    }
    stats
}

/// "; steal 0.4%, 12 MiB read from disk", or nothing when not recorded.
pub(crate) fn machine_note(stats: &Stats) -> String {
    stats
        .machine
        .map(|m| format!("; {}", m.note()))
        .unwrap_or_default()
}

/// "load generator 0.62 cores, server 0.99 cores", or nothing when not recorded.
fn cpu_note(stats: &Stats) -> String {
    stats
        .cpu
        .map(|(client, server)| {
            format!("; CPU: load generator {client:.2}, server {server:.2} cores")
        })
        .unwrap_or_default()
}

pub(crate) fn with_key<T>(key: &str, message: T) -> Result<tonic::Request<T>, tonic::Status> {
    tollgate::metadata::with_api_key(key, message)
        .map_err(|_| tonic::Status::internal("key is not a header value"))
}

/// Any free port on loopback.
const ANY_PORT: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// Starts the server processes: this binary's hidden serve commands, pinned to core 1 when
/// `pin`.
#[derive(Debug, Clone)]
pub(crate) struct Servers {
    pub(crate) exe: PathBuf,
    pub(crate) pin: bool,
}

impl Servers {
    /// The benchmark's own binary, unpinned (the runs that start several replicas).
    pub(crate) fn unpinned() -> Result<Self, BoxError> {
        Ok(Self {
            exe: std::env::current_exe()?,
            pin: false,
        })
    }

    fn command(&self, args: &[String]) -> Command {
        let mut command = if self.pin {
            let mut c = tollgate::process::command("taskset");
            c.args(["-c", "1"]).arg(&self.exe);
            c
        } else {
            tollgate::process::command(&self.exe)
        };
        command
            .args(args)
            .env("TOLLGATE_LOG_LEVEL", "info")
            .env_remove("RUST_LOG");
        command
    }

    pub(crate) fn identity(&self, db: &DatabaseUrl) -> Result<ServiceProcess, BoxError> {
        self.identity_at(db, ANY_PORT)
    }

    /// An identity-service listening on `addr` (a fixed port: a restarted replica comes back
    /// where its clients know it).
    pub(crate) fn identity_at(
        &self,
        db: &DatabaseUrl,
        addr: SocketAddr,
    ) -> Result<ServiceProcess, BoxError> {
        let args = [
            "serve-identity",
            "--listen-addr",
            &addr.to_string(),
            "--database-url",
            &db_arg(db),
        ]
        .map(String::from);
        Ok(ServiceProcess::start(
            self.command(&args),
            "identity-service listening",
        )?)
    }

    pub(crate) fn events(
        &self,
        db: &DatabaseUrl,
        identity: &ServiceProcess,
    ) -> Result<ServiceProcess, BoxError> {
        self.events_at(db, identity.addr, ANY_PORT)
    }

    /// An event-service listening on `addr` that asks the identity-service at `identity`.
    pub(crate) fn events_at(
        &self,
        db: &DatabaseUrl,
        identity: SocketAddr,
        addr: SocketAddr,
    ) -> Result<ServiceProcess, BoxError> {
        let args = [
            "serve-events",
            "--listen-addr",
            &addr.to_string(),
            "--database-url",
            &db_arg(db),
            "--identity-url",
            &format!("http://{identity}"),
        ]
        .map(String::from);
        Ok(ServiceProcess::start(
            self.command(&args),
            "event-service listening",
        )?)
    }
}

fn db_arg(db: &DatabaseUrl) -> String {
    match db {
        DatabaseUrl::Sqlite(path) => format!("sqlite:{}", path.display()),
        DatabaseUrl::Postgres(url) => url.to_string(),
    }
}

pub(crate) async fn channel(process: &ServiceProcess) -> Result<Channel, BoxError> {
    Ok(Channel::from_shared(format!("http://{}", process.addr))?
        .connect()
        .await?)
}

/// Stops a server and returns its log.
pub(crate) async fn stop(process: ServiceProcess) -> Result<Vec<String>, BoxError> {
    process.terminate()?;
    Ok(tokio::task::spawn_blocking(move || process.wait())
        .await??
        .1)
}

pub(crate) fn machine(cores: usize) -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_default();
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or_default().to_owned())
        })
        .unwrap_or_default();
    json!({
        "cores": cores,
        "cpu": cpu, "memory_kib": memory, "os": std::env::consts::OS,
    })
}

/// Creates tenants and keys straight in identity-service's database (before it starts).
async fn bootstrap(db: &DatabaseUrl) -> Result<(String, String), BoxError> {
    Ok((
        admin_key(db, "bench").await?,
        admin_key(db, "bench-1m").await?,
    ))
}

/// Creates `tenant` straight in identity-service's database (before it starts); its admin key.
pub(crate) async fn admin_key(db: &DatabaseUrl, tenant: &str) -> Result<String, BoxError> {
    let created = identity_service::Identity::open(db)
        .await?
        .bootstrap_tenant(tenant, "admin", "tollgate-bench")
        .await?;
    Ok(created.secret.expose().to_owned())
}

/// Service-account keys with both event roles.
pub(crate) async fn service_keys(
    identity: Channel,
    admin: &str,
    count: usize,
) -> Result<Vec<String>, BoxError> {
    let mut users = id::user_service_client::UserServiceClient::new(identity.clone());
    let mut keys = id::api_key_service_client::ApiKeyServiceClient::new(identity);
    let account = users
        .create_user(with_key(
            admin,
            id::CreateUserRequest {
                r#type: id::UserType::ServiceAccount.into(),
                roles: vec!["event_ingestor".into(), "event_reader".into()],
                name: "bench".into(),
            },
        )?)
        .await?
        .into_inner()
        .user
        .ok_or("no user in response")?;
    let mut out = Vec::new();
    for i in 0..count {
        let request = with_key(
            admin,
            id::CreateApiKeyRequest {
                name: format!("bench-{i}"),
                service_account_id: account.id.clone(),
                ..Default::default()
            },
        )?;
        out.push(keys.create_api_key(request).await?.into_inner().api_key);
    }
    Ok(out)
}

fn health_call(
    client: H2Client,
) -> impl Fn(u64) -> std::pin::Pin<Box<dyn Future<Output = Result<(), tonic::Status>> + Send>>
+ Clone
+ Send
+ 'static {
    let message = encode(&HealthCheckRequest {
        service: String::new(),
    });
    move |_| {
        let (client, message) = (client.clone(), message.clone());
        Box::pin(async move {
            client
                .unary("/grpc.health.v1.Health/Check", &message, &[])
                .await
                .map(|_| ())
        })
    }
}

/// Single-event ingests, each with one of `keys` in turn, event ids `{label}-{n}`.
fn ingest_call(
    client: H2Client,
    keys: Arc<Vec<String>>,
    label: &'static str,
) -> impl Fn(u64) -> std::pin::Pin<Box<dyn Future<Output = Result<(), tonic::Status>> + Send>>
+ Clone
+ Send
+ 'static {
    move |n| {
        let client = client.clone();
        let key = keys[(n as usize) % keys.len()].clone();
        let message = encode(&ev::IngestEventRequest {
            event: Some(single_event(n, label)),
        });
        Box::pin(async move {
            client
                .unary(
                    "/tollgate.events.v1.EventService/IngestEvent",
                    &message,
                    &[(tollgate::metadata::API_KEY_HEADER, key.as_str())],
                )
                .await
                .map(|_| ())
        })
    }
}

fn single_event(n: u64, name: &str) -> ev::EventInput {
    use prost_types::value::Kind;
    ev::EventInput {
        event_id: format!("{name}-{n}"),
        event_name: name.into(),
        external_customer_id: format!("cus_{}", n % 1000),
        properties: Some(prost_types::Struct {
            fields: [(
                "tokens".to_owned(),
                prost_types::Value {
                    kind: Some(Kind::NumberValue((n % 100) as f64)),
                },
            )]
            .into(),
        }),
        ..Default::default()
    }
}

/// Loads `total` events over one day in batches of 1000 with 4 batches in flight; returns
/// (events per second, seconds).
async fn load_batches(
    events: Channel,
    key: &str,
    total: usize,
    day_start: chrono::DateTime<Utc>,
    label: &'static str,
) -> Result<(f64, f64), BoxError> {
    const BATCH: usize = 1000;
    const IN_FLIGHT: usize = 4;
    let batches = total.div_ceil(BATCH) as u64;
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let (next, key, events) = (next.clone(), key.to_owned(), events.clone());
            tokio::spawn(async move {
                let mut client = ev::event_service_client::EventServiceClient::new(events);
                loop {
                    let b = next.fetch_add(1, Ordering::Relaxed);
                    if b >= batches {
                        return Ok::<(), tonic::Status>(());
                    }
                    let batch = (0..BATCH as u64)
                        .map(|i| {
                            let n = b * BATCH as u64 + i;
                            let offset = chrono::Duration::microseconds(
                                (n as i64) * 86_400_000_000 / total as i64,
                            );
                            ev::EventInput {
                                timestamp: Some(tollgate::time::to_proto(day_start + offset)),
                                ..single_event(n, label)
                            }
                        })
                        .collect();
                    client
                        .ingest_events(with_key(&key, ev::IngestEventsRequest { events: batch })?)
                        .await?;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(((batches as usize * BATCH) as f64 / seconds, seconds))
}

/// `POST /v1/events/bulk` against `IngestEvents`, 1000 events a request, 4 in flight on 4
/// HTTP/2 connections, on the same server: `rounds` pairs of phases of `batches` requests each,
/// alternated so that the database's growth weighs on both alike. Ids are the server's; the
/// bodies are encoded once, so the load generator pays only the sending. Returns, for gRPC and
/// for HTTP, each phase's events per second and the server's CPU time per event in µs (which
/// shows the cost of JSON whether or not the disk is what bounds the rate).
async fn bulk_http_vs_grpc(
    server: &ServiceProcess,
    key: &str,
    rounds: usize,
    batches: u64,
    day_start: chrono::DateTime<Utc>,
) -> Result<[(Vec<f64>, Vec<f64>); 2], BoxError> {
    const BATCH: u64 = 1000;
    const IN_FLIGHT: usize = 4;
    // After everything loaded (which ends at `day_start` plus a day), as live traffic is: the
    // time index grows at its end, as it did while loading.
    let recent = day_start + chrono::Duration::days(1);
    let events: Vec<ev::EventInput> = (0..BATCH)
        .map(|n| ev::EventInput {
            event_id: String::new(),
            timestamp: Some(tollgate::time::to_proto(
                recent + chrono::Duration::milliseconds(n as i64),
            )),
            ..single_event(n, "bulk")
        })
        .collect();
    let json_events: Vec<Value> = events
        .iter()
        .map(|e| {
            json!({
                "event_name": e.event_name,
                "external_customer_id": e.external_customer_id,
                "timestamp": tollgate::http::rfc3339::from_proto(e.timestamp.as_ref()),
                "properties": e.properties.as_ref().and_then(|p| tollgate::json::struct_to_map(p).ok()),
            })
        })
        .collect();
    let grpc_body = encode(&ev::IngestEventsRequest { events });
    let http_body = bytes::Bytes::from(serde_json::to_vec(&json!({ "events": json_events }))?);
    let mut clients = Vec::new();
    for _ in 0..IN_FLIGHT {
        clients.push(H2Client::connect(server.addr).await?);
    }
    let (mut grpc, mut http) = ((Vec::new(), Vec::new()), (Vec::new(), Vec::new()));
    for _ in 0..rounds {
        for over_http in [false, true] {
            let next = Arc::new(AtomicU64::new(0));
            let cpu_before = server.cpu_time().unwrap_or_default();
            let start = Instant::now();
            let tasks: Vec<_> = clients
                .iter()
                .map(|client| {
                    let (client, next, key) = (client.clone(), next.clone(), key.to_owned());
                    let (grpc_body, http_body) = (grpc_body.clone(), http_body.clone());
                    tokio::spawn(async move {
                        let headers = [(tollgate::metadata::API_KEY_HEADER, key.as_str())];
                        while next.fetch_add(1, Ordering::Relaxed) < batches {
                            if over_http {
                                client
                                    .post_json("/v1/events/bulk", &http_body, &headers)
                                    .await?;
                            } else {
                                client
                                    .unary(
                                        "/tollgate.events.v1.EventService/IngestEvents",
                                        &grpc_body,
                                        &headers,
                                    )
                                    .await?;
                            }
                        }
                        Ok::<(), tonic::Status>(())
                    })
                })
                .collect();
            for task in tasks {
                task.await??;
            }
            let events = (batches * BATCH) as f64;
            let rate = events / start.elapsed().as_secs_f64();
            let cpu = server.cpu_time().unwrap_or_default() - cpu_before;
            let phase = if over_http { &mut http } else { &mut grpc };
            phase.0.push(rate);
            phase.1.push(cpu.as_secs_f64() * 1e6 / events);
        }
    }
    Ok([grpc, http])
}

/// Runs the benchmark.
pub fn run(args: BenchArgs) -> BenchResult {
    run_pinned(args.no_pin, move |pin, cores| bench(args, pin, cores))
}

/// Whether `taskset` (util-linux) is on this machine, to pin processes to cores with.
pub(crate) fn taskset_available() -> bool {
    Command::new("taskset").arg("-V").output().is_ok()
}

/// Runs `bench(pinned, cores)` on a single-threaded runtime of its own: the load generator has
/// one core (core 0, when there are two and `taskset` exists, with the servers on core 1), and one
/// thread on it avoids the cross-thread wake-ups that would make it, not the server, the
/// bottleneck of the floor.
pub(crate) fn run_pinned<F, Fut>(no_pin: bool, bench: F) -> BenchResult
where
    F: FnOnce(bool, usize) -> Fut + Send + 'static,
    Fut: Future<Output = BenchResult>,
{
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let pin = !no_pin && cores >= 2 && taskset_available();
    if pin {
        // Every thread of this process (the load generator) on core 0; servers go on core 1.
        Command::new("taskset")
            .args(["-a", "-cp", "0", &std::process::id().to_string()])
            .output()?;
    }
    let handle = std::thread::spawn(move || -> Result<(), String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime
            .block_on(bench(pin, cores))
            .map_err(|e| e.to_string())
    });
    match handle.join() {
        Ok(result) => Ok(result?),
        Err(_) => Err("the benchmark thread panicked".into()),
    }
}

async fn bench(args: BenchArgs, pin: bool, cores: usize) -> BenchResult {
    let dir = tempfile::tempdir()?;
    let servers = Servers {
        exe: std::env::current_exe()?,
        pin,
    };
    let identity_db = DatabaseUrl::Sqlite(dir.path().join("identity.db"));
    let events_db = DatabaseUrl::Sqlite(dir.path().join("events.db"));
    let c = args.concurrency;
    let d = args.duration;
    let mut figures = serde_json::Map::new();
    let mut rows: Vec<[String; 5]> = Vec::new();
    eprintln!(
        "bench: {} cores, pinned: {pin}, concurrency {c}, {} s per figure",
        cores,
        d.as_secs_f64()
    );

    let (admin, big_admin) = bootstrap(&identity_db).await?;
    let identity = servers.identity(&identity_db)?;
    let identity_channel = channel(&identity).await?;
    let keys = service_keys(identity_channel.clone(), &admin, 100).await?;

    // identity-service: the floor, then Authorize.
    eprintln!("bench: identity-service floor and Authorize");
    let id_floor = measure_floor(
        &identity,
        c,
        d,
        health_call(H2Client::connect(identity.addr).await?),
    )
    .await;
    let id_floor_1 = measure(1, d, health_call(H2Client::connect(identity.addr).await?)).await;
    let digests: Arc<Vec<Vec<u8>>> = Arc::new(
        keys.iter()
            .map(|k| {
                use sha2::Digest;
                sha2::Sha256::digest(k.as_bytes()).to_vec()
            })
            .collect(),
    );
    let identity_h2 = H2Client::connect(identity.addr).await?;
    let requests: Arc<Vec<bytes::Bytes>> = Arc::new(
        digests
            .iter()
            .map(|key_digest| {
                encode(&id::AuthorizeRequest {
                    key_digest: key_digest.clone(),
                    permission: "event:write".into(),
                })
            })
            .collect(),
    );
    let authorize = {
        let (client, requests) = (identity_h2.clone(), requests.clone());
        move |n: u64| {
            let client = client.clone();
            let message = requests[(n as usize) % requests.len()].clone();
            async move {
                let body = client
                    .unary(
                        "/tollgate.identity.v1.AuthorizationService/Authorize",
                        &message,
                        &[],
                    )
                    .await?;
                let decision = <id::AuthorizeResponse as prost::Message>::decode(body)
                    .map_err(|e| tonic::Status::internal(e.to_string()))?;
                if decision.allowed {
                    Ok(())
                } else {
                    Err(tonic::Status::internal("denied"))
                }
            }
        }
    };
    let authz = measure(c, d, authorize.clone()).await;
    let authz_1 = measure(1, d, authorize).await;
    figures.insert("identity_floor".into(), id_floor.json());
    figures.insert("identity_floor_sequential".into(), id_floor_1.json());
    figures.insert("authorize".into(), authz.json());
    figures.insert("authorize_sequential".into(), authz_1.json());
    rows.push([
        "identity floor: Health/Check".into(),
        format!(
            "{:.0}/s, p50 {:.3} ms, p99 {:.3} ms{}",
            id_floor.per_second(),
            ms(id_floor.percentile(50.0)),
            ms(id_floor.percentile(99.0)),
            cpu_note(&id_floor)
        ),
        "1.00".into(),
        "".into(),
        "".into(),
    ]);
    rows.push([
        "identity floor, one at a time".into(),
        format!(
            "{:.0}/s, p50 {:.3} ms",
            id_floor_1.per_second(),
            ms(id_floor_1.percentile(50.0))
        ),
        "1.00".into(),
        "".into(),
        "".into(),
    ]);
    let r = ratio(authz.per_second(), id_floor.per_second());
    let p99 = ms(authz.percentile(99.0));
    rows.push([
        "Authorize".into(),
        format!(
            "{:.0}/s, p50 {:.3} ms, p99 {:.3} ms",
            authz.per_second(),
            ms(authz.percentile(50.0)),
            p99
        ),
        format!("{r:.2}"),
        ">= 0.85 of floor, p99 <= 2 ms".into(),
        verdict(r >= 0.85 && p99 <= 2.0),
    ]);
    let r1 = ratio(
        ms(authz_1.percentile(50.0)),
        ms(id_floor_1.percentile(50.0)),
    );
    rows.push([
        "Authorize, one at a time".into(),
        format!(
            "{:.0}/s, p50 {:.3} ms",
            authz_1.per_second(),
            ms(authz_1.percentile(50.0))
        ),
        format!("{r1:.2}x p50"),
        "p50 <= 1.2x floor p50".into(),
        verdict(r1 <= 1.2),
    ]);

    // event-service: the floor, then single ingests with cached authorization.
    eprintln!("bench: event-service floor and IngestEvent");
    let events = servers.events(&events_db, &identity)?;
    let events_channel = channel(&events).await?;
    let events_h2 = H2Client::connect(events.addr).await?;
    let ev_floor = measure_floor(&events, c, d, health_call(events_h2.clone())).await;
    let ev_floor_1 = measure(1, d, health_call(events_h2.clone())).await;
    figures.insert("events_floor_sequential".into(), ev_floor_1.json());
    let ingest_keys: Arc<Vec<String>> = Arc::new(keys[..10].to_vec());
    let ingest = ingest_call(events_h2.clone(), ingest_keys.clone(), "single");
    let single = measure(c, d, ingest).await;
    figures.insert("events_floor".into(), ev_floor.json());
    figures.insert("ingest_event".into(), single.json());
    rows.push([
        "event floor: Health/Check".into(),
        format!(
            "{:.0}/s, p50 {:.3} ms{}",
            ev_floor.per_second(),
            ms(ev_floor.percentile(50.0)),
            cpu_note(&ev_floor)
        ),
        "1.00".into(),
        "".into(),
        "".into(),
    ]);
    rows.push([
        "event floor, one at a time".into(),
        format!(
            "{:.0}/s, p50 {:.3} ms",
            ev_floor_1.per_second(),
            ms(ev_floor_1.percentile(50.0))
        ),
        "1.00".into(),
        "".into(),
        "".into(),
    ]);
    let r = ratio(single.per_second(), ev_floor.per_second());
    rows.push([
        "IngestEvent (durable, cached auth)".into(),
        format!(
            "{:.0}/s, p50 {:.3} ms, p99 {:.3} ms",
            single.per_second(),
            ms(single.percentile(50.0)),
            ms(single.percentile(99.0))
        ),
        format!("{r:.2}"),
        ">= 0.5 of floor".into(),
        verdict(r >= 0.5),
    ]);

    // Batches: load the events the read figures need, timing the load.
    eprintln!("bench: loading {} events in batches of 1000", args.events);
    let day_start = (Utc::now() - chrono::Duration::days(1))
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .ok_or("midnight")?
        .and_utc();
    let (batch_rate, batch_seconds) = load_batches(
        events_channel.clone(),
        &big_admin,
        args.events,
        day_start,
        "big",
    )
    .await?;
    figures.insert(
        "ingest_events_sqlite".into(),
        json!({ "events": args.events, "seconds": batch_seconds, "events_per_second": batch_rate }),
    );
    rows.push([
        "IngestEvents x1000, SQLite".into(),
        format!(
            "{batch_rate:.0} events/s ({} in {batch_seconds:.1} s)",
            args.events
        ),
        format!(
            "{:.2}x floor req/s",
            ratio(batch_rate, ev_floor.per_second())
        ),
        ">= 150000 events/s".into(),
        verdict(batch_rate >= 150_000.0),
    ]);

    // Reads over the loaded tenant.
    eprintln!("bench: ListEvents and GetUsage over {} events", args.events);
    let next_token = Arc::new(std::sync::Mutex::new(String::new()));
    let list = {
        let (channel, key, next_token) = (
            events_channel.clone(),
            big_admin.clone(),
            next_token.clone(),
        );
        move |_| {
            let mut client = ev::event_service_client::EventServiceClient::new(channel.clone());
            let token = next_token.lock().map(|t| t.clone()).unwrap_or_default();
            let request = with_key(
                &key,
                ev::ListEventsRequest {
                    page_size: 100,
                    page_token: token,
                    ..Default::default()
                },
            );
            let next_token = next_token.clone();
            async move {
                let page = client.list_events(request?).await?.into_inner();
                if let Ok(mut t) = next_token.lock() {
                    *t = page.next_page_token;
                }
                Ok(())
            }
        }
    };
    let listing = measure(1, d, list).await;
    figures.insert("list_events_page_100".into(), listing.json());
    let p99 = ms(listing.percentile(99.0));
    rows.push([
        format!("ListEvents page of 100 ({} events)", args.events),
        format!(
            "p50 {:.3} ms, p99 {p99:.3} ms{}",
            ms(listing.percentile(50.0)),
            machine_note(&listing)
        ),
        format!(
            "{:.2}x p50",
            ratio(
                ms(listing.percentile(50.0)),
                ms(ev_floor_1.percentile(50.0))
            )
        ),
        "p99 <= 5 ms".into(),
        verdict(p99 <= 5.0),
    ]);
    for (name, aggregation, property) in [
        ("count", ev::Aggregation::Count, ""),
        ("sum", ev::Aggregation::Sum, "tokens"),
    ] {
        let usage = {
            let (channel, key) = (events_channel.clone(), big_admin.clone());
            move |_| {
                let mut client = ev::event_service_client::EventServiceClient::new(channel.clone());
                let request = with_key(
                    &key,
                    ev::GetUsageRequest {
                        event_name: "big".into(),
                        start_time: Some(tollgate::time::to_proto(day_start)),
                        end_time: Some(tollgate::time::to_proto(
                            day_start + chrono::Duration::days(1),
                        )),
                        aggregation: aggregation.into(),
                        property: property.into(),
                        ..Default::default()
                    },
                );
                async move { client.get_usage(request?).await.map(|_| ()) }
            }
        };
        let stats = load(1, Duration::from_secs(3), usage).await;
        let p50 = ms(stats.percentile(50.0));
        figures.insert(format!("get_usage_{name}_one_day"), stats.json());
        let (target, met) = if name == "count" {
            ("COUNT < 100 ms".to_owned(), verdict(p50 < 100.0))
        } else {
            ("report".to_owned(), String::new())
        };
        rows.push([
            format!("GetUsage {} over one day", name.to_uppercase()),
            format!(
                "p50 {p50:.1} ms, max {:.1} ms ({} runs)",
                ms(stats.latencies.last().copied().unwrap_or_default()),
                stats.requests
            ),
            format!("{:.0}x p50", ratio(p50, ms(ev_floor_1.percentile(50.0)))),
            target,
            met,
        ]);
    }
    // The HTTP/JSON bulk route against gRPC batches, on the same loaded server.
    eprintln!("bench: POST /v1/events/bulk against IngestEvents, alternated");
    let [(grpc_rates, grpc_cpu), (http_rates, http_cpu)] =
        bulk_http_vs_grpc(&events, &big_admin, 3, 30, day_start).await?;
    let mut ratios: Vec<f64> = grpc_rates
        .iter()
        .zip(&http_rates)
        .map(|(g, h)| ratio(*h, *g))
        .collect();
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    figures.insert(
        "http_bulk_vs_grpc_batches".into(),
        json!({
            "grpc_events_per_second": grpc_rates, "http_events_per_second": http_rates,
            "grpc_server_cpu_us_per_event": grpc_cpu, "http_server_cpu_us_per_event": http_cpu,
            "ratios": ratios,
        }),
    );
    rows.push([
        "POST /v1/events/bulk x1000 (HTTP/2 JSON)".into(),
        format!(
            "{:.0} events/s against {:.0} by gRPC (3 alternated pairs); server CPU {:.1} against {:.1} us/event",
            mean(&http_rates),
            mean(&grpc_rates),
            mean(&http_cpu),
            mean(&grpc_cpu),
        ),
        format!(
            "{median:.2} of gRPC ({:.2}-{:.2})",
            ratios[0],
            ratios[ratios.len() - 1]
        ),
        ">= 0.7 of IngestEvents".into(),
        verdict(median >= 0.7),
    ]);

    let events_rss = events.resident_bytes();
    stop(events).await?;

    // How many Authorize calls a steady ingest run makes behind the cache.
    eprintln!(
        "bench: {} s ingest run with 10 keys, counting Authorize calls",
        args.cache_run.as_secs()
    );
    let cache_events = servers.events(&events_db, &identity)?;
    let ingest = ingest_call(
        H2Client::connect(cache_events.addr).await?,
        ingest_keys.clone(),
        "cache",
    );
    let run = load(c, args.cache_run, ingest).await;
    let log = stop(cache_events).await?;
    let calls = log
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["message"] == "event-service stopped")
        .and_then(|v| v["identity_calls"].as_u64())
        .ok_or("event-service did not report its identity_calls")?;
    let bound = 10.0 * (args.cache_run.as_secs_f64() / 10.0).ceil() + 10.0;
    figures.insert("authorize_calls_during_ingest".into(), json!({ "keys": 10, "seconds": run.seconds, "ttl_seconds": 10, "calls": calls, "bound": bound, "ingest": run.json() }));
    rows.push([
        format!("Authorize calls, {:.0} s ingest, 10 keys", run.seconds),
        format!("{calls} calls ({:.0} ingests/s)", run.per_second()),
        "".into(),
        format!("<= {bound:.0}"),
        verdict(calls as f64 <= bound),
    ]);

    // PostgreSQL batches, if asked for.
    if let Some(server) = &args.postgres_url {
        eprintln!("bench: IngestEvents on PostgreSQL");
        let (rate, seconds, n) = postgres_batches(
            &servers,
            server,
            &identity,
            &big_admin,
            day_start,
            args.events.min(300_000),
        )
        .await?;
        figures.insert(
            "ingest_events_postgres".into(),
            json!({ "events": n, "seconds": seconds, "events_per_second": rate }),
        );
        rows.push([
            "IngestEvents x1000, PostgreSQL".into(),
            format!("{rate:.0} events/s ({n} in {seconds:.1} s)"),
            "".into(),
            ">= 150000 events/s".into(),
            verdict(rate >= 150_000.0),
        ]);
    }

    let identity_rss = identity.resident_bytes();
    stop(identity).await?;
    let mib = |b: Option<u64>| b.map(|b| b as f64 / (1024.0 * 1024.0));
    figures.insert(
        "resident_memory_mib".into(),
        json!({ "identity_service": mib(identity_rss), "event_service": mib(events_rss) }),
    );
    for (name, rss) in [
        ("identity-service", mib(identity_rss)),
        ("event-service", mib(events_rss)),
    ] {
        let rss = rss.unwrap_or_default();
        rows.push([
            format!("resident memory, {name}"),
            format!("{rss:.1} MiB"),
            "".into(),
            "<= 100 MiB".into(),
            verdict(rss <= 100.0),
        ]);
    }

    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
    table.set_header(["figure", "measured", "ratio to floor", "target", "met"]);
    for row in rows {
        table.add_row(row.to_vec());
    }
    println!("{table}");
    let summary = json!({
        "machine": machine(cores),
        "conditions": { "pinned": pin, "concurrency": c, "seconds_per_figure": d.as_secs_f64(), "events_loaded": args.events, "backend": "sqlite" },
        "figures": figures,
    });
    std::fs::write(&args.out, serde_json::to_string_pretty(&summary)?)?;
    eprintln!("bench: summary written to {}", args.out.display());
    Ok(())
}

pub(crate) fn verdict(met: bool) -> String {
    if met { "yes".into() } else { "NO".into() }
}

async fn postgres_batches(
    servers: &Servers,
    server: &url::Url,
    identity: &ServiceProcess,
    key: &str,
    day_start: chrono::DateTime<Utc>,
    events: usize,
) -> Result<(f64, f64, usize), BoxError> {
    let database = ScratchDatabase::create(server).await?;
    let process = servers.events(&database.url, identity)?;
    let result = load_batches(channel(&process).await?, key, events, day_start, "pg").await;
    stop(process).await?;
    database.drop().await?;
    let (rate, seconds) = result?;
    Ok((rate, seconds, events))
}

/// A fresh database on a PostgreSQL server, dropped by [`ScratchDatabase::drop`].
pub(crate) struct ScratchDatabase {
    pub(crate) url: DatabaseUrl,
    server: url::Url,
    name: String,
}

impl ScratchDatabase {
    pub(crate) async fn create(server: &url::Url) -> Result<Self, BoxError> {
        use sqlx::{Connection, Executor};
        let name = format!("tollgate_bench_{}", uuid::Uuid::now_v7().simple());
        let mut admin = sqlx::PgConnection::connect(server.as_str()).await?;
        admin
            .execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
            .await?;
        let mut url = server.clone();
        url.set_path(&name);
        Ok(Self {
            url: DatabaseUrl::Postgres(url),
            server: server.clone(),
            name,
        })
    }

    /// Drops it (every connection to it must be closed: stop its servers first).
    pub(crate) async fn drop(self) -> Result<(), BoxError> {
        use sqlx::{Connection, Executor};
        let mut admin = sqlx::PgConnection::connect(self.server.as_str()).await?;
        admin
            .execute(format!(r#"DROP DATABASE "{}" WITH (FORCE)"#, self.name).as_str())
            .await?;
        Ok(())
    }
}
