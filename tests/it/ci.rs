//! `gatekeeper ci` on pull requests built in temporary repositories (issue 4).

use crate::support::{PATCH_CONFIG, Ws};

/// The commit HEAD points at.
pub(crate) fn head(ws: &Ws) -> String {
    let repo = git2::Repository::open(ws.root()).unwrap();
    repo.head()
        .unwrap()
        .peel_to_commit()
        .unwrap()
        .id()
        .to_string()
}

/// A second task creating `src/other.txt`.
pub(crate) const OTHER_PROMPT: &str = "# Add another file\n\n## Allowed paths\n\n- `src/other.txt`\n\n```diff\n--- /dev/null\n+++ b/src/other.txt\n@@ -0,0 +1 @@\n+second\n```\n";

/// A repository whose base is the configured sample and whose HEAD carries a governed task `t`;
/// returns the base commit.
pub(crate) fn governed(config: &str) -> (Ws, String) {
    let ws = Ws::new();
    ws.config(config);
    let base = ws.commit("config");
    ws.prompt("t", crate::support::PATCH_PROMPT);
    ws.gk(&["run", "t"]).expect(0);
    (ws, base)
}

fn ci(ws: &Ws, base: &str) -> crate::support::Run {
    ws.gk(&["ci", "--base", base])
}

#[test]
fn a_clean_governed_pr_passes() {
    let (ws, base) = governed(PATCH_CONFIG);
    let run = ci(&ws, &base).expect(0);
    assert!(run.stdout.contains("t (ok)"), "{}", run.stdout);
}

#[test]
fn a_file_outside_the_approved_paths_fails() {
    let (ws, base) = governed(PATCH_CONFIG);
    ws.file("src/extra.txt", "sneaked in\n");
    ws.commit("extra");
    let run = ci(&ws, &base).expect(5);
    assert!(run.stdout.contains("src/extra.txt"), "{}", run.stdout);
}

#[test]
fn a_file_edited_after_approval_fails_with_the_line() {
    let (ws, base) = governed(PATCH_CONFIG);
    ws.file("src/greeting.txt", "Hello, attacker!\n");
    ws.commit("later edit");
    let run = ws
        .gk(&["ci", "--base", &base, "--format", "github"])
        .expect(7);
    assert!(
        run.stdout.contains(
            "::error file=src/greeting.txt,line=1,title=gatekeeper%3A edited after approval::"
        ),
        "{}",
        run.stdout
    );
}

/// A ledger written before change sets carried git object ids, as a fresh clone sees it (no local
/// journal head): the gate falls back to reading the blobs and comparing sha256, so such a PR
/// still passes and an edit after approval still fails.
#[test]
fn a_ledger_without_object_ids_is_compared_by_content() {
    let (ws, base) = governed(PATCH_CONFIG);
    crate::tamper::rechain(&ws, |entries| {
        for e in entries.iter_mut().filter(|e| e["event"] == "approved") {
            for p in e["data"]["change_set"]["paths"].as_array_mut().unwrap() {
                assert!(p.as_object_mut().unwrap().remove("oid").is_some());
            }
        }
    });
    std::fs::remove_file(ws.path(".git/gatekeeper/heads/t")).unwrap();
    ws.commit("the ledger as an older gatekeeper wrote it");
    ci(&ws, &base).expect(0);
    ws.file("src/greeting.txt", "Hello, attacker!\n");
    ws.commit("later edit");
    let run = ci(&ws, &base).expect(7);
    assert!(
        run.stdout.contains("edited after approval"),
        "{}",
        run.stdout
    );
}

/// The object id recorded at approval decides: a PR whose blob differs from it fails even though
/// path and mode are unchanged, and restoring the approved bytes passes again.
#[test]
fn the_approved_object_id_binds_the_content() {
    let (ws, base) = governed(PATCH_CONFIG);
    let approved = ws.read("src/greeting.txt");
    ws.file("src/greeting.txt", &approved.replace('!', "?"));
    ws.commit("same length, other bytes");
    ci(&ws, &base).expect(7);
    ws.file("src/greeting.txt", &approved);
    ws.commit("back to the approved bytes");
    ci(&ws, &base).expect(0);
}

#[test]
fn a_forged_contract_fails() {
    let ws = Ws::new();
    ws.config(PATCH_CONFIG);
    let base = ws.commit("config");
    ws.prompt("t", crate::support::PATCH_PROMPT);
    ws.gk(&["run", "t", "--to", "5"]).expect(0);
    ws.file(
        ".ai-stack-trace/t/contract/CLAUDE_FINAL_OK",
        "CLAUDE_FINAL_OK:t\n",
    );
    ws.commit("pretend it was approved");
    let run = ci(&ws, &base).expect(7);
    assert!(run.stdout.contains("forged contract"), "{}", run.stdout);
}

#[test]
fn an_edited_decisions_file_fails() {
    let (ws, base) = governed(PATCH_CONFIG);
    let d = ws
        .read(".ai-stack-trace/t/claude/decisions.md")
        .replace("- `src/greeting.txt`", "- `**`");
    ws.file(".ai-stack-trace/t/claude/decisions.md", &d);
    ws.commit("widen the scope");
    let run = ci(&ws, &base).expect(7);
    assert!(run.stdout.contains("claude/decisions.md"), "{}", run.stdout);
}

#[test]
fn a_deleted_journal_line_fails_with_its_line() {
    let (ws, base) = governed(PATCH_CONFIG);
    let journal = ws.read(".ai-stack-trace/t/ledger.jsonl");
    let kept: Vec<&str> = journal
        .lines()
        .enumerate()
        .filter(|(i, _)| *i != 5)
        .map(|(_, l)| l)
        .collect();
    ws.file(".ai-stack-trace/t/ledger.jsonl", &(kept.join("\n") + "\n"));
    ws.commit("drop a line");
    let run = ws
        .gk(&["ci", "--base", &base, "--format", "github"])
        .expect(7);
    assert!(
        run.stdout
            .contains("file=.ai-stack-trace/t/ledger.jsonl,line=6"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_pr_with_code_and_no_task_fails() {
    let ws = Ws::new();
    let base = ws.commit("nothing");
    ws.file("src/greeting.txt", "Hello, nobody asked!\n");
    ws.commit("ungoverned");
    let run = ci(&ws, &base).expect(5);
    assert!(
        run.stdout.contains("carries no gatekeeper task"),
        "{}",
        run.stdout
    );
}

#[test]
fn an_exempt_only_pr_passes() {
    let ws = Ws::new();
    ws.config("version: 1\nci: { exempt: [\"docs/**\"] }\n");
    let base = ws.commit("config");
    ws.file("docs/guide.md", "# Guide\n");
    ws.commit("docs only");
    ci(&ws, &base).expect(0);
}

#[test]
fn a_rename_out_of_scope_fails_on_both_sides() {
    let (ws, base) = governed(PATCH_CONFIG);
    std::fs::rename(ws.path("README.md"), ws.path("src/README.md")).unwrap();
    ws.commit("move the readme");
    let run = ci(&ws, &base).expect(5);
    assert!(run.stdout.contains("`README.md`"), "{}", run.stdout);
    assert!(run.stdout.contains("`src/README.md`"), "{}", run.stdout);
}

#[test]
fn a_pr_carrying_two_tasks_passes() {
    let (ws, base) = governed(PATCH_CONFIG);
    ws.prompt("u", OTHER_PROMPT);
    ws.gk(&["run", "u"]).expect(0);
    let run = ci(&ws, &base).expect(0);
    assert!(run.stdout.contains("t (ok), u (ok)"), "{}", run.stdout);
}

#[test]
fn policy_comes_from_the_base_revision() {
    let (ws, base) = governed(PATCH_CONFIG);
    ws.config(&format!("{PATCH_CONFIG}ci: {{ exempt: [\"**\"] }}\n"));
    ws.file("src/extra.txt", "sneaked in\n");
    ws.commit("loosen exempt in the PR itself");
    let run = ci(&ws, &base).expect(5);
    assert!(run.stdout.contains("src/extra.txt"), "{}", run.stdout);
    assert!(
        run.stdout.contains("gatekeeper.yaml"),
        "the config change itself needs a task: {}",
        run.stdout
    );
}

/// The PR's own gatekeeper.yaml is not policy (SPEC §6): a broken one is an ungoverned change
/// judged under the base's policy, not a configuration error of the gate.
#[test]
fn a_broken_config_in_the_pr_is_judged_by_the_base_policy() {
    let (ws, base) = governed(PATCH_CONFIG);
    ws.config("version: 1\nnot_a_key: true\n");
    ws.commit("break the config");
    let run = ci(&ws, &base).expect(5);
    assert!(run.stdout.contains("gatekeeper.yaml"), "{}", run.stdout);
}

#[test]
fn json_format_and_step_summary() {
    let (ws, base) = governed(PATCH_CONFIG);
    ws.file("src/extra.txt", "x\n");
    ws.commit("extra");
    let summary = ws.path("../summary.md");
    let out = ws
        .cmd(&["ci", "--base", &base, "--format", "json"])
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["exit"], 5);
    assert_eq!(v["findings"][0]["file"], "src/extra.txt");
    assert_eq!(v["tasks"][0]["task"], "t");
    let md = std::fs::read_to_string(summary).unwrap();
    assert!(
        md.contains("## gatekeeper ci") && md.contains("src/extra.txt"),
        "{md}"
    );
}

#[test]
fn github_base_ref_and_detached_head() {
    let (ws, base) = governed(PATCH_CONFIG);
    let repo = git2::Repository::open(ws.root()).unwrap();
    repo.reference(
        "refs/remotes/origin/main",
        git2::Oid::from_str(&base).unwrap(),
        true,
        "test",
    )
    .unwrap();
    let head = repo.head().unwrap().peel_to_commit().unwrap().id();
    repo.set_head_detached(head).unwrap();
    let out = ws
        .cmd(&["ci"])
        .env("GITHUB_BASE_REF", "main")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_missing_base_names_the_fetch() {
    let (ws, _) = governed(PATCH_CONFIG);
    let run = ws.gk(&["ci"]).expect(2);
    assert!(
        run.stderr.contains("`origin/main` is not in this clone")
            && run.stderr.contains("git fetch origin main"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_shallow_clone_without_the_merge_base_says_how_to_deepen() {
    let (ws, base) = governed(PATCH_CONFIG);
    let clone = ws.path("../shallow");
    let url = format!("file://{}", ws.root().display());
    let status = std::process::Command::new("git")
        .args(["clone", "-q", "--depth", "1", &url])
        .arg(&clone)
        .env("HOME", ws.path("../home"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .status()
        .unwrap();
    assert!(status.success());
    // The base commit object is known only by id; fetch it shallowly so it resolves.
    let status = std::process::Command::new("git")
        .args(["fetch", "-q", "--depth", "1", "origin", &base])
        .current_dir(&clone)
        .env("HOME", ws.path("../home"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .status()
        .unwrap();
    assert!(status.success());
    let out = ws
        .cmd(&["-C", clone.to_str().unwrap(), "ci", "--base", &base])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("shallow clone") && stderr.contains("--deepen"),
        "{stderr}"
    );
}

#[test]
fn selftest_rejects_every_canary() {
    let ws = Ws::new();
    let run = ws.gk(&["selftest"]).expect(0);
    assert!(run.stdout.contains("0 not as expected"), "{}", run.stdout);
    assert!(
        run.stdout.lines().filter(|l| l.ends_with(" ok")).count() >= 10,
        "{}",
        run.stdout
    );
}

#[test]
fn pre_commit_verifies_staged_ledgers() {
    let ws = Ws::with_patch_task();
    ws.gk(&["run", "t", "--to", "7"]).expect(0);
    let repo = git2::Repository::open(ws.root()).unwrap();
    let mut index = repo.index().unwrap();
    index
        .add_all([".ai-stack-trace"], git2::IndexAddOption::DEFAULT, None)
        .unwrap();
    index.write().unwrap();
    let run = ws.gk(&["verify", "--staged"]).expect(0);
    assert!(
        run.stdout.contains("ok: ledger of `t` verified"),
        "{}",
        run.stdout
    );
    ws.file(".ai-stack-trace/t/gemini/audit.md", "rewritten\n");
    ws.gk(&["verify", "--staged"]).expect(7);
    ws.gk(&["verify"]).expect(2);
}
