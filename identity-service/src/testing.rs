//! Test support (feature `testing`): identity-service running in-process on 127.0.0.1:0 against
//! a fresh SQLite file, with a bootstrapped tenant and typed clients, for this crate's tests and
//! every other suite that needs a real identity-service.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test support fails loudly by design

use std::net::SocketAddr;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tollgate::database::DatabaseUrl;
use tollgate::proto::identity::v1 as pb;
use tollgate::testing::{digest, with_key};
use tonic::transport::Channel;

use crate::Identity;
use crate::config::Settings;
use crate::startup::{Application, StartupError};

pub use pb::api_key_service_client::ApiKeyServiceClient;
pub use pb::audit_service_client::AuditServiceClient;
pub use pb::authorization_service_client::AuthorizationServiceClient;
pub use pb::role_service_client::RoleServiceClient;
pub use pb::user_service_client::UserServiceClient;

/// A tenant made by the bootstrap, with its admin's full-access key.
#[derive(Debug, Clone)]
pub struct TestTenant {
    /// `ten_…`.
    pub tenant_id: String,
    /// The first user account, `usr_…`.
    pub admin_id: String,
    /// Its full-access production key.
    pub admin_key: String,
}

/// A running identity-service, stopped (and drained) by [`TestIdentity::stop`] or on drop.
#[derive(Debug)]
pub struct TestIdentity {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its metrics endpoint, if the settings asked for one.
    pub metrics_addr: Option<SocketAddr>,
    /// A plaintext channel to it (connected on first use).
    pub channel: Channel,
    /// Its database.
    pub database_url: DatabaseUrl,
    /// The domain, to bootstrap tenants and reach the store directly.
    pub identity: Identity,
    /// The tenant bootstrapped at start (`acme`).
    pub tenant: TestTenant,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), StartupError>>>,
    _dir: tempfile::TempDir,
}

impl TestIdentity {
    /// The service with default settings.
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// The service with settings adjusted by `configure` (its database is a fresh SQLite file
    /// unless `configure` names another), and one tenant bootstrapped.
    pub async fn spawn_with(configure: impl FnOnce(&mut Settings)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings::with_database(tollgate::testing::sqlite_in(dir.path()));
        configure(&mut settings);
        let database_url = settings.database_url.clone();
        let app = Application::build(settings).await.unwrap();
        let addr = app.local_addr();
        let metrics_addr = app.metrics_addr();
        let identity = app.identity().clone();
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async {
            let _ = rx.await;
        }));
        // Lazily: the listener is bound already, and a TLS server needs a channel of its own.
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_lazy();
        let tenant = new_tenant(&identity, "acme").await;
        Self {
            addr,
            metrics_addr,
            channel,
            database_url,
            identity,
            tenant,
            shutdown: Some(tx),
            server: Some(server),
            _dir: dir,
        }
    }

    /// Bootstraps another tenant, as `identity-service tenant create` does.
    pub async fn new_tenant(&self, name: &str) -> TestTenant {
        new_tenant(&self.identity, name).await
    }

    /// The URL event-service reaches it at.
    pub fn url(&self) -> url::Url {
        url::Url::parse(&format!("http://{}", self.addr)).unwrap()
    }

    /// The user client.
    pub fn users(&self) -> UserServiceClient<Channel> {
        UserServiceClient::new(self.channel.clone())
    }

    /// The key client.
    pub fn keys(&self) -> ApiKeyServiceClient<Channel> {
        ApiKeyServiceClient::new(self.channel.clone())
    }

    /// The role client.
    pub fn roles(&self) -> RoleServiceClient<Channel> {
        RoleServiceClient::new(self.channel.clone())
    }

    /// The audit log client.
    pub fn audit(&self) -> AuditServiceClient<Channel> {
        AuditServiceClient::new(self.channel.clone())
    }

    /// The Authorize client.
    pub fn authz(&self) -> AuthorizationServiceClient<Channel> {
        AuthorizationServiceClient::new(self.channel.clone())
    }

    /// The first tenant's admin key.
    pub fn admin(&self) -> &str {
        &self.tenant.admin_key
    }

    /// Creates a service account with `roles` as the first tenant's admin; returns its id.
    pub async fn service_account(&self, roles: &[&str]) -> String {
        let request = pb::CreateUserRequest {
            r#type: pb::UserType::ServiceAccount.into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            name: "svc".into(),
        };
        self.users()
            .create_user(with_key(self.admin(), request))
            .await
            .unwrap()
            .into_inner()
            .user
            .unwrap()
            .id
    }

    /// Creates a key for `service_account_id` (or the admin) as the first tenant's admin, in
    /// `environment` (unspecified: the admin key's, production).
    pub async fn key_in(
        &self,
        service_account_id: Option<&str>,
        environment: pb::Environment,
    ) -> pb::CreateApiKeyResponse {
        let request = pb::CreateApiKeyRequest {
            name: "test key".into(),
            service_account_id: service_account_id.unwrap_or_default().to_owned(),
            environment: environment.into(),
            ..Default::default()
        };
        self.keys()
            .create_api_key(with_key(self.admin(), request))
            .await
            .unwrap()
            .into_inner()
    }

    /// Creates a production key for `service_account_id` (or the admin).
    pub async fn key_for(&self, service_account_id: Option<&str>) -> pb::CreateApiKeyResponse {
        self.key_in(service_account_id, pb::Environment::Unspecified)
            .await
    }

    /// A service account with `roles` and a production key for it: (account id, key).
    pub async fn service_account_key(&self, roles: &[&str]) -> (String, String) {
        let account = self.service_account(roles).await;
        let key = self.key_for(Some(&account)).await.api_key;
        (account, key)
    }

    /// A key of the first tenant's admin that expired a second ago (which no RPC can create),
    /// written straight to the database; its secret.
    pub async fn insert_expired_key(&self) -> String {
        let now = tollgate::time::now();
        let (key, secret) = self
            .key_record(
                &self.tenant.admin_id,
                Some(now - chrono::Duration::seconds(1)),
                now - chrono::Duration::hours(1),
            )
            .await;
        self.store_key(&key).await;
        secret.expose().to_owned()
    }

    /// A key for a new service account with `roles`, not stored yet (see
    /// [`TestIdentity::store_key`]), and its secret.
    pub async fn new_key_record(
        &self,
        roles: &[&str],
    ) -> (crate::model::api_keys::ApiKey, tollgate::keys::ApiKeySecret) {
        let account = self.service_account(roles).await;
        self.key_record(&account, None, tollgate::time::now()).await
    }

    /// Writes a key straight to the database, behind the service's back (and its cache's).
    pub async fn store_key(&self, key: &crate::model::api_keys::ApiKey) {
        let direct = Identity::open(&self.database_url).await.unwrap();
        direct
            .store()
            .insert_api_key(key, &crate::model::audit::Actor::Command("test"))
            .await
            .unwrap();
    }

    async fn key_record(
        &self,
        owner: &str,
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
        created_at: chrono::DateTime<chrono::Utc>,
    ) -> (crate::model::api_keys::ApiKey, tollgate::keys::ApiKeySecret) {
        use crate::model::api_keys::{ApiKey, KeyName};
        use tollgate::ids::{TenantId, UserId};
        let direct = Identity::open(&self.database_url).await.unwrap();
        let owner = direct
            .store()
            .get_user(
                &TenantId::parse(&self.tenant.tenant_id).unwrap(),
                &UserId::parse(owner).unwrap(),
            )
            .await
            .unwrap()
            .unwrap();
        ApiKey::issue(
            &owner,
            tollgate::keys::Environment::Production,
            KeyName::parse("written directly").unwrap(),
            expires_at,
            created_at,
        )
        .unwrap()
    }

    /// Authorize for a raw key.
    pub async fn authorize(&self, key: &str, permission: &str) -> pb::AuthorizeResponse {
        self.authz()
            .authorize(pb::AuthorizeRequest {
                key_digest: digest(key),
                permission: permission.into(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    /// Stops the server and waits for it to finish draining.
    pub async fn stop(mut self) {
        self.shut_down().await;
    }

    /// [`TestIdentity::stop`], for a service held inside something else.
    pub async fn shut_down(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }
}

async fn new_tenant(identity: &Identity, name: &str) -> TestTenant {
    let made = identity
        .bootstrap_tenant(name, "admin", "test")
        .await
        .unwrap();
    TestTenant {
        tenant_id: made.tenant.id.to_string(),
        admin_id: made.user.id.to_string(),
        admin_key: made.secret.expose().to_owned(),
    }
}
