//! L2: `gatekeeper verify-phase a|b` end to end (SPEC §9): each starts its own server, runs the
//! seed-004 scenario, writes the report with exactly the seed's metric names, and exits 0 on pass.

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;

fn verify_phase(phase: &str, out: &std::path::Path) -> (i32, Value) {
    let output = Command::new(assert_cmd::cargo::cargo_bin!("gatekeeper"))
        .args(["verify-phase", phase, "--duration", "2", "--out"])
        .arg(out)
        .current_dir(out)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .expect("run verify-phase");
    let letter = phase.to_ascii_uppercase();
    let report =
        std::fs::read(out.join(format!("phase_{letter}_acceptance.json"))).unwrap_or_else(|e| {
            panic!(
                "no report ({e}): {}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    assert!(out.join(format!("phase_{letter}_acceptance.md")).is_file());
    (
        output.status.code().unwrap_or(-1),
        serde_json::from_slice(&report).expect("the report is JSON"),
    )
}

#[track_caller]
fn check_report(report: &Value, phase: &str, metrics: &[&str]) {
    let keys: BTreeSet<&str> = report
        .as_object()
        .expect("report shape")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "artifacts",
            "fail_reasons",
            "finished_at",
            "how_to_run",
            "metrics",
            "pass",
            "phase",
            "started_at"
        ])
    );
    assert_eq!(report["phase"], phase);
    assert_eq!(report["pass"], true, "{report:#}");
    assert_eq!(report["fail_reasons"], serde_json::json!([]));
    let names: BTreeSet<&str> = report["metrics"]
        .as_object()
        .expect("report shape")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(names, metrics.iter().copied().collect::<BTreeSet<_>>());
    for artifact in report["artifacts"].as_array().expect("report shape") {
        assert_eq!(artifact["sha256"].as_str().expect("report shape").len(), 64);
        assert!(
            artifact["path"]
                .as_str()
                .expect("report shape")
                .starts_with(&format!("phase_{phase}/")),
            "{artifact}"
        );
    }
}

#[test]
fn phase_a_passes_with_the_seed_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let (code, report) = verify_phase("a", dir.path());
    assert_eq!(code, 0, "{report:#}");
    check_report(
        &report,
        "A",
        &[
            "api_p50_ms",
            "api_p95_ms",
            "hash_stability_pass",
            "tests_passed",
            "tests_failed",
        ],
    );
    assert_eq!(report["metrics"]["hash_stability_pass"], true);
    assert_eq!(report["metrics"]["tests_failed"], 0);
}

#[test]
fn phase_b_passes_with_the_seed_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let (code, report) = verify_phase("b", dir.path());
    assert_eq!(code, 0, "{report:#}");
    check_report(
        &report,
        "B",
        &[
            "sse_connected_clients",
            "sse_events_sent",
            "sse_events_received",
            "sse_latency_p50_ms",
            "sse_latency_p95_ms",
            "sse_disconnect_count",
        ],
    );
    let m = &report["metrics"];
    assert_eq!(m["sse_connected_clients"], 3);
    assert_eq!(m["sse_events_received"], m["sse_events_sent"]);
    assert_eq!(m["sse_disconnect_count"], 0);
}

#[test]
fn phase_d_passes_with_the_seed_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let (code, report) = verify_phase("d", dir.path());
    assert_eq!(code, 0, "{report:#}");
    check_report(
        &report,
        "D",
        &[
            "ack_echo_match_rate",
            "issues_with_criterion_ref_rate",
            "traceability_pass",
            "fidelity_pass",
        ],
    );
    let m = &report["metrics"];
    assert_eq!(m["ack_echo_match_rate"], 1.0);
    assert_eq!(m["issues_with_criterion_ref_rate"], 1.0);
    assert_eq!(m["traceability_pass"], true);
    assert_eq!(m["fidelity_pass"], true);
}

#[test]
fn phase_e_passes_with_the_seed_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let (code, report) = verify_phase("e", dir.path());
    assert_eq!(code, 0, "{report:#}");
    check_report(
        &report,
        "E",
        &[
            "api_p50_ms",
            "api_p95_ms",
            "api_p99_ms",
            "sse_soak_disconnect_count",
            "sse_latency_p95_ms",
            "error_events_written",
        ],
    );
    let m = &report["metrics"];
    assert_eq!(m["sse_soak_disconnect_count"], 0);
    assert!(m["error_events_written"].as_u64().unwrap() >= 20);
}

#[test]
fn a_server_that_is_not_there_fails_the_report_and_a_remote_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // Port 9 (discard) on loopback: nothing listens there in the test environment.
    let output = Command::new(assert_cmd::cargo::cargo_bin!("gatekeeper"))
        .args([
            "verify-phase",
            "a",
            "--url",
            "http://127.0.0.1:9",
            "--duration",
            "1",
            "--out",
        ])
        .arg(dir.path())
        .current_dir(dir.path())
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let report: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("phase_A_acceptance.json")).unwrap())
            .unwrap();
    assert_eq!(report["pass"], false);
    assert!(
        report["fail_reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("service_up")
    );
    let remote = Command::new(assert_cmd::cargo::cargo_bin!("gatekeeper"))
        .args(["verify-phase", "b", "--url", "http://192.0.2.1:80"])
        .current_dir(dir.path())
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(remote.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&remote.stderr).contains("not a loopback address"));
}
