//! `tollgate-bench revocation`: how long a revoked key keeps working on another replica.
//!
//! Two identity-service replicas on one PostgreSQL database (one on SQLite, which only one
//! process may serve), each with an event-service of its own, all at default settings (a 10 s
//! decision cache). Each trial makes a key through identity replica A, has event replica B cache
//! an allowed decision for it, revokes it through A (the key deleted, its account deleted, or the
//! key rotated with no grace), and then asks B with it every 2 ms until B refuses it: the delay
//! is the time from A's acknowledgement to B's first refusal.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tollgate::database::DatabaseUrl;
use tollgate::process::ServiceProcess;
use tollgate::proto::events::v1 as ev;
use tollgate::proto::identity::v1 as id;
use tonic::transport::Channel;

use crate::BenchResult;
use crate::run::{BoxError, ScratchDatabase, Servers, admin_key, channel, ms, stop, with_key};

/// How often B is asked while a trial waits for it to refuse.
const POLL_INTERVAL: Duration = Duration::from_millis(2);
/// A trial whose key still works this long after the revocation failed: past the default
/// cache TTL (10 s), the key must be refused even without the revocation stream.
const TRIAL_DEADLINE: Duration = Duration::from_secs(15);

/// Flags of `tollgate-bench revocation`.
#[derive(Debug, clap::Args)]
pub struct RevocationArgs {
    /// Trials of each kind of revocation.
    #[arg(long, default_value_t = 50)]
    trials: usize,
    /// Run two identity-service replicas on a fresh database on this PostgreSQL server (dropped
    /// afterwards); without it, one identity-service on SQLite.
    #[arg(long, env = "TOLLGATE_BENCH_POSTGRES_URL")]
    postgres_url: Option<url::Url>,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// The kinds of revocation measured.
#[derive(Debug, Clone, Copy)]
enum Kind {
    KeyDeleted,
    AccountDeleted,
    RotatedWithoutGrace,
}

impl Kind {
    const ALL: [Kind; 3] = [
        Kind::KeyDeleted,
        Kind::AccountDeleted,
        Kind::RotatedWithoutGrace,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::KeyDeleted => "key_deleted",
            Kind::AccountDeleted => "account_deleted",
            Kind::RotatedWithoutGrace => "key_rotated_grace_0",
        }
    }
}

/// Runs `tollgate-bench revocation` and prints its table.
pub fn run(args: RevocationArgs) -> BenchResult {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let servers = Servers::unpinned()?;
        let report = measure(&servers, args.postgres_url.as_ref(), args.trials).await?;
        println!("{}", table(&report));
        if let Some(out) = &args.out {
            std::fs::write(out, serde_json::to_string_pretty(&report)?)?;
            eprintln!("bench: revocation figures written to {}", out.display());
        }
        Ok(())
    })
}

/// The figures as table rows: kind, trials, p50, p99, max.
pub fn table(report: &Value) -> comfy_table::Table {
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
    table.set_header([
        "revocation reaching another replica",
        "trials",
        "p50",
        "p99",
        "max",
    ]);
    for kind in Kind::ALL {
        let f = &report["kinds"][kind.name()];
        table.add_row(vec![
            kind.name().to_owned(),
            f["trials"].to_string(),
            format!("{:.1} ms", f["p50_ms"].as_f64().unwrap_or_default()),
            format!("{:.1} ms", f["p99_ms"].as_f64().unwrap_or_default()),
            format!("{:.1} ms", f["max_ms"].as_f64().unwrap_or_default()),
        ]);
    }
    table
}

/// Starts the replicas, runs `trials` of each kind, stops them; the figures as JSON.
pub async fn measure(
    servers: &Servers,
    postgres: Option<&url::Url>,
    trials: usize,
) -> Result<Value, BoxError> {
    let dir = tempfile::tempdir()?;
    let mut scratch = Vec::new();
    let (identity_db, events_a_db, events_b_db) = match postgres {
        Some(server) => {
            let (identity, events) = (
                ScratchDatabase::create(server).await?,
                ScratchDatabase::create(server).await?,
            );
            let urls = (identity.url.clone(), events.url.clone(), events.url.clone());
            scratch.extend([identity, events]);
            urls
        }
        None => (
            DatabaseUrl::Sqlite(dir.path().join("identity.db")),
            DatabaseUrl::Sqlite(dir.path().join("events-a.db")),
            DatabaseUrl::Sqlite(dir.path().join("events-b.db")),
        ),
    };
    let admin = admin_key(&identity_db, "revocation").await?;
    let identity_a = servers.identity(&identity_db)?;
    let identity_b = match postgres {
        Some(_) => Some(servers.identity(&identity_db)?),
        None => None,
    };
    let events_a = servers.events(&events_a_db, &identity_a)?;
    let events_b = servers.events(&events_b_db, identity_b.as_ref().unwrap_or(&identity_a))?;
    let result = trials_of_each_kind(
        channel(&identity_a).await?,
        channel(&events_b).await?,
        &admin,
        trials,
    )
    .await;
    let processes: Vec<ServiceProcess> =
        [Some(events_a), Some(events_b), identity_b, Some(identity_a)]
            .into_iter()
            .flatten()
            .collect();
    for process in processes {
        stop(process).await?;
    }
    for database in scratch {
        database.drop().await?;
    }
    let kinds = result?;
    Ok(json!({
        "backend": if postgres.is_some() { "postgres" } else { "sqlite" },
        "identity_replicas": if postgres.is_some() { 2 } else { 1 },
        "event_replicas": 2,
        "auth_cache_ttl_seconds": 10,
        "poll_interval_ms": ms(POLL_INTERVAL),
        "kinds": kinds,
    }))
}

async fn trials_of_each_kind(
    identity: Channel,
    events: Channel,
    admin: &str,
    trials: usize,
) -> Result<Value, BoxError> {
    let mut kinds = serde_json::Map::new();
    for kind in Kind::ALL {
        eprintln!("bench: {trials} trials of {}", kind.name());
        let mut delays = Vec::with_capacity(trials);
        for _ in 0..trials {
            delays.push(trial(identity.clone(), events.clone(), admin, kind).await?);
        }
        delays.sort_unstable();
        let percentile = |p: f64| {
            let rank = ((p / 100.0) * delays.len() as f64).ceil() as usize;
            delays
                .get(rank.clamp(1, delays.len().max(1)) - 1)
                .copied()
                .unwrap_or_default()
        };
        kinds.insert(
            kind.name().into(),
            json!({
                "trials": delays.len(), "p50_ms": ms(percentile(50.0)), "p99_ms": ms(percentile(99.0)),
                "max_ms": ms(delays.last().copied().unwrap_or_default()),
            }),
        );
    }
    Ok(Value::Object(kinds))
}

/// One trial: the delay between A acknowledging the revocation and B refusing the key.
async fn trial(
    identity: Channel,
    events: Channel,
    admin: &str,
    kind: Kind,
) -> Result<Duration, BoxError> {
    let mut users = id::user_service_client::UserServiceClient::new(identity.clone());
    let mut keys = id::api_key_service_client::ApiKeyServiceClient::new(identity);
    let mut events = ev::event_service_client::EventServiceClient::new(events);
    let account = users
        .create_user(with_key(
            admin,
            id::CreateUserRequest {
                r#type: id::UserType::ServiceAccount.into(),
                roles: vec!["event_reader".into()],
                name: "revocation trial".into(),
            },
        )?)
        .await?
        .into_inner()
        .user
        .ok_or("no user in response")?;
    let key = keys
        .create_api_key(with_key(
            admin,
            id::CreateApiKeyRequest {
                name: "revocation trial".into(),
                service_account_id: account.id.clone(),
                ..Default::default()
            },
        )?)
        .await?
        .into_inner();
    let read = || ev::ListEventsRequest {
        page_size: 1,
        ..Default::default()
    };
    // B caches an allowed decision.
    events.list_events(with_key(&key.api_key, read())?).await?;
    match kind {
        Kind::KeyDeleted => {
            keys.delete_api_key(with_key(admin, id::DeleteApiKeyRequest { id: key.id })?)
                .await?;
        }
        Kind::AccountDeleted => {
            users
                .delete_user(with_key(admin, id::DeleteUserRequest { id: account.id })?)
                .await?;
        }
        Kind::RotatedWithoutGrace => {
            keys.rotate_api_key(with_key(
                admin,
                id::RotateApiKeyRequest {
                    id: key.id,
                    grace_period: Some(prost_types::Duration::default()),
                },
            )?)
            .await?;
        }
    }
    let acknowledged = Instant::now();
    loop {
        match events.list_events(with_key(&key.api_key, read())?).await {
            Ok(_) if acknowledged.elapsed() < TRIAL_DEADLINE => {
                tokio::time::sleep(POLL_INTERVAL).await;
            }
            Ok(_) => {
                return Err(format!(
                    "{}: the key still worked {TRIAL_DEADLINE:?} after the revocation",
                    kind.name()
                )
                .into());
            }
            Err(status) if status.code() == tonic::Code::Unauthenticated => {
                return Ok(acknowledged.elapsed());
            }
            Err(status) => return Err(status.into()),
        }
    }
}
