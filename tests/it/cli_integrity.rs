//! Tampering (SPEC §2, §13): every edit made behind gatekeeper's back is caught by `verify`
//! (exit 7) and by the next gate (exit 7, nothing written).

use crate::support::{Run, Ws};

const LEDGER: &str = ".ai-stack-trace/t";

fn ledger(rel: &str) -> String {
    format!("{LEDGER}/{rel}")
}

/// A task run to the end (all nine steps) that verifies.
fn finished_task() -> Ws {
    let ws = Ws::with_patch_task();
    ws.gk(&["run", "t"]).expect(0);
    ws.gk(&["verify", "t"]).expect(0);
    ws
}

/// `verify` says 7 and names `what`; then `step` is refused with 7 and writes nothing.
#[track_caller]
fn caught(ws: &Ws, what: &str, step: &str) -> Run {
    let run = ws.gk(&["verify", "t"]).expect(7);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(all.contains(what), "verify does not name `{what}`:\n{all}");
    let before = ws.snapshot_tree(".ai-stack-trace");
    let gate = ws.gk(&["step", step, "t"]).expect(7);
    assert!(gate.stderr.contains("error:"), "{}", gate.stderr);
    assert!(gate.stderr.contains("hint:"), "{}", gate.stderr);
    assert!(
        before == ws.snapshot_tree(".ai-stack-trace"),
        "a refused step wrote to the ledger"
    );
    run
}

#[test]
fn a_finished_task_verifies() {
    let ws = finished_task();
    let run = ws.gk(&["verify", "t"]).expect(0);
    assert!(
        run.stdout.starts_with("ok: ledger of `t` verified"),
        "{}",
        run.stdout
    );
    let json: serde_json::Value =
        serde_json::from_str(&ws.gk(&["verify", "t", "--json"]).expect(0).stdout).expect("json");
    assert_eq!(json["findings"], serde_json::json!([]));
}

#[test]
fn an_edited_ledger_file_is_caught() {
    let ws = finished_task();
    ws.file(
        &ledger("gemini/audit.md"),
        "# Audit\n\nAll good, trust me.\n",
    );
    let run = caught(&ws, "gemini/audit.md", "8");
    assert!(run.stdout.contains("FAIL"), "{}", run.stdout);
}

#[test]
fn an_edited_contract_is_caught() {
    let ws = finished_task();
    ws.file(
        &ledger("contract/CLAUDE_FINAL_OK"),
        "CLAUDE_FINAL_OK:other\n",
    );
    caught(&ws, "contract/CLAUDE_FINAL_OK", "8");
}

#[test]
fn a_forged_contract_is_caught_by_verify_and_by_the_next_gates() {
    let ws = Ws::with_patch_task();
    ws.steps_to("t", 5);
    // The exact bytes gatekeeper would write, but not journalled.
    ws.file(&ledger("contract/CLAUDE_FINAL_OK"), "CLAUDE_FINAL_OK:t\n");
    let run = caught(&ws, "forged", "7");
    assert!(run.stdout.contains("CLAUDE_FINAL_OK"), "{}", run.stdout);
    let before = ws.snapshot_tree(".ai-stack-trace");
    ws.gk(&["step", "6", "t"]).expect(7);
    ws.gk(&["step", "8", "t"]).expect(7);
    assert!(before == ws.snapshot_tree(".ai-stack-trace"));
}

#[test]
fn a_forged_decisions_contract_does_not_open_step_3() {
    let ws = Ws::with_task(
        crate::support::PATCH_CONFIG,
        "# No scope\n\nThe stand-in says NO to this.\n",
    );
    ws.steps_to("t", 1);
    ws.gk(&["step", "2", "t"]).expect(4);
    ws.file(
        &ledger("contract/CLAUDE_DECISIONS_OK"),
        "CLAUDE_DECISIONS_OK:t\n",
    );
    ws.gk(&["verify", "t"]).expect(7);
    let before = ws.snapshot_tree(".ai-stack-trace");
    ws.gk(&["step", "3", "t"]).expect(7);
    assert!(before == ws.snapshot_tree(".ai-stack-trace"));
    assert!(!ws.exists(&ledger("codex/plan.md")));
}

#[test]
fn a_truncated_journal_is_caught_by_the_local_head() {
    let ws = finished_task();
    let lines = ws.journal_lines("t");
    ws.write_journal("t", &lines[..lines.len() - 1]);
    caught(&ws, "truncated", "8");
}

#[test]
fn a_journal_line_removed_from_the_middle_is_caught() {
    let ws = finished_task();
    let mut lines = ws.journal_lines("t");
    lines.remove(lines.len() / 2);
    ws.write_journal("t", &lines);
    caught(&ws, "ledger.jsonl", "8");
}

#[test]
fn two_swapped_journal_lines_are_caught() {
    let ws = finished_task();
    let mut lines = ws.journal_lines("t");
    lines.swap(3, 4);
    ws.write_journal("t", &lines);
    caught(&ws, "ledger.jsonl", "8");
}

/// The journal's own message about a misplaced line must not contradict itself: line 4 holds
/// the entry with `seq` 4 (the fifth), so it is not "line number 4" that matches (bug: the check
/// compares the 0-based index and prints the 1-based line number).
#[test]
fn a_misplaced_journal_line_is_described_consistently() {
    let ws = finished_task();
    let mut lines = ws.journal_lines("t");
    lines.swap(3, 4);
    ws.write_journal("t", &lines);
    let run = ws.gk(&["verify", "t"]).expect(7);
    let re = regex::Regex::new(r"`seq` is (\d+) but the line is number (\d+)").expect("regex");
    if let Some(c) = re.captures(&run.stderr) {
        assert_ne!(&c[1], &c[2], "{}", run.stderr);
    }
}

#[test]
fn an_edited_journal_line_is_caught() {
    let ws = finished_task();
    let mut lines = ws.journal_lines("t");
    let i = lines
        .iter()
        .position(|l| l.contains("\"outcome\":\"done\""))
        .expect("a step_finished line");
    lines[i] = lines[i].replace("\"outcome\":\"done\"", "\"outcome\":\"no\"");
    ws.write_journal("t", &lines);
    caught(&ws, "ledger.jsonl", "8");
}

#[test]
fn a_consistently_rewritten_last_line_is_caught_by_the_local_head() {
    let ws = finished_task();
    let mut lines = ws.journal_lines("t");
    let last = lines.len() - 1;
    let mut entry: serde_json::Value = serde_json::from_str(&lines[last]).expect("json");
    entry["ts"] = serde_json::json!("2000-01-01T00:00:00Z");
    // Canonical form: serde_json's map is sorted, compact output.
    lines[last] = serde_json::to_string(&entry).expect("encode");
    ws.write_journal("t", &lines);
    caught(&ws, "ledger.jsonl", "8");
}

#[test]
fn an_approved_file_edited_after_step_6_is_caught_before_commit() {
    let ws = Ws::with_patch_task();
    ws.steps_to("t", 6);
    ws.file("src/greeting.txt", "Hello, sneaky change!\n");
    let run = caught(&ws, "src/greeting.txt", "7");
    assert!(run.stdout.contains("approval binding"), "{}", run.stdout);
    let before = ws.head();
    let commit = ws.gk(&["step", "8", "t"]).expect(7);
    assert!(
        commit.stderr.contains("src/greeting.txt"),
        "{}",
        commit.stderr
    );
    assert_eq!(
        ws.head(),
        before,
        "step 8 committed a tree that was not approved"
    );
    assert!(!ws.exists(&ledger("final/status.json")));
}

#[test]
fn an_unapproved_new_file_after_step_6_is_caught() {
    let ws = Ws::with_patch_task();
    ws.steps_to("t", 7);
    ws.file("src/extra.txt", "smuggled\n");
    caught(&ws, "src/extra.txt", "8");
}

#[test]
fn a_symlink_inside_the_ledger_is_caught() {
    let ws = finished_task();
    std::os::unix::fs::symlink("/etc/hostname", ws.path(&ledger("gemini/link.md")))
        .expect("symlink");
    caught(&ws, "symlink", "8");
}

#[test]
fn a_file_added_to_the_ledger_by_hand_is_caught() {
    let ws = finished_task();
    ws.file(&ledger("codex/fix-9.md"), "# a fix nobody asked for\n");
    caught(&ws, "codex/fix-9.md", "8");
}

#[test]
fn a_deleted_ledger_file_is_caught() {
    let ws = finished_task();
    ws.remove(&ledger("codex/plan.md"));
    caught(&ws, "codex/plan.md", "8");
}

#[test]
fn verify_json_lists_the_findings() {
    let ws = finished_task();
    ws.file(&ledger("gemini/audit.md"), "edited\n");
    let run = ws.gk(&["verify", "t", "--json"]).expect(7);
    let json: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    let findings = json["findings"].as_array().expect("findings");
    assert!(
        findings
            .iter()
            .any(|f| f["path"] == ".ai-stack-trace/t/gemini/audit.md"),
        "{json}"
    );
}

#[test]
fn status_still_reports_a_task_whose_file_was_edited() {
    let ws = finished_task();
    ws.file(&ledger("gemini/audit.md"), "edited\n");
    // Editing an input makes the steps that read it stale.
    assert_eq!(ws.state("t", 2), "stale");
}

#[test]
fn a_committed_task_still_verifies_after_later_work_on_the_tree() {
    let ws = finished_task();
    ws.file("src/greeting.txt", "Hello, next task!\n");
    ws.file("src/other.txt", "new work\n");
    ws.gk(&["verify", "t"]).expect(0);
}

// ----- agents that write into the ledger -------------------------------------------------

/// A workspace whose `codex` agent runs `implement` as the given shell snippet.
fn rogue_codex(implement: &str) -> Ws {
    let ws = Ws::new();
    let script = ws.agent(
        "codex.sh",
        &[(
            "implement",
            format!(
                "{implement}\n{}",
                crate::support::heredoc("# Apply\n\nDone.\n")
            ),
        )],
    );
    ws.config(&format!(
        "{}roles:\n  codex: {{ provider: command, argv: [\"sh\", \"{script}\"] }}\n",
        crate::support::PATCH_CONFIG
    ));
    ws.commit("config");
    ws.prompt("t", crate::support::PATCH_PROMPT);
    ws.steps_to("t", 3);
    ws
}

#[test]
fn a_contract_written_by_an_agent_is_caught_at_the_next_gate() {
    let ws = rogue_codex(
        "printf 'Hello, gatekeeper!\\n' > src/greeting.txt\nprintf 'CLAUDE_FINAL_OK:t\\n' > .ai-stack-trace/t/contract/CLAUDE_FINAL_OK",
    );
    let _ = ws.gk(&["step", "4", "t"]);
    caught(&ws, "forged", "5");
    ws.gk(&["step", "7", "t"]).expect(7);
}

/// An agent that widens its own approved scope by editing `claude/decisions.md` while it works.
/// The next gate catches the edit (exit 7), but step 4 must not first report the change as
/// "all inside the approved paths" on the strength of the forged decisions (bug: step 4 exits 0;
/// its scope check reads the decisions file without checking it against the journal).
#[test]
fn an_agent_widening_its_own_scope_does_not_pass_step_4() {
    let ws = rogue_codex(
        "printf 'Hello, gatekeeper!\\n' > src/greeting.txt\nprintf '# mine now\\n' > README.md\nsed -i 's/^- `src\\/greeting.txt`$/- `**`/; /## Forbidden/,/^## /{/README/d}' .ai-stack-trace/t/claude/decisions.md",
    );
    let decisions_before = ws.read(&ledger("claude/decisions.md"));
    let run = ws.gk(&["step", "4", "t"]);
    assert_ne!(
        ws.read(&ledger("claude/decisions.md")),
        decisions_before,
        "the agent did not manage to edit the decisions; the test is void"
    );
    assert!(
        matches!(run.code, 5 | 7),
        "step 4 accepted a change outside the journalled decisions: {run:?}"
    );
    caught(&ws, "claude/decisions.md", "5");
}
