//! Test support: a temporary git workspace builder and a runner for the built binary with a clean
//! environment (no user git config, no API keys, no `GATEKEEPER_*` leaking in).

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::cargo::cargo_bin;

/// A prompt whose task carries its own patch: the stand-ins run it end to end.
pub const PATCH_PROMPT: &str = r"# Greet gatekeeper

Change the greeting in `src/greeting.txt`.

## Acceptance criteria

- AC-1: `src/greeting.txt` says `Hello, gatekeeper!`

## Allowed paths

- `src/greeting.txt`

## Forbidden

- `README.md`

```diff
--- a/src/greeting.txt
+++ b/src/greeting.txt
@@ -1 +1 @@
-Hello, world!
+Hello, gatekeeper!
```
";

/// The SPEC §10 ACK and work log a step 4 answer to [`PATCH_PROMPT`] begins with.
pub const PATCH_ACK: &str = "## ACK\n\n- AC-1: `src/greeting.txt` says `Hello, gatekeeper!`\n- scope: `src/greeting.txt`\n\n## Work log\n\n- W-1: edited `src/greeting.txt`\n\n";

/// The configuration used with [`PATCH_PROMPT`]: stand-ins and one check that passes after the patch.
pub const PATCH_CONFIG: &str = "version: 1\nchecks:\n  - { name: greeting, run: \"grep -q 'Hello, gatekeeper!' src/greeting.txt\" }\n";

/// A temporary git repository with an isolated HOME.
pub struct Ws {
    dir: tempfile::TempDir,
}

/// What a command gave back.
#[derive(Debug)]
pub struct Run {
    /// Exit code.
    pub code: i32,
    /// stdout.
    pub stdout: String,
    /// stderr.
    pub stderr: String,
}

impl Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Panics with both streams unless the exit code is `code`.
    #[track_caller]
    pub fn expect(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "expected exit {code}, got {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }
}

impl Ws {
    /// An empty repository (no commit).
    pub fn empty() -> Ws {
        let dir = tempfile::Builder::new()
            .prefix("gk-test-")
            .tempdir()
            .expect("tempdir");
        std::fs::create_dir_all(dir.path().join("home")).expect("home");
        std::fs::create_dir_all(dir.path().join("repo")).expect("repo");
        let repo = git2::Repository::init(dir.path().join("repo")).expect("git init");
        let mut cfg = repo.config().expect("config");
        cfg.set_str("user.name", "Test").expect("user.name");
        cfg.set_str("user.email", "test@example.invalid")
            .expect("user.email");
        Ws { dir }
    }

    /// A repository with `README.md` and `src/greeting.txt` committed.
    pub fn new() -> Ws {
        let ws = Ws::empty();
        ws.file("README.md", "# sample\n");
        ws.file("src/greeting.txt", "Hello, world!\n");
        ws.commit("initial");
        ws
    }

    /// [`Ws::new`] plus [`PATCH_CONFIG`] committed and [`PATCH_PROMPT`] as task `t`.
    pub fn with_patch_task() -> Ws {
        let ws = Ws::new();
        ws.config(PATCH_CONFIG);
        ws.commit("config");
        ws.prompt("t", PATCH_PROMPT);
        ws
    }

    /// The repository root.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    /// An absolute path inside the repository.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    /// Writes a file (creating folders).
    pub fn file(&self, rel: &str, text: &str) -> &Ws {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
        self
    }

    /// Reads a file.
    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    /// True when the path exists.
    pub fn exists(&self, rel: &str) -> bool {
        self.path(rel).exists()
    }

    /// Writes `gatekeeper.yaml`.
    pub fn config(&self, yaml: &str) -> &Ws {
        self.file("gatekeeper.yaml", yaml)
    }

    /// Writes a task prompt.
    pub fn prompt(&self, task: &str, text: &str) -> &Ws {
        self.file(&format!("docs/ai-gated/prompt/{task}.md"), text)
    }

    /// Stages everything and commits; returns the commit id.
    pub fn commit(&self, message: &str) -> String {
        let repo = git2::Repository::open(self.root()).expect("open");
        let mut index = repo.index().expect("index");
        index
            .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
            .expect("add");
        index.update_all(["*"], None).expect("update");
        index.write().expect("write index");
        let tree = repo
            .find_tree(index.write_tree().expect("tree"))
            .expect("find tree");
        let sig = git2::Signature::now("Test", "test@example.invalid").expect("sig");
        let parents: Vec<git2::Commit<'_>> = repo
            .head()
            .ok()
            .and_then(|h| h.peel_to_commit().ok())
            .into_iter()
            .collect();
        let parents: Vec<&git2::Commit<'_>> = parents.iter().collect();
        repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
            .expect("commit")
            .to_string()
    }

    /// The `gatekeeper` command in this workspace with a clean environment.
    pub fn cmd(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(cargo_bin!("gatekeeper"));
        cmd.args(args)
            .current_dir(self.root())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path().join("home"))
            .env("XDG_CONFIG_HOME", self.dir.path().join("home"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("LANG", "C");
        cmd
    }

    /// Runs `gatekeeper` with `args` and returns what it gave.
    pub fn gk(&self, args: &[&str]) -> Run {
        Run::from(self.cmd(args).output().expect("run gatekeeper"))
    }

    /// The ledger folder of a task, relative.
    pub fn ledger(task: &str) -> String {
        format!(".ai-stack-trace/{task}")
    }

    /// Every file under `dir` (relative to the repository), sorted, with contents.
    pub fn snapshot_tree(&self, dir: &str) -> Vec<(String, Vec<u8>)> {
        let base = self.path(dir);
        let mut out = Vec::new();
        if base.exists() {
            for e in walkdir::WalkDir::new(&base).sort_by_file_name() {
                let e = e.expect("walk");
                if e.file_type().is_file() {
                    let rel = e
                        .path()
                        .strip_prefix(self.root())
                        .expect("rel")
                        .to_string_lossy()
                        .into_owned();
                    out.push((rel, std::fs::read(e.path()).expect("read")));
                }
            }
        }
        out
    }
}

/// True when `path` exists.
pub fn exists(path: &Path) -> bool {
    path.exists()
}

// ----- helpers for the CLI suites (tests/it/cli_*.rs) ---------------------------------------

/// decisions that approve `src/greeting.txt` and forbid `README.md`, for scripted `claude` roles.
pub const DECISIONS_YES: &str = "# Decisions

## Allowed paths

- `src/greeting.txt`

## Forbidden

- `README.md`

Schema changes required: NO

CLAUDE_DECISIONS_OK: YES
";

/// A post-implementation review that says YES.
pub const REVIEW_YES: &str = "# Post-implementation audit

## Issues

- none

CLAUDE_FINAL_OK: YES
";

/// A post-implementation review that says NO with one issue.
pub const REVIEW_NO: &str = "# Post-implementation audit

## Issues

- AC-1: the greeting is not friendly enough

CLAUDE_FINAL_OK: NO
";

/// A shell snippet that prints `text` verbatim (a quoted here-document).
pub fn heredoc(text: &str) -> String {
    format!("cat <<'GK_CANNED_EOF'\n{text}GK_CANNED_EOF\n")
}

/// The readable name of an exit code (SPEC §5), as written in snapshots.
pub fn exit_name(code: i32) -> &'static str {
    match code {
        0 => "done",
        1 => "failed",
        2 => "usage",
        3 => "gate-closed",
        4 => "reviewer-no",
        5 => "scope-violation",
        6 => "checks-failing",
        7 => "integrity",
        _ => "unexpected",
    }
}

impl Run {
    /// The uv-style rendering used in snapshots: exit code, stdout, stderr.
    pub fn render(&self) -> String {
        format!(
            "exit_code: {} ({})\n----- stdout -----\n{}\n----- stderr -----\n{}",
            self.code,
            exit_name(self.code),
            self.stdout,
            self.stderr
        )
    }

    /// Panics unless the exit code is `code` and stderr holds an `error:` line and a `hint:`
    /// line naming a `gatekeeper step` or `gatekeeper run` command (SPEC §5 "every refusal says
    /// what is missing and the command that would fix it").
    #[track_caller]
    pub fn refused(self, code: i32) -> Run {
        let run = self.expect(code);
        assert!(
            run.stderr.contains("error:"),
            "no `error:` line:\n{}",
            run.stderr
        );
        let hint = run
            .stderr
            .lines()
            .find(|l| l.starts_with("hint:"))
            .unwrap_or_else(|| panic!("no `hint:` line:\n{}", run.stderr));
        assert!(
            hint.contains("gatekeeper step") || hint.contains("gatekeeper run"),
            "the hint names no `gatekeeper step`/`run` command: {hint}"
        );
        run
    }
}

impl Ws {
    /// [`Ws::new`] plus `config` committed and `prompt` as task `t` (uncommitted).
    pub fn with_task(config: &str, prompt: &str) -> Ws {
        let ws = Ws::new();
        ws.config(config);
        ws.commit("config");
        ws.prompt("t", prompt);
        ws
    }

    /// A path in the temporary folder outside the repository (scripts, markers, counters), so
    /// that nothing the test or its scripts write there is part of the task's change set.
    pub fn scratch(&self, name: &str) -> PathBuf {
        let dir = self.dir.path().join("scratch");
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir.join(name)
    }

    /// Writes a shell script outside the repository and returns its absolute path.
    pub fn script(&self, name: &str, body: &str) -> String {
        let path = self.scratch(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}")).expect("write script");
        path.to_string_lossy().into_owned()
    }

    /// A scripted agent for the `command` provider: a `case` over `$GATEKEEPER_TEMPLATE` with
    /// one shell snippet per template (see [`heredoc`]); other templates get a short canned
    /// answer. Returns the script's absolute path.
    pub fn agent(&self, name: &str, arms: &[(&str, String)]) -> String {
        let mut body = String::from("case \"$GATEKEEPER_TEMPLATE\" in\n");
        for (template, snippet) in arms {
            body.push_str(&format!("{template})\n{snippet}\n;;\n"));
        }
        body.push_str(
            "*)\necho \"# $GATEKEEPER_TEMPLATE\"\necho\necho \"canned answer for step $GATEKEEPER_STEP of $GATEKEEPER_TASK\"\n;;\nesac\n",
        );
        self.script(name, &body)
    }

    /// Runs `gatekeeper step N t` for N in `0..=last`, each expected to exit 0.
    #[track_caller]
    pub fn steps_to(&self, task: &str, last: u32) {
        for n in 0..=last {
            self.gk(&["step", &n.to_string(), task]).expect(0);
        }
    }

    /// Removes a file inside the repository.
    pub fn remove(&self, rel: &str) {
        std::fs::remove_file(self.path(rel)).unwrap_or_else(|e| panic!("remove {rel}: {e}"));
    }

    /// The commit messages of HEAD's first-parent line, newest first.
    pub fn log(&self) -> Vec<String> {
        let repo = git2::Repository::open(self.root()).expect("open");
        let mut out = Vec::new();
        let Ok(head) = repo.head() else { return out };
        let mut commit = head.peel_to_commit().ok();
        while let Some(c) = commit {
            out.push(c.message().unwrap_or_default().to_owned());
            commit = c.parent(0).ok();
        }
        out
    }

    /// The HEAD commit id.
    pub fn head(&self) -> String {
        let repo = git2::Repository::open(self.root()).expect("open");
        repo.head()
            .and_then(|h| h.peel_to_commit())
            .expect("HEAD")
            .id()
            .to_string()
    }

    /// Every path `git status` reports (untracked included, ignored excluded).
    pub fn git_status(&self) -> Vec<String> {
        let repo = git2::Repository::open(self.root()).expect("open");
        let mut opts = git2::StatusOptions::new();
        opts.include_untracked(true).recurse_untracked_dirs(true);
        let statuses = repo.statuses(Some(&mut opts)).expect("status");
        statuses
            .iter()
            .filter_map(|s| s.path().ok().map(str::to_owned))
            .collect()
    }

    /// The lines of a task's journal, `.ai-stack-trace/<task>/ledger.jsonl`.
    pub fn journal_lines(&self, task: &str) -> Vec<String> {
        self.read(&format!("{}/ledger.jsonl", Ws::ledger(task)))
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Rewrites a task's journal from lines.
    pub fn write_journal(&self, task: &str, lines: &[String]) {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        self.file(&format!("{}/ledger.jsonl", Ws::ledger(task)), &text);
    }

    /// A task's journal, parsed.
    pub fn journal(&self, task: &str) -> Vec<serde_json::Value> {
        self.journal_lines(task)
            .iter()
            .map(|l| serde_json::from_str(l).expect("journal line is JSON"))
            .collect()
    }

    /// The `event` names of a task's journal, in order.
    pub fn events(&self, task: &str) -> Vec<String> {
        self.journal(task)
            .iter()
            .map(|e| e["event"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// `gatekeeper status <task> --json`, parsed.
    pub fn status_json(&self, task: &str) -> serde_json::Value {
        let run = self.gk(&["status", task, "--json"]).expect(0);
        serde_json::from_str(&run.stdout).expect("status --json is JSON")
    }

    /// The state of one step from `status --json`.
    pub fn state(&self, task: &str, step: u64) -> String {
        let st = self.status_json(task);
        st["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .find(|s| s["step"] == step)
            .and_then(|s| s["state"].as_str())
            .expect("step state")
            .to_owned()
    }

    /// The temporary folder holding the repository, as written in snapshot filters.
    pub fn temp_root(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

/// Waits until `path` exists (a marker a spawned script creates), polling; panics after a
/// minute so a broken test cannot hang the suite.
#[track_caller]
pub fn wait_for(path: &Path) {
    let start = std::time::Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// The insta settings of CLI snapshots (STYLE §4.12): variable parts replaced by bracketed markers such as `[TS]`.
pub fn snapshot_settings(ws: Option<&Ws>) -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_omit_expression(true);
    if let Some(ws) = ws {
        let root = ws.temp_root();
        let mut roots = vec![root.to_string_lossy().into_owned()];
        if let Ok(c) = root.canonicalize() {
            roots.push(c.to_string_lossy().into_owned());
        }
        for r in roots {
            settings.add_filter(&regex::escape(&format!("{r}/repo")), "[WS]");
            settings.add_filter(&regex::escape(&r), "[TMP]");
        }
    }
    let filters = [
        (
            r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})",
            "[TS]",
        ),
        (
            r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b",
            "[ID]",
        ),
        (r"\b[0-9a-f]{64}\b", "[SHA256]"),
        (r"\b[0-9a-f]{40}\b", "[COMMIT]"),
        (r"\b[0-9a-f]{12}\b", "[SHORT]"),
        (r"\b\d+(?:\.\d+)?(?:ms|s)\b", "[TIME]"),
        (r"pid \d+", "pid [PID]"),
    ];
    for (re, with) in filters {
        settings.add_filter(re, with);
    }
    settings
}

/// Asserts a uv-style snapshot (exit code, stdout, stderr) of a [`Run`] with the standard
/// filters: `gk_snapshot!(ws, run, @"…")` inline, or `gk_snapshot!("name", ws, run)` as a file
/// under `tests/it/snapshots/`. `ws` is `Some(&ws)` or `None`.
#[macro_export]
macro_rules! gk_snapshot {
    ($ws:expr, $run:expr, @$snapshot:literal) => {{
        let rendered = $run.render();
        $crate::support::snapshot_settings($ws).bind(|| {
            insta::assert_snapshot!(rendered, @$snapshot);
        });
    }};
    ($name:literal, $ws:expr, $run:expr) => {{
        let rendered = $run.render();
        $crate::support::snapshot_settings($ws).bind(|| {
            insta::assert_snapshot!($name, rendered);
        });
    }};
}
