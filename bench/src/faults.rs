//! `tollgate-bench faults`: faults injected under load into a cluster of its own, and what
//! clients saw.
//!
//! A private PostgreSQL cluster (see [`crate::pg_cluster`]), two identity-service replicas on it
//! and two event-service replicas (each asking one identity replica), all on fixed loopback
//! ports so that a restarted replica comes back where its clients know it. Clients spread over
//! both event replicas send single events with ids of their own and, as a careful client does,
//! resend an event with the same id until it is acknowledged. One after another, under that
//! load: `kill -9` of an event replica and its restart; a SIGTERM rolling restart of every
//! replica; a PostgreSQL restart (fast, then immediate shutdown); both identity replicas
//! killed; an identity replica stalled (SIGSTOP, then SIGCONT). Afterwards every stored event
//! is read back and compared with what was acknowledged.

use std::collections::HashMap;
use std::error::Error as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::block_in_place;
use tollgate::database::DatabaseUrl;
use tollgate::process::ServiceProcess;
use tollgate::proto::events::v1 as ev;
use tollgate::telemetry::parse_duration;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::BenchResult;
use crate::pg_cluster::{Cluster, Shutdown};
use crate::run::{
    BoxError, ScratchDatabase, Servers, admin_key, ms, service_keys, verdict, with_key,
};

/// How long a client waits for one answer before it resends.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client waits before resending after a failure.
const RETRY_BACKOFF: Duration = Duration::from_millis(100);
/// How long clients go on resending their last unacknowledged event once the run ends.
const FINAL_RETRIES: Duration = Duration::from_secs(30);
/// How long a replica or the database may take to be back before the run fails.
const RECOVERY: Duration = Duration::from_secs(60);
/// The event name the clients send (probes use another).
const EVENT_NAME: &str = "fault_run";

/// Flags of `tollgate-bench faults`.
#[derive(Debug, Clone, clap::Args)]
pub struct FaultsArgs {
    /// How long each outage lasts (the database's at least 6 s, so that health, checked every
    /// 5 s, sees it).
    #[arg(long, default_value = "8s", value_parser = parse_duration)]
    outage: Duration,
    /// How long traffic flows undisturbed between faults.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    settle: Duration,
    /// Clients sending events, spread over both event-service replicas.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Times the whole sequence of faults is run (a soak: more).
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Where PostgreSQL's `initdb` and `pg_ctl` are.
    #[arg(long, default_value = "/usr/lib/postgresql/15/bin")]
    pg_bin: PathBuf,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Runs `tollgate-bench faults`, prints its table, and fails if a must-be figure was missed.
pub fn run(args: FaultsArgs) -> BenchResult {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let servers = Servers::unpinned()?;
        let report = measure(&servers, &args).await?;
        println!("{}", table(&report));
        if let Some(out) = &args.out {
            std::fs::write(out, serde_json::to_string_pretty(&report)?)?;
            eprintln!("faults: report written to {}", out.display());
        }
        if report["passed"] == true {
            Ok(())
        } else {
            Err("a fault broke a guarantee (see the table)".into())
        }
    })
}

/// What clients saw, shared by every client task and the fault driver.
#[derive(Debug, Default)]
struct Ledger {
    /// Every acknowledged event id, with when it was acknowledged.
    acked: Mutex<Vec<(String, Instant)>>,
    /// Acknowledgements that said the id was stored already (a resend after a lost answer).
    duplicate_answers: AtomicU64,
    /// UNAVAILABLE or DEADLINE_EXCEEDED sent by a server: resent.
    retried: AtomicU64,
    /// Failures made by the client's own transport (connection refused or lost, its timeout):
    /// no server answered; resent.
    connection_lost: AtomicU64,
    /// Any other answer: a broken guarantee.
    unexpected: Mutex<Vec<String>>,
    /// Requests allowed with a key that no replica had cached while identity was unreachable.
    uncached_allowed: AtomicU64,
}

impl Ledger {
    fn counts(&self) -> [u64; 3] {
        [
            self.retried.load(Ordering::Relaxed),
            self.connection_lost.load(Ordering::Relaxed),
            self.lock_unexpected().len() as u64,
        ]
    }

    fn lock_unexpected(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.unexpected
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_acked(&self) -> std::sync::MutexGuard<'_, Vec<(String, Instant)>> {
        self.acked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The first acknowledgement at or after `t`.
    fn first_ack_after(&self, t: Instant) -> Option<Instant> {
        self.lock_acked()
            .iter()
            .rev()
            .map(|(_, at)| *at)
            .take_while(|at| *at >= t)
            .min()
    }

    /// Sorts a failed call: resent, lost on the client's side, or a broken guarantee.
    fn failed(&self, what: &str, status: &tonic::Status) {
        // A status with a source was made by the client's transport, not sent by a server.
        if status.source().is_some() {
            self.connection_lost.fetch_add(1, Ordering::Relaxed);
        } else if matches!(
            status.code(),
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
        ) {
            self.retried.fetch_add(1, Ordering::Relaxed);
        } else {
            self.lock_unexpected().push(format!(
                "{what}: {:?} {}",
                status.code(),
                status.message()
            ));
        }
    }
}

/// The processes and their fixed addresses.
struct Stack {
    servers: Servers,
    cluster: Cluster,
    identity_db: DatabaseUrl,
    events_db: DatabaseUrl,
    identity_addrs: [SocketAddr; 2],
    event_addrs: [SocketAddr; 2],
    identity: [Option<ServiceProcess>; 2],
    events: [Option<ServiceProcess>; 2],
    /// Exit statuses of replicas stopped with SIGTERM, as `name: status`.
    terminations: Vec<String>,
}

impl Stack {
    fn start_identity(&mut self, i: usize) -> Result<(), BoxError> {
        self.identity[i] = Some(block_in_place(|| {
            self.servers
                .identity_at(&self.identity_db, self.identity_addrs[i])
        })?);
        Ok(())
    }

    fn start_events(&mut self, i: usize) -> Result<(), BoxError> {
        self.events[i] = Some(block_in_place(|| {
            self.servers
                .events_at(&self.events_db, self.identity_addrs[i], self.event_addrs[i])
        })?);
        Ok(())
    }

    fn slot(&mut self, replica: Replica) -> &mut Option<ServiceProcess> {
        match replica {
            Replica::Identity(i) => &mut self.identity[i],
            Replica::Events(i) => &mut self.events[i],
        }
    }

    fn start(&mut self, replica: Replica) -> Result<(), BoxError> {
        match replica {
            Replica::Identity(i) => self.start_identity(i),
            Replica::Events(i) => self.start_events(i),
        }
    }

    /// SIGKILL, reaped.
    fn kill(&mut self, replica: Replica) -> Result<(), BoxError> {
        if let Some(mut process) = self.slot(replica).take() {
            process.kill()?;
        }
        Ok(())
    }

    /// SIGTERM, waiting for the drain to end; the exit status is recorded.
    fn terminate(&mut self, replica: Replica) -> Result<(), BoxError> {
        if let Some(process) = self.slot(replica).take() {
            process.terminate()?;
            let (status, _) = block_in_place(|| process.wait())?;
            self.terminations
                .push(format!("{}: {status}", replica.name()));
        }
        Ok(())
    }

    fn signal(&self, replica: Replica, signal: &str) -> Result<(), BoxError> {
        match replica {
            Replica::Identity(i) => &self.identity[i],
            Replica::Events(i) => &self.events[i],
        }
        .as_ref()
        .ok_or("the replica is not running")?
        .signal(signal)?;
        Ok(())
    }

    fn stop_all(&mut self) -> Result<(), BoxError> {
        for replica in Replica::ALL.into_iter().rev() {
            self.terminate(replica)?;
        }
        Ok(())
    }
}

/// One of the four replicas.
#[derive(Debug, Clone, Copy)]
enum Replica {
    Identity(usize),
    Events(usize),
}

impl Replica {
    const ALL: [Replica; 4] = [
        Replica::Identity(0),
        Replica::Identity(1),
        Replica::Events(0),
        Replica::Events(1),
    ];

    fn name(self) -> String {
        match self {
            Replica::Identity(i) => format!("identity-service {i}"),
            Replica::Events(i) => format!("event-service {i}"),
        }
    }
}

/// A channel that connects (and reconnects) when used: replicas come and go.
fn lazy_channel(addr: SocketAddr) -> Result<Channel, BoxError> {
    Ok(Channel::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(1))
        .timeout(REQUEST_TIMEOUT)
        .connect_lazy())
}

fn free_addr() -> Result<SocketAddr, BoxError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Starts the cluster and replicas, runs the faults under load, reads everything back, stops.
pub async fn measure(servers: &Servers, args: &FaultsArgs) -> Result<Value, BoxError> {
    let cluster = block_in_place(|| Cluster::create(&args.pg_bin, &[]))?;
    let server = cluster.url()?;
    // Dropped with the cluster, which goes at the end of the run.
    let identity_db = ScratchDatabase::create(&server).await?.url;
    let events_db = ScratchDatabase::create(&server).await?.url;
    let admin = admin_key(&identity_db, "faults").await?;
    let mut stack = Stack {
        servers: servers.clone(),
        cluster,
        identity_db,
        events_db,
        identity_addrs: [free_addr()?, free_addr()?],
        event_addrs: [free_addr()?, free_addr()?],
        identity: [None, None],
        events: [None, None],
        terminations: Vec::new(),
    };
    for replica in Replica::ALL {
        stack.start(replica)?;
    }
    let identity = lazy_channel(stack.identity_addrs[0])?;
    let client_key = new_key(&identity, &admin).await?;

    let ledger = Arc::new(Ledger::default());
    let (stop, stopped) = watch::channel(false);
    let mut clients = Vec::new();
    for n in 0..args.clients {
        let channel = lazy_channel(stack.event_addrs[n % 2])?;
        clients.push(tokio::spawn(client(
            n,
            channel,
            client_key.clone(),
            ledger.clone(),
            stopped.clone(),
        )));
    }
    let result = faults(&mut stack, &ledger, &identity, &admin, args).await;
    let _ = stop.send(true);
    let mut unacknowledged = 0u64;
    for c in clients {
        unacknowledged += c.await?;
    }
    let stored = match &result {
        Ok(_) => Some(read_back(lazy_channel(stack.event_addrs[0])?, &admin).await),
        Err(_) => None,
    };
    stack.stop_all()?;
    let faults = result?;
    let stored = stored.ok_or("no read-back")??;
    Ok(report(
        &ledger,
        faults,
        &stored,
        unacknowledged,
        &stack.terminations,
        args,
    ))
}

/// A key of a new service account that may send and read events.
async fn new_key(identity: &Channel, admin: &str) -> Result<String, BoxError> {
    Ok(service_keys(identity.clone(), admin, 1)
        .await?
        .pop()
        .ok_or("no key made")?)
}

fn event(id: String, name: &str, customer: String) -> ev::IngestEventRequest {
    ev::IngestEventRequest {
        event: Some(ev::EventInput {
            event_id: id,
            event_name: name.into(),
            external_customer_id: customer,
            ..Default::default()
        }),
    }
}

/// Sends events `f{n}-0`, `f{n}-1`, … until told to stop, each resent with the same id until
/// acknowledged; once stopped, goes on resending its last one for [`FINAL_RETRIES`]. How many
/// it gave up on (0 or 1).
async fn client(
    n: usize,
    channel: Channel,
    key: String,
    ledger: Arc<Ledger>,
    stopped: watch::Receiver<bool>,
) -> u64 {
    let mut events = ev::event_service_client::EventServiceClient::new(channel);
    let mut stopped_at: Option<Instant> = None;
    for seq in 0u64.. {
        if *stopped.borrow() {
            return 0;
        }
        let id = format!("f{n:02}-{seq:09}");
        loop {
            let request = with_key(&key, event(id.clone(), EVENT_NAME, format!("cus_{n}")));
            let answer = match request {
                Ok(request) => events.ingest_event(request).await,
                Err(status) => Err(status),
            };
            match answer {
                Ok(response) => {
                    let result = response.into_inner().result.unwrap_or_default();
                    if result.event_id != id {
                        ledger.lock_unexpected().push(format!(
                            "IngestEvent {id}: answered for {}",
                            result.event_id
                        ));
                    }
                    if result.duplicate {
                        ledger.duplicate_answers.fetch_add(1, Ordering::Relaxed);
                    }
                    ledger.lock_acked().push((id, Instant::now()));
                    break;
                }
                Err(status) => {
                    ledger.failed(&format!("IngestEvent {id}"), &status);
                    if *stopped.borrow() {
                        let since = *stopped_at.get_or_insert_with(Instant::now);
                        if since.elapsed() > FINAL_RETRIES {
                            return 1;
                        }
                    }
                    tokio::time::sleep(RETRY_BACKOFF).await;
                }
            }
        }
    }
    0
}

/// The faults, one after another, each followed by `settle` of undisturbed traffic.
async fn faults(
    stack: &mut Stack,
    ledger: &Ledger,
    identity: &Channel,
    admin: &str,
    args: &FaultsArgs,
) -> Result<Vec<Value>, BoxError> {
    let mut done = Vec::new();
    tokio::time::sleep(args.settle).await;
    for round in 0..args.rounds {
        for fault in Fault::ALL {
            eprintln!("faults: round {round}: {}", fault.name());
            let before = ledger.counts();
            let started = Instant::now();
            let mut figures = json!({});
            match fault {
                Fault::KillEventReplica => {
                    stack.kill(Replica::Events(0))?;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    stack.start(Replica::Events(0))?;
                }
                Fault::RollingRestart => {
                    for replica in Replica::ALL {
                        stack.terminate(replica)?;
                        stack.start(replica)?;
                        wait_serving(stack, &[replica]).await?;
                    }
                }
                Fault::DatabaseFast | Fault::DatabaseImmediate => {
                    let mode = match fault {
                        Fault::DatabaseFast => Shutdown::Fast,
                        _ => Shutdown::Immediate,
                    };
                    figures = database_outage(stack, ledger, mode, args.outage).await?;
                }
                Fault::IdentityDown => {
                    // A key made now is in no cache: while identity is gone it must be refused.
                    let probe = new_key(identity, admin).await?;
                    stack.kill(Replica::Identity(0))?;
                    stack.kill(Replica::Identity(1))?;
                    probe_uncached(stack, ledger, &probe, &[0, 1], args.outage).await?;
                    stack.start(Replica::Identity(0))?;
                    stack.start(Replica::Identity(1))?;
                }
                Fault::IdentityStalled => {
                    let probe = new_key(identity, admin).await?;
                    stack.signal(Replica::Identity(0), "STOP")?;
                    let probed = probe_uncached(stack, ledger, &probe, &[0], args.outage).await;
                    stack.signal(Replica::Identity(0), "CONT")?;
                    probed?;
                }
            }
            wait_serving(stack, &Replica::ALL).await?;
            let after = ledger.counts();
            let delta = |i: usize| after[i] - before[i];
            figures["fault"] = fault.name().into();
            figures["round"] = round.into();
            figures["seconds"] = started.elapsed().as_secs_f64().into();
            figures["retried"] = delta(0).into();
            figures["connection_lost"] = delta(1).into();
            figures["unexpected"] = delta(2).into();
            done.push(figures);
            tokio::time::sleep(args.settle).await;
        }
    }
    Ok(done)
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    KillEventReplica,
    RollingRestart,
    DatabaseFast,
    DatabaseImmediate,
    IdentityDown,
    IdentityStalled,
}

impl Fault {
    const ALL: [Fault; 6] = [
        Fault::KillEventReplica,
        Fault::RollingRestart,
        Fault::DatabaseFast,
        Fault::DatabaseImmediate,
        Fault::IdentityDown,
        Fault::IdentityStalled,
    ];

    fn name(self) -> &'static str {
        match self {
            Fault::KillEventReplica => "kill -9 of an event-service replica, restarted",
            Fault::RollingRestart => "SIGTERM rolling restart of every replica",
            Fault::DatabaseFast => "PostgreSQL restart, fast shutdown",
            Fault::DatabaseImmediate => "PostgreSQL restart, immediate shutdown",
            Fault::IdentityDown => "both identity-service replicas killed",
            Fault::IdentityStalled => "identity-service replica stalled (SIGSTOP)",
        }
    }
}

/// The health of `replica` as its own health service reports it; `None` if it does not answer.
async fn health(stack: &Stack, replica: Replica) -> Option<ServingStatus> {
    let addr = match replica {
        Replica::Identity(i) => stack.identity_addrs[i],
        Replica::Events(i) => stack.event_addrs[i],
    };
    let channel = Channel::from_shared(format!("http://{addr}"))
        .ok()?
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(1))
        .connect()
        .await
        .ok()?;
    let answer = HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .ok()?;
    Some(answer.into_inner().status())
}

/// Waits until every one of `replicas` reports SERVING.
async fn wait_serving(stack: &Stack, replicas: &[Replica]) -> Result<Duration, BoxError> {
    let started = Instant::now();
    for &replica in replicas {
        while health(stack, replica).await != Some(ServingStatus::Serving) {
            if started.elapsed() > RECOVERY {
                return Err(format!("{} not SERVING after {RECOVERY:?}", replica.name()).into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(started.elapsed())
}

/// Stops the database for `outage`, watching health, then starts it and measures how long
/// until an event is acknowledged and every replica is SERVING again.
async fn database_outage(
    stack: &mut Stack,
    ledger: &Ledger,
    mode: Shutdown,
    outage: Duration,
) -> Result<Value, BoxError> {
    let down = Instant::now();
    block_in_place(|| stack.cluster.stop(mode))?;
    let mut not_serving: Vec<String> = Vec::new();
    while down.elapsed() < outage {
        for replica in Replica::ALL {
            let name = replica.name();
            if !not_serving.contains(&name)
                && health(stack, replica).await == Some(ServingStatus::NotServing)
            {
                not_serving.push(name);
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    block_in_place(|| stack.cluster.start())?;
    let accepting = Instant::now();
    let first_ack = loop {
        if let Some(at) = ledger.first_ack_after(accepting) {
            break at - accepting;
        }
        if accepting.elapsed() > RECOVERY {
            return Err(
                format!("no event acknowledged {RECOVERY:?} after the database came back").into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let serving_again = wait_serving(stack, &Replica::ALL).await?;
    Ok(json!({
        "shutdown": mode.name(),
        "outage_seconds": outage.as_secs_f64(),
        "not_serving_during_outage": not_serving,
        "first_ack_after_accepting_ms": ms(first_ack),
        "serving_again_after_ms": ms(serving_again),
    }))
}

/// For `outage`, sends events with `probe` (a key no replica has cached) to the event replicas
/// `on`: any acknowledgement is a request let through without identity.
async fn probe_uncached(
    stack: &Stack,
    ledger: &Ledger,
    probe: &str,
    on: &[usize],
    outage: Duration,
) -> Result<(), BoxError> {
    let started = Instant::now();
    let mut sent = 0u64;
    let clients: Vec<_> = on
        .iter()
        .map(|&i| {
            lazy_channel(stack.event_addrs[i])
                .map(ev::event_service_client::EventServiceClient::new)
        })
        .collect::<Result<_, _>>()?;
    while started.elapsed() < outage {
        for mut events in clients.iter().cloned() {
            sent += 1;
            let request = with_key(
                probe,
                event(format!("probe-{sent}"), "fault_probe", "cus_probe".into()),
            )?;
            match events.ingest_event(request).await {
                Ok(_) => {
                    ledger.uncached_allowed.fetch_add(1, Ordering::Relaxed);
                }
                Err(status) => ledger.failed("probe with an uncached key", &status),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// Every stored event of the run, by id with how many times it is stored.
async fn read_back(channel: Channel, admin: &str) -> Result<HashMap<String, u32>, BoxError> {
    let mut events = ev::event_service_client::EventServiceClient::new(channel);
    let mut stored = HashMap::new();
    let mut page_token = String::new();
    loop {
        let page = events
            .list_events(with_key(
                admin,
                ev::ListEventsRequest {
                    page_size: 1000,
                    page_token: page_token.clone(),
                    event_name: EVENT_NAME.into(),
                    ..Default::default()
                },
            )?)
            .await?
            .into_inner();
        for e in page.events {
            *stored.entry(e.event_id).or_insert(0) += 1;
        }
        if page.next_page_token.is_empty() {
            return Ok(stored);
        }
        page_token = page.next_page_token;
    }
}

fn report(
    ledger: &Ledger,
    faults: Vec<Value>,
    stored: &HashMap<String, u32>,
    unacknowledged: u64,
    terminations: &[String],
    args: &FaultsArgs,
) -> Value {
    let acked = ledger.lock_acked();
    let missing = acked
        .iter()
        .filter(|(id, _)| !stored.contains_key(id))
        .count();
    let stored_twice = stored.values().filter(|n| **n > 1).count();
    let unexpected = ledger.lock_unexpected();
    let uncached_allowed = ledger.uncached_allowed.load(Ordering::Relaxed);
    let unclean_exits: Vec<&String> = terminations
        .iter()
        .filter(|t| !t.ends_with("exit status: 0"))
        .collect();
    let health_followed = faults
        .iter()
        .filter(|f| f.get("shutdown").is_some())
        .all(|f| {
            f["not_serving_during_outage"]
                .as_array()
                .is_some_and(|a| a.len() == Replica::ALL.len())
        });
    let passed = missing == 0
        && stored_twice == 0
        && uncached_allowed == 0
        && unexpected.is_empty()
        && unclean_exits.is_empty()
        && unacknowledged == 0
        && health_followed;
    json!({
        "conditions": {
            "identity_replicas": 2, "event_replicas": 2, "backend": "postgres (a private cluster)",
            "clients": args.clients, "rounds": args.rounds,
            "outage_seconds": args.outage.as_secs_f64(), "settle_seconds": args.settle.as_secs_f64(),
            "request_timeout_seconds": REQUEST_TIMEOUT.as_secs_f64(),
            "retry_backoff_ms": ms(RETRY_BACKOFF),
        },
        "faults": faults,
        "acknowledged": acked.len(),
        "stored": stored.len(),
        "acknowledged_missing": missing,
        "stored_twice": stored_twice,
        "unacknowledged_at_the_end": unacknowledged,
        "duplicate_answers": ledger.duplicate_answers.load(Ordering::Relaxed),
        "uncached_allowed": uncached_allowed,
        "retried": ledger.retried.load(Ordering::Relaxed),
        "connection_lost": ledger.connection_lost.load(Ordering::Relaxed),
        "unexpected_errors": unexpected.len(),
        "unexpected_examples": unexpected.iter().take(10).collect::<Vec<_>>(),
        "terminations": terminations,
        "health_not_serving_in_every_database_outage": health_followed,
        "passed": passed,
    })
}

/// The report as a table.
pub fn table(report: &Value) -> comfy_table::Table {
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
    table.set_header(["figure", "measured", "must be", "met"]);
    let count = |key: &str| report[key].as_u64().unwrap_or(u64::MAX);
    for (figure, key) in [
        (
            "acknowledged events missing afterwards",
            "acknowledged_missing",
        ),
        ("events stored twice (same id)", "stored_twice"),
        (
            "requests allowed with an uncached key while identity was unreachable",
            "uncached_allowed",
        ),
        (
            "answers other than UNAVAILABLE / DEADLINE_EXCEEDED",
            "unexpected_errors",
        ),
        (
            "events never acknowledged in 30 s of resending",
            "unacknowledged_at_the_end",
        ),
    ] {
        let n = count(key);
        table.add_row(vec![
            figure.into(),
            n.to_string(),
            "0".into(),
            verdict(n == 0),
        ]);
    }
    let health = report["health_not_serving_in_every_database_outage"] == true;
    table.add_row(vec![
        "health during each database outage".into(),
        if health {
            "NOT_SERVING on all 4, SERVING again by itself"
        } else {
            "not seen NOT_SERVING on every replica"
        }
        .into(),
        "NOT_SERVING, then SERVING".into(),
        verdict(health),
    ]);
    let terminations = report["terminations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let clean = terminations
        .iter()
        .all(|t| t.as_str().is_some_and(|t| t.ends_with("exit status: 0")));
    table.add_row(vec![
        "replicas stopped with SIGTERM that exited cleanly".into(),
        format!(
            "{} of {}",
            terminations
                .iter()
                .filter(|t| t.as_str().is_some_and(|t| t.ends_with("exit status: 0")))
                .count(),
            terminations.len()
        ),
        "all".into(),
        verdict(clean),
    ]);
    for f in report["faults"].as_array().into_iter().flatten() {
        if let Some(first) = f["first_ack_after_accepting_ms"].as_f64() {
            table.add_row(vec![
                format!(
                    "first ack after PostgreSQL accepts again ({} shutdown)",
                    f["shutdown"].as_str().unwrap_or("")
                ),
                format!(
                    "{first:.0} ms (SERVING again after {:.0} ms)",
                    f["serving_again_after_ms"].as_f64().unwrap_or_default()
                ),
                "<= 5000 ms (report)".into(),
                verdict(first <= 5000.0),
            ]);
        }
    }
    table.add_row(vec![
        "acknowledged / stored / resent after UNAVAILABLE or a lost connection".into(),
        format!(
            "{} / {} / {} + {}",
            report["acknowledged"], report["stored"], report["retried"], report["connection_lost"]
        ),
        "report".into(),
        String::new(),
    ]);
    table
}
