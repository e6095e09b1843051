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
        let out = Command::new(BIN)
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
    let mut command = Command::new(BIN);
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
