//! `gatekeeper inventory` (SPEC §7, seed 002): every tracked file with its size, sha256 and role
//! (source, test, doc, config, ci, script, data), hashed in parallel, in path order, with no
//! timestamp, so two runs over one tree give byte-identical reports.

use std::collections::BTreeMap;

use anyhow::Result;
use rayon::prelude::*;
use serde::Serialize;

use crate::hash::sha256_file;
use crate::workspace::Workspace;

/// One tracked file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Item {
    /// Repository-relative path.
    pub path: String,
    /// Size in bytes (0 when missing from the working tree).
    pub size: u64,
    /// sha256 of the working-tree content; `None` when the file is missing.
    pub sha256: Option<String>,
    /// What the file is.
    pub role: &'static str,
}

/// The inventory.
#[derive(Clone, Debug, Serialize)]
pub struct Inventory {
    /// Every tracked file, by path.
    pub files: Vec<Item>,
    /// Counts and bytes per role.
    pub by_role: BTreeMap<&'static str, RoleTotal>,
    /// Files in all.
    pub total_files: usize,
    /// Bytes in all.
    pub total_bytes: u64,
}

/// Totals of one role.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RoleTotal {
    /// Files.
    pub files: usize,
    /// Bytes.
    pub bytes: u64,
}

/// The role of a path, by convention. Pure.
#[must_use]
pub fn role_of(path: &str) -> &'static str {
    let lower = path.to_ascii_lowercase();
    let name = lower.rsplit('/').next().unwrap_or(&lower);
    let ext = name.rsplit_once('.').map_or("", |(_, e)| e);
    let in_dir = |d: &str| lower.starts_with(&format!("{d}/")) || lower.contains(&format!("/{d}/"));
    if lower.starts_with(".github/")
        || lower.starts_with(".ci/")
        || lower.starts_with(".circleci/")
        || matches!(
            name,
            ".gitlab-ci.yml"
                | "jenkinsfile"
                | "action.yml"
                | ".pre-commit-hooks.yaml"
                | ".pre-commit-config.yaml"
        )
    {
        return "ci";
    }
    if in_dir("tests")
        || in_dir("test")
        || in_dir("__tests__")
        || in_dir("spec")
        || name.starts_with("test_")
        || name.contains("_test.")
        || name.contains(".test.")
        || name.contains(".spec.")
    {
        return "test";
    }
    if in_dir("fixtures")
        || in_dir("testdata")
        || matches!(
            ext,
            "csv"
                | "tsv"
                | "jsonl"
                | "parquet"
                | "snap"
                | "bin"
                | "png"
                | "jpg"
                | "gif"
                | "sqlite"
                | "db"
        )
    {
        return "data";
    }
    if in_dir("scripts") || in_dir("bin") || matches!(ext, "sh" | "bash" | "ps1") {
        return "script";
    }
    if in_dir("docs")
        || in_dir("doc")
        || matches!(ext, "md" | "rst" | "adoc")
        || name.starts_with("license")
        || name.starts_with("readme")
    {
        return "doc";
    }
    if matches!(
        ext,
        "toml" | "yaml" | "yml" | "ini" | "cfg" | "conf" | "lock" | "json" | "env"
    ) || name.starts_with('.')
        || matches!(name, "dockerfile" | "makefile" | "justfile" | "procfile")
    {
        return "config";
    }
    if matches!(
        ext,
        "rs" | "py"
            | "js"
            | "mjs"
            | "ts"
            | "tsx"
            | "jsx"
            | "go"
            | "java"
            | "kt"
            | "c"
            | "h"
            | "cc"
            | "cpp"
            | "hpp"
            | "rb"
            | "php"
            | "swift"
            | "cs"
            | "scala"
            | "html"
            | "css"
            | "scss"
            | "sql"
            | "j2"
            | "vue"
            | "svelte"
            | "lua"
            | "ex"
            | "exs"
            | "hs"
    ) {
        return "source";
    }
    "data"
}

/// Builds the inventory of the tracked files.
///
/// # Errors
/// Git errors, unreadable files.
pub fn build(ws: &Workspace) -> Result<Inventory> {
    let repo = ws.repo()?;
    let index = repo.index()?;
    let mut paths: Vec<String> = index
        .iter()
        .filter_map(|e| String::from_utf8(e.path).ok())
        .collect();
    paths.sort();
    paths.dedup();
    let root = ws.root();
    let files = paths
        .par_iter()
        .map(|path| {
            let full = root.join(path);
            match std::fs::symlink_metadata(&full) {
                Ok(meta) if meta.is_file() => Ok(Item {
                    path: path.clone(),
                    size: meta.len(),
                    sha256: Some(sha256_file(&full)?),
                    role: role_of(path),
                }),
                Ok(meta) => Ok(Item {
                    path: path.clone(),
                    size: meta.len(),
                    sha256: None,
                    role: role_of(path),
                }),
                Err(_) => Ok(Item {
                    path: path.clone(),
                    size: 0,
                    sha256: None,
                    role: role_of(path),
                }),
            }
        })
        .collect::<std::io::Result<Vec<Item>>>()?;
    let mut by_role: BTreeMap<&'static str, RoleTotal> = BTreeMap::new();
    for f in &files {
        let t = by_role.entry(f.role).or_default();
        t.files += 1;
        t.bytes += f.size;
    }
    Ok(Inventory {
        total_files: files.len(),
        total_bytes: files.iter().map(|f| f.size).sum(),
        files,
        by_role,
    })
}

#[cfg(test)]
mod tests {
    use super::role_of;

    #[test]
    fn roles() {
        for (path, role) in [
            ("src/main.rs", "source"),
            ("tests/it/main.rs", "test"),
            ("src/foo_test.go", "test"),
            ("README.md", "doc"),
            ("docs/guide.txt", "doc"),
            ("Cargo.toml", "config"),
            (".gitignore", "config"),
            (".github/workflows/ci.yml", "ci"),
            (".ci/run", "ci"),
            ("scripts/bench/ci.sh", "script"),
            ("tests/it/fixtures/a.json", "test"),
            ("data/rows.csv", "data"),
            ("prompts/audit.md.j2", "source"),
            ("LICENSE", "doc"),
            ("Makefile", "config"),
            ("assets/logo.png", "data"),
        ] {
            assert_eq!(role_of(path), role, "{path}");
        }
    }
}
