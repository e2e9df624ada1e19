//! `gatekeeper audit`, the assumptions register, `gatekeeper inventory` and the dev-process
//! pipeline (issue 7).

use serde_json::Value;

use crate::gk_snapshot;
use crate::support::{PATCH_CONFIG, Ws};

const COMPLETE: &str = "assumptions:\n  - id: A-1\n    text: greetings are ASCII\n    rationale: the file is plain text\n    risk_if_wrong: mojibake\n    validation: grep for non-ASCII\n    status: confirmed\n  - id: A-2\n    text: one line is enough\n    rationale: the prompt says so\n    risk_if_wrong: truncated text\n    validation: review\n    status: pending\n";

/// A governed, committed task in a repository with CI, a README and a complete register.
fn passing() -> Ws {
    let ws = Ws::new();
    ws.config(PATCH_CONFIG);
    ws.file(".ci/run", "#!/bin/sh\ncargo test\n");
    ws.file("docs/assumptions.yaml", COMPLETE);
    ws.commit("config, ci, register");
    ws.prompt("t", crate::support::PATCH_PROMPT);
    ws.gk(&["run", "t"]).expect(0);
    ws
}

fn rows(ws: &Ws, args: &[&str], code: i32) -> Value {
    let run = ws.gk(args).expect(code);
    serde_json::from_str(&run.stdout).expect("audit --format json is JSON")
}

fn result(audit: &Value, item: &str) -> (String, String) {
    let row = audit["checklist"]
        .as_array()
        .unwrap()
        .iter()
        .chain(audit["rubric"].as_array().unwrap())
        .find(|r| r["item"] == item)
        .unwrap_or_else(|| panic!("no row `{item}`"));
    (
        row["result"].as_str().unwrap().to_owned(),
        row["evidence"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn tables_of_a_passing_repository() {
    let ws = passing();
    gk_snapshot!("self_audit_passing", Some(&ws), ws.gk(&["audit", "t"]));
    assert!(ws.exists("reports/self-audit.md") && ws.exists("reports/self-audit.json"));
}

#[test]
fn tables_of_a_failing_repository() {
    let ws = Ws::new();
    ws.file("src/config.py", "API = 'AKIAABCDEFGHIJKLMNOP'\n");
    ws.file(
        "docs/assumptions.yaml",
        "assumptions:\n  - id: A-1\n    text: the db is postgres\n    status: maybe\n",
    );
    ws.commit("a leaky config");
    ws.file("src/untracked.txt", "stray\n");
    gk_snapshot!("self_audit_failing", Some(&ws), ws.gk(&["audit"]));
    let md = ws.read("reports/self-audit.md");
    assert!(
        md.contains("## KNOWN GAPS / TODOs")
            && md.contains("| Secrets not exposed | src/config.py:1"),
        "{md}"
    );
}

/// Before step 6 binds a change set, `changes_explained` reads step 4's `diff_snapshot`: the
/// scope checks journal only the set's digest and size.
#[test]
fn changes_are_explained_before_approval() {
    let ws = Ws::with_patch_task();
    ws.gk(&["run", "t", "--to", "5"]).expect(0);
    ws.config(&format!(
        "{PATCH_CONFIG}audit:\n  checklist:\n    - {{ item: explained, check: {{ kind: ledger, fact: changes_explained }} }}\n  rubric: []\n"
    ));
    let a = rows(&ws, &["audit", "t", "--format", "json"], 0);
    let (got, evidence) = result(&a, "explained");
    assert_eq!(got, "Pass", "{evidence}");
    assert!(
        evidence.contains(".ai-stack-trace/t/codex/apply.md:"),
        "{evidence}"
    );
}

#[test]
fn each_check_kind() {
    let ws = passing();
    ws.config(&format!(
        "{PATCH_CONFIG}audit:\n  checklist:\n{}\n  rubric: []\n",
        [
            r#"    - { item: cmd-ok, check: { kind: command, run: "true" } }"#,
            r#"    - { item: cmd-fail, check: { kind: command, run: "exit 3" } }"#,
            r#"    - { item: pattern, check: { kind: pattern, regex: "gatekeeper!", paths: ["src/**"] } }"#,
            r#"    - { item: pattern-missing, check: { kind: pattern, regex: "nowhere-to-be-found", paths: ["src/**"] } }"#,
            r#"    - { item: pattern-absent, check: { kind: pattern, regex: "TODO", paths: ["src/**"], absent: true } }"#,
            r#"    - { item: file, check: { kind: file, globs: ["src/*.txt"] } }"#,
            r#"    - { item: file-missing, check: { kind: file, globs: ["Dockerfile"] } }"#,
            r#"    - { item: secrets, check: { kind: secret_scan } }"#,
            r#"    - { item: tree, check: { kind: clean_tree } }"#,
            r#"    - { item: assumptions, check: { kind: assumptions } }"#,
            r#"    - { item: manual, check: { kind: manual, note: "look at it" } }"#,
            r#"    - { item: gates, check: { kind: ledger, fact: gates_followed } }"#,
            r#"    - { item: explained, check: { kind: ledger, fact: changes_explained } }"#,
            r#"    - { item: verified, check: { kind: ledger, fact: verified } }"#,
            r#"    - { item: checks, check: { kind: ledger, fact: checks_passed } }"#,
            r#"    - { item: schema, check: { kind: ledger, fact: schema_declared } }"#,
            r#"    - { item: criteria, check: { kind: ledger, fact: criteria_addressed } }"#,
            r#"    - { item: idempotent, check: { kind: ledger, fact: idempotent_commit } }"#,
        ]
        .join("\n")
    ));
    ws.commit("audit rows");
    let a = rows(&ws, &["audit", "t", "--format", "json"], 1);
    let expect = |item: &str, want: &str, evidence: &str| {
        let (got, ev) = result(&a, item);
        assert_eq!(got, want, "{item}: {ev}");
        assert!(
            ev.contains(evidence),
            "{item}: evidence `{ev}` lacks `{evidence}`"
        );
    };
    expect("cmd-ok", "Pass", "`true`: exit 0");
    expect("cmd-fail", "Fail", "exit 3");
    expect("pattern", "Pass", "src/greeting.txt:1");
    expect("pattern-missing", "Fail", "no tracked file matches");
    expect("pattern-absent", "Pass", "no match");
    expect("file", "Pass", "src/greeting.txt:1");
    expect("file-missing", "Fail", "Dockerfile");
    expect("secrets", "Pass", "no secret shapes");
    expect("tree", "Pass", "git status");
    expect(
        "assumptions",
        "Pass",
        "docs/assumptions.yaml:1 (2 entries, 1 pending)",
    );
    expect("manual", "Manual", "look at it");
    expect("gates", "Pass", ".ai-stack-trace/t/ledger.jsonl:");
    expect("explained", "Pass", ".ai-stack-trace/t/codex/apply.md:");
    expect("verified", "Pass", "contracts verified");
    expect("checks", "Pass", ".ai-stack-trace/t/tests/run.log:");
    expect("schema", "Pass", ".ai-stack-trace/t/claude/decisions.md:");
    expect("criteria", "Pass", ".ai-stack-trace/t/");
    expect("idempotent", "Pass", "1 commit(s) for 1 approval(s)");
    assert_eq!(a["pass"], false);
    assert!(
        a["assumptions"]["pending"][0]
            .as_str()
            .unwrap()
            .starts_with("A-2")
    );
}

#[test]
fn ledger_facts_fail_when_the_ledger_lies() {
    let ws = passing();
    ws.file(
        ".ai-stack-trace/t/codex/apply.md",
        "# Apply\n\nNothing to see.\n",
    );
    let a = rows(&ws, &["audit", "t", "--format", "json"], 1);
    assert_eq!(result(&a, "Audit counts logged").0, "Fail");
    assert_eq!(result(&a, "Diff traceability").0, "Fail");
    assert!(
        result(&a, "Diff traceability")
            .1
            .contains("src/greeting.txt")
    );
}

#[test]
fn an_incomplete_assumption_fails_and_names_what_is_missing() {
    let ws = passing();
    ws.file(
        "docs/assumptions.yaml",
        "assumptions:\n  - id: A-1\n    text: x\n    status: pending\n",
    );
    ws.commit("thin register");
    let a = rows(&ws, &["audit", "t", "--format", "json"], 1);
    let (r, ev) = result(&a, "Assumptions register complete");
    assert_eq!(r, "Fail");
    assert!(
        ev.contains("A-1: missing rationale, risk_if_wrong, validation"),
        "{ev}"
    );
}

#[test]
fn a_bad_audit_row_is_a_usage_error() {
    let ws = Ws::new();
    ws.config("version: 1\naudit:\n  checklist:\n    - { item: x, check: { kind: telepathy } }\n");
    let run = ws.gk(&["audit"]).expect(2);
    assert!(
        run.stderr.contains("gatekeeper.yaml:") && run.stderr.contains("telepathy"),
        "{}",
        run.stderr
    );
}

#[test]
fn inventory_is_deterministic_and_classifies_roles() {
    let ws = Ws::new();
    ws.file("tests/a_test.rs", "fn t() {}\n");
    ws.file(".github/workflows/ci.yml", "on: push\n");
    ws.file("scripts/x.sh", "echo\n");
    ws.file("data/rows.csv", "a,b\n");
    ws.file("Cargo.toml", "[package]\n");
    ws.commit("files");
    ws.gk(&["inventory"]).expect(0);
    let first = ws.read("reports/inventory.json");
    ws.gk(&["inventory", "--out", "reports/again.json"])
        .expect(0);
    assert_eq!(
        first,
        ws.read("reports/again.json"),
        "two runs over one tree are byte-identical"
    );
    let v: Value = serde_json::from_str(&first).unwrap();
    let role = |p: &str| {
        v["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["path"] == p)
            .unwrap()["role"]
            .clone()
    };
    assert_eq!(role("README.md"), "doc");
    assert_eq!(role("src/greeting.txt"), "data");
    assert_eq!(role("tests/a_test.rs"), "test");
    assert_eq!(role(".github/workflows/ci.yml"), "ci");
    assert_eq!(role("scripts/x.sh"), "script");
    assert_eq!(role("data/rows.csv"), "data");
    assert_eq!(role("Cargo.toml"), "config");
    assert_eq!(v["total_files"], 7);
    let greeting = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "README.md")
        .unwrap();
    assert_eq!(
        greeting["sha256"],
        gatekeeper::hash::sha256_hex(b"# sample\n")
    );
    assert_eq!(greeting["size"], 9);
}

const DEV_PROMPT: &str = "# Greet\n\n## Acceptance criteria\n\n- AC-1: `src/greeting.txt` says hi\n\n```diff\n--- a/src/greeting.txt\n+++ b/src/greeting.txt\n@@ -1 +1 @@\n-Hello, world!\n+Hello, hi!\n```\n";

#[test]
fn dev_process_runs_five_phases_with_approvals() {
    let ws = Ws::with_task("version: 1\npipeline: dev-process\n", DEV_PROMPT);
    // Without an approval, the next phase is refused.
    let run = ws.gk(&["run", "t"]).expect(3);
    assert!(
        run.stderr.contains("gatekeeper approve t --phase 1"),
        "{}",
        run.stderr
    );
    let before = ws.snapshot_tree(".ai-stack-trace");
    ws.gk(&["step", "2", "t"]).expect(3);
    assert_eq!(
        before,
        ws.snapshot_tree(".ai-stack-trace"),
        "a refusal writes nothing"
    );
    ws.gk(&["approve", "t", "--phase", "2"]).expect(3);
    for phase in 1..=4 {
        ws.gk(&[
            "approve",
            "t",
            "--phase",
            &phase.to_string(),
            "--by",
            "reviewer",
        ])
        .expect(0);
        ws.gk(&["step", &(phase + 1).to_string(), "t"]).expect(0);
    }
    assert_eq!(ws.read("src/greeting.txt"), "Hello, hi!\n");
    for phase in 1..=5 {
        let out = ws.read(&format!(".ai-stack-trace/t/codex/phase-{phase}.md"));
        assert!(
            out.trim_end()
                .ends_with("=== AWAITING APPROVAL — DO NOT PROCEED ==="),
            "phase {phase}"
        );
    }
    assert!(ws.read(".ai-stack-trace/t/codex/phase-1.md").contains(
        "| # | Topic | Question | Why it matters | Current Assumption | Risk if Wrong |"
    ));
    let p3 = ws.read(".ai-stack-trace/t/codex/phase-3.md");
    assert!(
        p3.contains("[FILE] src/greeting.txt") && p3.contains("[WHY]") && p3.contains("[DIFF]"),
        "{p3}"
    );
    assert!(
        ws.read(".ai-stack-trace/t/codex/phase-4.md")
            .contains("## Self-Audit Checklist")
    );
    let a = rows(&ws, &["audit", "t", "--format", "json"], 1);
    assert_eq!(result(&a, "Gates followed").0, "Pass");
    assert_eq!(result(&a, "Diff traceability").0, "Pass");
    assert_eq!(result(&a, "Requirements coverage").0, "Pass");
    ws.gk(&["verify", "t"]).expect(0);
}

#[test]
fn re_running_a_phase_needs_a_new_approval() {
    let ws = Ws::with_task("version: 1\npipeline: dev-process\n", DEV_PROMPT);
    ws.gk(&["run", "t"]).expect(3);
    ws.gk(&["approve", "t", "--phase", "1"]).expect(0);
    ws.gk(&["step", "1", "t"]).expect(0);
    let run = ws.gk(&["step", "2", "t"]).expect(3);
    assert!(
        run.stderr.contains("none is recorded since it last ran"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_phase_without_the_marker_is_refused() {
    let ws = Ws::with_task(
        "version: 1\npipeline: dev-process\nroles:\n  codex: { provider: command, argv: [\"sh\", \"-c\", \"echo '| # | Topic |'\"] }\n",
        DEV_PROMPT,
    );
    ws.gk(&["step", "0", "t"]).expect(0);
    let run = ws.gk(&["step", "1", "t"]).expect(1);
    assert!(
        run.stderr
            .contains("does not end with `=== AWAITING APPROVAL"),
        "{}",
        run.stderr
    );
    assert!(!ws.exists(".ai-stack-trace/t/codex/phase-1.md"));
}
