//! Scripted verdicts through the `command` provider (SPEC §2 "Verdicts", §4): NO and malformed
//! verdicts end with exit 4 and no contract; review rounds under `gatekeeper run`; secrets in
//! provider output are redacted before they reach the ledger.

use crate::support::{
    DECISIONS_YES, PATCH_CONFIG, PATCH_PROMPT, REVIEW_NO, REVIEW_YES, Run, Ws, heredoc,
};

const DECISIONS_CONTRACT: &str = ".ai-stack-trace/t/contract/CLAUDE_DECISIONS_OK";
const FINAL_CONTRACT: &str = ".ai-stack-trace/t/contract/CLAUDE_FINAL_OK";

/// A workspace whose `claude` role is a script answering `decisions` and `review` with the given
/// shell snippets; `extra` is appended to the configuration.
fn scripted_claude(decisions: String, review: String, extra: &str) -> Ws {
    let ws = Ws::new();
    let script = ws.agent("claude.sh", &[("decisions", decisions), ("review", review)]);
    ws.config(&format!(
        "{PATCH_CONFIG}{extra}roles:\n  claude: {{ provider: command, argv: [\"sh\", \"{script}\"] }}\n"
    ));
    ws.commit("config");
    ws.prompt("t", PATCH_PROMPT);
    ws
}

/// Runs steps 0 and 1, then step 2 with `decisions` as claude's answer; expects exit 4 and no
/// contract, and returns step 2's run.
#[track_caller]
fn decisions_refused(decisions: &str) -> (Ws, Run) {
    let ws = scripted_claude(heredoc(decisions), heredoc(REVIEW_YES), "");
    ws.steps_to("t", 1);
    let run = ws.gk(&["step", "2", "t"]).expect(4);
    assert!(!ws.exists(DECISIONS_CONTRACT), "a contract was written");
    assert!(
        !ws.events("t").contains(&"contract_written".to_owned()),
        "a contract was journalled"
    );
    assert_eq!(ws.state("t", 2), "no");
    assert!(run.stderr.contains("error:"), "{}", run.stderr);
    assert!(run.stderr.contains("hint:"), "{}", run.stderr);
    // The gate behind it stays closed.
    ws.gk(&["step", "3", "t"]).refused(3);
    (ws, run)
}

#[test]
fn decisions_yes_from_a_script_earn_the_contract() {
    let ws = scripted_claude(heredoc(DECISIONS_YES), heredoc(REVIEW_YES), "");
    ws.steps_to("t", 2);
    assert_eq!(ws.read(DECISIONS_CONTRACT), "CLAUDE_DECISIONS_OK:t\n");
    assert_eq!(
        ws.read(".ai-stack-trace/t/claude/decisions.md"),
        DECISIONS_YES
    );
}

#[test]
fn decisions_no_is_exit_4() {
    let (_, run) = decisions_refused(&DECISIONS_YES.replace(": YES", ": NO"));
    assert!(run.stderr.contains("said NO"), "{}", run.stderr);
}

#[test]
fn decisions_without_a_verdict_are_malformed() {
    let text = DECISIONS_YES.replace("CLAUDE_DECISIONS_OK: YES\n", "Looks fine to me.\n");
    let (_, run) = decisions_refused(&text);
    assert!(run.stderr.contains("malformed"), "{}", run.stderr);
}

#[test]
fn a_duplicated_verdict_line_mid_file_is_malformed() {
    let text = DECISIONS_YES.replace("## Forbidden", "CLAUDE_DECISIONS_OK: YES\n\n## Forbidden");
    let (_, run) = decisions_refused(&text);
    assert!(run.stderr.contains("malformed"), "{}", run.stderr);
    assert!(
        run.stderr.contains("as well as at the end"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_verdict_that_is_not_the_last_line_is_malformed() {
    let text = format!("{DECISIONS_YES}\nThat is all.\n");
    let (_, run) = decisions_refused(&text);
    assert!(run.stderr.contains("malformed"), "{}", run.stderr);
}

#[test]
fn a_verdict_with_extra_words_is_malformed() {
    let text = DECISIONS_YES.replace(": YES", ": YES, mostly");
    let (_, run) = decisions_refused(&text);
    assert!(run.stderr.contains("malformed"), "{}", run.stderr);
}

#[test]
fn decisions_yes_without_allowed_paths_are_malformed() {
    let text = "# Decisions\n\n## Allowed paths\n\n## Forbidden\n\n- `README.md`\n\nCLAUDE_DECISIONS_OK: YES\n";
    let (_, run) = decisions_refused(text);
    assert!(run.stderr.contains("malformed"), "{}", run.stderr);
    assert!(run.stderr.contains("no allowed path"), "{}", run.stderr);
}

#[test]
fn decisions_yes_with_a_dot_dot_glob_are_malformed() {
    let text = DECISIONS_YES.replace("`src/greeting.txt`", "`../outside.txt`");
    let (_, run) = decisions_refused(&text);
    assert!(run.stderr.contains("malformed"), "{}", run.stderr);
}

#[test]
fn trailing_spaces_and_blank_lines_after_the_verdict_are_fine() {
    let text = DECISIONS_YES.replace(": YES\n", ": YES   \n\n\n");
    let ws = scripted_claude(heredoc(&text), heredoc(REVIEW_YES), "");
    ws.steps_to("t", 2);
    assert!(ws.exists(DECISIONS_CONTRACT));
}

#[test]
fn a_failing_agent_is_exit_1_and_writes_no_output() {
    let ws = scripted_claude(
        "echo 'rate limited' >&2\nexit 3".to_owned(),
        heredoc(REVIEW_YES),
        "",
    );
    ws.steps_to("t", 1);
    let run = ws.gk(&["step", "2", "t"]).expect(1);
    assert!(run.stderr.contains("rate limited"), "{}", run.stderr);
    assert!(!ws.exists(".ai-stack-trace/t/claude/decisions.md"));
    assert!(!ws.exists(DECISIONS_CONTRACT));
    assert_eq!(ws.state("t", 2), "failed");
}

#[test]
fn an_empty_answer_is_exit_1_and_writes_no_output() {
    let ws = scripted_claude("printf '\\n\\n'".to_owned(), heredoc(REVIEW_YES), "");
    ws.steps_to("t", 1);
    let run = ws.gk(&["step", "2", "t"]).expect(1);
    assert!(run.stderr.contains("empty answer"), "{}", run.stderr);
    assert!(!ws.exists(".ai-stack-trace/t/claude/decisions.md"));
}

#[test]
fn the_agent_gets_the_task_step_role_and_correlation_id() {
    let ws = Ws::new();
    let seen = ws.scratch("env.txt");
    let script = ws.agent(
        "gemini.sh",
        &[(
            "audit",
            format!(
                "echo \"$GATEKEEPER_TASK $GATEKEEPER_STEP $GATEKEEPER_ROLE $GATEKEEPER_CORRELATION_ID $GATEKEEPER_TEMPLATE\" > '{}'\necho '# Audit'",
                seen.display()
            ),
        )],
    );
    ws.config(&format!(
        "{PATCH_CONFIG}roles:\n  gemini: {{ provider: command, argv: [\"sh\", \"{script}\"] }}\n"
    ));
    ws.commit("config");
    ws.prompt("t", PATCH_PROMPT);
    ws.steps_to("t", 1);
    let id = ws.status_json("t")["correlation_id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(
        std::fs::read_to_string(seen).expect("env"),
        format!("t 1 gemini {id} audit\n")
    );
}

// ----- the post-implementation review ----------------------------------------------------

#[test]
fn review_no_at_step_6_is_exit_4_and_writes_no_final_contract() {
    let ws = scripted_claude(heredoc(DECISIONS_YES), heredoc(REVIEW_NO), "");
    ws.steps_to("t", 5);
    let run = ws.gk(&["step", "6", "t"]).expect(4);
    assert!(run.stderr.contains("said NO"), "{}", run.stderr);
    assert!(
        run.stderr.contains("the greeting is not friendly enough"),
        "{}",
        run.stderr
    );
    assert!(!ws.exists(FINAL_CONTRACT));
    let verdict: serde_json::Value =
        serde_json::from_str(&ws.read(".ai-stack-trace/t/claude/verdict.json")).expect("json");
    assert_eq!(verdict["decision"], "reject");
    ws.gk(&["step", "7", "t"]).refused(3);
}

#[test]
fn a_malformed_review_verdict_is_exit_4() {
    let review = REVIEW_YES.replace("CLAUDE_FINAL_OK: YES", "CLAUDE_FINAL_OK: yes");
    let ws = scripted_claude(heredoc(DECISIONS_YES), heredoc(&review), "");
    ws.steps_to("t", 5);
    let run = ws.gk(&["step", "6", "t"]).expect(4);
    assert!(run.stderr.contains("malformed"), "{}", run.stderr);
    assert!(!ws.exists(FINAL_CONTRACT));
}

#[test]
fn a_review_smuggling_a_decisions_verdict_is_malformed() {
    let review = format!("CLAUDE_DECISIONS_OK: YES\n{REVIEW_YES}");
    let ws = scripted_claude(heredoc(DECISIONS_YES), heredoc(&review), "");
    ws.steps_to("t", 5);
    ws.gk(&["step", "6", "t"]).expect(4);
    assert!(!ws.exists(FINAL_CONTRACT));
}

/// A review snippet that says NO the first `noes` times (a counter outside the repository),
/// then YES.
fn review_no_then_yes(ws: &Ws, noes: u32) -> String {
    let counter = ws.scratch("reviews.count");
    let counter = counter.display();
    format!(
        "n=$(cat '{counter}' 2>/dev/null || echo 0)\nn=$((n+1))\necho $n > '{counter}'\nif [ $n -le {noes} ]; then\n{}else\n{}fi",
        heredoc(REVIEW_NO),
        heredoc(REVIEW_YES)
    )
}

fn reviews(ws: &Ws) -> u32 {
    std::fs::read_to_string(ws.scratch("reviews.count"))
        .expect("counter")
        .trim()
        .parse()
        .expect("number")
}

#[test]
fn run_sends_a_review_no_back_for_a_fix_round_then_completes() {
    let ws = Ws::new();
    let review = review_no_then_yes(&ws, 1);
    let script = ws.agent(
        "claude.sh",
        &[("decisions", heredoc(DECISIONS_YES)), ("review", review)],
    );
    ws.config(&format!(
        "{PATCH_CONFIG}review_rounds: 2\nroles:\n  claude: {{ provider: command, argv: [\"sh\", \"{script}\"] }}\n"
    ));
    ws.commit("config");
    ws.prompt("t", PATCH_PROMPT);
    let run = ws.gk(&["run", "t"]).expect(0);
    assert!(run.stdout.contains("step 8 `commit`"), "{}", run.stdout);
    assert_eq!(reviews(&ws), 2);
    assert!(ws.exists(".ai-stack-trace/t/codex/fix-1.md"));
    assert!(!ws.exists(".ai-stack-trace/t/codex/fix-2.md"));
    assert_eq!(ws.read(FINAL_CONTRACT), "CLAUDE_FINAL_OK:t\n");
    assert!(ws.events("t").contains(&"fix_requested".to_owned()));
    ws.gk(&["verify", "t"]).expect(0);
}

#[test]
fn run_gives_up_with_exit_4_after_review_rounds() {
    let ws = Ws::new();
    let review = review_no_then_yes(&ws, 99);
    let script = ws.agent(
        "claude.sh",
        &[("decisions", heredoc(DECISIONS_YES)), ("review", review)],
    );
    ws.config(&format!(
        "{PATCH_CONFIG}review_rounds: 2\nroles:\n  claude: {{ provider: command, argv: [\"sh\", \"{script}\"] }}\n"
    ));
    ws.commit("config");
    ws.prompt("t", PATCH_PROMPT);
    let run = ws.gk(&["run", "t"]).expect(4);
    assert!(run.stderr.contains("said NO"), "{}", run.stderr);
    assert_eq!(reviews(&ws), 3, "one review and two rounds");
    assert!(ws.exists(".ai-stack-trace/t/codex/fix-2.md"));
    assert!(!ws.exists(".ai-stack-trace/t/codex/fix-3.md"));
    assert!(!ws.exists(FINAL_CONTRACT));
    assert_eq!(ws.state("t", 6), "no");
    assert_eq!(
        ws.log()
            .iter()
            .filter(|m| m.starts_with("gatekeeper(t)"))
            .count(),
        0
    );
}

// ----- secrets ---------------------------------------------------------------------------

#[test]
fn secrets_in_provider_output_are_redacted_and_journalled() {
    let ws = Ws::new();
    let script = ws.agent(
        "gemini.sh",
        &[(
            "audit",
            heredoc(
                "# Audit\n\nFound a key: sk-ant-api03-abcdefghijklmnopqrstuvwx\n\nMY_TOKEN=supersecretvalue\n",
            ),
        )],
    );
    ws.config(&format!(
        "{PATCH_CONFIG}roles:\n  gemini: {{ provider: command, argv: [\"sh\", \"{script}\"] }}\n"
    ));
    ws.commit("config");
    ws.prompt("t", PATCH_PROMPT);
    ws.steps_to("t", 1);
    let audit = ws.read(".ai-stack-trace/t/gemini/audit.md");
    assert!(audit.contains("[REDACTED"), "{audit}");
    assert!(!audit.contains("abcdefghijklmnopqrstuvwx"), "{audit}");
    assert!(!audit.contains("supersecretvalue"), "{audit}");
    assert!(audit.contains("MY_TOKEN="), "{audit}");
    let redactions: Vec<serde_json::Value> = ws
        .journal("t")
        .into_iter()
        .filter(|e| e["event"] == "redaction")
        .collect();
    assert!(!redactions.is_empty());
    let kinds: Vec<&str> = redactions
        .iter()
        .filter_map(|e| e["data"]["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"anthropic-key"), "{kinds:?}");
    assert!(kinds.contains(&"assignment"), "{kinds:?}");
    let journal = ws.read(".ai-stack-trace/t/ledger.jsonl");
    assert!(!journal.contains("abcdefghijklmnopqrstuvwx"));
    assert!(!journal.contains("supersecretvalue"));
    ws.gk(&["verify", "t"]).expect(0);
}

#[test]
fn secrets_in_check_output_are_redacted_from_run_log() {
    let ws = Ws::with_task(
        "version: 1\nchecks:\n  - { name: leaky, run: \"echo API_SECRET=hunter2hunter2; echo ghp_abcdefghijklmnopqrstuvwxyz0123456789\" }\n",
        PATCH_PROMPT,
    );
    ws.steps_to("t", 5);
    let log = ws.read(".ai-stack-trace/t/tests/run.log");
    assert!(log.contains("[REDACTED"), "{log}");
    assert!(!log.contains("hunter2hunter2"), "{log}");
    assert!(
        !log.contains("ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
        "{log}"
    );
    assert!(ws.events("t").contains(&"redaction".to_owned()));
}

#[test]
fn an_agent_that_hangs_is_stopped_by_its_timeout_with_exit_1() {
    let ws = Ws::new();
    let script = ws.script("slow.sh", "exec sleep 30\n");
    ws.config(&format!(
        "{PATCH_CONFIG}roles:\n  gemini: {{ provider: command, argv: [\"sh\", \"{script}\"], timeout: 200ms }}\n"
    ));
    ws.commit("config");
    ws.prompt("t", PATCH_PROMPT);
    ws.steps_to("t", 0);
    let run = ws.gk(&["step", "1", "t"]).expect(1);
    assert!(run.stderr.contains("timed out"), "{}", run.stderr);
    assert!(!ws.exists(".ai-stack-trace/t/gemini/audit.md"));
}
