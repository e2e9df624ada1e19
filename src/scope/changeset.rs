//! The change set of a task (SPEC §3): every path that differs between the task's base commit and
//! the working tree — staged, unstaged, untracked-not-ignored, deleted, both sides of a rename,
//! mode changes, submodule moves — with the current content hash of each. Read through git2.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, anyhow};
use serde::{Deserialize, Serialize};

use crate::hash::{sha256_file, sha256_hex};

/// One changed path and what it holds now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
pub struct ChangedPath {
    /// Repository-relative, `/`-separated.
    pub path: String,
    /// sha256 of the working-tree content (link target for symlinks, commit id for submodules);
    /// `None` when the path no longer exists.
    pub sha256: Option<String>,
    /// The git file mode now (`0` when deleted).
    pub mode: u32,
    /// The git object id of the same bytes (the blob id a commit of them records; the commit id
    /// for submodules), so that a commit can be compared with the set without reading its blobs.
    /// `None` when the path no longer exists, when git refused to hash the bytes (SHA-1 collision
    /// detection), and in sets recorded before gatekeeper kept it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oid: Option<String>,
}

impl ChangedPath {
    /// Whether `head` (a path of a commit) holds exactly the bytes and mode approved as `self`.
    /// With a recorded object id this compares ids and reads nothing; a set recorded without
    /// them (older ledgers, or bytes git refused to hash) is compared by reading the blob and
    /// hashing it with sha256.
    ///
    /// # Errors
    /// When the head blob must be read and cannot be.
    pub fn is_held_by(&self, repo: &git2::Repository, head: &TreeChange) -> Result<bool> {
        if self.mode != head.mode() {
            return Ok(false);
        }
        let Some((id, _)) = head.head else {
            return Ok(self.sha256.is_none());
        };
        if self.sha256.is_none() {
            return Ok(false);
        }
        if let Some(oid) = &self.oid {
            return Ok(git2::Oid::from_str(oid).is_ok_and(|o| o == id));
        }
        Ok(head.hashed(repo)?.sha256 == self.sha256)
    }
}

/// A path that differs between two commits, as the head commit's tree records it (nothing of its
/// content is read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeChange {
    /// Repository-relative, `/`-separated.
    pub path: String,
    /// The head side's object id and git file mode; `None` when the head has no such path.
    pub head: Option<(git2::Oid, u32)>,
}

impl TreeChange {
    /// The git file mode at the head (`0` when deleted).
    #[must_use]
    pub fn mode(&self) -> u32 {
        self.head.map_or(0, |(_, m)| m)
    }

    /// The head side with its content hash (reads the blob; a submodule's hash is its commit id).
    ///
    /// # Errors
    /// When the blob cannot be read.
    pub fn hashed(&self, repo: &git2::Repository) -> Result<ChangedPath> {
        let Some((id, mode)) = self.head else {
            return Ok(ChangedPath {
                path: self.path.clone(),
                sha256: None,
                mode: 0,
                oid: None,
            });
        };
        let sha = if mode == 0o160_000 {
            id.to_string()
        } else {
            let blob = repo
                .find_blob(id)
                .with_context(|| format!("failed to read `{}` ({id})", self.path))?;
            sha256_hex(blob.content())
        };
        Ok(ChangedPath {
            path: self.path.clone(),
            sha256: Some(sha),
            mode,
            oid: Some(id.to_string()),
        })
    }
}

/// The change set: sorted, unique paths.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeSet {
    /// The changed paths.
    pub paths: Vec<ChangedPath>,
}

impl ChangeSet {
    /// A stable digest of the set (paths, modes and contents), for staleness and approval binding.
    #[must_use]
    pub fn digest(&self) -> String {
        let mut text = String::new();
        for p in &self.paths {
            text.push_str(&format!(
                "{}\t{:o}\t{}\n",
                p.path,
                p.mode,
                p.sha256.as_deref().unwrap_or("-")
            ));
        }
        sha256_hex(text.as_bytes())
    }

    /// Just the paths.
    pub fn path_names(&self) -> impl Iterator<Item = &str> {
        self.paths.iter().map(|p| p.path.as_str())
    }

    /// Differences against an earlier (approved) set: `(path, what)` pairs.
    #[must_use]
    pub fn differences(&self, approved: &ChangeSet) -> Vec<(String, String)> {
        let now: BTreeMap<&str, &ChangedPath> =
            self.paths.iter().map(|p| (p.path.as_str(), p)).collect();
        let then: BTreeMap<&str, &ChangedPath> = approved
            .paths
            .iter()
            .map(|p| (p.path.as_str(), p))
            .collect();
        let mut out = Vec::new();
        for (path, a) in &then {
            match now.get(path) {
                None => out.push((
                    (*path).to_owned(),
                    "was approved as changed but now equals the base commit".to_owned(),
                )),
                Some(n) if n.sha256 != a.sha256 || n.mode != a.mode => {
                    out.push((
                        (*path).to_owned(),
                        "differs from the approved content".to_owned(),
                    ));
                }
                Some(_) => {}
            }
        }
        for path in now.keys() {
            if !then.contains_key(path) {
                out.push((
                    (*path).to_owned(),
                    "changed but not in the approved change set".to_owned(),
                ));
            }
        }
        out
    }
}

/// Computes the change set between `base` (a commit id) and the working tree, skipping paths for
/// which `exempt` returns true.
///
/// # Errors
/// When git cannot diff, a path is not UTF-8, or a file cannot be read.
pub fn compute(
    repo: &git2::Repository,
    base: &str,
    exempt: &dyn Fn(&str) -> bool,
) -> Result<ChangeSet> {
    let oid = git2::Oid::from_str(base).with_context(|| format!("invalid base commit `{base}`"))?;
    let tree = repo
        .find_commit(oid)
        .with_context(|| format!("the base commit `{base}` is not in the repository"))?
        .tree()?;
    let mut opts = git2::DiffOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_typechange(true)
        .ignore_submodules(false);
    let diff = repo
        .diff_tree_to_workdir_with_index(Some(&tree), Some(&mut opts))
        .context("failed to diff the base commit against the working tree")?;
    let workdir = repo
        .workdir()
        .ok_or_else(|| anyhow!("the repository has no work tree"))?;
    let mut seen = BTreeMap::new();
    for delta in diff.deltas() {
        for file in [delta.old_file(), delta.new_file()] {
            let Some(path) = file.path() else { continue };
            let path = path
                .to_str()
                .ok_or_else(|| {
                    anyhow!(
                        "the path `{}` is not UTF-8; gatekeeper needs UTF-8 paths",
                        path.display()
                    )
                })?
                .replace('\\', "/");
            if exempt(&path) || seen.contains_key(&path) {
                continue;
            }
            let entry = current_state(workdir, &path, &delta)?;
            seen.insert(path, entry);
        }
    }
    Ok(ChangeSet {
        paths: seen.into_values().collect(),
    })
}

fn current_state(workdir: &Path, path: &str, delta: &git2::DiffDelta<'_>) -> Result<ChangedPath> {
    let full = workdir.join(path);
    let meta = match std::fs::symlink_metadata(&full) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(ChangedPath {
                path: path.to_owned(),
                sha256: None,
                mode: 0,
                oid: None,
            });
        }
        Err(e) => return Err(anyhow::Error::new(e).context(format!("failed to stat `{path}`"))),
    };
    let (sha, oid, mode) = if meta.file_type().is_symlink() {
        let target = std::fs::read_link(&full)
            .with_context(|| format!("failed to read the link `{path}`"))?;
        let bytes = target.as_os_str().as_encoded_bytes();
        (sha256_hex(bytes), blob_id(bytes), 0o120_000)
    } else if meta.is_dir() {
        // A submodule: its checked-out commit, as git reports it.
        let id = delta.new_file().id().to_string();
        (id.clone(), Some(id), 0o160_000)
    } else {
        let exec = is_executable(&meta);
        let (sha, oid) =
            hash_file(&full, meta.len()).with_context(|| format!("failed to hash `{path}`"))?;
        (sha, oid, if exec { 0o100_755 } else { 0o100_644 })
    };
    Ok(ChangedPath {
        path: path.to_owned(),
        sha256: Some(sha),
        mode,
        oid,
    })
}

/// Files up to this size are read once and both hashes taken from the same bytes.
const READ_WHOLE: u64 = 16 << 20;

/// The sha256 and git blob id of a file's bytes.
fn hash_file(path: &Path, len: u64) -> Result<(String, Option<String>)> {
    if len <= READ_WHOLE {
        let bytes = fs_err::read(path)?;
        return Ok((sha256_hex(&bytes), blob_id(&bytes)));
    }
    let sha = sha256_file(path)?;
    // Streamed by libgit2 (no filters: the raw bytes, as sha256 saw them).
    let oid = git2::Oid::hash_file(git2::ObjectType::Blob, path)
        .ok()
        .map(|o| o.to_string());
    Ok((sha, oid))
}

/// The git blob id of `bytes`; `None` when git refuses to hash them (its SHA-1 collision
/// detection flagged them), which leaves the binding of that path to sha256 alone.
fn blob_id(bytes: &[u8]) -> Option<String> {
    git2::Oid::hash_object(git2::ObjectType::Blob, bytes)
        .ok()
        .map(|o| o.to_string())
}

#[cfg(unix)]
fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_meta: &std::fs::Metadata) -> bool {
    false
}

/// Computes the change set between two commits (what a committed task changed), with the content
/// hashes of the `head` side. Used for finished tasks.
///
/// # Errors
/// When git cannot diff, a path is not UTF-8 or a blob cannot be read.
pub fn compute_between(
    repo: &git2::Repository,
    base: &str,
    head: &str,
    exempt: &dyn Fn(&str) -> bool,
) -> Result<ChangeSet> {
    Ok(ChangeSet {
        paths: tree_changes(repo, base, head, exempt)?
            .iter()
            .map(|c| c.hashed(repo))
            .collect::<Result<_>>()?,
    })
}

/// The paths that differ between two commits, sorted, with the head side's object ids: only the
/// trees are read, never a blob (what `git diff --name-only` reads). Used by the CI gate.
///
/// # Errors
/// When a commit or tree cannot be read or a path is not UTF-8.
pub fn tree_changes(
    repo: &git2::Repository,
    base: &str,
    head: &str,
    exempt: &dyn Fn(&str) -> bool,
) -> Result<Vec<TreeChange>> {
    let tree_of = |rev: &str| -> Result<git2::Tree<'_>> {
        let oid = git2::Oid::from_str(rev).with_context(|| format!("invalid commit `{rev}`"))?;
        Ok(repo
            .find_commit(oid)
            .with_context(|| format!("the commit `{rev}` is not in the repository"))?
            .tree()?)
    };
    let (old, new) = (tree_of(base)?, tree_of(head)?);
    let mut seen = BTreeMap::new();
    diff_trees(repo, Some(&old), Some(&new), "", exempt, &mut seen)?;
    Ok(seen.into_values().collect())
}

/// A merge-walk of two trees that skips identical subtrees, as git does: only the folders that
/// differ are read. Records the head side of every differing blob, link or submodule.
fn diff_trees(
    repo: &git2::Repository,
    old: Option<&git2::Tree<'_>>,
    new: Option<&git2::Tree<'_>>,
    prefix: &str,
    exempt: &dyn Fn(&str) -> bool,
    out: &mut BTreeMap<String, TreeChange>,
) -> Result<()> {
    let entries = |t: Option<&git2::Tree<'_>>| -> Result<BTreeMap<String, (git2::Oid, i32)>> {
        let mut m = BTreeMap::new();
        if let Some(t) = t {
            for e in t.iter() {
                let name = e
                    .name()
                    .map_err(|_| anyhow!("a path under `{prefix}` is not UTF-8"))?
                    .to_owned();
                m.insert(name, (e.id(), e.filemode()));
            }
        }
        Ok(m)
    };
    let (a, b) = (entries(old)?, entries(new)?);
    let names: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for name in names {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let (x, y) = (a.get(name), b.get(name));
        if x == y {
            continue;
        }
        let is_tree = |e: Option<&(git2::Oid, i32)>| e.is_some_and(|(_, m)| *m == 0o040_000);
        if is_tree(x) || is_tree(y) {
            let sub = |e: Option<&(git2::Oid, i32)>| -> Result<Option<git2::Tree<'_>>> {
                match e {
                    Some((id, 0o040_000)) => Ok(Some(repo.find_tree(*id)?)),
                    _ => Ok(None),
                }
            };
            let (tx, ty) = (sub(x)?, sub(y)?);
            diff_trees(repo, tx.as_ref(), ty.as_ref(), &path, exempt, out)?;
            // A blob replaced by a tree (or the reverse): the blob side is a change too.
            let blob_side = if is_tree(x) { y } else { x };
            if blob_side.is_none() || (is_tree(x) && is_tree(y)) {
                continue;
            }
        }
        if exempt(&path) {
            continue;
        }
        let head = y
            .filter(|(_, m)| *m != 0o040_000)
            .map(|(id, mode)| (*id, u32::try_from(*mode).unwrap_or(0)));
        out.insert(path.clone(), TreeChange { path, head });
    }
    Ok(())
}
