//! The `identity-service` binary as an operator runs it: `tenant create`, `serve` at debug log
//! level (no secret may reach a log line), SIGTERM, and bad configuration.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::process::Command;

use tollgate::process::ServiceProcess;
use tollgate::proto::identity::v1 as pb;
use tollgate::testing::{digest, with_key};

const BIN: &str = env!("CARGO_BIN_EXE_identity-service");

fn tenant_create(database_url: &str) -> serde_json::Value {
    let out = tollgate::process::command(BIN)
        .args([
            "tenant",
            "create",
            "Acme Inc",
            "--database-url",
            database_url,
        ])
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = created["api_key"].as_str().unwrap();
    assert!(key.starts_with("sk_live_"));
    assert!(
        !stderr.contains(key),
        "the bootstrap key leaked into the log"
    );
    for field in ["tenant_id", "user_id", "api_key_id"] {
        assert!(created[field].is_string(), "{field} missing: {created}");
    }
    created
}

#[tokio::test]
async fn serve_logs_no_secret_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite:{}", dir.path().join("id.db").display());
    let created = tenant_create(&database_url);
    let admin = created["api_key"].as_str().unwrap().to_owned();

    let mut command = tollgate::process::command(BIN);
    command
        .args([
            "serve",
            "--listen-addr",
            "127.0.0.1:0",
            "--database-url",
            &database_url,
        ])
        .env("RUST_LOG", "debug");
    let service = ServiceProcess::start(command, "identity-service listening").unwrap();
    let addr = service.addr;
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut users = pb::user_service_client::UserServiceClient::new(channel.clone());
    let mut keys = pb::api_key_service_client::ApiKeyServiceClient::new(channel.clone());
    let mut authz = pb::authorization_service_client::AuthorizationServiceClient::new(channel);

    // Exercise every path a key travels: management calls, key creation, Authorize, failures.
    let sa = users
        .create_user(with_key(
            &admin,
            pb::CreateUserRequest {
                r#type: pb::UserType::ServiceAccount.into(),
                roles: vec!["event_ingestor".into()],
                name: "ingest".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    let sa_key = keys
        .create_api_key(with_key(
            &admin,
            pb::CreateApiKeyRequest {
                name: "ingest".into(),
                service_account_id: sa.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .api_key;
    for (key, permission) in [
        (&sa_key, "event:write"),
        (&sa_key, "event:read"),
        (&admin, "event:read"),
    ] {
        authz
            .authorize(pb::AuthorizeRequest {
                key_digest: digest(key),
                permission: permission.into(),
            })
            .await
            .unwrap();
    }
    let denied = users
        .list_users(with_key(&sa_key, pb::ListUsersRequest::default()))
        .await;
    assert_eq!(denied.unwrap_err().code(), tonic::Code::PermissionDenied);
    let mut typo = admin.clone();
    typo.pop();
    typo.push('!');
    let malformed = users
        .list_users(with_key(&typo, pb::ListUsersRequest::default()))
        .await;
    assert_eq!(malformed.unwrap_err().code(), tonic::Code::Unauthenticated);

    let status = Command::new("kill")
        .args(["-TERM", &service.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // Wait off the runtime thread: the client's connection must stay live to see the server's
    // GOAWAY, or the drain would run out its grace period waiting for it.
    let (exit, log) = tokio::task::spawn_blocking(move || service.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success(), "exit status after SIGTERM: {exit:?}");

    let text = log.join("\n");
    assert!(log.len() > 5, "expected a debug log, got {log:?}");
    assert!(
        text.contains("\"level\":\"DEBUG\""),
        "no debug lines were logged"
    );
    assert!(text.contains("received SIGTERM") && text.contains("identity-service stopped"));
    // Every connection closed by itself: the drain never had to cut any off.
    assert!(!text.contains("drain grace period over"), "{text}");
    for secret in [&admin, &sa_key, &typo] {
        assert!(!text.contains(secret.as_str()), "a raw key reached the log");
        // Nor any long piece of one (the display hint's last 4 characters are fine).
        assert!(
            !text.contains(&secret[8..24]),
            "part of a raw key reached the log"
        );
    }
}

#[test]
fn bad_configuration_is_one_clear_line_and_a_failure_exit() {
    let cases: [(&[&str], &str); 4] = [
        (&["serve", "--listen-addr", "nowhere"], "--listen-addr"),
        (
            &["serve", "--database-url", "mysql://db/x"],
            "invalid database URL",
        ),
        (
            &["serve", "--internal-token", "short"],
            "at least 24 characters",
        ),
        (
            &["serve", "--database-url", "sqlite:/proc/no/such/dir/x.db"],
            "cannot open the database",
        ),
    ];
    for (args, expected) in cases {
        let out = tollgate::process::command(BIN)
            .args(args)
            .args(["--log-level", "warn"])
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} should fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr.lines().next().unwrap_or_default();
        assert!(first.starts_with("error:"), "{args:?}: {stderr}");
        assert!(first.contains(expected), "{args:?}: {stderr}");
    }
}

/// What an operator gets wrong about the internal credential, and secrets passed on the command
/// line, are refused in one line that repeats no secret.
#[test]
fn unsafe_or_leaky_configuration_is_refused_without_echoing_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("id.db").display());
    let run = |args: &[&str]| {
        let out = tollgate::process::command(BIN)
            .args(["serve", "--database-url", &db, "--log-level", "warn"])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Authorize open to a non-loopback address: refused unless meant.
    let (ok, stderr) = run(&["--listen-addr", "0.0.0.0:0"]);
    assert!(!ok);
    assert!(
        stderr.starts_with("error:") && stderr.contains("--internal-token"),
        "{stderr}"
    );
    // The placeholders shipped in examples, and predictable tokens.
    for token in [
        "REPLACE_ME_WITH_A_LONG_RANDOM_TOKEN",
        "change-me-to-a-long-random-token",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    ] {
        let (ok, stderr) = run(&["--internal-token", token]);
        assert!(!ok, "{token}");
        assert!(stderr.starts_with("error:"), "{stderr}");
        assert!(!stderr.contains(token), "the token was echoed: {stderr}");
    }
    // A database URL clap rejects is not echoed with its password.
    let out = tollgate::process::command(BIN)
        .args(["serve", "--database-url", "postgres://app:hunter2hunter2@"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(!stderr.contains("hunter2"), "{stderr}");
    // With mutual TLS, the certificate names that may call Authorize are required.
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not read before the check").unwrap();
    let (ok, stderr) = run(&[
        "--tls-cert",
        ca.to_str().unwrap(),
        "--tls-key",
        ca.to_str().unwrap(),
        "--tls-client-ca",
        ca.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(stderr.contains("--authorize-client-names"), "{stderr}");
}

/// Secrets can come from files (mounted Secrets), and a password in a `password=` parameter of
/// a database URL is masked where the URL is logged.
#[test]
fn secrets_from_files_start_the_service_and_stay_out_of_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let token = "kq0V3bq5fC7eE3n1Yx0bTqWm2hF9sLzP8aR4uJ6dGiM=";
    let token_file = dir.path().join("internal-token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let url_file = dir.path().join("database-url");
    std::fs::write(
        &url_file,
        format!("sqlite:{}", dir.path().join("id.db").display()),
    )
    .unwrap();
    let mut command = tollgate::process::command(BIN);
    command.args([
        "serve",
        "--listen-addr",
        "0.0.0.0:0",
        "--internal-token-file",
        token_file.to_str().unwrap(),
        "--database-url-file",
        url_file.to_str().unwrap(),
    ]);
    let service = ServiceProcess::start(command, "identity-service listening").unwrap();
    service.terminate().unwrap();
    let (exit, log) = service.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    let log = log.join("\n");
    assert!(log.contains(r#""internal_token":true"#), "{log}");
    assert!(!log.contains(token));
    // A file whose secret is refused names the file, not the secret.
    std::fs::write(&token_file, "change-me-to-a-long-random-token").unwrap();
    let out = tollgate::process::command(BIN)
        .args([
            "serve",
            "--internal-token-file",
            token_file.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("internal-token") && stderr.contains("placeholder"),
        "{stderr}"
    );
    assert!(!stderr.contains("change-me"), "{stderr}");
}

#[test]
fn a_password_parameter_of_a_database_url_is_masked_in_the_log() {
    // The server is unreachable (port 9 on loopback): start-up fails after logging nothing but
    // the masked URL.
    let out = tollgate::process::command(BIN)
        .args([
            "serve",
            "--database-url",
            "postgres://127.0.0.1:9/identity?user=app&password=hunter2hunter2",
            "--statement-timeout",
            "1s",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("password=***"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}
