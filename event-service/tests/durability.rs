//! Durability: OK means committed. Concurrent clients ingest into a real event-service process,
//! the process is killed with SIGKILL mid-stream, restarted on the same database, and every
//! event_id that was acknowledged must be there.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::process::Command;
use std::sync::{Arc, Mutex};

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
    let mut command = Command::new(BIN);
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
    let enough = Arc::new(tokio::sync::Notify::new());
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (channel, key, acked, enough) =
                (channel.clone(), key.clone(), acked.clone(), enough.clone());
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
                        // The server is gone: whatever was not acknowledged may or may not be stored.
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    enough.notified().await;
    service.child.kill().unwrap(); // SIGKILL: no drain, no flush
    for client in clients {
        client.await.unwrap();
    }
    let (status, _) = service.wait().unwrap();
    assert!(!status.success(), "the process was killed");
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= ACKS_BEFORE_KILL);

    let restarted = start_events(&events_db, &identity_url);
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
        if found.is_err() {
            missing.push(event_id.clone());
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
    let mut restarted = restarted;
    restarted.child.kill().unwrap();
    restarted.wait().unwrap();
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
