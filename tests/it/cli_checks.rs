//! Step 5, the test and fix loop (SPEC §2): every attempt goes to `tests/run.log`, each fix to
//! `codex/fix-<N>.md`; still failing after `fix_attempts` is exit 6.

use crate::support::{PATCH_PROMPT, Ws, heredoc};

const FAILING: &str = "version: 1\nfix_attempts: 1\nchecks:\n  - { name: never, run: \"echo 'boom: 1 test failed'; exit 1\" }\n";

#[test]
fn a_check_that_always_fails_is_exit_6_after_the_fix_attempts() {
    let ws = Ws::with_task(FAILING, PATCH_PROMPT);
    ws.steps_to("t", 4);
    let run = ws.gk(&["step", "5", "t"]).refused(6);
    assert!(run.stderr.contains("never"), "{}", run.stderr);
    assert!(run.stderr.contains("gatekeeper step 5 t"), "{}", run.stderr);
    let log = ws.read(".ai-stack-trace/t/tests/run.log");
    assert!(log.contains("=== attempt 1 ==="), "{log}");
    assert!(log.contains("=== attempt 2 ==="), "{log}");
    assert!(!log.contains("=== attempt 3 ==="), "{log}");
    let outputs = log.lines().filter(|l| *l == "boom: 1 test failed").count();
    assert_eq!(outputs, 2, "{log}");
    assert_eq!(log.matches("exit: 1").count(), 2, "{log}");
    assert!(log.contains("--- FAILED"), "{log}");
    assert!(ws.exists(".ai-stack-trace/t/codex/fix-1.md"));
    assert!(!ws.exists(".ai-stack-trace/t/codex/fix-2.md"));
    assert_eq!(
        ws.events("t").iter().filter(|e| *e == "checks_run").count(),
        2
    );
    ws.gk(&["step", "6", "t"]).refused(3);
}

#[test]
fn run_stops_at_the_failing_checks_with_exit_6() {
    let ws = Ws::with_task(FAILING, PATCH_PROMPT);
    ws.gk(&["run", "t"]).expect(6);
    assert!(!ws.exists(".ai-stack-trace/t/claude/post-implement-audit.md"));
    assert!(!ws.exists(".ai-stack-trace/t/contract/CLAUDE_FINAL_OK"));
}

#[test]
fn no_checks_configured_passes_and_says_so_in_the_log() {
    let ws = Ws::with_task("version: 1\n", PATCH_PROMPT);
    ws.steps_to("t", 5);
    let log = ws.read(".ai-stack-trace/t/tests/run.log");
    assert!(log.contains("no checks are configured"), "{log}");
}

#[test]
fn a_fix_by_the_agent_makes_the_checks_pass_on_the_next_attempt() {
    let ws = Ws::new();
    let script = ws.agent(
        "codex.sh",
        &[
            (
                "implement",
                format!(
                    "printf 'Hello, gatekeeper!\\n' > src/greeting.txt\n{}",
                    heredoc(&format!(
                        "{}# Apply\n\nEdited.\n",
                        crate::support::PATCH_ACK
                    ))
                ),
            ),
            (
                "fix",
                format!(
                    "printf 'Hello, fixed gatekeeper!\\n' > src/greeting.txt\n{}",
                    heredoc("# Fix\n\nMade the greeting say fixed.\n")
                ),
            ),
        ],
    );
    ws.config(&format!(
        "version: 1\nfix_attempts: 2\nchecks:\n  - {{ name: fixed, run: \"grep -q fixed src/greeting.txt\" }}\nroles:\n  codex: {{ provider: command, argv: [\"sh\", \"{script}\"] }}\n"
    ));
    ws.commit("config");
    ws.prompt("t", PATCH_PROMPT);
    ws.steps_to("t", 4);
    let run = ws.gk(&["step", "5", "t"]).expect(0);
    assert!(run.stdout.contains("passed on attempt 2"), "{}", run.stdout);
    let log = ws.read(".ai-stack-trace/t/tests/run.log");
    assert!(
        log.contains("=== attempt 1: 0 passed, 1 failed ==="),
        "{log}"
    );
    assert!(
        log.contains("=== attempt 2: 1 passed, 0 failed ==="),
        "{log}"
    );
    assert_eq!(
        ws.read(".ai-stack-trace/t/codex/fix-1.md"),
        "# Fix\n\nMade the greeting say fixed.\n"
    );
    ws.gk(&["run", "t"]).expect(0);
    ws.gk(&["verify", "t"]).expect(0);
}

#[test]
fn a_fix_that_leaves_the_approved_paths_is_exit_5() {
    let ws = Ws::new();
    let script = ws.agent(
        "codex.sh",
        &[
            (
                "implement",
                heredoc(&format!(
                    "{}# Apply\n\nNothing.\n",
                    crate::support::PATCH_ACK
                )),
            ),
            (
                "fix",
                format!(
                    "printf 'changed\\n' > README.md\n{}",
                    heredoc("# Fix\n\nTouched the README.\n")
                ),
            ),
        ],
    );
    ws.config(&format!(
        "{FAILING}roles:\n  codex: {{ provider: command, argv: [\"sh\", \"{script}\"] }}\n"
    ));
    ws.commit("config");
    ws.prompt("t", PATCH_PROMPT);
    ws.steps_to("t", 4);
    let run = ws.gk(&["step", "5", "t"]).refused(5);
    assert!(run.stderr.contains("`README.md`"), "{}", run.stderr);
    assert!(ws.exists(".ai-stack-trace/t/codex/fix-1.md"));
}

#[test]
fn changing_the_checks_makes_step_5_stale() {
    let ws = Ws::with_patch_task();
    ws.steps_to("t", 5);
    ws.config(
        "version: 1\nscope: { always_allowed: [gatekeeper.yaml] }\nchecks:\n  - { name: other, run: \"true\" }\n",
    );
    let run = ws.gk(&["step", "6", "t"]).refused(3);
    assert!(run.stderr.contains("stale"), "{}", run.stderr);
    assert!(run.stderr.contains("gatekeeper step 5 t"), "{}", run.stderr);
}
