//! L2: `gatekeeper verify-phase c` end to end (SPEC §9, seed 004 module 3): its own server, the
//! seed's metric names, a passing report and its artifacts.

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;

#[test]
fn verify_phase_c_passes_with_the_seeds_metrics() {
    let out = tempfile::tempdir().expect("tempdir");
    let output = Command::new(assert_cmd::cargo::cargo_bin!("gatekeeper"))
        .args(["verify-phase", "c", "--duration", "1", "--out"])
        .arg(out.path())
        .current_dir(out.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .expect("run verify-phase");
    let report: Value = serde_json::from_slice(
        &std::fs::read(out.path().join("phase_C_acceptance.json")).unwrap_or_else(|e| {
            panic!(
                "no report ({e}): {}",
                String::from_utf8_lossy(&output.stderr)
            )
        }),
    )
    .expect("JSON");
    assert!(out.path().join("phase_C_acceptance.md").is_file());
    assert_eq!(output.status.code(), Some(0), "{report:#}");
    assert_eq!(report["phase"], "C");
    assert_eq!(report["pass"], true, "{report:#}");
    assert_eq!(report["fail_reasons"], serde_json::json!([]));
    let names: BTreeSet<&str> = report["metrics"]
        .as_object()
        .expect("metrics")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "audit_events_written",
            "flood_api_p95_ms",
            "idempotency_pass",
            "signature_reject_rate",
            "telegram_dedup_pass",
            "telegram_ingest_p95_ms",
            "telegram_tasks_created",
        ])
    );
    let m = &report["metrics"];
    assert_eq!(m["signature_reject_rate"], 1.0);
    assert_eq!(m["idempotency_pass"], true);
    assert_eq!(m["telegram_dedup_pass"], true);
    assert_eq!(m["telegram_tasks_created"], 51);
    assert!(m["audit_events_written"].as_u64().is_some_and(|n| n >= 121));
    for artifact in report["artifacts"].as_array().expect("artifacts") {
        assert_eq!(artifact["sha256"].as_str().map(str::len), Some(64));
    }
}
