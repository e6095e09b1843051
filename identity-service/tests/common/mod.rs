//! Helpers for tests that start identity-service in-process on 127.0.0.1:0 against a fresh
//! SQLite database.
#![allow(dead_code)]

use std::net::SocketAddr;

use identity_service::Identity;
use identity_service::config::Settings;
use identity_service::startup::{Application, StartupError};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tollgate::database::DatabaseUrl;
use tollgate::proto::identity::v1 as pb;
use tonic::Request;
use tonic::transport::Channel;

pub use pb::api_key_service_client::ApiKeyServiceClient;
pub use pb::authorization_service_client::AuthorizationServiceClient;
pub use pb::role_service_client::RoleServiceClient;
pub use pb::user_service_client::UserServiceClient;

/// A tenant made by the bootstrap, with its admin's full-access key.
#[derive(Debug, Clone)]
pub struct TestTenant {
    pub tenant_id: String,
    pub admin_id: String,
    pub admin_key: String,
}

/// A running identity-service.
pub struct TestApp {
    pub addr: SocketAddr,
    pub channel: Channel,
    pub database_url: DatabaseUrl,
    pub identity: Identity,
    pub tenant: TestTenant,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), StartupError>>>,
    _dir: tempfile::TempDir,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Starts the service with settings adjusted by `configure`, and bootstraps one tenant.
    pub async fn spawn_with(configure: impl FnOnce(&mut Settings)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let database_url = tollgate::testing::sqlite_in(dir.path());
        let mut settings = Settings::with_database(database_url.clone());
        configure(&mut settings);
        let app = Application::build(settings).await.unwrap();
        let addr = app.local_addr();
        let identity = app.identity().clone();
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async {
            let _ = rx.await;
        }));
        // The listener is bound already, so connecting cannot race the server's start.
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut app = Self {
            addr,
            channel,
            database_url,
            tenant: TestTenant {
                tenant_id: String::new(),
                admin_id: String::new(),
                admin_key: String::new(),
            },
            identity,
            shutdown: Some(tx),
            server: Some(server),
            _dir: dir,
        };
        app.tenant = app.new_tenant("acme").await;
        app
    }

    /// Bootstraps another tenant, as `identity-service tenant create` does.
    pub async fn new_tenant(&self, name: &str) -> TestTenant {
        let made = self.identity.bootstrap_tenant(name, "admin").await.unwrap();
        TestTenant {
            tenant_id: made.tenant.id.to_string(),
            admin_id: made.user.id.to_string(),
            admin_key: made.secret.expose().to_owned(),
        }
    }

    pub fn users(&self) -> UserServiceClient<Channel> {
        UserServiceClient::new(self.channel.clone())
    }

    pub fn keys(&self) -> ApiKeyServiceClient<Channel> {
        ApiKeyServiceClient::new(self.channel.clone())
    }

    pub fn roles(&self) -> RoleServiceClient<Channel> {
        RoleServiceClient::new(self.channel.clone())
    }

    pub fn authz(&self) -> AuthorizationServiceClient<Channel> {
        AuthorizationServiceClient::new(self.channel.clone())
    }

    pub fn admin(&self) -> &str {
        &self.tenant.admin_key
    }

    /// Creates a service account with `roles` as the tenant's admin; returns its id.
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

    /// Creates a key for `service_account_id` (or the admin) as the admin.
    pub async fn key_for(&self, service_account_id: Option<&str>) -> pb::CreateApiKeyResponse {
        let request = pb::CreateApiKeyRequest {
            name: "test key".into(),
            service_account_id: service_account_id.unwrap_or_default().to_owned(),
            ..Default::default()
        };
        self.keys()
            .create_api_key(with_key(self.admin(), request))
            .await
            .unwrap()
            .into_inner()
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
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }
}

/// A request carrying `key` in x-api-key.
pub fn with_key<T>(key: &str, message: T) -> Request<T> {
    tollgate::metadata::with_api_key(key, message).unwrap()
}

/// SHA-256 of a key, as event-service sends it.
pub fn digest(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}
