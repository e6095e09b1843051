//! Helpers for end-to-end tests: both services started in-process on 127.0.0.1:0 against fresh
//! SQLite databases, typed clients, and the requests the stories need.
#![allow(clippy::unwrap_used)] // test support fails loudly by design

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use event_service::authz::cache::AuthCache;
use identity_service::Identity;
use identity_service::testing::TestIdentity;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tollgate::proto::events::v1 as ev;
use tollgate::proto::identity::v1 as id;
pub use tollgate::testing::{digest, with_key};
use tonic::Status;
use tonic::transport::Channel;

/// A running service and how to stop it.
#[derive(Debug)]
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Running {
    fn start<F>(addr: SocketAddr, run: impl FnOnce(oneshot::Receiver<()>) -> F) -> Self
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel();
        Self {
            addr,
            stop: Some(stop),
            task: Some(tokio::spawn(run(stopped))),
        }
    }

    /// Stops it and waits until it has drained.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

/// Both services, one tenant, and its admin key.
#[derive(Debug)]
pub struct Stack {
    /// identity-service.
    pub identity: TestIdentity,
    /// event-service.
    pub events: Running,
    /// The identity domain, to bootstrap tenants and write keys directly.
    pub identity_domain: Identity,
    /// event-service's decision cache, to count `Authorize` calls.
    pub auth_cache: Arc<AuthCache>,
    /// identity-service's metrics endpoint.
    pub identity_metrics: SocketAddr,
    /// event-service's metrics endpoint.
    pub events_metrics: SocketAddr,
    /// The first tenant's admin key (full access, production).
    pub admin_key: String,
    /// The first tenant's id.
    pub tenant_id: String,
    /// The first tenant's admin account.
    pub admin_id: String,
    events_channel: Channel,
    _dir: tempfile::TempDir,
}

impl Stack {
    /// Both services with the default cache TTL.
    pub async fn start() -> Self {
        Self::start_with_ttl(Duration::from_secs(10)).await
    }

    /// Both services, event-service caching decisions for `ttl` (denials for at most `ttl`).
    pub async fn start_with_ttl(ttl: Duration) -> Self {
        let identity = TestIdentity::spawn_with(|s| {
            s.metrics_addr = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let mut settings = event_service::config::Settings::new(
            tollgate::database::DatabaseUrl::Sqlite(dir.path().join("events.db")),
            identity.url(),
        );
        settings.auth_cache_ttl = ttl;
        settings.metrics_addr = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        settings.auth_denial_ttl = settings.auth_denial_ttl.min(ttl);
        let events_app = event_service::startup::Application::build(settings)
            .await
            .unwrap();
        let events_addr = events_app.local_addr();
        let auth_cache = events_app.auth_cache();
        let events_metrics = events_app.metrics_addr().unwrap();
        let events = Running::start(events_addr, |stopped| async move {
            events_app
                .run_until_stopped(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            events_channel: connect(events_addr).await,
            identity_domain: identity.identity.clone(),
            identity_metrics: identity.metrics_addr.unwrap(),
            admin_key: identity.tenant.admin_key.clone(),
            tenant_id: identity.tenant.tenant_id.clone(),
            admin_id: identity.tenant.admin_id.clone(),
            identity,
            events,
            auth_cache,
            events_metrics,
            _dir: dir,
        }
    }

    /// Another tenant's admin key.
    pub async fn other_tenant_key(&self) -> String {
        let t = self
            .identity_domain
            .bootstrap_tenant("globex", "admin")
            .await
            .unwrap();
        t.secret.expose().to_owned()
    }

    /// A service account with `roles` and a production key for it: (account id, key).
    pub async fn service_account_key(&self, roles: &[&str]) -> (String, String) {
        self.identity.service_account_key(roles).await
    }

    /// A key for a service account (or the admin), in an environment (unset: production).
    pub async fn create_key(
        &self,
        service_account_id: Option<&str>,
        environment: id::Environment,
    ) -> id::CreateApiKeyResponse {
        self.identity.key_in(service_account_id, environment).await
    }

    /// identity-service's user client.
    pub fn users(&self) -> id::user_service_client::UserServiceClient<Channel> {
        self.identity.users()
    }

    /// identity-service's key client.
    pub fn keys(&self) -> id::api_key_service_client::ApiKeyServiceClient<Channel> {
        self.identity.keys()
    }

    /// event-service's client.
    pub fn events(&self) -> ev::event_service_client::EventServiceClient<Channel> {
        ev::event_service_client::EventServiceClient::new(self.events_channel.clone())
    }

    /// Sends one event with `key`.
    pub async fn ingest(
        &self,
        key: &str,
        event: ev::EventInput,
    ) -> Result<ev::IngestResult, Status> {
        self.events()
            .ingest_event(with_key(key, ev::IngestEventRequest { event: Some(event) }))
            .await
            .map(|r| r.into_inner().result.unwrap())
    }

    /// Every event visible to `key`, following next_page_token with pages of `page_size`.
    pub async fn list_all(&self, key: &str, page_size: i32) -> Result<Vec<ev::Event>, Status> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let page = self
                .events()
                .list_events(with_key(
                    key,
                    ev::ListEventsRequest {
                        page_size,
                        page_token: token.clone(),
                        ..Default::default()
                    },
                ))
                .await?
                .into_inner();
            out.extend(page.events);
            if page.next_page_token.is_empty() {
                return Ok(out);
            }
            token = page.next_page_token;
        }
    }
}

async fn connect(addr: SocketAddr) -> Channel {
    // The listener is bound before the service starts, so connecting cannot race it.
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// An event for `customer` named `name`, with a numeric `tokens` property.
pub fn event(name: &str, customer: &str, tokens: f64) -> ev::EventInput {
    use prost_types::value::Kind;
    ev::EventInput {
        event_name: name.into(),
        external_customer_id: customer.into(),
        properties: Some(prost_types::Struct {
            fields: [(
                "tokens".to_owned(),
                prost_types::Value {
                    kind: Some(Kind::NumberValue(tokens)),
                },
            )]
            .into(),
        }),
        ..Default::default()
    }
}

/// The text of a `/metrics` endpoint (plain HTTP/1.1, as Prometheus scrapes it).
pub async fn scrape(addr: SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

/// The value of the sample whose line starts with `name{` and contains every label in `labels`.
pub fn sample(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
