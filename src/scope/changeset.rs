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
    /// With a recorded object id (40 lower-case hex digits, as gatekeeper writes it) this
    /// compares ids and reads nothing; a set recorded without one (older ledgers, bytes git
    /// refused to hash) is compared by reading the blob and hashing it with sha256.
    ///
    /// # Errors
    /// When the head blob must be read and cannot be.
    pub fn is_held_by(&self, repo: &git2::Repository, head: &TreeChange) -> Result<bool> {
        holds(
            repo,
            head,
            self.mode,
            self.sha256.as_deref(),
            self.oid.as_deref(),
        )
    }
}

/// [`ChangedPath::is_held_by`] for a path approved with `mode`, `sha256` and `oid`.
///
/// # Errors
/// When the head blob must be read and cannot be.
pub fn holds(
    repo: &git2::Repository,
    head: &TreeChange,
    mode: u32,
    sha256: Option<&str>,
    oid: Option<&str>,
) -> Result<bool> {
    if mode != head.mode() {
        return Ok(false);
    }
    let Some((id, _)) = head.head else {
        return Ok(sha256.is_none());
    };
    let Some(sha256) = sha256 else {
        return Ok(false);
    };
    if let Some(oid) = oid {
        if oid.as_bytes() == lower_hex(id) {
            return Ok(true);
        }
        if oid.len() == 40 && oid.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
            return Ok(false);
        }
    }
    Ok(head.hashed(repo)?.sha256.as_deref() == Some(sha256))
}

/// An object id in lower-case hex, as gatekeeper records it.
fn lower_hex(id: git2::Oid) -> [u8; 40] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 40];
    for (pair, byte) in out.chunks_exact_mut(2).zip(id.as_bytes()) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0f)];
    }
    out
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
    let mut out = Vec::new();
    diff_trees(repo, Some(&old), Some(&new), "", exempt, &mut out)?;
    // Sorted by path, one change per path; a tree naming one entry twice (which git itself
    // refuses) keeps its last, as a map keyed by path would.
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out.dedup_by(|later, kept| {
        let same = later.path == kept.path;
        if same {
            std::mem::swap(later, kept);
        }
        same
    });
    Ok(out)
}

/// A merge-walk of two trees that skips identical subtrees, as git does: only the folders that
/// differ are read, and nothing is allocated for the entries that are equal. Records the head side
/// of every differing blob, link or submodule.
fn diff_trees(
    repo: &git2::Repository,
    old: Option<&git2::Tree<'_>>,
    new: Option<&git2::Tree<'_>>,
    prefix: &str,
    exempt: &dyn Fn(&str) -> bool,
    out: &mut Vec<TreeChange>,
) -> Result<()> {
    use std::cmp::Ordering;
    let (a, b) = (in_git_order(old), in_git_order(new));
    let (mut i, mut j) = (0, 0);
    loop {
        // `x` and `y` carry the same name and kind when both are present: a blob and a tree of
        // one name have different keys, so they come out as a deletion and an addition.
        let (x, y) = match (a.get(i), b.get(j)) {
            (None, None) => break,
            (Some(x), None) => (Some(x), None),
            (None, Some(y)) => (None, Some(y)),
            (Some(x), Some(y)) => match git_order(x, y) {
                Ordering::Less => (Some(x), None),
                Ordering::Greater => (None, Some(y)),
                Ordering::Equal => (Some(x), Some(y)),
            },
        };
        i += usize::from(x.is_some());
        j += usize::from(y.is_some());
        if let (Some(x), Some(y)) = (x, y)
            && x.id() == y.id()
            && x.filemode() == y.filemode()
        {
            continue;
        }
        let Some(entry) = x.or(y) else { break };
        let name = entry
            .name()
            .map_err(|_| anyhow!("a path under `{prefix}` is not UTF-8"))?;
        let mut path = String::with_capacity(prefix.len() + 1 + name.len());
        if !prefix.is_empty() {
            path.push_str(prefix);
            path.push('/');
        }
        path.push_str(name);
        if is_tree(entry) {
            let sub =
                |e: Option<&git2::TreeEntry<'_>>| e.map(|e| repo.find_tree(e.id())).transpose();
            let (tx, ty) = (sub(x)?, sub(y)?);
            diff_trees(repo, tx.as_ref(), ty.as_ref(), &path, exempt, out)?;
            continue;
        }
        if exempt(&path) {
            continue;
        }
        let head = y.map(|e| (e.id(), u32::try_from(e.filemode()).unwrap_or(0)));
        out.push(TreeChange { path, head });
    }
    Ok(())
}

fn is_tree(e: &git2::TreeEntry<'_>) -> bool {
    e.filemode() == 0o040_000
}

/// git's tree order: by name bytes, a tree's name as if it ended in `/`.
fn git_order(a: &git2::TreeEntry<'_>, b: &git2::TreeEntry<'_>) -> std::cmp::Ordering {
    let slash = |e: &git2::TreeEntry<'_>| -> &'static [u8] { if is_tree(e) { b"/" } else { b"" } };
    let (x, y) = (a.name_bytes(), b.name_bytes());
    let n = x.len().min(y.len());
    x[..n].cmp(&y[..n]).then_with(|| {
        // One name is a prefix of the other: what follows it decides, `/` for a folder.
        x[n..]
            .iter()
            .chain(slash(a))
            .cmp(y[n..].iter().chain(slash(b)))
    })
}

/// A tree's entries in git's order. git writes them so; sorting again (linear on sorted input)
/// keeps the walk exact on a tree written out of order by another tool.
fn in_git_order<'t>(tree: Option<&'t git2::Tree<'_>>) -> Vec<git2::TreeEntry<'t>> {
    let mut entries: Vec<git2::TreeEntry<'t>> =
        tree.map(|t| t.iter().collect()).unwrap_or_default();
    entries.sort_by(git_order);
    entries
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    /// Path components, blob and mode of the files of a tree.
    type Files<'a> = Vec<(Vec<&'a str>, git2::Oid, i32)>;

    /// Builds a tree from `path → (content, mode)`.
    fn build(repo: &git2::Repository, files: &BTreeMap<String, (u8, i32)>) -> git2::Oid {
        fn level(repo: &git2::Repository, files: &[(Vec<&str>, git2::Oid, i32)]) -> git2::Oid {
            let mut tb = repo.treebuilder(None).unwrap();
            let mut dirs: BTreeMap<&str, Files<'_>> = BTreeMap::new();
            for (parts, id, mode) in files {
                if parts.len() == 1 {
                    tb.insert(parts[0], *id, *mode).unwrap();
                } else {
                    dirs.entry(parts[0])
                        .or_default()
                        .push((parts[1..].to_vec(), *id, *mode));
                }
            }
            for (name, sub) in dirs {
                tb.insert(name, level(repo, &sub), 0o040_000).unwrap();
            }
            tb.write().unwrap()
        }
        let blobs: Files<'_> = files
            .iter()
            .map(|(p, (c, m))| (p.split('/').collect(), repo.blob(&[*c]).unwrap(), *m))
            .collect();
        level(repo, &blobs)
    }

    fn commit(repo: &git2::Repository, tree: git2::Oid) -> String {
        let sig = git2::Signature::new("t", "t@example.invalid", &git2::Time::new(0, 0)).unwrap();
        let tree = repo.find_tree(tree).unwrap();
        repo.commit(None, &sig, &sig, "t", &tree, &[])
            .unwrap()
            .to_string()
    }

    /// Paths over names that sort differently as files and as folders (`a` < `a-b` < `a.b` <
    /// `a/`), with no path both a file and a folder.
    fn files() -> impl Strategy<Value = BTreeMap<String, (u8, i32)>> {
        let name = prop::sample::select(vec!["a", "a-b", "a.b", "b"]);
        let path = prop::collection::vec(name, 1..4).prop_map(|p| p.join("/"));
        let mode = prop::sample::select(vec![0o100_644, 0o100_755, 0o120_000]);
        prop::collection::btree_map(path, (0u8..3, mode), 0..12).prop_map(|mut m| {
            let dirs: BTreeSet<String> = m
                .keys()
                .flat_map(|p| {
                    p.match_indices('/')
                        .map(|(i, _)| p[..i].to_owned())
                        .collect::<Vec<_>>()
                })
                .collect();
            m.retain(|p, _| !dirs.contains(p));
            m
        })
    }

    proptest! {
        /// The merge-walk finds exactly the paths libgit2's own tree diff finds, with the head
        /// side's object id and mode.
        #[test]
        fn tree_changes_match_git_diff(old in files(), new in files()) {
            let dir = tempfile::tempdir().unwrap();
            let repo = git2::Repository::init_bare(dir.path()).unwrap();
            let (a, b) = (build(&repo, &old), build(&repo, &new));
            let (ca, cb) = (commit(&repo, a), commit(&repo, b));
            let ours = super::tree_changes(&repo, &ca, &cb, &|_| false).unwrap();
            let (ta, tb) = (repo.find_tree(a).unwrap(), repo.find_tree(b).unwrap());
            let diff = repo.diff_tree_to_tree(Some(&ta), Some(&tb), None).unwrap();
            let mut theirs = BTreeSet::new();
            for d in diff.deltas() {
                for f in [d.old_file(), d.new_file()] {
                    if let Some(p) = f.path() {
                        theirs.insert(p.to_str().unwrap().to_owned());
                    }
                }
            }
            let paths: BTreeSet<String> = ours.iter().map(|c| c.path.clone()).collect();
            prop_assert_eq!(&paths, &theirs);
            prop_assert_eq!(paths.len(), ours.len());
            for c in &ours {
                let entry = tb.get_path(std::path::Path::new(&c.path)).ok();
                let expected = entry
                    .filter(|e| e.filemode() != 0o040_000)
                    .map(|e| (e.id(), u32::try_from(e.filemode()).unwrap()));
                prop_assert_eq!(c.head, expected, "{}", c.path);
            }
        }
    }

    #[test]
    fn a_path_is_held_by_the_same_object_id_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init_bare(dir.path()).unwrap();
        let id = repo.blob(b"approved\n").unwrap();
        let other = repo.blob(b"edited\n").unwrap();
        let approved = super::ChangedPath {
            path: "f".into(),
            sha256: Some(crate::hash::sha256_hex(b"approved\n")),
            mode: 0o100_644,
            oid: Some(id.to_string()),
        };
        let head = |head| super::TreeChange {
            path: "f".into(),
            head,
        };
        let held = |a: &super::ChangedPath, h| a.is_held_by(&repo, &head(h)).unwrap();
        assert!(held(&approved, Some((id, 0o100_644))));
        assert!(!held(&approved, Some((other, 0o100_644))));
        assert!(!held(&approved, Some((id, 0o100_755))));
        assert!(!held(&approved, None));
        // Recorded without an object id: the blob is read and its sha256 compared.
        let old = super::ChangedPath {
            oid: None,
            ..approved.clone()
        };
        assert!(held(&old, Some((id, 0o100_644))));
        assert!(!held(&old, Some((other, 0o100_644))));
        // An id not written as gatekeeper writes it (upper case, short) is not trusted: the
        // blob is read and its sha256 compared.
        for odd in [
            id.to_string().to_uppercase(),
            id.to_string()[..7].to_owned(),
        ] {
            let odd = super::ChangedPath {
                oid: Some(odd),
                ..approved.clone()
            };
            assert!(held(&odd, Some((id, 0o100_644))));
            assert!(!held(&odd, Some((other, 0o100_644))));
        }
        let deleted = super::ChangedPath {
            path: "f".into(),
            sha256: None,
            mode: 0,
            oid: None,
        };
        assert!(held(&deleted, None));
        assert!(!held(&deleted, Some((id, 0o100_644))));
    }
}
