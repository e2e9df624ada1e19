//! The nine steps of the default pipeline, one `gatekeeper step N t` at a time (SPEC §2): what
//! each step writes, the contracts, the commit of step 8 and its idempotency.

use crate::support::{PATCH_PROMPT, Ws};

const LEDGER: &str = ".ai-stack-trace/t";

fn ledger(rel: &str) -> String {
    format!("{LEDGER}/{rel}")
}

/// The files of the ledger, relative to it, sorted.
fn ledger_files(ws: &Ws) -> Vec<String> {
    ws.snapshot_tree(LEDGER)
        .into_iter()
        .map(|(p, _)| p.trim_start_matches(&format!("{LEDGER}/")).to_owned())
        .collect()
}

#[test]
fn step_0_creates_the_ledger_folders_the_journal_and_a_byte_copy_of_the_prompt() {
    let ws = Ws::with_patch_task();
    let run = ws.gk(&["step", "0", "t"]).expect(0);
    assert!(run.stdout.contains("step 0 `ingest`"), "{}", run.stdout);
    for folder in [
        "inputs", "gemini", "claude", "codex", "tests", "contract", "final",
    ] {
        assert!(ws.path(&ledger(folder)).is_dir(), "missing {folder}/");
    }
    assert_eq!(ledger_files(&ws), ["inputs/prompt.md", "ledger.jsonl"]);
    assert_eq!(ws.read(&ledger("inputs/prompt.md")), PATCH_PROMPT);
    let journal = ws.journal("t");
    assert_eq!(journal[0]["seq"], 0);
    let correlation = journal[0]["correlation_id"].as_str().expect("id");
    assert!(!correlation.is_empty());
    for (i, e) in journal.iter().enumerate() {
        assert_eq!(e["seq"], i);
        assert_eq!(e["task"], "t");
        assert_eq!(e["correlation_id"], correlation);
        assert_eq!(e["prev"].is_null(), i == 0, "line {i}");
    }
    let events = ws.events("t");
    assert!(events.contains(&"task_started".to_owned()), "{events:?}");
    let base = journal
        .iter()
        .find(|e| e["event"] == "task_started")
        .and_then(|e| e["data"]["base_commit"].as_str())
        .expect("base commit");
    assert_eq!(base, ws.head());
}

#[test]
fn step_1_writes_the_audit() {
    let ws = Ws::with_patch_task();
    ws.steps_to("t", 1);
    assert_eq!(
        ledger_files(&ws),
        ["gemini/audit.md", "inputs/prompt.md", "ledger.jsonl"]
    );
    let audit = ws.read(&ledger("gemini/audit.md"));
    assert!(audit.contains("`src/greeting.txt`: exists"), "{audit}");
}

#[test]
fn step_2_writes_the_decisions_and_the_decisions_contract() {
    let ws = Ws::with_patch_task();
    ws.steps_to("t", 2);
    let decisions = ws.read(&ledger("claude/decisions.md"));
    assert!(
        decisions.ends_with("CLAUDE_DECISIONS_OK: YES\n"),
        "{decisions}"
    );
    assert_eq!(
        ws.read(&ledger("contract/CLAUDE_DECISIONS_OK")),
        "CLAUDE_DECISIONS_OK:t\n"
    );
    assert!(ws.events("t").contains(&"contract_written".to_owned()));
    assert!(!ws.exists(&ledger("contract/CLAUDE_FINAL_OK")));
}

#[test]
fn step_3_writes_the_plan() {
    let ws = Ws::with_patch_task();
    ws.steps_to("t", 3);
    let plan = ws.read(&ledger("codex/plan.md"));
    assert!(plan.contains("`src/greeting.txt`"), "{plan}");
    assert_eq!(ws.read("src/greeting.txt"), "Hello, world!\n");
}

#[test]
fn step_4_applies_the_patch_and_writes_apply_md() {
    let ws = Ws::with_patch_task();
    ws.steps_to("t", 3);
    let run = ws.gk(&["step", "4", "t"]).expect(0);
    assert!(
        run.stdout.contains("patched `src/greeting.txt`"),
        "{}",
        run.stdout
    );
    assert_eq!(ws.read("src/greeting.txt"), "Hello, gatekeeper!\n");
    assert!(ws.read(&ledger("codex/apply.md")).contains("```diff"));
    let events = ws.events("t");
    assert!(events.contains(&"patch_applied".to_owned()), "{events:?}");
    assert!(events.contains(&"scope_checked".to_owned()), "{events:?}");
    // The scope check journals the change set's digest and size; the set itself is step 4's
    // `diff_snapshot` (and, once approved, the `approved` event).
    let checked = ws
        .journal("t")
        .into_iter()
        .find(|e| e["event"] == "scope_checked")
        .expect("scope_checked");
    assert_eq!(checked["data"]["ok"], true);
    assert_eq!(checked["data"]["changed_paths"], 1);
    assert!(checked["data"].get("change_set").is_none(), "{checked}");
    let result: serde_json::Value =
        serde_json::from_str(&ws.read(&ledger("codex/task_result.json"))).expect("json");
    assert_eq!(checked["data"]["digest"], result["diff_snapshot"]["digest"]);
}

#[test]
fn step_5_runs_the_checks_into_run_log() {
    let ws = Ws::with_patch_task();
    ws.steps_to("t", 5);
    let log = ws.read(&ledger("tests/run.log"));
    assert!(log.contains("=== attempt 1 ==="), "{log}");
    assert!(
        log.contains("$ grep -q 'Hello, gatekeeper!' src/greeting.txt"),
        "{log}"
    );
    assert!(log.contains("exit: 0"), "{log}");
    assert!(log.contains("duration_ms: "), "{log}");
    assert!(!ws.exists(&ledger("codex/fix-1.md")));
}

#[test]
fn step_6_writes_the_review_the_verdict_json_and_the_final_contract() {
    let ws = Ws::with_patch_task();
    ws.steps_to("t", 6);
    let review = ws.read(&ledger("claude/post-implement-audit.md"));
    assert!(review.ends_with("CLAUDE_FINAL_OK: YES\n"), "{review}");
    let verdict: serde_json::Value =
        serde_json::from_str(&ws.read(&ledger("claude/verdict.json"))).expect("json");
    assert_eq!(verdict["decision"], "approve");
    assert_eq!(
        ws.read(&ledger("contract/CLAUDE_FINAL_OK")),
        "CLAUDE_FINAL_OK:t\n"
    );
    let approved = ws
        .journal("t")
        .into_iter()
        .find(|e| e["event"] == "approved")
        .expect("an approved event");
    let paths = approved["data"]["change_set"]["paths"]
        .as_array()
        .expect("paths")
        .clone();
    assert_eq!(paths.len(), 1, "{paths:?}");
    assert_eq!(paths[0]["path"], "src/greeting.txt");
    // Beside the sha256, the git blob id of the same bytes, which `ci` compares with the PR's tree.
    let bytes = std::fs::read(ws.path("src/greeting.txt")).expect("greeting");
    assert_eq!(
        paths[0]["sha256"],
        gatekeeper::hash::sha256_hex(&bytes).as_str()
    );
    let blob = git2::Oid::hash_object(git2::ObjectType::Blob, &bytes).expect("blob id");
    assert_eq!(paths[0]["oid"], blob.to_string().as_str());
}

#[test]
fn step_7_writes_the_final_verification() {
    let ws = Ws::with_patch_task();
    ws.steps_to("t", 7);
    assert!(
        ws.read(&ledger("gemini/final-verify.md"))
            .starts_with("# Final verification")
    );
    assert!(!ws.exists(&ledger("final/status.json")));
}

#[test]
fn step_8_commits_the_change_then_the_ledger_and_leaves_the_tree_clean() {
    let ws = Ws::with_patch_task();
    let base = ws.head();
    ws.steps_to("t", 8);
    let log = ws.log();
    assert_eq!(log[0], "gatekeeper(t): ledger of step 8 `commit`\n");
    assert_eq!(log[1], "gatekeeper(t): Greet gatekeeper\n");
    assert_eq!(ws.git_status(), Vec::<String>::new());

    let repo = git2::Repository::open(ws.root()).expect("open");
    let change = repo
        .head()
        .expect("head")
        .peel_to_commit()
        .expect("commit")
        .parent(0)
        .expect("the change commit");
    assert_eq!(change.parent(0).expect("base").id().to_string(), base);
    let blob = change
        .tree()
        .expect("tree")
        .get_path(std::path::Path::new("src/greeting.txt"))
        .expect("greeting in the commit")
        .to_object(&repo)
        .expect("blob");
    assert_eq!(
        blob.as_blob().expect("blob").content(),
        b"Hello, gatekeeper!\n"
    );
    // The change commit carries the prompt and the ledger too.
    let tree = change.tree().expect("tree");
    assert!(
        tree.get_path(std::path::Path::new("docs/ai-gated/prompt/t.md"))
            .is_ok()
    );
    assert!(
        tree.get_path(std::path::Path::new(".ai-stack-trace/t/ledger.jsonl"))
            .is_ok()
    );

    let status: serde_json::Value =
        serde_json::from_str(&ws.read(&ledger("final/status.json"))).expect("json");
    let keys: Vec<&str> = status
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["commitSha", "context", "deployId", "deployUrl", "timestamp"]
    );
    assert_eq!(status["commitSha"], change.id().to_string());
    assert_eq!(status["context"], "no-deploy");
    assert!(status["deployUrl"].is_null());
    assert!(status["deployId"].is_null());
    let ts = status["timestamp"].as_str().expect("timestamp");
    assert!(
        ts.parse::<jiff::Timestamp>().is_ok() && ts.ends_with('Z'),
        "{ts}"
    );
    ws.gk(&["verify", "t"]).expect(0);
}

#[test]
fn every_step_in_order_ends_with_all_steps_done() {
    let ws = Ws::with_patch_task();
    ws.steps_to("t", 8);
    let st = ws.status_json("t");
    let states: Vec<&str> = st["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["state"].as_str().expect("state"))
        .collect();
    assert_eq!(states, ["done"; 9]);
    assert!(st["next"].is_null());
    let journal = ws.journal("t");
    for (i, e) in journal.iter().enumerate() {
        assert_eq!(e["seq"], i, "{e}");
        assert_eq!(e["correlation_id"], st["correlation_id"], "{e}");
    }
    for step in 0..=8 {
        let events: Vec<&str> = journal
            .iter()
            .filter(|e| e["step"] == step)
            .map(|e| e["event"].as_str().expect("event"))
            .collect();
        assert_eq!(
            events.first(),
            Some(&"step_started"),
            "step {step}: {events:?}"
        );
        assert_eq!(
            events.last(),
            Some(&"step_finished"),
            "step {step}: {events:?}"
        );
    }
    let run = ws.gk(&["status", "t"]).expect(0);
    assert!(run.stdout.contains("all steps done"), "{}", run.stdout);
}

fn change_commits(ws: &Ws) -> usize {
    ws.log()
        .iter()
        .filter(|m| m.starts_with("gatekeeper(t): Greet"))
        .count()
}

#[test]
fn step_8_run_twice_makes_one_change_commit() {
    let ws = Ws::with_patch_task();
    ws.gk(&["run", "t", "--to", "7"]).expect(0);
    ws.gk(&["step", "8", "t"]).expect(0);
    let first = ws.read(&ledger("final/status.json"));
    ws.gk(&["step", "8", "t"]).expect(0);
    assert_eq!(change_commits(&ws), 1, "{:?}", ws.log());
    let second = ws.read(&ledger("final/status.json"));
    let sha =
        |s: &str| serde_json::from_str::<serde_json::Value>(s).expect("json")["commitSha"].clone();
    assert_eq!(sha(&first), sha(&second));
    assert_eq!(ws.git_status(), Vec::<String>::new());
    ws.gk(&["verify", "t"]).expect(0);
}

/// A crash after the change commit and before `committed` was journalled: the journal ends with
/// `commit_intent`, HEAD is the change commit. Re-running step 8 finds that commit.
#[test]
fn step_8_after_a_crash_between_commit_and_journal_finds_its_own_commit() {
    let ws = Ws::with_patch_task();
    ws.gk(&["run", "t", "--to", "7"]).expect(0);
    ws.gk(&["step", "8", "t"]).expect(0);
    let lines = ws.journal_lines("t");
    let intent = ws
        .events("t")
        .iter()
        .position(|e| e == "commit_intent")
        .expect("commit_intent");
    ws.write_journal("t", &lines[..=intent]);
    ws.remove(&ledger("final/status.json"));
    // The local head would (rightly) call the cut journal truncated; this machine "crashed"
    // before writing the later lines, so its head is the intent line.
    std::fs::remove_file(ws.path(".git/gatekeeper/heads/t")).expect("remove head");
    let repo = git2::Repository::open(ws.root()).expect("open");
    let change = repo
        .head()
        .expect("head")
        .peel_to_commit()
        .expect("commit")
        .parent(0)
        .expect("change commit");
    repo.reset(change.as_object(), git2::ResetType::Soft, None)
        .expect("reset");

    ws.gk(&["step", "8", "t"]).expect(0);
    assert_eq!(change_commits(&ws), 1, "{:?}", ws.log());
    let committed = ws
        .journal("t")
        .into_iter()
        .rev()
        .find(|e| e["event"] == "committed")
        .expect("committed");
    assert_eq!(committed["data"]["recovered"], true);
    assert_eq!(committed["data"]["commit"], change.id().to_string());
    ws.gk(&["verify", "t"]).expect(0);
}

#[test]
fn a_successful_step_is_quiet_on_stderr_when_not_on_a_terminal() {
    let ws = Ws::with_patch_task();
    let run = ws.gk(&["run", "t"]).expect(0);
    assert_eq!(run.stderr, "", "no spinner or messages off a terminal");
}

#[test]
fn the_journal_records_hashes_timestamps_and_provider_calls() {
    let ws = Ws::with_patch_task();
    ws.steps_to("t", 1);
    let journal = ws.journal("t");
    for e in &journal {
        let ts = e["ts"].as_str().expect("ts");
        assert!(
            ts.ends_with('Z') && ts.parse::<jiff::Timestamp>().is_ok(),
            "{ts}"
        );
    }
    let lines = ws.journal_lines("t");
    for (i, e) in journal.iter().enumerate().skip(1) {
        assert_eq!(
            e["prev"],
            gatekeeper::hash::sha256_hex(lines[i - 1].as_bytes()),
            "line {i}"
        );
    }
    let written = journal
        .iter()
        .find(|e| e["event"] == "file_written" && e["files"].get("gemini/audit.md").is_some())
        .expect("file_written for the audit");
    assert_eq!(
        written["files"]["gemini/audit.md"],
        gatekeeper::hash::sha256_hex(ws.read(&ledger("gemini/audit.md")).as_bytes())
    );
    let call = journal
        .iter()
        .find(|e| e["event"] == "provider_call")
        .expect("provider_call");
    assert_eq!(call["step"], 1);
    for key in [
        "provider",
        "duration_ms",
        "tokens_in",
        "tokens_out",
        "attempts",
    ] {
        assert!(call["data"].get(key).is_some(), "no `{key}` in {call}");
    }
    assert_eq!(call["data"]["provider"], "standin");
}

/// A deploy command that appends each call to a log outside the repository.
fn deploy_task(run: &str) -> (Ws, std::path::PathBuf) {
    let ws = Ws::new();
    let calls = ws.scratch("deploys.log");
    ws.config(&format!(
        "{}deploy: {{ run: \"echo $GATEKEEPER_COMMIT >> '{}'; {run}\", context: staging }}\n",
        crate::support::PATCH_CONFIG,
        calls.display()
    ));
    ws.commit("config");
    ws.prompt("t", PATCH_PROMPT);
    (ws, calls)
}

#[test]
fn step_8_deploys_once_and_records_the_url() {
    let (ws, calls) = deploy_task("echo deployed to https://example.invalid/d/42");
    ws.gk(&["run", "t"]).expect(0);
    let status: serde_json::Value =
        serde_json::from_str(&ws.read(&ledger("final/status.json"))).expect("json");
    assert_eq!(status["deployUrl"], "https://example.invalid/d/42");
    assert_eq!(status["context"], "staging");
    ws.gk(&["step", "8", "t"]).expect(0);
    let deploys = std::fs::read_to_string(calls).expect("deploy log");
    assert_eq!(deploys.lines().count(), 1, "deployed twice: {deploys}");
    assert_eq!(deploys.trim(), status["commitSha"]);
    ws.gk(&["verify", "t"]).expect(0);
}

#[test]
fn a_failed_deploy_is_exit_1_with_deploy_error_log_and_no_status() {
    let (ws, _) = deploy_task("echo 'quota exceeded' >&2; exit 3");
    ws.gk(&["run", "t", "--to", "7"]).expect(0);
    let run = ws.gk(&["step", "8", "t"]).expect(1);
    assert!(run.stderr.contains("deploy"), "{}", run.stderr);
    assert!(
        ws.read(&ledger("final/deploy-error.log"))
            .contains("quota exceeded")
    );
    assert!(!ws.exists(&ledger("final/status.json")));
    assert_eq!(ws.state("t", 8), "failed");
    ws.gk(&["verify", "t"]).expect(0);
}

/// The deploy command kills gatekeeper itself (`kill -9 $PPID`) after the deploy started: the
/// outcome is never journalled, so a re-run must not deploy a second time.
#[test]
fn a_deploy_whose_outcome_was_lost_is_never_repeated() {
    let (ws, calls) = deploy_task("kill -9 $PPID");
    ws.gk(&["run", "t", "--to", "7"]).expect(0);
    let killed = ws.gk(&["step", "8", "t"]);
    assert_eq!(killed.code, -1, "killed by a signal: {killed:?}");
    assert_eq!(ws.state("t", 8), "interrupted");
    ws.gk(&["verify", "t"]).expect(0);
    let run = ws.gk(&["step", "8", "t"]).expect(1);
    assert!(run.stderr.contains("never deploys twice"), "{}", run.stderr);
    assert!(run.stderr.contains("hint:"), "{}", run.stderr);
    let deploys = std::fs::read_to_string(calls).expect("deploy log");
    assert_eq!(deploys.lines().count(), 1, "deployed twice: {deploys}");
    assert_eq!(change_commits(&ws), 1, "{:?}", ws.log());
}

#[test]
fn run_on_a_finished_task_skips_every_step_and_changes_nothing() {
    let ws = Ws::with_patch_task();
    ws.gk(&["run", "t"]).expect(0);
    let head = ws.head();
    let journal = ws.journal_lines("t");
    let run = ws.gk(&["run", "t"]).expect(0);
    assert_eq!(
        run.stdout.matches("done and fresh; skipped").count(),
        9,
        "{}",
        run.stdout
    );
    assert_eq!(ws.head(), head);
    assert_eq!(ws.journal_lines("t"), journal);
}

#[test]
fn gatekeeper_finds_the_workspace_from_a_subdirectory() {
    let ws = Ws::with_patch_task();
    let run = ws
        .cmd(&["run", "t"])
        .current_dir(ws.path("src"))
        .output()
        .expect("run");
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(ws.exists(".ai-stack-trace/t/final/status.json"));
    assert!(!ws.exists("src/.ai-stack-trace"));
}

#[test]
fn a_patch_that_adds_and_deletes_files_is_committed_as_approved() {
    let ws = Ws::new();
    ws.file("src/old.txt", "to be removed\n");
    ws.config("version: 1\n");
    ws.commit("old file");
    ws.prompt(
        "t",
        "# Replace old with new

## Allowed paths

- `src/old.txt`
- `src/new.txt`

```diff
diff --git a/src/old.txt b/src/old.txt
deleted file mode 100644
--- a/src/old.txt
+++ /dev/null
@@ -1 +0,0 @@
-to be removed
```

```diff
diff --git a/src/new.txt b/src/new.txt
new file mode 100644
--- /dev/null
+++ b/src/new.txt
@@ -0,0 +1 @@
+brand new
```
",
    );
    ws.gk(&["run", "t"]).expect(0);
    assert!(!ws.exists("src/old.txt"));
    assert_eq!(ws.read("src/new.txt"), "brand new\n");
    assert_eq!(ws.git_status(), Vec::<String>::new());
    let repo = git2::Repository::open(ws.root()).expect("open");
    let change = repo
        .head()
        .expect("head")
        .peel_to_commit()
        .expect("commit")
        .parent(0)
        .expect("change commit");
    assert_eq!(
        change.message().expect("utf-8"),
        "gatekeeper(t): Replace old with new\n"
    );
    let tree = change.tree().expect("tree");
    assert!(tree.get_path(std::path::Path::new("src/old.txt")).is_err());
    assert!(tree.get_path(std::path::Path::new("src/new.txt")).is_ok());
    ws.gk(&["verify", "t"]).expect(0);
}
