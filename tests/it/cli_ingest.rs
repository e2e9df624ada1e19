//! Step 0's prerequisites (SPEC §2): the prompt exists and is not empty, the repository has a
//! commit, the working tree is clean apart from the prompt and `.ai-stack-trace/`. Each refusal
//! is exit 3 and creates no ledger.

use crate::support::{PATCH_PROMPT, Ws};

#[track_caller]
fn step_0_refused(ws: &Ws) -> String {
    let run = ws.gk(&["step", "0", "t"]).expect(3);
    assert!(run.stderr.contains("error:"), "{}", run.stderr);
    assert!(run.stderr.contains("hint:"), "{}", run.stderr);
    assert!(
        !ws.exists(".ai-stack-trace"),
        "a refused step 0 created the ledger"
    );
    run.stderr
}

#[test]
fn an_untracked_file_makes_the_tree_dirty() {
    let ws = Ws::with_patch_task();
    ws.file("notes.txt", "scratch\n");
    let stderr = step_0_refused(&ws);
    assert!(stderr.contains("not clean"), "{stderr}");
    assert!(stderr.contains("`notes.txt`"), "{stderr}");
}

#[test]
fn a_modified_tracked_file_makes_the_tree_dirty() {
    let ws = Ws::with_patch_task();
    ws.file("README.md", "# changed\n");
    let stderr = step_0_refused(&ws);
    assert!(stderr.contains("`README.md`"), "{stderr}");
}

#[test]
fn the_prompt_and_other_ledgers_do_not_make_the_tree_dirty() {
    let ws = Ws::with_patch_task();
    ws.file(".ai-stack-trace/other/notes.md", "another task's ledger\n");
    ws.gk(&["step", "0", "t"]).expect(0);
}

#[test]
fn a_missing_prompt_is_refused_with_the_command_that_writes_one() {
    let ws = Ws::new();
    let stderr = step_0_refused(&ws);
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(stderr.contains("gatekeeper new t"), "{stderr}");
}

#[test]
fn an_empty_prompt_is_refused() {
    let ws = Ws::new();
    ws.prompt("t", "  \n\n");
    let stderr = step_0_refused(&ws);
    assert!(stderr.contains("is empty"), "{stderr}");
}

#[test]
fn a_repository_without_a_commit_is_refused() {
    let ws = Ws::empty();
    ws.prompt("t", PATCH_PROMPT);
    let stderr = step_0_refused(&ws);
    assert!(stderr.contains("no commit"), "{stderr}");
}

#[test]
fn re_ingesting_a_changed_prompt_keeps_the_correlation_id() {
    let ws = Ws::with_patch_task();
    ws.steps_to("t", 0);
    let id = ws.status_json("t")["correlation_id"].clone();
    ws.prompt("t", &format!("{PATCH_PROMPT}\nAlso: be brief.\n"));
    ws.gk(&["step", "0", "t"]).expect(0);
    assert_eq!(ws.status_json("t")["correlation_id"], id);
    assert!(
        ws.read(".ai-stack-trace/t/inputs/prompt.md")
            .ends_with("be brief.\n")
    );
}
