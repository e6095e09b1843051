//! The `tollgate` command as a person uses it: `up` on port 0, admin commands against it with
//! --json, a restart, and `dev-key`.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");

struct Up {
    child: Child,
    identity_url: String,
    events_url: String,
    banner: Vec<String>,
}

/// Starts `tollgate up` in `dir` and reads its banner up to the line about the admin key.
fn up(dir: &std::path::Path) -> Up {
    let mut child = tollgate::process::command(BIN)
        .args([
            "up",
            "--identity-addr",
            "127.0.0.1:0",
            "--events-addr",
            "127.0.0.1:0",
        ])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut banner = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.contains("TOLLGATE_API_KEY=") || line.contains("tollgate dev-key");
        banner.push(line);
        if done {
            break;
        }
    }
    let url = |service: &str| {
        banner
            .iter()
            .find_map(|l| l.trim().strip_prefix(service).map(|u| u.trim().to_owned()))
            .unwrap_or_else(|| panic!("no {service} line in {banner:?}"))
    };
    Up {
        identity_url: url("identity-service"),
        events_url: url("event-service"),
        banner: banner.clone(),
        child,
    }
}

impl Up {
    fn run(&self, key: &str, args: &[&str]) -> serde_json::Value {
        let out = tollgate::process::command(BIN)
            .args(args)
            .arg("--json")
            .env("TOLLGATE_IDENTITY_URL", &self.identity_url)
            .env("TOLLGATE_EVENTS_URL", &self.events_url)
            .env("TOLLGATE_API_KEY", key)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn stop(mut self) {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(self.child.wait().unwrap().success());
    }
}

/// A failing test must not leave `tollgate up` running.
impl Drop for Up {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn key_in(text: &str) -> String {
    let start = text.find("TOLLGATE_API_KEY=").unwrap() + "TOLLGATE_API_KEY=".len();
    text[start..].split_whitespace().next().unwrap().to_owned()
}

#[test]
fn up_then_manage_accounts_keys_and_events() {
    let dir = tempfile::tempdir().unwrap();
    let stack = up(dir.path());
    let admin = key_in(&stack.banner.join("\n"));
    assert!(admin.starts_with("sk_live_"));

    let account = stack.run(
        &admin,
        &[
            "service-accounts",
            "create",
            "--role",
            "event_ingestor",
            "--name",
            "ingest",
        ],
    );
    let account_id = account[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(account[0]["roles"], serde_json::json!(["event_ingestor"]));
    let key = stack.run(
        &admin,
        &[
            "keys",
            "create",
            "--name",
            "ingest",
            "--service-account",
            &account_id,
        ],
    );
    let ingest_key = key["api_key"].as_str().unwrap().to_owned();

    let file = dir.path().join("events.json");
    std::fs::write(&file, r#"[{"event_id":"a","event_name":"api_call","external_customer_id":"c1","properties":{"tokens":3}},
                              {"event_id":"a","event_name":"api_call","external_customer_id":"c1"}]"#).unwrap();
    let sent = stack.run(&ingest_key, &["events", "ingest", file.to_str().unwrap()]);
    assert_eq!(
        (sent["stored"].as_u64(), sent["duplicates"].as_u64()),
        (Some(1), Some(1))
    );

    let listed = stack.run(&admin, &["events", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["properties"]["tokens"], 3.0);
    let usage = stack.run(
        &admin,
        &[
            "events",
            "usage",
            "--name",
            "api_call",
            "--aggregation",
            "sum",
            "--property",
            "tokens",
        ],
    );
    assert_eq!(usage["total"], 3.0);

    let keys = stack.run(&admin, &["keys", "list"]);
    assert!(
        !keys.to_string().contains(&ingest_key),
        "no secret in a listing"
    );
    // The ingestion key cannot read.
    let out = tollgate::process::command(BIN)
        .args(["events", "list"])
        .env("TOLLGATE_EVENTS_URL", &stack.events_url)
        .env("TOLLGATE_API_KEY", &ingest_key)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("PermissionDenied") && stderr.contains("event:read"),
        "{stderr}"
    );
    // A meter over what was sent, its exact usage.
    let meter = stack.run(
        &admin,
        &[
            "meters",
            "create",
            "tokens",
            "--event-name",
            "api_call",
            "--aggregation",
            "sum",
            "--property",
            "tokens",
        ],
    );
    assert_eq!(meter[0]["key"], "tokens", "{meter}");
    // Events were stored before it: it counts them in the background first.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while stack.run(&admin, &["meters", "list"])[0]["ready"] != true {
        assert!(
            std::time::Instant::now() < deadline,
            "the meter's backfill never finished"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let usage = stack.run(
        &admin,
        &[
            "meters",
            "usage",
            "tokens",
            "--from",
            "2000-01-01T00:00:00Z",
        ],
    );
    assert_eq!(usage["exact_total"], "3", "{usage}");
    let listed = stack.run(&admin, &["meters", "list"]);
    assert_eq!(listed[0]["key"], "tokens");
    stack.run(&admin, &["meters", "delete", "tokens"]);
    let gauge = stack.run(
        &admin,
        &[
            "meters",
            "create",
            "seats",
            "--event-name",
            "api_call",
            "--aggregation",
            "latest",
            "--property",
            "tokens",
        ],
    );
    assert_eq!(gauge[0]["aggregation"], "latest", "{gauge}");

    // Rotation: a new key with the same roles, the old one kept for the grace, and the
    // audit log says who did it.
    let key_id = key["id"].as_str().unwrap().to_owned();
    let rotated = stack.run(&admin, &["keys", "rotate", &key_id, "--grace", "1h"]);
    let new_key = rotated["api_key"].as_str().unwrap().to_owned();
    assert_ne!(new_key, ingest_key);
    assert_eq!(rotated["roles"], serde_json::json!(["event_ingestor"]));
    let keys = stack.run(&admin, &["keys", "list"]);
    let old = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == key_id.as_str())
        .unwrap();
    assert_eq!(old["replaced_by"], rotated["id"]);
    let sent = stack.run(&new_key, &["events", "ingest", file.to_str().unwrap()]);
    assert_eq!(sent["duplicates"].as_u64(), Some(2));
    let audit = stack.run(&admin, &["audit", "list", "--action", "api_key.rotated"]);
    assert_eq!(audit.as_array().unwrap().len(), 1);
    assert_eq!(audit[0]["target_id"], key_id.as_str());
    assert_eq!(audit[0]["replacement_id"], rotated["id"]);
    assert_eq!(audit[0]["actor_address"], "127.0.0.1");
    let everything = stack.run(&admin, &["audit", "list", "--limit", "3"]);
    assert_eq!(everything.as_array().unwrap().len(), 3);
    assert!(
        !everything.to_string().contains("sk_"),
        "no secret in the audit log"
    );

    let deleted = stack.run(&admin, &["service-accounts", "delete", &account_id]);
    assert_eq!(deleted["revoked_api_keys"], 2);

    // A command without a key says how to give one.
    let out = tollgate::process::command(BIN)
        .args(["events", "list"])
        .env("TOLLGATE_EVENTS_URL", &stack.events_url)
        .env_remove("TOLLGATE_API_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("TOLLGATE_API_KEY"));
    stack.stop();

    // A restart keeps the data, creates no second tenant, and points at dev-key.
    let again = up(dir.path());
    assert!(
        again.banner.join("\n").contains("tollgate dev-key"),
        "{:?}",
        again.banner
    );
    let out = tollgate::process::command(BIN)
        .args(["dev-key"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fresh = key_in(&String::from_utf8_lossy(&out.stdout));
    let listed = again.run(&fresh, &["events", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    again.stop();
}
