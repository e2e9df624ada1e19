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

/// Task `b`'s prompt: [`PATCH_PROMPT`] plus a `## Requires reports` section naming `reports/r.json`.
fn requiring_prompt() -> String {
    format!("{PATCH_PROMPT}\n## Requires reports\n\n- `reports/r.json`\n")
}

/// A workspace where task `a`'s check produced `reports/r.json` (passing or not) and task `b`
/// requires it.
fn producer_and_consumer(pass: bool) -> Ws {
    let ws = Ws::with_task(&config(pass), PATCH_PROMPT);
    std::fs::rename(
        ws.path("docs/ai-gated/prompt/t.md"),
        ws.path("docs/ai-gated/prompt/a.md"),
    )
    .unwrap();
    ws.commit("task a");
    ws
}

#[test]
fn a_task_requiring_a_report_waits_until_another_task_passed_it() {
    let ws = producer_and_consumer(true);
    ws.prompt("b", &requiring_prompt());

    // Nothing has produced the report yet: step 0 is refused and writes nothing.
    let run = ws.gk(&["step", "0", "b"]).expect(3);
    assert!(
        run.stderr
            .contains("requires the report `reports/r.json`, which does not exist"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("hint:"), "{}", run.stderr);
    assert!(!ws.exists(".ai-stack-trace/b"));

    // A report written by hand, not through a gated check, does not count.
    std::fs::create_dir_all(ws.path("reports")).unwrap();
    std::fs::write(ws.path("reports/r.json"), r#"{"pass":true}"#).unwrap();
    ws.commit("a report written by hand");
    let run = ws.gk(&["step", "0", "b"]).expect(3);
    assert!(
        run.stderr.contains("no task's ledger records it passing"),
        "{}",
        run.stderr
    );

    // Task `a` runs its check (which writes the report) through to its commit.
    ws.gk(&["run", "a"]).expect(0);
    let sha = gatekeeper::hash::sha256_hex(ws.read("reports/r.json").as_bytes());
    ws.gk(&["step", "0", "b"]).expect(0);
    let journal = ws.journal("b");
    let required = journal
        .iter()
        .find(|e| e["event"] == "reports_required")
        .expect("a reports_required event");
    assert_eq!(
        required["data"]["reports"],
        serde_json::json!([{"path": "reports/r.json", "sha256": sha, "task": "a", "step": 5}])
    );

    // The report changes after it passed: every later step of `b` is held.
    let passed_bytes = ws.read("reports/r.json");
    ws.file("reports/r.json", &passed_bytes.replace("\"A\"", "\"A2\""));
    let before = ws.journal_lines("b");
    let run = ws.gk(&["step", "1", "b"]).expect(3);
    assert!(
        run.stderr
            .contains("which changed since it passed in task `a`"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("re-run step 5 of `a`"),
        "{}",
        run.stderr
    );
    assert_eq!(ws.journal_lines("b"), before, "a refusal writes nothing");

    // Restored to the bytes that passed, the gate opens again.
    ws.file("reports/r.json", &passed_bytes);
    ws.gk(&["step", "1", "b"]).expect(0);
}

#[test]
fn a_required_report_that_failed_or_whose_ledger_was_forged_holds_the_task() {
    let ws = producer_and_consumer(false);
    ws.gk(&["run", "a", "--to", "5"]).expect(6);
    ws.prompt("b", &requiring_prompt());
    // `b` may not start on a dirty tree; `a` is mid-pipeline, so park its changes in a commit.
    ws.commit("a mid-flight");
    let run = ws.gk(&["step", "0", "b"]).expect(3);
    assert!(
        run.stderr
            .contains("which does not say `pass: true` (p95 too high)"),
        "{}",
        run.stderr
    );

    // A passing report and a producer ledger that no longer verifies.
    let ws = producer_and_consumer(true);
    ws.gk(&["run", "a", "--to", "5"]).expect(0);
    let audit = ws.read(".ai-stack-trace/a/gemini/audit.md");
    ws.file(
        ".ai-stack-trace/a/gemini/audit.md",
        &format!("{audit}\nedited\n"),
    );
    ws.prompt("b", &requiring_prompt());
    // `b` may not start on a dirty tree; `a` is mid-pipeline, so park its changes in a commit.
    ws.commit("a mid-flight");
    let run = ws.gk(&["step", "0", "b"]).expect(3);
    assert!(
        run.stderr
            .contains("the ledger of `a` that records it passing fails verification"),
        "{}",
        run.stderr
    );
}

#[test]
fn required_reports_from_the_configuration_must_be_plain_relative_paths() {
    let ws = Ws::with_task(
        "version: 1\nrequires_reports: [\"../outside.json\"]\n",
        PATCH_PROMPT,
    );
    let run = ws.gk(&["step", "0", "t"]).expect(2);
    assert!(
        run.stderr.contains("`requires_reports[0]`") && run.stderr.contains(".."),
        "{}",
        run.stderr
    );
    assert!(!ws.exists(".ai-stack-trace/t"));

    // A workspace-wide requirement holds every task.
    let ws = Ws::with_task(
        "version: 1\nrequires_reports: [\"./reports/base.json\"]\n",
        PATCH_PROMPT,
    );
    let run = ws.gk(&["step", "0", "t"]).expect(3);
    assert!(run.stderr.contains("`reports/base.json`"), "{}", run.stderr);
}
