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
pub use tollgate::testing::{PostgresDatabase, digest, with_key};
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

/// Which database both services of a [`Stack`] keep their data in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A fresh SQLite file each.
    Sqlite,
    /// A fresh database each on the server `TEST_DATABASE_URL` names.
    Postgres,
}

/// Runs each story (an `async fn(Backend)`) on SQLite and on PostgreSQL, as tests named
/// `sqlite::story` and `postgres::story`; the PostgreSQL ones are ignored unless
/// `TEST_DATABASE_URL` was set when the tests were built.
#[macro_export]
macro_rules! stories {
    ($($story:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $story() {
                    super::$story($crate::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr(
                    not(postgres_tests),
                    ignore = "set TEST_DATABASE_URL (at build time) to run the PostgreSQL suite"
                )]
                async fn $story() {
                    super::$story($crate::Backend::Postgres).await;
                }
            )*
        }
    };
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
    /// The proxy between event-service and identity-service, when started [`Via::Proxy`].
    pub proxy: Option<Proxy>,
    events_channel: Channel,
    _fake: Option<FakeIdentity>,
    _databases: Vec<PostgresDatabase>,
    _dir: tempfile::TempDir,
}

/// How event-service reaches identity-service in a [`Stack`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Directly.
    Direct,
    /// Through a TCP [`Proxy`] the test can cut.
    Proxy,
    /// Through a server that forwards `Authorize` but offers no revocation stream, so that
    /// cached decisions live out their TTL.
    NoRevocationStream,
}

impl Stack {
    /// Both services on SQLite with the default cache TTL.
    pub async fn start() -> Self {
        Self::start_on(Backend::Sqlite).await
    }

    /// Both services on `backend` with the default settings.
    pub async fn start_on(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    /// Both services on `backend`, event-service's settings adjusted by `configure` (its
    /// `identity_url` already points at the identity-service started here; a test may point it
    /// elsewhere).
    pub async fn start_with(
        backend: Backend,
        configure: impl FnOnce(&mut event_service::config::Settings),
    ) -> Self {
        Self::start_via(backend, Via::Direct, configure).await
    }

    /// [`Stack::start_with`], event-service reaching identity-service `via` a proxy or a
    /// forwarder.
    pub async fn start_via(
        backend: Backend,
        via: Via,
        configure: impl FnOnce(&mut event_service::config::Settings),
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (identity_db, events_db, databases) = match backend {
            Backend::Sqlite => (
                tollgate::database::DatabaseUrl::Sqlite(dir.path().join("identity.db")),
                tollgate::database::DatabaseUrl::Sqlite(dir.path().join("events.db")),
                Vec::new(),
            ),
            Backend::Postgres => {
                let (identity, events) = (
                    PostgresDatabase::create().await,
                    PostgresDatabase::create().await,
                );
                (
                    identity.url().clone(),
                    events.url().clone(),
                    vec![identity, events],
                )
            }
        };
        let identity = TestIdentity::spawn_with(|s| {
            s.metrics_addr = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
            s.database_url = identity_db;
        })
        .await;
        let (mut proxy, mut fake) = (None, None);
        let identity_url = match via {
            Via::Direct => identity.url(),
            Via::Proxy => {
                let started = Proxy::start(identity.addr).await;
                let url = url::Url::parse(&format!("http://{}", started.addr)).unwrap();
                proxy = Some(started);
                url
            }
            Via::NoRevocationStream => {
                let started =
                    FakeIdentity::start(FakeAnswer::Forward(identity.channel.clone())).await;
                let url = started.url.clone();
                fake = Some(started);
                url
            }
        };
        let mut settings = event_service::config::Settings::new(events_db, identity_url);
        settings.metrics_addr = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        configure(&mut settings);
        settings.auth_denial_ttl = settings.auth_denial_ttl.min(settings.auth_cache_ttl);
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
            proxy,
            _fake: fake,
            _databases: databases,
            _dir: dir,
        }
    }

    /// Stops identity-service (draining it), so that a test can change its database behind its
    /// back before [`Stack::start_identity_again`].
    pub async fn stop_identity(&mut self) {
        self.identity.shut_down().await;
    }

    /// Starts identity-service again on the address and database it had.
    pub async fn start_identity_again(&mut self) {
        let (addr, database) = (self.identity.addr, self.identity.database_url.clone());
        self.identity = TestIdentity::spawn_with(|s| {
            s.listen_addr = addr;
            s.metrics_addr = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
            s.database_url = database;
        })
        .await;
        self.identity_metrics = self.identity.metrics_addr.unwrap();
    }

    /// Another tenant's admin key.
    pub async fn other_tenant_key(&self) -> String {
        let t = self
            .identity_domain
            .bootstrap_tenant("globex", "admin", "test")
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

    /// identity-service's HTTP base URL (its JSON routes share the gRPC port).
    pub fn identity_http(&self) -> String {
        format!("http://{}", self.identity.addr)
    }

    /// event-service's HTTP base URL.
    pub fn events_http(&self) -> String {
        format!("http://{}", self.events.addr)
    }

    /// event-service's client.
    pub fn events(&self) -> ev::event_service_client::EventServiceClient<Channel> {
        ev::event_service_client::EventServiceClient::new(self.events_channel.clone())
    }

    /// event-service's meter client.
    pub fn meters(&self) -> ev::meter_service_client::MeterServiceClient<Channel> {
        ev::meter_service_client::MeterServiceClient::new(self.events_channel.clone())
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

/// How a [`FakeIdentity`] answers `Authorize`.
#[derive(Debug, Clone)]
pub enum FakeAnswer {
    /// Never answers (a stalled identity-service).
    Hang,
    /// Fails with INTERNAL.
    Internal,
    /// Says "allowed" with a principal no build can read.
    Unreadable,
    /// Allows, for a tenant of its own, after `delay`.
    AllowAfter(Duration),
    /// Allows, for a tenant of its own, once the test adds a permit to the semaphore (one
    /// permit per call): a call held in flight for as long as a test needs.
    AllowWhen(Arc<tokio::sync::Semaphore>),
    /// Asks the real identity-service behind this channel: `Authorize` as usual, but no
    /// revocation stream (an identity-service that predates it).
    Forward(Channel),
}

/// An `Authorize` server that answers as told and counts the calls, for what the real
/// identity-service never does (stall, fail, answer nonsense) and for slowing it down.
#[derive(Debug)]
pub struct FakeIdentity {
    /// Its URL, for event-service's `--identity-url`.
    pub url: url::Url,
    /// `Authorize` calls received.
    pub calls: Arc<std::sync::atomic::AtomicUsize>,
    /// The tenant it allows keys for.
    pub tenant_id: String,
    _server: Running,
}

#[derive(Debug, Clone)]
struct FakeAuthorize {
    answer: FakeAnswer,
    calls: Arc<std::sync::atomic::AtomicUsize>,
    tenant_id: String,
}

#[tonic::async_trait]
impl id::authorization_service_server::AuthorizationService for FakeAuthorize {
    type WatchRevocationsStream = tonic::codegen::BoxStream<id::WatchRevocationsResponse>;

    /// Not offered, as by an identity-service that predates the stream: event-service then
    /// relies on its cache TTL alone.
    async fn watch_revocations(
        &self,
        _request: tonic::Request<id::WatchRevocationsRequest>,
    ) -> Result<tonic::Response<Self::WatchRevocationsStream>, Status> {
        Err(Status::unimplemented("no revocation stream here"))
    }

    async fn authorize(
        &self,
        request: tonic::Request<id::AuthorizeRequest>,
    ) -> Result<tonic::Response<id::AuthorizeResponse>, Status> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let principal = |tenant_id: String| id::Principal {
            tenant_id,
            environment: id::Environment::Production.into(),
            user_id: tollgate::ids::UserId::generate().to_string(),
            user_type: id::UserType::User.into(),
            key_id: tollgate::ids::ApiKeyId::generate().to_string(),
            roles: vec![],
            permissions: vec![request.get_ref().permission.clone()],
        };
        let allowed = |principal| id::AuthorizeResponse {
            allowed: true,
            reason: id::AuthorizeReason::Allowed.into(),
            principal: Some(principal),
            expires_at: None,
        };
        match &self.answer {
            FakeAnswer::Hang => std::future::pending().await,
            FakeAnswer::Internal => Err(Status::internal("boom")),
            FakeAnswer::Unreadable => Ok(tonic::Response::new(allowed(principal(
                "not-a-tenant-id".into(),
            )))),
            FakeAnswer::AllowAfter(delay) => {
                tokio::time::sleep(*delay).await;
                Ok(tonic::Response::new(allowed(principal(
                    self.tenant_id.clone(),
                ))))
            }
            FakeAnswer::AllowWhen(permits) => {
                permits.acquire().await.unwrap().forget();
                Ok(tonic::Response::new(allowed(principal(
                    self.tenant_id.clone(),
                ))))
            }
            FakeAnswer::Forward(channel) => {
                id::authorization_service_client::AuthorizationServiceClient::new(channel.clone())
                    .authorize(request.into_inner())
                    .await
            }
        }
    }
}

impl FakeIdentity {
    /// Starts one on 127.0.0.1:0.
    pub async fn start(answer: FakeAnswer) -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tenant_id = tollgate::ids::TenantId::generate().to_string();
        let service = FakeAuthorize {
            answer,
            calls: calls.clone(),
            tenant_id: tenant_id.clone(),
        };
        let server = Running::start(addr, |stopped| async move {
            tonic::transport::Server::builder()
                .add_service(
                    id::authorization_service_server::AuthorizationServiceServer::new(service),
                )
                .serve_with_incoming_shutdown(tokio_stream_incoming(listener), async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            url: url::Url::parse(&format!("http://{addr}")).unwrap(),
            calls,
            tenant_id,
            _server: server,
        }
    }

    /// `Authorize` calls received so far.
    pub fn calls(&self) -> usize {
        self.calls.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A TCP proxy on 127.0.0.1:0 in front of `target`, which a test can cut: every open
/// connection dropped and new ones refused until it is let through again.
#[derive(Debug)]
pub struct Proxy {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<std::sync::Mutex<ProxyState>>,
    accept: JoinHandle<()>,
}

#[derive(Debug, Default)]
struct ProxyState {
    blocked: bool,
    connections: Vec<JoinHandle<()>>,
}

impl Proxy {
    /// Starts one, letting connections through.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(std::sync::Mutex::new(ProxyState::default()));
        let accept = {
            let state = state.clone();
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    let mut state = state.lock().unwrap();
                    if state.blocked {
                        continue; // dropped: the connection is reset
                    }
                    state.connections.retain(|c| !c.is_finished());
                    state.connections.push(tokio::spawn(async move {
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    }));
                }
            })
        };
        Self {
            addr,
            state,
            accept,
        }
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        let mut state = self.state.lock().unwrap();
        state.blocked = true;
        for connection in state.connections.drain(..) {
            connection.abort();
        }
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.state.lock().unwrap().blocked = false;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

fn tokio_stream_incoming(
    listener: tokio::net::TcpListener,
) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener)
}

/// What an HTTP request answered: its status and JSON body (`Null` for an empty one).
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    /// The status code.
    pub status: u16,
    /// The body, as JSON.
    pub body: serde_json::Value,
}

/// Sends `method url` over HTTP/1.1 with `key` in `x-api-key` and `body` as JSON, as curl would.
pub async fn http_json(
    method: &str,
    url: &str,
    key: Option<&str>,
    body: Option<&serde_json::Value>,
) -> HttpAnswer {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<hyper::body::Bytes>>();
    let mut request = http::Request::builder().method(method).uri(url);
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    let payload = match body {
        Some(body) => {
            request = request.header("content-type", "application/json");
            serde_json::to_vec(body).unwrap()
        }
        None => Vec::new(),
    };
    let response = client
        .request(request.body(payload.into()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{method} {url}: not JSON ({e}): {bytes:?}"))
    };
    HttpAnswer { status, body }
}
