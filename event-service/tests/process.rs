//! The `event-service` binary as an operator runs it: bad configuration, and SIGTERM.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::process::Command;

use tollgate::process::ServiceProcess;

const BIN: &str = env!("CARGO_BIN_EXE_event-service");

#[test]
fn bad_configuration_is_one_clear_line_and_a_failure_exit() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("e.db").display());
    let cases: [(&[&str], &str); 4] = [
        (&["serve", "--auth-cache-ttl", "soon"], "--auth-cache-ttl"),
        (
            &["serve", "--database-url", &db, "--identity-url", "ftp://x"],
            "--identity-url must be http",
        ),
        (
            &[
                "serve",
                "--database-url",
                &db,
                "--auth-cache-ttl",
                "1s",
                "--auth-denial-ttl",
                "5s",
            ],
            "--auth-denial-ttl",
        ),
        (
            &["serve", "--database-url", "postgres:///nohost"],
            "needs a host",
        ),
    ];
    for (args, expected) in cases {
        let out = tollgate::process::command(BIN)
            .args(args)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} should fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("error:") && first.contains(expected),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn sigterm_drains_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = tollgate::process::command(BIN);
    command.args([
        "serve",
        "--listen-addr",
        "127.0.0.1:0",
        "--database-url",
        &format!("sqlite:{}", dir.path().join("e.db").display()),
    ]);
    let service = ServiceProcess::start(command, "event-service listening").unwrap();
    let status = Command::new("kill")
        .args(["-TERM", &service.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (exit, log) = service.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    let text = log.join("\n");
    assert!(
        text.contains("received SIGTERM") && text.contains("event-service stopped"),
        "{text}"
    );
}

/// No raw key reaches a log line or an error message, even at trace level, whatever the key:
/// valid with and without the permission, mistyped, forged, or presented as a Bearer token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_a_log_line_or_an_error_at_trace() {
    use identity_service::testing::TestIdentity;
    use tollgate::proto::events::v1 as ev;
    use tollgate::testing::with_key;

    let identity = TestIdentity::spawn().await;
    let admin = identity.admin().to_owned();
    let (_, ingestor) = identity.service_account_key(&["event_ingestor"]).await;
    let forged = tollgate::keys::ApiKeySecret::generate(tollgate::keys::Environment::Production)
        .unwrap()
        .expose()
        .to_owned();
    let mut mistyped = admin.clone();
    mistyped.replace_range(10..11, if &admin[10..11] == "a" { "b" } else { "a" });
    let dir = tempfile::tempdir().unwrap();
    let mut command = tollgate::process::command(BIN);
    command
        .args([
            "serve",
            "--listen-addr",
            "127.0.0.1:0",
            "--database-url",
            &format!("sqlite:{}", dir.path().join("e.db").display()),
            "--identity-url",
            identity.url().as_str(),
        ])
        .env("RUST_LOG", "trace");
    let service = ServiceProcess::start(command, "event-service listening").unwrap();
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", service.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = ev::event_service_client::EventServiceClient::new(channel);
    let ingest = |key: &str| {
        with_key(
            key,
            ev::IngestEventRequest {
                event: Some(ev::EventInput {
                    event_name: "api_call".into(),
                    external_customer_id: "cus_1".into(),
                    ..Default::default()
                }),
            },
        )
    };
    let mut errors = Vec::new();
    client.ingest_event(ingest(&admin)).await.unwrap();
    client.ingest_event(ingest(&ingestor)).await.unwrap();
    for key in [&forged, &mistyped] {
        let err = client.ingest_event(ingest(key)).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        errors.push(format!("{err:?}"));
    }
    let err = client
        .list_events(with_key(&ingestor, ev::ListEventsRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    errors.push(format!("{err:?}"));
    let mut bearer = tonic::Request::new(ev::ListEventsRequest::default());
    bearer
        .metadata_mut()
        .insert("authorization", format!("Bearer {forged}").parse().unwrap());
    errors.push(format!(
        "{:?}",
        client.list_events(bearer).await.unwrap_err()
    ));

    service.terminate().unwrap();
    let (exit, log) = service.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    assert!(log.len() > 20, "trace logging is on: {} lines", log.len());
    let text = format!("{}\n{}", log.join("\n"), errors.join("\n"));
    for secret in [&admin, &ingestor, &forged, &mistyped] {
        assert!(
            !text.contains(secret.as_str()),
            "a raw key reached a log line or an error"
        );
        assert!(
            !text.contains(&secret[8..24]),
            "part of a raw key reached a log line or an error"
        );
    }
}
