//! Gate refusals (SPEC §2, §5): exit 3, an `error:` and a `hint:` naming the fixing command, and
//! nothing written to the ledger.

use crate::support::{DECISIONS_YES, PATCH_CONFIG, PATCH_PROMPT, Ws, heredoc};

const LEDGER: &str = ".ai-stack-trace";

/// Runs `args`, expects a gate refusal with `code`, and checks that the ledger is unchanged.
#[track_caller]
fn refused_without_writing(ws: &Ws, args: &[&str], code: i32) -> crate::support::Run {
    let before = ws.snapshot_tree(LEDGER);
    let run = ws.gk(args).refused(code);
    assert!(
        before == ws.snapshot_tree(LEDGER),
        "`gatekeeper {}` wrote to the ledger although refused",
        args.join(" ")
    );
    run
}

#[test]
fn step_3_before_step_2_is_refused() {
    let ws = Ws::with_patch_task();
    ws.steps_to("t", 1);
    let run = refused_without_writing(&ws, &["step", "3", "t"], 3);
    assert!(run.stderr.contains("step 2 `decisions`"), "{}", run.stderr);
    assert!(run.stderr.contains("gatekeeper step 2 t"), "{}", run.stderr);
}

#[test]
fn step_1_on_a_task_never_ingested_is_refused() {
    let ws = Ws::with_patch_task();
    let run = refused_without_writing(&ws, &["step", "1", "t"], 3);
    assert!(run.stderr.contains("not been ingested"), "{}", run.stderr);
    assert!(run.stderr.contains("gatekeeper step 0 t"), "{}", run.stderr);
    assert!(!ws.exists(LEDGER));
}

#[test]
fn a_later_step_names_the_first_open_step_with_run_to() {
    let ws = Ws::with_patch_task();
    ws.steps_to("t", 0);
    let run = refused_without_writing(&ws, &["step", "5", "t"], 3);
    assert!(run.stderr.contains("step 4 `implement`"), "{}", run.stderr);
    assert!(
        run.stderr.contains("hint: run `gatekeeper run t --to 4`"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_step_whose_predecessor_said_no_is_refused() {
    // The prompt lists no allowed path: the stand-in decisions say NO.
    let ws = Ws::with_task(PATCH_CONFIG, "# Do something\n\nNo scope given.\n");
    ws.steps_to("t", 1);
    ws.gk(&["step", "2", "t"]).expect(4);
    let run = refused_without_writing(&ws, &["step", "3", "t"], 3);
    assert!(run.stderr.contains("but it is no"), "{}", run.stderr);
    assert!(run.stderr.contains("gatekeeper step 2 t"), "{}", run.stderr);
}

#[test]
fn a_step_whose_predecessor_failed_is_refused() {
    let ws = Ws::new();
    let failing = ws.script("fail.sh", "echo 'the agent broke' >&2\nexit 9\n");
    ws.config(&format!(
        "{PATCH_CONFIG}roles:\n  gemini: {{ provider: command, argv: [\"sh\", \"{failing}\"] }}\n"
    ));
    ws.commit("config");
    ws.prompt("t", PATCH_PROMPT);
    ws.steps_to("t", 0);
    let run = ws.gk(&["step", "1", "t"]).expect(1);
    assert!(run.stderr.contains("code 9"), "{}", run.stderr);
    assert!(!ws.exists(".ai-stack-trace/t/gemini/audit.md"));
    assert_eq!(ws.state("t", 1), "failed");
    let run = refused_without_writing(&ws, &["step", "2", "t"], 3);
    assert!(run.stderr.contains("failed"), "{}", run.stderr);
    assert!(run.stderr.contains("gatekeeper step 1 t"), "{}", run.stderr);
}

#[test]
fn editing_the_prompt_after_step_0_makes_step_0_stale() {
    let ws = Ws::with_patch_task();
    ws.steps_to("t", 0);
    ws.prompt("t", &format!("{PATCH_PROMPT}\nOne more thing.\n"));
    assert_eq!(ws.state("t", 0), "stale");
    let run = refused_without_writing(&ws, &["step", "1", "t"], 3);
    assert!(run.stderr.contains("stale"), "{}", run.stderr);
    assert!(
        run.stderr.contains("docs/ai-gated/prompt/t.md"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("gatekeeper step 0 t"), "{}", run.stderr);
    // Re-ingesting opens the gate again.
    ws.gk(&["step", "0", "t"]).expect(0);
    ws.gk(&["step", "1", "t"]).expect(0);
}

/// A `claude` agent whose decisions change on every call (a counter outside the repository), so
/// a re-run of step 2 amends the scope.
fn amending_claude(ws: &Ws) -> String {
    let counter = ws.scratch("decisions.count");
    let counter = counter.display();
    let snippet = format!(
        "n=$(cat '{counter}' 2>/dev/null || echo 0)\nn=$((n+1))\necho $n > '{counter}'\necho \"Revision $n\"\n{}",
        heredoc(DECISIONS_YES)
    );
    let script = ws.agent("claude.sh", &[("decisions", snippet)]);
    format!(
        "{PATCH_CONFIG}roles:\n  claude: {{ provider: command, argv: [\"sh\", \"{script}\"] }}\n"
    )
}

#[test]
fn re_running_step_2_makes_step_3_stale() {
    let ws = Ws::new();
    ws.config(&amending_claude(&ws));
    ws.commit("config");
    ws.prompt("t", PATCH_PROMPT);
    ws.steps_to("t", 3);
    ws.gk(&["step", "2", "t"]).expect(0);
    assert_eq!(ws.state("t", 2), "done");
    assert_eq!(ws.state("t", 3), "stale");
    let run = refused_without_writing(&ws, &["step", "4", "t"], 3);
    assert!(run.stderr.contains("step 3 `plan`"), "{}", run.stderr);
    assert!(run.stderr.contains("stale"), "{}", run.stderr);
    assert!(run.stderr.contains("claude/decisions.md"), "{}", run.stderr);
    assert!(run.stderr.contains("gatekeeper step 3 t"), "{}", run.stderr);
    ws.gk(&["step", "3", "t"]).expect(0);
    ws.gk(&["step", "4", "t"]).expect(0);
}

#[test]
fn a_template_override_makes_its_step_stale() {
    let ws = Ws::with_patch_task();
    ws.steps_to("t", 3);
    ws.file(
        "prompts/plan.md.j2",
        "Plan task {{ task }} in the allowed paths only.\n",
    );
    assert_eq!(ws.state("t", 3), "stale");
    let run = refused_without_writing(&ws, &["step", "4", "t"], 3);
    assert!(run.stderr.contains("step 3 `plan`"), "{}", run.stderr);
    assert!(run.stderr.contains("plan"), "{}", run.stderr);
    assert!(run.stderr.contains("gatekeeper step 3 t"), "{}", run.stderr);
    ws.gk(&["step", "3", "t"]).expect(0);
    assert_eq!(ws.state("t", 3), "done");
}

#[test]
fn a_stale_step_makes_every_later_step_stale() {
    let ws = Ws::with_patch_task();
    ws.steps_to("t", 5);
    ws.file("prompts/audit.md.j2", "Audit {{ task }}.\n");
    let st = ws.status_json("t");
    let states: Vec<&str> = st["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["state"].as_str().expect("state"))
        .collect();
    assert_eq!(
        states,
        [
            "done", "stale", "stale", "stale", "stale", "stale", "pending", "pending", "pending"
        ]
    );
    assert_eq!(st["next"], "gatekeeper step 1 t");
}

#[test]
fn a_deleted_decisions_contract_is_an_integrity_failure_at_the_next_gate() {
    let ws = Ws::with_patch_task();
    ws.steps_to("t", 3);
    ws.remove(".ai-stack-trace/t/contract/CLAUDE_DECISIONS_OK");
    let before = ws.snapshot_tree(LEDGER);
    let run = ws.gk(&["step", "4", "t"]).expect(7);
    assert!(run.stderr.contains("error:"), "{}", run.stderr);
    assert!(run.stderr.contains("CLAUDE_DECISIONS_OK"), "{}", run.stderr);
    assert!(before == ws.snapshot_tree(LEDGER));
    ws.gk(&["verify", "t"]).expect(7);
}

#[test]
fn run_skips_done_and_fresh_steps() {
    let ws = Ws::with_patch_task();
    ws.steps_to("t", 3);
    let journal = ws.journal_lines("t").len();
    let run = ws.gk(&["run", "t", "--to", "3"]).expect(0);
    assert!(run.stdout.contains("skipped"), "{}", run.stdout);
    assert_eq!(ws.journal_lines("t").len(), journal);
}

/// Re-ingesting an unchanged prompt withdraws every contract (a re-run withdraws the contracts of
/// its step and all later ones), so the steps that earned them cannot still count as done: `run`
/// must re-run them instead of skipping them into a closed gate. Bug: steps 1–3 stay `done`,
/// `next` says step 4, and `run` stops with exit 3 at step 4 ("needs
/// `contract/CLAUDE_DECISIONS_OK`").
#[test]
fn run_after_re_ingesting_an_unchanged_prompt_completes() {
    let ws = Ws::with_patch_task();
    ws.gk(&["run", "t", "--to", "3"]).expect(0);
    ws.gk(&["step", "0", "t"]).expect(0);
    let st = ws.status_json("t");
    assert_ne!(st["next"], "gatekeeper step 4 t", "{st}");
    ws.gk(&["run", "t"]).expect(0);
    assert_eq!(
        ws.read(".ai-stack-trace/t/contract/CLAUDE_FINAL_OK"),
        "CLAUDE_FINAL_OK:t\n"
    );
}

#[test]
fn a_tree_changed_after_the_checks_makes_step_5_stale() {
    let ws = Ws::with_patch_task();
    ws.steps_to("t", 5);
    ws.file("src/greeting.txt", "Hello, gatekeeper!!\n");
    let run = refused_without_writing(&ws, &["step", "6", "t"], 3);
    assert!(run.stderr.contains("working tree"), "{}", run.stderr);
    assert!(run.stderr.contains("gatekeeper step 5 t"), "{}", run.stderr);
    assert!(!ws.exists(".ai-stack-trace/t/contract/CLAUDE_FINAL_OK"));
}
