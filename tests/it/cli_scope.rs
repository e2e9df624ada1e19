//! Step 4 and the scope check (SPEC §2 "Step 4 patches", §3): patches apply all or nothing
//! (exit 1 otherwise), a change outside the approved paths is exit 5 with the tree left as it is,
//! and `gatekeeper scope` shows each path's verdict and the glob that decided it.

use crate::support::{PATCH_CONFIG, PATCH_PROMPT, Ws, heredoc};

const GREETING_DIFF: &str = "```diff
--- a/src/greeting.txt
+++ b/src/greeting.txt
@@ -1 +1 @@
-Hello, world!
+Hello, gatekeeper!
```
";

const README_DIFF: &str = "```diff
--- a/README.md
+++ b/README.md
@@ -1 +1 @@
-# sample
+# sample, improved
```
";

const NEW_FILE_DIFF: &str = "```diff
diff --git a/notes/extra.txt b/notes/extra.txt
new file mode 100644
--- /dev/null
+++ b/notes/extra.txt
@@ -0,0 +1 @@
+an extra file
```
";

/// A prompt approving `src/greeting.txt`, forbidding `README.md`, carrying `diffs`.
fn prompt_with(diffs: &[&str]) -> String {
    format!(
        "# Greet gatekeeper\n\n## Allowed paths\n\n- `src/greeting.txt`\n\n## Forbidden\n\n- `README.md`\n\n{}",
        diffs.join("\n")
    )
}

fn overreaching_task() -> Ws {
    let ws = Ws::with_task(
        PATCH_CONFIG,
        &prompt_with(&[GREETING_DIFF, README_DIFF, NEW_FILE_DIFF]),
    );
    ws.steps_to("t", 3);
    ws
}

#[test]
fn a_patch_outside_the_approved_paths_is_exit_5_and_the_tree_is_left_as_is() {
    let ws = overreaching_task();
    let run = ws.gk(&["step", "4", "t"]).refused(5);
    assert!(run.stderr.contains("scope violation"), "{}", run.stderr);
    assert!(run.stderr.contains("`README.md`"), "{}", run.stderr);
    assert!(run.stderr.contains("`notes/extra.txt`"), "{}", run.stderr);
    assert!(run.stderr.contains("gatekeeper scope t"), "{}", run.stderr);
    // Left for inspection: nothing reverted.
    assert_eq!(ws.read("README.md"), "# sample, improved\n");
    assert_eq!(ws.read("notes/extra.txt"), "an extra file\n");
    assert_eq!(ws.read("src/greeting.txt"), "Hello, gatekeeper!\n");
    assert!(ws.exists(".ai-stack-trace/t/codex/apply.md"));
    let status = ws.gk(&["status", "t"]).expect(0);
    assert!(
        status
            .stdout
            .lines()
            .any(|l| l.starts_with("4 ") && l.contains("scope-violation")),
        "{}",
        status.stdout
    );
    let run = ws.gk(&["step", "5", "t"]).refused(3);
    assert!(run.stderr.contains("scope-violation"), "{}", run.stderr);
}

#[test]
fn scope_lists_forbidden_and_out_of_scope_paths_with_their_globs() {
    let ws = overreaching_task();
    ws.gk(&["step", "4", "t"]).expect(5);
    let run = ws.gk(&["scope", "t"]).expect(5);
    let line = |path: &str| {
        run.stdout
            .lines()
            .find(|l| l.starts_with(path))
            .unwrap_or_else(|| panic!("no line for {path}:\n{}", run.stdout))
            .to_owned()
    };
    let readme = line("README.md");
    assert!(
        readme.contains("FORBIDDEN") && readme.contains("`README.md`"),
        "{readme}"
    );
    let extra = line("notes/extra.txt");
    assert!(
        extra.contains("OUT OF SCOPE") && extra.contains("no allowed glob matches"),
        "{extra}"
    );
    let greeting = line("src/greeting.txt");
    assert!(
        greeting.contains("allowed") && greeting.contains("`src/greeting.txt`"),
        "{greeting}"
    );
    assert!(
        run.stdout.contains("3 path(s), 1 in scope, 2 not"),
        "{}",
        run.stdout
    );
}

#[test]
fn scope_json_has_the_documented_fields() {
    let ws = overreaching_task();
    ws.gk(&["step", "4", "t"]).expect(5);
    let run = ws.gk(&["scope", "t", "--json"]).expect(5);
    let json: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    let keys: Vec<&str> = json
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["allowed", "forbidden", "ok", "paths", "task"]);
    assert_eq!(json["task"], "t");
    assert_eq!(json["ok"], false);
    assert_eq!(json["allowed"], serde_json::json!(["src/greeting.txt"]));
    assert_eq!(json["forbidden"], serde_json::json!(["README.md"]));
    let paths = json["paths"].as_array().expect("paths");
    for p in paths {
        let keys: Vec<&str> = p
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["deleted", "glob", "path", "verdict"]);
    }
    let verdicts: Vec<(&str, &str, Option<&str>)> = paths
        .iter()
        .map(|p| {
            (
                p["path"].as_str().expect("path"),
                p["verdict"].as_str().expect("verdict"),
                p["glob"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        verdicts,
        [
            ("README.md", "forbidden", Some("README.md")),
            ("notes/extra.txt", "out_of_scope", None),
            ("src/greeting.txt", "allowed", Some("src/greeting.txt")),
        ]
    );
}

#[test]
fn scope_marks_a_deleted_path() {
    let ws = Ws::with_patch_task();
    ws.steps_to("t", 2);
    ws.remove("README.md");
    let run = ws.gk(&["scope", "t"]).expect(5);
    let readme = run
        .stdout
        .lines()
        .find(|l| l.starts_with("README.md"))
        .expect("README.md line");
    assert!(
        readme.contains("FORBIDDEN") && readme.contains("(deleted)"),
        "{readme}"
    );
}

#[test]
fn scope_honours_double_star_globs() {
    let prompt = "# Anything under src\n\n## Allowed paths\n\n- `src/**`\n\n## Forbidden\n\n- `src/secret/**`\n";
    let ws = Ws::with_task(PATCH_CONFIG, prompt);
    ws.steps_to("t", 2);
    ws.file("src/deep/er/new.txt", "new\n");
    let run = ws.gk(&["scope", "t"]).expect(0);
    assert!(run.stdout.contains("`src/**`"), "{}", run.stdout);
    ws.file("src/secret/key.txt", "nope\n");
    let run = ws.gk(&["scope", "t"]).expect(5);
    assert!(run.stdout.contains("`src/secret/**`"), "{}", run.stdout);
}

#[test]
fn scope_before_the_decisions_is_a_closed_gate() {
    let ws = Ws::with_patch_task();
    ws.steps_to("t", 1);
    ws.gk(&["scope", "t"]).refused(3);
}

#[test]
fn scope_of_a_task_without_a_ledger_is_a_usage_error() {
    let ws = Ws::with_patch_task();
    ws.gk(&["scope", "t"]).expect(2);
}

#[test]
fn a_patch_that_does_not_apply_is_exit_1_and_changes_nothing() {
    let stale_diff = GREETING_DIFF.replace("-Hello, world!", "-Hello, moon!");
    let ws = Ws::with_task(PATCH_CONFIG, &prompt_with(&[&stale_diff]));
    ws.steps_to("t", 3);
    let before = ws.snapshot_tree("src");
    let run = ws.gk(&["step", "4", "t"]).expect(1);
    assert!(run.stderr.contains("does not apply"), "{}", run.stderr);
    assert!(before == ws.snapshot_tree("src"), "the tree changed");
    assert!(!ws.exists(".ai-stack-trace/t/codex/apply.md"));
    assert_eq!(ws.state("t", 4), "failed");
    assert!(
        ws.git_status()
            .iter()
            .all(|p| p.starts_with(".ai-stack-trace/")
                || p.starts_with("docs/")
                || p.starts_with("ssot/")),
        "{:?}",
        ws.git_status()
    );
}

#[test]
fn patches_apply_all_or_nothing() {
    let stale_readme = README_DIFF.replace("-# sample", "-# something else");
    let ws = Ws::with_task(PATCH_CONFIG, &prompt_with(&[GREETING_DIFF, &stale_readme]));
    ws.steps_to("t", 3);
    let run = ws.gk(&["step", "4", "t"]).expect(1);
    assert!(run.stderr.contains("block 2"), "{}", run.stderr);
    assert_eq!(ws.read("src/greeting.txt"), "Hello, world!\n");
    assert_eq!(ws.read("README.md"), "# sample\n");
    assert!(!ws.exists(".ai-stack-trace/t/codex/apply.md"));
}

#[test]
fn a_patch_escaping_the_work_tree_is_refused() {
    let escape = "```diff
--- a/../outside.txt
+++ b/../outside.txt
@@ -0,0 +1 @@
+escaped
```
";
    let ws = Ws::with_task(PATCH_CONFIG, &prompt_with(&[escape]));
    ws.steps_to("t", 3);
    let run = ws.gk(&["step", "4", "t"]);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(!ws.root().join("../outside.txt").exists());
    assert!(!ws.exists(".ai-stack-trace/t/codex/apply.md"));
}

// ----- agents (the `command` provider edits the tree itself) -----------------------------

fn scripted_codex(implement: String) -> Ws {
    let ws = Ws::new();
    let script = ws.agent("codex.sh", &[("implement", implement)]);
    ws.config(&format!(
        "{PATCH_CONFIG}roles:\n  codex: {{ provider: command, argv: [\"sh\", \"{script}\"] }}\n"
    ));
    ws.commit("config");
    ws.prompt("t", PATCH_PROMPT);
    ws.steps_to("t", 3);
    ws
}

#[test]
fn an_agent_editing_outside_the_approved_paths_is_exit_5() {
    let ws = scripted_codex(format!(
        "printf 'Hello, gatekeeper!\\n' > src/greeting.txt\nprintf 'oops\\n' > stray.txt\n{}",
        heredoc("# Apply\n\nEdited the greeting.\n")
    ));
    let run = ws.gk(&["step", "4", "t"]).refused(5);
    assert!(run.stderr.contains("`stray.txt`"), "{}", run.stderr);
    assert_eq!(ws.read("stray.txt"), "oops\n");
}

#[test]
fn an_agent_answer_with_diff_blocks_is_not_applied_by_gatekeeper() {
    let ws = scripted_codex(heredoc(&format!(
        "{}# Apply\n\nHere is the patch:\n\n{GREETING_DIFF}",
        crate::support::PATCH_ACK
    )));
    let run = ws.gk(&["step", "4", "t"]).expect(0);
    assert!(run.stdout.contains("0 changed path(s)"), "{}", run.stdout);
    assert_eq!(ws.read("src/greeting.txt"), "Hello, world!\n");
    assert!(!ws.events("t").contains(&"patch_applied".to_owned()));
}

#[test]
fn an_agent_editing_inside_the_approved_paths_runs_to_the_end() {
    let ws = scripted_codex(format!(
        "printf 'Hello, gatekeeper!\\n' > src/greeting.txt\n{}",
        heredoc(&format!(
            "{}# Apply\n\nEdited the greeting.\n",
            crate::support::PATCH_ACK
        ))
    ));
    ws.gk(&["run", "t"]).expect(0);
    assert_eq!(ws.read("src/greeting.txt"), "Hello, gatekeeper!\n");
    ws.gk(&["verify", "t"]).expect(0);
}

/// After a scope violation the hint says to revert the offending paths; `status` then names
/// `gatekeeper step 4 t` as the next command. Re-running step 4 must recognise the in-scope
/// block already in the tree (regression: it failed with exit 1, "```diff block 1 does not
/// apply", leaving the task stuck). The same patch still leaves the scope, so it ends with 5
/// again; amending the scope (step 2) or the prompt is the way on.
#[test]
fn reverting_the_offending_paths_as_hinted_lets_step_4_run_again() {
    let ws = Ws::with_task(PATCH_CONFIG, &prompt_with(&[GREETING_DIFF, README_DIFF]));
    ws.steps_to("t", 3);
    let run = ws.gk(&["step", "4", "t"]).expect(5);
    assert!(run.stderr.contains("revert those paths"), "{}", run.stderr);
    assert!(run.stderr.contains("gatekeeper step 2 t"), "{}", run.stderr);
    ws.file("README.md", "# sample\n");
    assert_eq!(ws.status_json("t")["next"], "gatekeeper step 4 t");
    let run = ws.gk(&["step", "4", "t"]).expect(5);
    assert!(run.stderr.contains("`README.md`"), "{}", run.stderr);
    assert_eq!(ws.read("src/greeting.txt"), "Hello, gatekeeper!\n");
}
