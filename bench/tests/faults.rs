//! Faults under load, run by `tollgate-bench faults` itself on a private PostgreSQL cluster:
//! an event replica killed, every replica restarted with SIGTERM, PostgreSQL restarted (fast and
//! immediate), both identity replicas down, one stalled. Nothing acknowledged may be lost or
//! stored twice, no uncached key may pass while identity is unreachable, and clients may see
//! no answer but UNAVAILABLE or DEADLINE_EXCEEDED.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use serde_json::Value;

#[test]
#[cfg_attr(
    not(postgres_tests),
    ignore = "set TEST_DATABASE_URL (at build time) to run the PostgreSQL suite (this one needs PostgreSQL's programs, not the server)"
)]
fn nothing_acknowledged_is_lost_and_nothing_unauthorized_passes_under_faults() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("faults.json");
    let mut command = tollgate::process::command(env!("CARGO_BIN_EXE_tollgate-bench"));
    command
        .args([
            "faults",
            "--clients",
            "6",
            "--outage",
            "7s",
            "--settle",
            "2s",
            "--out",
        ])
        .arg(&out);
    if let Some(bin) = std::env::var_os("TOLLGATE_PG_BIN") {
        command.arg("--pg-bin").arg(bin);
    }
    let output = command.output().unwrap();
    println!("{}", String::from_utf8_lossy(&output.stdout));
    let report: Value = std::fs::read_to_string(&out)
        .ok()
        .and_then(|r| serde_json::from_str(&r).ok())
        .unwrap_or_else(|| panic!("no report: {}", String::from_utf8_lossy(&output.stderr)));
    for figure in [
        "acknowledged_missing",
        "stored_twice",
        "uncached_allowed",
        "unexpected_errors",
        "unacknowledged_at_the_end",
    ] {
        assert_eq!(report[figure], 0, "{figure}: {report:#}");
    }
    assert!(report["acknowledged"].as_u64().unwrap() > 0, "{report:#}");
    assert_eq!(
        report["health_not_serving_in_every_database_outage"], true,
        "{report:#}"
    );
    assert_eq!(report["faults"].as_array().unwrap().len(), 6, "{report:#}");
    assert!(output.status.success(), "{report:#}");
}
