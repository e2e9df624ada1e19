//! The workspace: the git repository gatekeeper works in, its well-known paths (SPEC §1), and the
//! validated task name.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::exit::Refusal;

/// Ledger root folder, relative to the workspace root.
pub const LEDGER_ROOT: &str = ".ai-stack-trace";
/// Folder of task prompts, relative to the workspace root.
pub const PROMPT_DIR: &str = "docs/ai-gated/prompt";
/// Configuration file name.
pub const CONFIG_FILE: &str = "gatekeeper.yaml";

/// A validated task name: `^[a-z0-9][a-z0-9._-]{0,63}$` without `..` (SPEC §1).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskName(String);

impl TaskName {
    /// Validates a task name.
    ///
    /// # Errors
    /// A usage refusal (exit 2) naming the rule, before any file is touched.
    pub fn parse(raw: &str) -> Result<Self, Refusal> {
        if is_valid_task_name(raw) {
            Ok(TaskName(raw.to_owned()))
        } else {
            Err(Refusal::usage(format!(
                "invalid task name `{}`: a task name is 1 to 64 characters of `a-z`, `0-9`, `.`, `_`, `-`, starts with a letter or digit and never contains `..`",
                raw.escape_debug()
            ))
            .hint("pick a name such as `fix-login-2`"))
        }
    }

    /// The name as a string.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TaskName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The task-name rule of SPEC §1, as a predicate.
#[must_use]
pub fn is_valid_task_name(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    if bytes.is_empty() || bytes.len() > 64 || raw.contains("..") {
        return false;
    }
    let first_ok = bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit();
    first_ok
        && bytes.iter().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

/// The workspace: a git repository's work tree.
#[derive(Clone, Debug)]
pub struct Workspace {
    root: PathBuf,
    git_dir: PathBuf,
}

impl Workspace {
    /// Finds the workspace from a directory, the way git does (walking up to the repository).
    ///
    /// # Errors
    /// A usage refusal when the directory is not inside a git work tree.
    pub fn discover(start: &Path) -> Result<Self> {
        Self::discover_repo(start).map(|(ws, _)| ws)
    }

    /// [`Workspace::discover`], also returning the repository it opened.
    ///
    /// # Errors
    /// A usage refusal when the directory is not inside a git work tree.
    pub fn discover_repo(start: &Path) -> Result<(Self, git2::Repository)> {
        let repo = git2::Repository::discover(start).map_err(|_| {
            Refusal::usage(format!(
                "`{}` is not inside a git repository",
                start.display()
            ))
            .hint("run gatekeeper inside a git repository (`git init` creates one)")
        })?;
        let root = repo.workdir().ok_or_else(|| {
            Refusal::usage("the git repository has no work tree (it is bare)")
                .hint("run gatekeeper in a checkout with a work tree")
        })?;
        let root = root
            .canonicalize()
            .with_context(|| format!("failed to resolve `{}`", root.display()))?;
        let git_dir = repo.path().to_path_buf();
        Ok((Workspace { root, git_dir }, repo))
    }

    /// A workspace at a known root (which must be a git work tree).
    #[must_use]
    pub fn at(root: PathBuf) -> Self {
        let git_dir = git2::Repository::open(&root)
            .map_or_else(|_| root.join(".git"), |r| r.path().to_path_buf());
        Workspace { root, git_dir }
    }

    /// The root folder.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Opens the git repository.
    ///
    /// # Errors
    /// When the repository cannot be opened.
    pub fn repo(&self) -> Result<git2::Repository> {
        git2::Repository::open(&self.root).with_context(|| {
            format!(
                "failed to open the git repository at `{}`",
                self.root.display()
            )
        })
    }

    /// `docs/ai-gated/prompt/<TASK>.md`, relative.
    #[must_use]
    pub fn prompt_rel(task: &TaskName) -> String {
        format!("{PROMPT_DIR}/{task}.md")
    }

    /// The absolute path of a task's prompt.
    #[must_use]
    pub fn prompt_path(&self, task: &TaskName) -> PathBuf {
        self.root.join(Self::prompt_rel(task))
    }

    /// `.ai-stack-trace/<TASK>`, relative.
    #[must_use]
    pub fn ledger_rel(task: &TaskName) -> String {
        format!("{LEDGER_ROOT}/{task}")
    }

    /// The absolute path of a task's ledger.
    #[must_use]
    pub fn ledger_dir(&self, task: &TaskName) -> PathBuf {
        self.root.join(Self::ledger_rel(task))
    }

    /// gatekeeper's private folder inside the git directory (locks, journal heads): never part
    /// of a change set, never committed.
    #[must_use]
    pub fn gatekeeper_dir(&self) -> PathBuf {
        self.git_dir.join("gatekeeper")
    }

    /// The configuration file.
    #[must_use]
    pub fn config_path(&self) -> PathBuf {
        self.root.join(CONFIG_FILE)
    }

    /// Where per-task lock files live: inside `.git`, so they are never part of a change set.
    ///
    /// # Errors
    /// When the repository cannot be opened.
    pub fn lock_dir(&self) -> Result<PathBuf> {
        Ok(self.gatekeeper_dir().join("locks"))
    }

    /// The names of every task that has a ledger, sorted.
    ///
    /// # Errors
    /// When the ledger root exists but cannot be read.
    pub fn task_names(&self) -> Result<Vec<TaskName>> {
        let dir = self.root.join(LEDGER_ROOT);
        if !dir.is_dir() {
            return Ok(Vec::new());
        }
        let mut names = Vec::new();
        for entry in fs_err::read_dir(&dir)? {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            if let Some(name) = entry.file_name().to_str()
                && let Ok(task) = TaskName::parse(name)
            {
                names.push(task);
            }
        }
        names.sort();
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_names() {
        for ok in ["a", "demo", "fix-login.2", "0_x", &"a".repeat(64)] {
            assert!(is_valid_task_name(ok), "{ok}");
        }
        for bad in [
            "",
            "../x",
            "a..b",
            "A",
            "-a",
            ".a",
            "a/b",
            "a b",
            "é",
            &"a".repeat(65),
        ] {
            assert!(!is_valid_task_name(bad), "{bad}");
        }
    }
}
