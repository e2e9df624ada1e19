//! Acceptance reports as gates (SPEC §9): a check that names its report passes only when the
//! command succeeded and the report says `pass: true`; the report's hashes are journalled and its
//! `fail_reasons` reach the fix round through `tests/run.log`.

use crate::support::{PATCH_PROMPT, Ws};

fn config(pass: bool) -> String {
    format!(
        "version: 1\nfix_attempts: 1\nscope: {{ always_allowed: [\"reports/**\"] }}\nchecks:\n  - {{ name: phase-a, run: \"mkdir -p reports && printf '%s' '{{\\\"phase\\\":\\\"A\\\",\\\"pass\\\":{pass},\\\"fail_reasons\\\":[{reasons}],\\\"artifacts\\\":[{{\\\"path\\\":\\\"a.txt\\\"}}]}}' > reports/r.json && echo art > reports/a.txt\", report: reports/r.json }}\n",
        reasons = if pass {
            String::new()
        } else {
            "\\\"p95 too high\\\"".to_owned()
        }
    )
}

#[test]
fn a_passing_report_opens_the_gate_and_is_journalled() {
    let ws = Ws::with_task(&config(true), PATCH_PROMPT);
    ws.gk(&["run", "t"]).expect(0);
    let journal = ws.read(".ai-stack-trace/t/ledger.jsonl");
    let line = journal
        .lines()
        .find(|l| l.contains("\"report_checked\""))
        .expect("a report_checked event");
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["data"]["report"]["pass"], true);
    assert_eq!(
        v["data"]["report"]["sha256"],
        gatekeeper::hash::sha256_hex(ws.read("reports/r.json").as_bytes())
    );
    assert_eq!(
        v["data"]["report"]["artifacts"]["a.txt"],
        gatekeeper::hash::sha256_hex(b"art\n")
    );
}

#[test]
fn a_report_saying_fail_fails_the_check_even_when_the_command_succeeds() {
    let ws = Ws::with_task(&config(false), PATCH_PROMPT);
    ws.gk(&["run", "t", "--to", "5"]).expect(6);
    let log = ws.read(".ai-stack-trace/t/tests/run.log");
    assert!(
        log.contains("exit: 0") && log.contains("report: reports/r.json pass: false"),
        "{log}"
    );
    assert!(log.contains("fail_reason: p95 too high"), "{log}");
    assert!(
        ws.exists(".ai-stack-trace/t/codex/fix-1.md"),
        "the fail reasons went to a fix round"
    );
}
