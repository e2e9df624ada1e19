//! Snapshots of what a user reads (STYLE §4.12): help texts, the status table, refusals. Exit
//! code, stdout and stderr together, with timestamps, hashes, commit ids and uuids filtered.

use crate::gk_snapshot;
use crate::support::{PATCH_CONFIG, Ws};

#[test]
fn help() {
    let ws = Ws::new();
    gk_snapshot!("help", None, ws.gk(&["--help"]));
}

#[test]
fn step_help() {
    let ws = Ws::new();
    gk_snapshot!("step_help", None, ws.gk(&["step", "--help"]));
}

#[test]
fn status_of_a_finished_task() {
    let ws = Ws::with_patch_task();
    ws.gk(&["run", "t"]).expect(0);
    gk_snapshot!(Some(&ws), ws.gk(&["status", "t"]), @r#"
        exit_code: 0 (done)
        ----- stdout -----
        task t  (pipeline ai-stack-trace)
        correlation id [ID]
        base commit [COMMIT]

        STEP  NAME                  ROLE    STATE           TOKENS IN/OUT
        0     ingest                system  done            -
        1     audit                 gemini  done            -
        2     decisions             claude  done            -
        3     plan                  codex   done            -
        4     implement             codex   done            -
        5     test                  codex   done            -
        6     post-implement-audit  claude  done            -
        7     final-verify          gemini  done            -
        8     commit                system  done            -

        contracts: CLAUDE_DECISIONS_OK, CLAUDE_FINAL_OK
        tokens: 0 in, 0 out
        commit: [COMMIT]
        all steps done

        ----- stderr -----
        "#);
}

#[test]
fn status_of_a_task_waiting_for_its_decisions() {
    let ws = Ws::with_task(PATCH_CONFIG, "# No scope here\n\nJust do it.\n");
    ws.steps_to("t", 1);
    ws.gk(&["step", "2", "t"]).expect(4);
    gk_snapshot!(Some(&ws), ws.gk(&["status", "t"]), @r#"
        exit_code: 0 (done)
        ----- stdout -----
        task t  (pipeline ai-stack-trace)
        correlation id [ID]
        base commit [COMMIT]

        STEP  NAME                  ROLE    STATE           TOKENS IN/OUT
        0     ingest                system  done            -
        1     audit                 gemini  done            -
        2     decisions             claude  no              -
              ↳ the reviewer said NO (`claude/decisions.md`); no contract was written
        3     plan                  codex   pending         -
        4     implement             codex   pending         -
        5     test                  codex   pending         -
        6     post-implement-audit  claude  pending         -
        7     final-verify          gemini  pending         -
        8     commit                system  pending         -

        contracts: none
        tokens: 0 in, 0 out
        next: gatekeeper step 2 t

        ----- stderr -----
        "#);
}

#[test]
fn step_3_before_step_2() {
    let ws = Ws::with_patch_task();
    ws.steps_to("t", 1);
    gk_snapshot!(Some(&ws), ws.gk(&["step", "3", "t"]), @r#"
        exit_code: 3 (gate-closed)
        ----- stdout -----

        ----- stderr -----
        error: step 3 `plan` needs step 2 `decisions` done and fresh, but it is pending

        hint: run `gatekeeper step 2 t`
        "#);
}

#[test]
fn step_2_prints_the_approved_scope() {
    let ws = Ws::with_patch_task();
    ws.steps_to("t", 1);
    gk_snapshot!(Some(&ws), ws.gk(&["step", "2", "t"]), @r#"
        exit_code: 0 (done)
        ----- stdout -----
        step 2 `decisions`: wrote `claude/decisions.md`; YES: `contract/CLAUDE_DECISIONS_OK` written
          allowed: `src/greeting.txt`
          forbidden: `README.md`

        ----- stderr -----
        "#);
}

#[test]
fn a_bad_task_name() {
    let ws = Ws::new();
    gk_snapshot!(Some(&ws), ws.gk(&["step", "0", "../x"]), @r#"
        exit_code: 2 (usage)
        ----- stdout -----

        ----- stderr -----
        error: invalid task name `../x`: a task name is 1 to 64 characters of `a-z`, `0-9`, `.`, `_`, `-`, starts with a letter or digit and never contains `..`

        hint: pick a name such as `fix-login-2`
        "#);
}

#[test]
fn an_unknown_configuration_key() {
    let ws = Ws::new();
    ws.config("version: 1\nreview_roundz: 3\n");
    gk_snapshot!(Some(&ws), ws.gk(&["status"]), @r#"
        exit_code: 2 (usage)
        ----- stdout -----

        ----- stderr -----
        error: [WS]/gatekeeper.yaml:2:1: unknown field `review_roundz`, expected one of `version`, `pipeline`, `roles`, `checks`, `fix_attempts`, `review_rounds`, `require_human_approval`, `scope`, `deploy`, `ci`, `audit`, `trust`, `server`, `requires_reports` at `review_roundz`

        hint: fix the key or value; `gatekeeper init` writes a commented example
        "#);
}

#[test]
fn verify_of_an_edited_ledger_file() {
    let ws = Ws::with_patch_task();
    ws.gk(&["run", "t"]).expect(0);
    ws.file(".ai-stack-trace/t/gemini/audit.md", "edited\n");
    gk_snapshot!(Some(&ws), ws.gk(&["verify", "t"]), @r#"
        exit_code: 7 (integrity)
        ----- stdout -----
        FAIL .ai-stack-trace/t/gemini/audit.md: the file differs from the sha256 the journal recorded (edited after it was written)
        1 integrity finding(s) in the ledger of `t`

        ----- stderr -----
        "#);
}

#[test]
fn redaction_never_reaches_a_snapshot() {
    let ws = Ws::new();
    let script = ws.agent(
        "gemini.sh",
        &[(
            "audit",
            crate::support::heredoc("# Audit\n\nkey sk-ant-api03-abcdefghijklmnopqrstuvwx\n"),
        )],
    );
    ws.config(&format!(
        "{PATCH_CONFIG}roles:\n  gemini: {{ provider: command, argv: [\"sh\", \"{script}\"] }}\n"
    ));
    ws.commit("config");
    ws.prompt("t", crate::support::PATCH_PROMPT);
    ws.steps_to("t", 0);
    ws.gk(&["step", "1", "t"]).expect(0);
    let audit = crate::support::Run {
        code: 0,
        stdout: ws.read(".ai-stack-trace/t/gemini/audit.md"),
        stderr: String::new(),
    };
    gk_snapshot!(Some(&ws), audit, @r#"
        exit_code: 0 (done)
        ----- stdout -----
        # Audit

        key [REDACTED:anthropic-key]

        ----- stderr -----
        "#);
}
