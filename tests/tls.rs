//! TLS and mutual TLS with certificates made inside the test: both services serve TLS,
//! event-service reaches identity-service over TLS, and a client certificate is how it
//! authenticates its `Authorize` calls (no internal token configured).

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use identity_service::testing::TestIdentity;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use tollgate::database::DatabaseUrl;
use tollgate::proto::events::v1 as ev;
use tollgate::proto::identity::v1 as id;
use tollgate::server::check_health;
use tollgate::tls::{HealthTlsArgs, ServerTlsArgs};
use tollgate_e2e::{digest, event, with_key};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// A CA, a server certificate for `localhost` and a client certificate, both signed by it,
    /// and a client certificate from a CA nobody trusts.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = |name: &str| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, name);
            let cert = params.self_signed(&key).unwrap();
            (cert, key)
        };
        let (ca_cert, ca_key) = ca("tollgate test CA");
        let (rogue_cert, rogue_key) = ca("rogue CA");
        let leaf = |san: &str, issuer: &rcgen::Certificate, issuer_key: &KeyPair, stem: &str| {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(vec![san.to_owned()])
                .unwrap()
                .signed_by(&key, issuer, issuer_key)
                .unwrap();
            std::fs::write(dir.path().join(format!("{stem}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.path().join(format!("{stem}.key")), key.serialize_pem()).unwrap();
        };
        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).unwrap();
        leaf("localhost", &ca_cert, &ca_key, "server");
        leaf("event-service", &ca_cert, &ca_key, "client");
        leaf("intruder", &rogue_cert, &rogue_key, "rogue");
        leaf("other-service", &ca_cert, &ca_key, "other");
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn server_tls(&self, client_ca: bool) -> ServerTlsArgs {
        ServerTlsArgs {
            tls_cert: Some(self.path("server.pem")),
            tls_key: Some(self.path("server.key")),
            tls_client_ca: client_ca.then(|| self.path("ca.pem")),
        }
    }

    /// A TLS channel trusting the CA, presenting the client certificate `stem` if given.
    async fn channel(
        &self,
        addr: SocketAddr,
        stem: Option<&str>,
    ) -> Result<Channel, tonic::transport::Error> {
        let mut tls = ClientTlsConfig::new()
            .domain_name("localhost")
            .ca_certificate(Certificate::from_pem(
                std::fs::read(self.path("ca.pem")).unwrap(),
            ));
        if let Some(stem) = stem {
            tls = tls.identity(Identity::from_pem(
                std::fs::read(self.path(&format!("{stem}.pem"))).unwrap(),
                std::fs::read(self.path(&format!("{stem}.key"))).unwrap(),
            ));
        }
        Channel::from_shared(format!("https://{addr}"))
            .unwrap()
            .tls_config(tls)?
            .connect()
            .await
    }
}

struct TlsStack {
    identity: SocketAddr,
    events: SocketAddr,
    admin: String,
    _identity: TestIdentity,
    _data: tempfile::TempDir,
}

/// identity-service with TLS and client-certificate verification; event-service with TLS,
/// reaching identity-service over TLS with the client certificate if `with_client_cert`.
async fn start(pki: &Pki, with_client_cert: bool) -> TlsStack {
    let data = tempfile::tempdir().unwrap();
    let running = TestIdentity::spawn_with(|s| {
        s.tls = pki.server_tls(true);
        s.authorize_client_names = vec!["event-service".to_owned()];
    })
    .await;
    let (identity, admin) = (running.addr, running.admin().to_owned());
    let url = url::Url::parse(&format!("https://localhost:{}", identity.port())).unwrap();
    let mut settings =
        event_service::config::Settings::new(DatabaseUrl::Sqlite(data.path().join("ev.db")), url);
    settings.tls = pki.server_tls(false);
    settings.identity_ca = Some(pki.path("ca.pem"));
    if with_client_cert {
        settings.identity_client_cert = Some(pki.path("client.pem"));
        settings.identity_client_key = Some(pki.path("client.key"));
    }
    let events_app = event_service::startup::Application::build(settings)
        .await
        .unwrap();
    let events = events_app.local_addr();
    tokio::spawn(events_app.run_until_stopped(std::future::pending()));
    TlsStack {
        identity,
        events,
        admin,
        _identity: running,
        _data: data,
    }
}

#[tokio::test]
async fn mutual_tls_authenticates_authorize_callers() {
    let pki = Pki::new();
    let stack = start(&pki, true).await;

    // Through event-service over TLS: it authorizes over mutual TLS, with no internal token.
    let mut events = ev::event_service_client::EventServiceClient::new(
        pki.channel(stack.events, None).await.unwrap(),
    );
    let sent = events
        .ingest_event(with_key(
            &stack.admin,
            ev::IngestEventRequest {
                event: Some(event("api_call", "c1", 1.0)),
            },
        ))
        .await
        .unwrap();
    assert!(!sent.into_inner().result.unwrap().duplicate);

    // Directly: Authorize needs the client certificate; management calls need only TLS and a key.
    let request = || id::AuthorizeRequest {
        key_digest: digest(&stack.admin),
        permission: "event:read".into(),
    };
    let anonymous = pki.channel(stack.identity, None).await.unwrap();
    let err = id::authorization_service_client::AuthorizationServiceClient::new(anonymous.clone())
        .authorize(request())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("client certificate"), "{err:?}");
    let roles = id::role_service_client::RoleServiceClient::new(anonymous)
        .list_roles(with_key(&stack.admin, id::ListRolesRequest {}))
        .await
        .unwrap();
    assert_eq!(roles.into_inner().roles.len(), 2);
    let certified = pki.channel(stack.identity, Some("client")).await.unwrap();
    let decision = id::authorization_service_client::AuthorizationServiceClient::new(certified)
        .authorize(request())
        .await
        .unwrap()
        .into_inner();
    assert!(decision.allowed);

    // A certificate of the same CA with a name not allowed to call Authorize: refused as if it
    // had none.
    let other = pki.channel(stack.identity, Some("other")).await.unwrap();
    let err = id::authorization_service_client::AuthorizationServiceClient::new(other)
        .authorize(request())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");

    // A certificate from another CA does not get through the handshake: the server's fatal
    // alert (UnknownCA) fails the call as a transport error, never with an answer.
    let rogue = pki.channel(stack.identity, Some("rogue")).await.unwrap();
    let err = id::authorization_service_client::AuthorizationServiceClient::new(rogue)
        .authorize(request())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unknown, "{err:?}");
    assert!(format!("{err:?}").contains("UnknownCA"), "{err:?}");

    // Plaintext does not reach a TLS port: the server closes the connection.
    let plain = Channel::from_shared(format!("http://{}", stack.events))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let err = ev::event_service_client::EventServiceClient::new(plain)
        .list_events(with_key(&stack.admin, ev::ListEventsRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unknown, "{err:?}");
    assert!(format!("{err:?}").contains("transport error"), "{err:?}");
}

#[tokio::test]
async fn without_a_client_certificate_event_service_fails_closed() {
    let pki = Pki::new();
    let stack = start(&pki, false).await;
    let mut events = ev::event_service_client::EventServiceClient::new(
        pki.channel(stack.events, None).await.unwrap(),
    );
    let err = events
        .ingest_event(with_key(
            &stack.admin,
            ev::IngestEventRequest {
                event: Some(event("api_call", "c1", 1.0)),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
}

/// The binaries' `health` subcommand (a container health check) reaches a TLS port when given
/// the CA, and says why it cannot otherwise.
#[tokio::test]
async fn the_health_check_speaks_tls() {
    let pki = Pki::new();
    let stack = start(&pki, true).await;
    let timeout = std::time::Duration::from_secs(5);
    let tls = |domain: Option<&str>| {
        HealthTlsArgs {
            tls_ca: Some(pki.path("ca.pem")),
            tls_domain: domain.map(str::to_owned),
        }
        .config()
        .unwrap()
    };
    // identity-service verifies client certificates but does not require one for health.
    for addr in [stack.identity, stack.events] {
        let serving = check_health(addr, timeout, tls(None)).await;
        assert!(serving.as_ref().is_ok_and(|s| *s), "{addr}: {serving:?}");
        let serving = check_health(addr, timeout, tls(Some("localhost"))).await;
        assert!(serving.as_ref().is_ok_and(|s| *s), "{addr}: {serving:?}");
        // The certificate names localhost, not this.
        let wrong_name = check_health(addr, timeout, tls(Some("elsewhere")))
            .await
            .unwrap_err();
        let wrong_name = tollgate::telemetry::error_chain(wrong_name.as_ref());
        assert!(
            wrong_name.contains("not valid for name \"elsewhere\""),
            "{addr}: {wrong_name}"
        );
        let plaintext = check_health(addr, timeout, None).await.unwrap_err();
        let plaintext = tollgate::telemetry::error_chain(plaintext.as_ref());
        assert!(
            plaintext.contains("connection error"),
            "{addr}: {plaintext}"
        );
    }
    let missing = HealthTlsArgs {
        tls_ca: Some(pki.path("nonexistent.pem")),
        tls_domain: None,
    }
    .config()
    .unwrap_err();
    assert!(
        missing.contains("cannot read the CA certificate"),
        "{missing}"
    );
}

#[test]
fn unreadable_tls_files_are_configuration_errors() {
    let args = ServerTlsArgs {
        tls_cert: Some(Path::new("/nonexistent/cert.pem").to_owned()),
        tls_key: Some(Path::new("/nonexistent/key.pem").to_owned()),
        tls_client_ca: None,
    };
    let err = args.config().unwrap_err();
    assert!(
        err.contains("cannot read the TLS certificate /nonexistent/cert.pem"),
        "{err}"
    );
}

/// The HTTP/JSON routes share each TLS port: curl negotiates HTTP/2 by ALPN and gets JSON.
#[tokio::test]
async fn the_json_routes_speak_tls() {
    let pki = Pki::new();
    let stack = start(&pki, true).await;
    for (addr, path) in [(stack.identity, "/v1/roles"), (stack.events, "/v1/events")] {
        let port = addr.port();
        let args = [
            "--silent".to_owned(),
            "--cacert".to_owned(),
            pki.path("ca.pem").display().to_string(),
            "--resolve".to_owned(),
            format!("localhost:{port}:127.0.0.1"),
            "--header".to_owned(),
            format!("x-api-key: {}", stack.admin),
            "--write-out".to_owned(),
            "\n%{http_code} HTTP/%{http_version}".to_owned(),
            format!("https://localhost:{port}{path}"),
        ];
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new("curl")
                .args(&args)
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let out = String::from_utf8(out.stdout).unwrap();
        let (body, status) = out.rsplit_once('\n').unwrap();
        assert_eq!(status, "200 HTTP/2", "{path}: {out}");
        assert!(
            serde_json::from_str::<serde_json::Value>(body).is_ok(),
            "{out}"
        );
    }
}
