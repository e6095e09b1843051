//! `tollgate-bench scale`: the billing-scale figures. Loads `--events` events of one event name
//! into one tenant and environment (spread over the 30 days before today and `--customers`
//! customers, with random 32-hex client ids, as most clients send), with five meters on that
//! event name, and then measures what a billing platform asks all day: meter usage per customer
//! and in total, exact distinct counts, filtered `ListEvents` pages, and what meters and client
//! ids cost the write path at that size.
//!
//! Correctness of the meters is proven by the test suites against a raw recomputation; this run
//! checks only that the tenant total counts every loaded event once, so that a fast wrong answer
//! cannot pass for a figure.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tollgate::database::DatabaseUrl;
use tollgate::proto::events::v1 as ev;
use tollgate::telemetry::parse_duration;
use tonic::transport::Channel;

use crate::BenchResult;
use crate::h2load::{H2Client, encode};
use crate::pg_cluster::{Cluster, parse_setting};
use crate::run::{
    BoxError, ScratchDatabase, Servers, Stats, admin_key, channel, load, machine, machine_note,
    measure, ms, ratio, stop, verdict, with_key,
};

/// Flags of `tollgate-bench scale`.
#[derive(Debug, clap::Args)]
pub struct ScaleArgs {
    /// Events loaded before the figures are measured (the targets are set at 10000000; the
    /// default run takes a few minutes).
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Customers the loaded events are spread over.
    #[arg(long, default_value_t = 1000)]
    customers: u64,
    /// How long each figure is measured (after a 1 s warm-up).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    duration: Duration,
    /// Run on PostgreSQL: a server URL on which a fresh database is created (and dropped
    /// afterwards). Without it (and without `--private-postgres`), on SQLite in a temporary
    /// folder.
    #[arg(long)]
    postgres_url: Option<url::Url>,
    /// Run on a PostgreSQL cluster of the run's own: `initdb` into a temporary folder, a free
    /// loopback port, every core, each `--pg-setting`; deleted afterwards.
    #[arg(long, conflicts_with = "postgres_url")]
    private_postgres: bool,
    /// A server setting for `--private-postgres` as `name=value`, repeatable (for example
    /// `--pg-setting shared_buffers=2GB`).
    #[arg(long = "pg-setting", requires = "private_postgres", value_parser = parse_setting)]
    pg_settings: Vec<String>,
    /// Where PostgreSQL's `initdb` and `pg_ctl` are, for `--private-postgres`.
    #[arg(long, default_value = "/usr/lib/postgresql/15/bin")]
    pg_bin: PathBuf,
    /// Rounds of each ingest ratio: each round measures both sides for half of `--duration`,
    /// one after the other; the report gives the ratio of all rounds and their spread.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    ratio_rounds: u32,
    /// Where to write the JSON summary.
    #[arg(long, default_value = "bench-scale.json")]
    out: PathBuf,
    /// Do not pin servers and load generator to separate cores.
    #[arg(long)]
    no_pin: bool,
    /// Keep the SQLite files in this folder (created by the run; it must not exist) instead of
    /// a temporary one deleted at the end: to query the loaded database afterwards
    /// (`bench/experiments/cold_reads.py`).
    #[arg(long)]
    keep: Option<PathBuf>,
}

/// The metered event name, and one that no meter reads (the "without meters" side).
const METERED: &str = "api_call";
const UNMETERED: &str = "page_view";
const DAYS: i64 = 30;
const REGIONS: [&str; 4] = ["eu", "us", "ap", "sa"];
/// Batches in flight while loading and in the batch figures.
const IN_FLIGHT: usize = 4;
const BATCH: u64 = 1000;

/// The meters on [`METERED`]: (key, aggregation, property, group by).
const METERS: [(&str, ev::MeterAggregation, &str, &[&str]); 5] = [
    ("calls", ev::MeterAggregation::Count, "", &[]),
    ("tokens", ev::MeterAggregation::Sum, "tokens", &[]),
    ("peak_tokens", ev::MeterAggregation::Max, "tokens", &[]),
    ("users", ev::MeterAggregation::CountUnique, "user.id", &[]),
    (
        "tokens_by_region",
        ev::MeterAggregation::Sum,
        "tokens",
        &["region"],
    ),
];

/// splitmix64: a bijection on u64, so distinct inputs give distinct (random-looking) outputs.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Who picks the event ids.
#[derive(Debug, Clone, Copy)]
enum Ids {
    /// 32 random hex characters, like a UUID without dashes.
    Client,
    /// Left empty: the server assigns a time-ordered id.
    Server,
}

/// The synthetic workload: event `n` of a phase is a pure function of `(salt, n)`.
#[derive(Debug, Clone, Copy)]
struct Workload {
    customers: u64,
    /// Start of the loaded period (midnight UTC, 30 days before today).
    start: DateTime<Utc>,
    loaded: u64,
}

impl Workload {
    fn customer(&self, r: u64) -> String {
        format!("cus_{:04}", r % self.customers)
    }

    /// Event `n` of the phase `salt`; `at` is its timestamp (None: the server's now).
    fn event(
        &self,
        salt: u64,
        n: u64,
        name: &str,
        ids: Ids,
        at: Option<DateTime<Utc>>,
    ) -> ev::EventInput {
        use prost_types::value::Kind;
        let r = mix(n ^ (salt << 48));
        let value = |kind| prost_types::Value { kind: Some(kind) };
        let user = prost_types::Struct {
            fields: [(
                "id".to_owned(),
                value(Kind::StringValue(format!("user_{}", (r >> 40) % 50))),
            )]
            .into(),
        };
        ev::EventInput {
            event_id: match ids {
                Ids::Client => format!("{r:016x}{:016x}", mix(r)),
                Ids::Server => String::new(),
            },
            event_name: name.into(),
            external_customer_id: self.customer(r),
            timestamp: at.map(tollgate::time::to_proto),
            properties: Some(prost_types::Struct {
                fields: [
                    (
                        "tokens".to_owned(),
                        value(Kind::NumberValue(((r >> 20) % 1000 + 1) as f64)),
                    ),
                    ("user".to_owned(), value(Kind::StructValue(user))),
                    (
                        "region".to_owned(),
                        value(Kind::StringValue(
                            REGIONS[((r >> 56) % 4) as usize].to_owned(),
                        )),
                    ),
                ]
                .into(),
            }),
            ..Default::default()
        }
    }

    /// Where loaded event `n` falls: evenly over the 30 days.
    fn loaded_at(&self, n: u64) -> DateTime<Utc> {
        // In 128 bits: n times 30 days of microseconds passes i64 from n = 3.6M on.
        let span = i128::from(DAYS) * 86_400_000_000;
        let offset = i128::from(n) * span / i128::from(self.loaded.max(1));
        self.start + chrono::Duration::microseconds(i64::try_from(offset).unwrap_or(i64::MAX))
    }

    fn batch(
        &self,
        salt: u64,
        b: u64,
        name: &str,
        ids: Ids,
        loading: bool,
    ) -> ev::IngestEventsRequest {
        ev::IngestEventsRequest {
            events: (b * BATCH..(b + 1) * BATCH)
                .map(|n| {
                    let at = loading.then(|| self.loaded_at(n));
                    self.event(salt, n, name, ids, at)
                })
                .collect(),
        }
    }
}

/// PostgreSQL's writer stages meter deltas that a fold task adds to the rollups a moment later
/// (SQLite's writes them in the event transaction). The run waits for the fold before it
/// measures queries, so a figure is not the fold's catch-up, and counts that wait against the
/// side of a ratio that caused it. One connection, opened at the first wait, serves every wait.
struct Fold(Option<sqlx::PgPool>);

impl Fold {
    /// How long to wait for the fold before the run fails.
    const PATIENCE: Duration = Duration::from_secs(300);

    fn new(db: &DatabaseUrl) -> Result<Self, BoxError> {
        Ok(match db {
            DatabaseUrl::Postgres(url) => Fold(Some(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(1)
                    .connect_lazy(url.as_str())?,
            )),
            DatabaseUrl::Sqlite(_) => Fold(None),
        })
    }

    /// Waits until no staged deltas are left; returns how many rows were staged when it
    /// began, and the seconds until the last was folded (0 when none were).
    async fn caught_up(&self) -> Result<(i64, f64), BoxError> {
        let Some(pool) = &self.0 else {
            return Ok((0, 0.0));
        };
        let start = std::time::Instant::now();
        let mut first = None;
        loop {
            let staged: i64 = sqlx::query_scalar("SELECT count(*) FROM meter_pending")
                .fetch_one(pool)
                .await?;
            let waiting = *first.get_or_insert(staged);
            if staged == 0 {
                let seconds = if waiting == 0 {
                    0.0
                } else {
                    start.elapsed().as_secs_f64()
                };
                return Ok((waiting, seconds));
            }
            if start.elapsed() > Self::PATIENCE {
                return Err(format!(
                    "meter fold still had {staged} staged rows after {} s",
                    Self::PATIENCE.as_secs()
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits for the fold after a run and counts the wait in the run's time (and in `total`).
    async fn count_in(&self, mut stats: Stats, total: &mut f64) -> Result<Stats, BoxError> {
        let (_, seconds) = self.caught_up().await?;
        stats.add_seconds(seconds);
        *total += seconds;
        Ok(stats)
    }
}

/// Runs `tollgate-bench scale`.
pub fn run(args: ScaleArgs) -> BenchResult {
    crate::run::run_pinned(args.no_pin, move |pin, cores| scale(args, pin, cores))
}

async fn scale(args: ScaleArgs, pin: bool, cores: usize) -> BenchResult {
    let temporary;
    let dir = match &args.keep {
        Some(kept) => {
            std::fs::create_dir(kept).map_err(|e| format!("--keep {}: {e}", kept.display()))?;
            kept.as_path()
        }
        None => {
            temporary = tempfile::tempdir()?;
            temporary.path()
        }
    };
    let servers = Servers {
        exe: std::env::current_exe()?,
        pin,
    };
    let identity_db = DatabaseUrl::Sqlite(dir.join("identity.db"));
    // Dropped (stopped and deleted) at the end of the run, after the scratch database.
    let cluster = if args.private_postgres {
        let (bin, settings) = (args.pg_bin.clone(), args.pg_settings.clone());
        let created = tokio::task::spawn_blocking(move || {
            Cluster::create(&bin, &settings).map_err(|e| e.to_string())
        });
        Some(created.await??)
    } else {
        None
    };
    let server = match &cluster {
        Some(cluster) => Some(cluster.url()?),
        None => args.postgres_url.clone(),
    };
    let scratch = match &server {
        Some(server) => Some(ScratchDatabase::create(server).await?),
        None => None,
    };
    let events_db = match &scratch {
        Some(database) => database.url.clone(),
        None => DatabaseUrl::Sqlite(dir.join("events.db")),
    };
    let backend = if scratch.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    let admin = admin_key(&identity_db, "scale").await?;
    let identity = servers.identity(&identity_db)?;
    let events = servers.events(&events_db, &identity)?;
    let result = measure_all(&args, &events, &events_db, &admin).await;
    let stored = database_bytes(&events_db).await;
    let rss = [
        (
            "identity-service",
            identity.resident_bytes(),
            identity.peak_resident_bytes(),
        ),
        (
            "event-service",
            events.resident_bytes(),
            events.peak_resident_bytes(),
        ),
    ];
    stop(events).await?;
    stop(identity).await?;
    if let Some(database) = scratch {
        database.drop().await?;
    }
    let (mut rows, figures) = result?;

    let mib = |b: Option<u64>| b.map(|b| b as f64 / (1024.0 * 1024.0)).unwrap_or_default();
    let mut memory = serde_json::Map::new();
    for (name, now, peak) in rss {
        let (now, peak) = (mib(now), mib(peak));
        memory.insert(
            name.into(),
            json!({ "resident_mib": now, "peak_resident_mib": peak }),
        );
        rows.push([
            format!("resident memory, {name}"),
            format!("{now:.1} MiB at the end, peak {peak:.1} MiB"),
            "peak <= 100 MiB".into(),
            verdict(peak <= 100.0),
        ]);
    }

    let mut disk = serde_json::Map::new();
    if let Some(Stored {
        database,
        log,
        events,
    }) = stored
    {
        let per_event = database as f64 / events.max(1) as f64;
        disk.insert("database_bytes".into(), json!(database));
        disk.insert("stored_events".into(), json!(events));
        let log = log.map_or(String::new(), |bytes| {
            disk.insert("log_bytes".into(), json!(bytes));
            format!("; log files beside it {:.0} MiB", mib(Some(bytes)))
        });
        rows.push([
            "event database on disk (events, indexes, rollups)".into(),
            format!(
                "{:.2} GiB, {per_event:.0} bytes per stored event ({events} events){log}",
                database as f64 / f64::from(1 << 30)
            ),
            "report".into(),
            String::new(),
        ]);
    }

    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
    table.set_header(["figure", "measured", "target", "met"]);
    for row in rows {
        table.add_row(row.to_vec());
    }
    println!("{table}");
    let summary = json!({
        "machine": machine(cores),
        "conditions": {
            "backend": backend, "pinned": pin, "events_loaded": args.events,
            "private_postgres": args.private_postgres, "pg_settings": args.pg_settings,
            "ratio_rounds": args.ratio_rounds,
            "customers": args.customers, "days": DAYS, "meters": METERS.len(),
            "seconds_per_figure": args.duration.as_secs_f64(),
        },
        "figures": figures,
        "resident_memory": memory,
        "disk": disk,
    });
    std::fs::write(&args.out, serde_json::to_string_pretty(&summary)?)?;
    eprintln!("scale: summary written to {}", args.out.display());
    Ok(())
}

type Rows = Vec<[String; 4]>;

/// Loads the events and measures every figure but memory.
async fn measure_all(
    args: &ScaleArgs,
    events: &tollgate::process::ServiceProcess,
    events_db: &DatabaseUrl,
    admin: &str,
) -> Result<(Rows, serde_json::Map<String, Value>), BoxError> {
    let channel = channel(events).await?;
    let d = args.duration;
    let today = Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .ok_or("midnight")?
        .and_utc();
    let work = Workload {
        customers: args.customers.max(1),
        start: today - chrono::Duration::days(DAYS),
        loaded: args.events,
    };
    let mut rows: Rows = Vec::new();
    let mut figures = serde_json::Map::new();

    let mut meters = ev::meter_service_client::MeterServiceClient::new(channel.clone());
    for (key, aggregation, property, group_by) in METERS {
        meters
            .create_meter(with_key(
                admin,
                ev::CreateMeterRequest {
                    key: key.into(),
                    event_name: METERED.into(),
                    aggregation: aggregation.into(),
                    property: property.into(),
                    group_by: group_by.iter().map(|g| (*g).to_owned()).collect(),
                    ..Default::default()
                },
            )?)
            .await?;
    }

    eprintln!(
        "scale: loading {} events over {DAYS} days, {} customers, {} meters",
        args.events,
        work.customers,
        METERS.len()
    );
    let batches = args.events.div_ceil(BATCH);
    let loaded = load_batches(&channel, admin, work, batches).await?;
    let loaded_events = batches * BATCH;
    let load_rate = loaded_events as f64 / loaded;
    figures.insert(
        "load".into(),
        json!({ "events": loaded_events, "seconds": loaded, "events_per_second": load_rate }),
    );
    rows.push([
        format!(
            "load: IngestEvents x1000, {} in flight, 5 meters",
            IN_FLIGHT
        ),
        format!("{load_rate:.0} events/s ({loaded_events} in {loaded:.0} s)"),
        "report".into(),
        String::new(),
    ]);

    let fold = Fold::new(events_db)?;
    let (staged, seconds) = fold.caught_up().await?;
    if fold.0.is_some() {
        rows.push([
            "staged meter deltas at the end of the load".into(),
            format!("{staged} rows, folded in {seconds:.2} s (before any query is measured)"),
            "report".into(),
            String::new(),
        ]);
    }

    rows.extend(postgres_after_load(events_db).await?);

    // The tenant total must count every loaded event exactly once.
    let total = meter_usage(
        &channel,
        admin,
        "calls",
        &work,
        None,
        false,
        ev::MeterWindow::Unspecified,
    )
    .await?;
    if total.total != loaded_events as f64 {
        return Err(format!(
            "the calls meter counts {} events, {loaded_events} were loaded",
            total.total
        )
        .into());
    }

    eprintln!("scale: meter usage");
    type Query = (
        &'static str,
        &'static str,
        bool,
        bool,
        ev::MeterWindow,
        f64,
        bool,
    );
    // (figure, meter, one customer, per customer, window, target ms, target is p99)
    let queries: [Query; 6] = [
        (
            "meter usage SUM, one customer, 30 days daily",
            "tokens",
            true,
            false,
            ev::MeterWindow::Day,
            5.0,
            true,
        ),
        (
            "meter usage COUNT, one customer, 30 days daily",
            "calls",
            true,
            false,
            ev::MeterWindow::Day,
            5.0,
            true,
        ),
        (
            "meter usage SUM, tenant total, 30 days",
            "tokens",
            false,
            false,
            ev::MeterWindow::Unspecified,
            20.0,
            true,
        ),
        (
            "meter usage COUNT, all customers, daily, 30 days",
            "calls",
            false,
            true,
            ev::MeterWindow::Day,
            200.0,
            false,
        ),
        (
            "meter usage COUNT_UNIQUE, one customer, 30 days",
            "users",
            true,
            false,
            ev::MeterWindow::Unspecified,
            20.0,
            true,
        ),
        (
            "meter usage COUNT_UNIQUE, one customer, 30 days daily",
            "users",
            true,
            false,
            ev::MeterWindow::Day,
            20.0,
            true,
        ),
    ];
    for (figure, key, one, per_customer, window, target, p99) in queries {
        let first = meter_usage(
            &channel,
            admin,
            key,
            &work,
            one.then_some(0),
            per_customer,
            window,
        )
        .await?;
        let call = {
            let (channel, admin) = (channel.clone(), admin.to_owned());
            move |n: u64| {
                let (channel, admin) = (channel.clone(), admin.clone());
                async move {
                    meter_usage(
                        &channel,
                        &admin,
                        key,
                        &work,
                        one.then_some(n),
                        per_customer,
                        window,
                    )
                    .await
                    .map(|_| ())
                }
            }
        };
        let stats = measure(1, d, call).await;
        rows.push(latency_row(
            figure,
            &stats,
            target,
            p99,
            &format!("{} rows from {}", first.rows.len(), first.source),
        ));
        figures.insert(slug(figure), stats.json());
    }

    eprintln!("scale: ListEvents");
    for (figure, customer, name, hour) in [
        ("ListEvents page of 100, by customer", true, false, false),
        ("ListEvents page of 100, by event name", false, true, false),
        (
            "ListEvents page of 100, by customer and event name",
            true,
            true,
            false,
        ),
        (
            "ListEvents page of 100, by a one-hour time range",
            false,
            false,
            true,
        ),
    ] {
        let call = {
            let (channel, admin) = (channel.clone(), admin.to_owned());
            move |n: u64| {
                let mut client = ev::event_service_client::EventServiceClient::new(channel.clone());
                let r = mix(n);
                let from = work.start + chrono::Duration::hours((r % (DAYS as u64 * 24)) as i64);
                let request = with_key(
                    &admin,
                    ev::ListEventsRequest {
                        page_size: 100,
                        external_customer_id: if customer {
                            work.customer(r)
                        } else {
                            String::new()
                        },
                        event_name: if name { METERED.into() } else { String::new() },
                        start_time: hour.then(|| tollgate::time::to_proto(from)),
                        end_time: hour
                            .then(|| tollgate::time::to_proto(from + chrono::Duration::hours(1))),
                        ..Default::default()
                    },
                );
                async move {
                    let page = client.list_events(request?).await?.into_inner();
                    if page.events.is_empty() {
                        Err(tonic::Status::internal("an empty page"))
                    } else {
                        Ok(())
                    }
                }
            }
        };
        let stats = measure(1, d, call).await;
        rows.push(latency_row(figure, &stats, 5.0, true, ""));
        figures.insert(slug(figure), stats.json());
    }

    eprintln!("scale: GetUsage (ad hoc, the slow path)");
    let adhoc = {
        let (channel, admin) = (channel.clone(), admin.to_owned());
        move |n: u64| {
            let mut client = ev::event_service_client::EventServiceClient::new(channel.clone());
            let day = work.start + chrono::Duration::days((mix(n) % DAYS as u64) as i64);
            let request = with_key(
                &admin,
                ev::GetUsageRequest {
                    event_name: METERED.into(),
                    start_time: Some(tollgate::time::to_proto(day)),
                    end_time: Some(tollgate::time::to_proto(day + chrono::Duration::days(1))),
                    aggregation: ev::Aggregation::Sum.into(),
                    property: "tokens".into(),
                    ..Default::default()
                },
            );
            async move { client.get_usage(request?).await.map(|_| ()) }
        }
    };
    let stats = load(1, d, adhoc).await;
    let figure = "GetUsage SUM over one day (ad hoc, no meter)";
    rows.push([
        figure.into(),
        format!(
            "p50 {:.1} ms, max {:.1} ms ({} runs, {} refused)",
            ms(stats.percentile(50.0)),
            ms(stats.latencies.last().copied().unwrap_or_default()),
            stats.requests,
            stats.errors
        ),
        "report (the slow path)".into(),
        String::new(),
    ]);
    figures.insert(slug(figure), stats.json());

    eprintln!("scale: ingest with and without meters, client and server ids");
    let batch = |salt: u64, name: &'static str, ids: Ids| {
        let (channel, admin) = (channel.clone(), admin.to_owned());
        move |n: u64| {
            let mut client = ev::event_service_client::EventServiceClient::new(channel.clone());
            let request = with_key(&admin, work.batch(salt, n, name, ids, false));
            async move { client.ingest_events(request?).await.map(|_| ()) }
        }
    };
    let h2 = H2Client::connect(events.addr).await?;
    let single = |salt: u64, ids: Ids| {
        let (h2, admin) = (h2.clone(), admin.to_owned());
        move |n: u64| {
            let (h2, admin) = (h2.clone(), admin.clone());
            let message = encode(&ev::IngestEventRequest {
                event: Some(work.event(salt, n, UNMETERED, ids, None)),
            });
            async move {
                h2.unary(
                    "/tollgate.events.v1.EventService/IngestEvent",
                    &message,
                    &[(tollgate::metadata::API_KEY_HEADER, admin.as_str())],
                )
                .await
                .map(|_| ())
            }
        }
    };
    // Each side alternates with the other `--ratio-rounds` times, so drift (a checkpoint, the
    // page cache) falls on both.
    let rounds = args.ratio_rounds;
    let meters = alternate(
        d,
        rounds,
        &fold,
        (IN_FLIGHT, batch(1, METERED, Ids::Client)),
        (IN_FLIGHT, batch(2, UNMETERED, Ids::Client)),
    )
    .await?;
    rows.push(ratio_row(
        "IngestEvents x1000 with 5 meters on the event name / without",
        &meters,
        BATCH,
        0.7,
    ));
    figures.insert("ingest_events_with_meters".into(), meters.a.json());
    figures.insert("ingest_events_without_meters".into(), meters.b.json());
    figures.insert("ingest_events_meters_rounds".into(), json!(meters.rounds));
    figures.insert(
        "ingest_events_meters_phases_only".into(),
        json!(phases_only(&meters)),
    );
    figures.insert(
        "ingest_events_meters_caught_up_s".into(),
        json!(meters.caught_up),
    );
    let batches = alternate(
        d,
        rounds,
        &fold,
        (IN_FLIGHT, batch(3, UNMETERED, Ids::Client)),
        (IN_FLIGHT, batch(4, UNMETERED, Ids::Server)),
    )
    .await?;
    rows.push(ratio_row(
        "IngestEvents x1000, random client ids / server ids",
        &batches,
        BATCH,
        0.8,
    ));
    figures.insert("ingest_events_client_ids".into(), batches.a.json());
    figures.insert("ingest_events_server_ids".into(), batches.b.json());
    figures.insert("ingest_events_ids_rounds".into(), json!(batches.rounds));
    let singles = alternate(
        d,
        rounds,
        &fold,
        (64, single(5, Ids::Client)),
        (64, single(6, Ids::Server)),
    )
    .await?;
    rows.push(ratio_row(
        "IngestEvent, 64 in flight, random client ids / server ids",
        &singles,
        1,
        0.8,
    ));
    figures.insert("ingest_event_client_ids".into(), singles.a.json());
    figures.insert("ingest_event_server_ids".into(), singles.b.json());
    figures.insert("ingest_event_ids_rounds".into(), json!(singles.rounds));
    Ok((rows, figures))
}

/// Loads `batches` batches of the metered event with client ids, `IN_FLIGHT` at a time;
/// returns the seconds it took.
async fn load_batches(
    channel: &Channel,
    admin: &str,
    work: Workload,
    batches: u64,
) -> Result<f64, BoxError> {
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let start = std::time::Instant::now();
    let tasks: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let (next, admin, channel) = (next.clone(), admin.to_owned(), channel.clone());
            tokio::spawn(async move {
                let mut client = ev::event_service_client::EventServiceClient::new(channel);
                loop {
                    let b = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if b >= batches {
                        return Ok::<(), tonic::Status>(());
                    }
                    if b > 0 && b % 1000 == 0 {
                        eprintln!("scale: {} events loaded", b * BATCH);
                    }
                    let request = with_key(&admin, work.batch(0, b, METERED, Ids::Client, true))?;
                    client.ingest_events(request).await?;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// One `GetMeterUsage` call; `customer` picks a customer from a number.
async fn meter_usage(
    channel: &Channel,
    admin: &str,
    key: &str,
    work: &Workload,
    customer: Option<u64>,
    per_customer: bool,
    window: ev::MeterWindow,
) -> Result<ev::GetMeterUsageResponse, tonic::Status> {
    let mut client = ev::meter_service_client::MeterServiceClient::new(channel.clone());
    let request = with_key(
        admin,
        ev::GetMeterUsageRequest {
            key: key.into(),
            start_time: Some(tollgate::time::to_proto(work.start)),
            end_time: Some(tollgate::time::to_proto(
                work.start + chrono::Duration::days(DAYS),
            )),
            external_customer_id: customer.map(|c| work.customer(mix(c))).unwrap_or_default(),
            group_by_customer: per_customer,
            window: window.into(),
        },
    )?;
    Ok(client.get_meter_usage(request).await?.into_inner())
}

/// The two sides of a ratio, measured in alternating phases.
struct Alternated {
    a: Stats,
    b: Stats,
    /// Seconds the meter fold took to catch up after each side's phases, counted against them.
    caught_up: [f64; 2],
    /// The ratio of each round (a phase of each side), to show the spread.
    rounds: Vec<f64>,
}

/// Measures `a` and `b` in `rounds` rounds of one `d / 2` phase each, alternating, so that drift
/// (a checkpoint, the page cache, the machine's speed) falls on both sides; each side is charged
/// the meter fold's catch-up after its phase.
async fn alternate<A, FA, B, FB>(
    d: Duration,
    rounds: u32,
    fold: &Fold,
    a: (usize, A),
    b: (usize, B),
) -> Result<Alternated, BoxError>
where
    A: Fn(u64) -> FA + Clone + Send + 'static,
    FA: std::future::Future<Output = Result<(), tonic::Status>> + Send,
    B: Fn(u64) -> FB + Clone + Send + 'static,
    FB: std::future::Future<Output = Result<(), tonic::Status>> + Send,
{
    let half = d / 2;
    let mut caught_up = [0.0; 2];
    let mut sides: Option<(Stats, Stats)> = None;
    let mut ratios = Vec::new();
    for round in 0..u64::from(rounds) {
        // The sequence numbers restart with each phase: offset them so a phase never repeats
        // an id.
        let offset = round << 32;
        let (fa, fb) = (a.1.clone(), b.1.clone());
        let sa = measure(a.0, half, move |n: u64| fa(n + offset)).await;
        let sa = fold.count_in(sa, &mut caught_up[0]).await?;
        let sb = measure(b.0, half, move |n: u64| fb(n + offset)).await;
        let sb = fold.count_in(sb, &mut caught_up[1]).await?;
        if sb.per_second() > 0.0 {
            ratios.push(sa.per_second() / sb.per_second());
        }
        sides = Some(match sides {
            Some((ta, tb)) => (ta.merge(sa), tb.merge(sb)),
            None => (sa, sb),
        });
    }
    let (a, b) = sides.ok_or("no round measured")?;
    Ok(Alternated {
        a,
        b,
        caught_up,
        rounds: ratios,
    })
}

fn latency_row(figure: &str, stats: &Stats, target_ms: f64, p99: bool, note: &str) -> [String; 4] {
    let (p50, p99_ms) = (ms(stats.percentile(50.0)), ms(stats.percentile(99.0)));
    let measured = format!(
        "p50 {p50:.2} ms, p99 {p99_ms:.2} ms ({} runs{}{}{}){}",
        stats.requests,
        if stats.errors > 0 { ", errors: " } else { "" },
        stats.first_error.as_deref().unwrap_or(""),
        machine_note(stats),
        if note.is_empty() {
            String::new()
        } else {
            format!("; {note}")
        }
    );
    let (target, met) = if p99 {
        (format!("p99 <= {target_ms} ms"), p99_ms <= target_ms)
    } else {
        (format!("p50 <= {target_ms} ms"), p50 <= target_ms)
    };
    [
        figure.into(),
        measured,
        target,
        verdict(met && stats.errors == 0),
    ]
}

fn ratio_row(figure: &str, sides: &Alternated, per_request: u64, floor: f64) -> [String; 4] {
    let Alternated {
        a,
        b,
        caught_up,
        rounds,
    } = sides;
    let (ra, rb) = (
        a.per_second() * per_request as f64,
        b.per_second() * per_request as f64,
    );
    let ratio = ratio(ra, rb);
    let errors = a.errors + b.errors;
    let caught_up_total = caught_up[0] + caught_up[1];
    let (low, high) = rounds
        .iter()
        .fold((f64::MAX, f64::MIN), |(l, h), r| (l.min(*r), h.max(*r)));
    [
        figure.into(),
        format!(
            "{ra:.0} vs {rb:.0} events/s: {ratio:.2}{}{}{}",
            if rounds.len() > 1 {
                format!(" (rounds {low:.2}-{high:.2})")
            } else {
                String::new()
            },
            if errors > 0 {
                format!(" ({errors} errors)")
            } else {
                String::new()
            },
            if caught_up_total > 0.0 {
                // The wait includes the fold's own pause between folds (up to its interval),
                // so the ratio of the phases alone is shown beside the one the verdict uses.
                format!(
                    " (counting {caught_up_total:.2} s the meter fold took to catch up after \
                     the sides; the phases alone: {:.2})",
                    phases_only(sides)
                )
            } else {
                String::new()
            }
        ),
        format!(">= {floor}"),
        verdict(ratio >= floor && errors == 0),
    ]
}

/// The ratio of the two sides' rates over their phases alone, without the fold's catch-up.
fn phases_only(sides: &Alternated) -> f64 {
    ratio(
        sides.a.per_second_without(sides.caught_up[0]),
        sides.b.per_second_without(sides.caught_up[1]),
    )
}

/// "meter usage SUM, one customer" -> "meter_usage_sum_one_customer".
fn slug(figure: &str) -> String {
    let mut out = String::new();
    for c in figure.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_owned()
}

/// The settings of a PostgreSQL server that most move the write figures (see
/// docs/operations.md), as the server reports them: the run's conditions, as a report row.
/// Where autovacuum is off (as on some shared test servers), it also analyzes the event database
/// once the load is done, as autovacuum would have during it, and says so in a second row:
/// PostgreSQL plans `ListEvents` from its statistics, and a table never analyzed has none (a page
/// by event name then read every event of the name to sort them: p50 844 ms at 1M events, 1.3 ms
/// after).
async fn postgres_after_load(db: &DatabaseUrl) -> Result<Rows, BoxError> {
    use sqlx::{Connection, Executor};
    let DatabaseUrl::Postgres(url) = db else {
        return Ok(Vec::new());
    };
    let row =
        |figure: &str, measured: String| [figure.into(), measured, "report".into(), String::new()];
    let mut connection = sqlx::PgConnection::connect(url.as_str()).await?;
    let settings: Vec<(String, String)> =
        sqlx::query_as("SELECT name, current_setting(name) FROM unnest($1::text[]) AS name")
            .bind([
                "server_version",
                "shared_buffers",
                "max_wal_size",
                "checkpoint_timeout",
                "autovacuum",
            ])
            .fetch_all(&mut connection)
            .await?;
    let shown: Vec<String> = settings.iter().map(|(n, v)| format!("{n} {v}")).collect();
    let mut rows = vec![row("PostgreSQL server", shown.join(", "))];
    if settings
        .iter()
        .any(|(n, v)| n == "autovacuum" && v == "off")
    {
        let start = std::time::Instant::now();
        connection.execute("ANALYZE").await?;
        rows.push(row(
            "PostgreSQL planner statistics",
            format!(
                "autovacuum is off on this server: ANALYZE after the load, as it would ({:.1} s)",
                start.elapsed().as_secs_f64()
            ),
        ));
    }
    Ok(rows)
}

/// What the event database takes on disk.
#[derive(Debug, Clone, Copy)]
struct Stored {
    /// SQLite's database file, or PostgreSQL's `pg_database_size`.
    database: u64,
    /// SQLite's write-ahead log and its index beside the file: a log's file keeps the largest
    /// size it reached, so it is reported apart from what the events take.
    log: Option<u64>,
    /// Events stored: the load's and those the ingest ratios sent on top of it.
    events: u64,
}

/// The event database's size: the SQLite files, or PostgreSQL's `pg_database_size`.
async fn database_bytes(db: &DatabaseUrl) -> Option<Stored> {
    use tollgate::sql::{Db, Query};
    let size = |path: &std::path::Path| std::fs::metadata(path).map_or(0, |m| m.len());
    let (connection, database, log) = match db {
        DatabaseUrl::Sqlite(path) => {
            // The log, and its index beside it under the same name.
            let wal = tollgate::database::sqlite_wal_path(path).ok()?;
            let shm = format!("{}-shm", wal.to_str()?.strip_suffix("-wal")?);
            let log = size(&wal) + size(std::path::Path::new(&shm));
            let pool = tollgate::database::sqlite_pool(path, 1).await.ok()?;
            (Db::Sqlite(pool), size(path), Some(log))
        }
        DatabaseUrl::Postgres(url) => {
            let pool = tollgate::database::postgres_pool(url, 1, None).await.ok()?;
            let db = Db::Postgres(pool);
            let (bytes,): (i64,) = db
                .fetch_one(Query::new("SELECT pg_database_size(current_database())"))
                .await
                .ok()?;
            (db, u64::try_from(bytes).ok()?, None)
        }
    };
    let (events,): (i64,) = connection
        .fetch_one(Query::new("SELECT count(*) FROM events"))
        .await
        .ok()?;
    Some(Stored {
        database,
        log,
        events: u64::try_from(events).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_million_events_spread_over_all_thirty_days() {
        let start = DateTime::<Utc>::UNIX_EPOCH;
        let work = Workload {
            customers: 1000,
            start,
            loaded: 10_000_000,
        };
        let last = work.loaded_at(work.loaded - 1);
        assert!(last < start + chrono::Duration::days(DAYS), "{last}");
        assert!(
            last > start + chrono::Duration::days(DAYS) - chrono::Duration::seconds(1),
            "{last}"
        );
        let middle = work.loaded_at(work.loaded / 2);
        assert_eq!(middle, start + chrono::Duration::days(DAYS / 2));
    }
}
