//! Durability: OK means committed. Concurrent clients ingest into a real event-service process,
//! the process is killed with SIGKILL mid-stream, restarted on the same database, and every
//! event_id that was acknowledged must be there.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use identity_service::testing::TestIdentity;
use tollgate::database::DatabaseUrl;
use tollgate::process::ServiceProcess;
use tollgate::proto::events::v1 as ev;
use tollgate::testing::with_key;
use tonic::transport::Channel;

const BIN: &str = env!("CARGO_BIN_EXE_event-service");
const CLIENTS: usize = 8;
/// Acknowledgements to wait for before the kill; each client stops after this many sends anyway.
const ACKS_BEFORE_KILL: usize = 400;
const MAX_SENDS_PER_CLIENT: usize = 5_000;

fn start_events(database_url: &DatabaseUrl, identity: &str) -> ServiceProcess {
    let mut command = tollgate::process::command(BIN);
    let url = match database_url {
        DatabaseUrl::Sqlite(path) => format!("sqlite:{}", path.display()),
        DatabaseUrl::Postgres(url) => url.to_string(),
    };
    command.args([
        "serve",
        "--listen-addr",
        "127.0.0.1:0",
        "--database-url",
        &url,
        "--identity-url",
        identity,
    ]);
    ServiceProcess::start(command, "event-service listening").unwrap()
}

async fn acknowledged_events_survive_sigkill(events_db: DatabaseUrl) {
    let identity = TestIdentity::spawn().await;
    let identity_url = identity.url().to_string();
    let key = identity.admin().to_owned();

    let mut service = start_events(&events_db, &identity_url);
    let channel = Channel::from_shared(format!("http://{}", service.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let killed = Arc::new(AtomicBool::new(false));
    let enough = Arc::new(tokio::sync::Notify::new());
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (channel, key, acked, enough, killed) = (
                channel.clone(),
                key.clone(),
                acked.clone(),
                enough.clone(),
                killed.clone(),
            );
            tokio::spawn(async move {
                let mut client = ev::event_service_client::EventServiceClient::new(channel);
                for i in 0..MAX_SENDS_PER_CLIENT {
                    let event_id = format!("c{c}-{i}");
                    let request = with_key(
                        &key,
                        ev::IngestEventRequest {
                            event: Some(ev::EventInput {
                                event_id: event_id.clone(),
                                event_name: "api_call".into(),
                                external_customer_id: format!("cus_{c}"),
                                ..Default::default()
                            }),
                        },
                    );
                    match client.ingest_event(request).await {
                        Ok(_) => {
                            let mut acked = acked.lock().unwrap();
                            acked.push(event_id);
                            if acked.len() == ACKS_BEFORE_KILL {
                                enough.notify_one();
                            }
                        }
                        // The server is gone: whatever was not acknowledged may or may not be
                        // stored.
                        Err(_) if killed.load(Ordering::SeqCst) => return,
                        Err(e) => panic!("ingest failed before the kill: {e:?}"),
                    }
                }
            })
        })
        .collect();
    tokio::time::timeout(Duration::from_secs(120), enough.notified())
        .await
        .unwrap_or_else(|_| panic!("fewer than {ACKS_BEFORE_KILL} events acknowledged in 120 s"));
    killed.store(true, Ordering::SeqCst);
    service.child.kill().unwrap(); // SIGKILL: no drain, no flush
    for client in clients {
        client.await.unwrap();
    }
    let (status, _) = service.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "killed by SIGKILL, not exited"
    );
    let acked = acked.lock().unwrap().clone();

    let mut restarted = start_events(&events_db, &identity_url);
    let channel = Channel::from_shared(format!("http://{}", restarted.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = ev::event_service_client::EventServiceClient::new(channel);
    let mut missing = Vec::new();
    for event_id in &acked {
        let found = client
            .get_event(with_key(
                &key,
                ev::GetEventRequest {
                    event_id: event_id.clone(),
                },
            ))
            .await;
        match found {
            Ok(_) => {}
            Err(e) if e.code() == tonic::Code::NotFound => missing.push(event_id.clone()),
            Err(e) => panic!("cannot read {event_id} back: {e:?}"),
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged events lost: {missing:?}",
        missing.len(),
        acked.len()
    );
    eprintln!(
        "{} acknowledged events all present after SIGKILL and restart",
        acked.len()
    );
    restarted.kill().unwrap();
}

/// A caller hears OK only after the write-ahead log has really been synced: when the sync of
/// the real file fails, the caller is refused, and the service stops (non-zero) so that it is
/// restarted. SQLite's own file stays open in the server; only the path the syncer opens is
/// made unsyncable (a symbolic link that points at itself).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sync_refuses_the_caller_and_stops_the_service() {
    let identity = TestIdentity::spawn().await;
    let key = identity.admin().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    let service = start_events(&DatabaseUrl::Sqlite(db.clone()), identity.url().as_str());
    let channel = Channel::from_shared(format!("http://{}", service.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = ev::event_service_client::EventServiceClient::new(channel);
    let send = |id: &str| {
        with_key(
            &key,
            ev::IngestEventRequest {
                event: Some(ev::EventInput {
                    event_id: id.into(),
                    event_name: "api_call".into(),
                    external_customer_id: "cus_1".into(),
                    ..Default::default()
                }),
            },
        )
    };
    client.ingest_event(send("before")).await.unwrap();
    let wal = dir.path().join("events.db-wal");
    assert!(wal.exists(), "the log is where the syncer looks");
    std::fs::remove_file(&wal).unwrap();
    std::os::unix::fs::symlink("events.db-wal", &wal).unwrap();

    let err = client.ingest_event(send("after")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Internal, "{err:?}");
    let (status, log) = service.wait().unwrap();
    assert!(!status.success(), "the service must stop with an error");
    let log = log.join("\n");
    assert!(log.contains("cannot sync committed events"), "{log}");
    assert!(log.contains("write path failed"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_acknowledged_events_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    acknowledged_events_survive_sigkill(DatabaseUrl::Sqlite(dir.path().join("events.db"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(postgres_tests),
    ignore = "set TEST_DATABASE_URL (at build time) to run the PostgreSQL suite"
)]
async fn postgres_acknowledged_events_survive_sigkill() {
    let database = tollgate::testing::PostgresDatabase::create().await;
    acknowledged_events_survive_sigkill(database.url().clone()).await;
}
