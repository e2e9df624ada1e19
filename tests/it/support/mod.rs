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
