//! Step 4 patches (SPEC §2): fenced ```diff blocks (unified diffs, git format) are extracted from
//! an answer, checked to apply *all* before *any* is applied, and applied to the working tree
//! through git2. Paths are checked first: nothing outside the work tree, nothing under `.git/`.

use anyhow::Result;

/// Why a patch could not be applied. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A block is not a parseable unified diff.
    #[error("```diff block {block} is not a valid unified diff: {message}")]
    Parse {
        /// 1-based block number.
        block: usize,
        /// git's message.
        message: String,
    },
    /// A block names a path outside the work tree or inside `.git`.
    #[error(
        "```diff block {block} names the path `{path}`, which is outside the work tree or inside `.git`"
    )]
    BadPath {
        /// 1-based block number.
        block: usize,
        /// The path.
        path: String,
    },
    /// A block does not apply to the current tree.
    #[error("```diff block {block} does not apply to the working tree: {message}")]
    DoesNotApply {
        /// 1-based block number (0 when only the combination fails).
        block: usize,
        /// git's message.
        message: String,
    },
}

/// The contents of every fenced block whose info string is `diff` or `patch`, in order.
#[must_use]
pub fn extract_diff_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        match &mut current {
            None => {
                let ticks = trimmed.bytes().take_while(|b| *b == b'`').count();
                if ticks >= 3 {
                    let info = trimmed[ticks..].trim().to_lowercase();
                    if info == "diff" || info == "patch" {
                        current = Some((ticks, String::new()));
                    }
                }
            }
            Some((ticks, body)) => {
                let closing = trimmed.bytes().take_while(|b| *b == b'`').count();
                if closing >= *ticks && trimmed.trim_end().len() == closing {
                    blocks.push(std::mem::take(body));
                    current = None;
                } else {
                    body.push_str(line);
                    body.push('\n');
                }
            }
        }
    }
    blocks
}

/// Adds the `diff --git` header git's parser needs where a block has only `---`/`+++` lines.
#[must_use]
pub fn normalize(block: &str) -> String {
    let lines: Vec<&str> = block.lines().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let preceded_by_header = out
            .lines()
            .rev()
            .take(4)
            .any(|l| l.starts_with("diff --git "));
        if line.starts_with("--- ")
            && i + 1 < lines.len()
            && lines[i + 1].starts_with("+++ ")
            && !preceded_by_header
        {
            let old = strip_side(&line[4..], "a/");
            let new = strip_side(&lines[i + 1][4..], "b/");
            let name = if new == "/dev/null" {
                old.clone()
            } else {
                new.clone()
            };
            out.push_str(&format!("diff --git a/{name} b/{name}\n"));
            if old == "/dev/null" {
                out.push_str("new file mode 100644\n");
            } else if new == "/dev/null" {
                out.push_str("deleted file mode 100644\n");
            }
        }
        out.push_str(line);
        out.push('\n');
        i += 1;
    }
    out
}

fn strip_side(raw: &str, prefix: &str) -> String {
    let path = raw.split('\t').next().unwrap_or(raw).trim();
    if path == "/dev/null" {
        return path.to_owned();
    }
    path.strip_prefix(prefix).unwrap_or(path).to_owned()
}

fn parse(block: usize, text: &str) -> Result<git2::Diff<'static>, ApplyError> {
    let diff = git2::Diff::from_buffer(text.as_bytes()).map_err(|e| ApplyError::Parse {
        block,
        message: e.message().to_owned(),
    })?;
    if diff.deltas().len() == 0 {
        return Err(ApplyError::Parse {
            block,
            message: "it changes no file".to_owned(),
        });
    }
    for delta in diff.deltas() {
        for file in [delta.old_file(), delta.new_file()] {
            let Some(path) = file.path() else { continue };
            let p = path.to_string_lossy();
            let bad = path.is_absolute()
                || p.split('/')
                    .any(|seg| seg == ".." || seg.eq_ignore_ascii_case(".git"))
                || p.starts_with('/');
            if bad {
                return Err(ApplyError::BadPath {
                    block,
                    path: p.into_owned(),
                });
            }
        }
    }
    Ok(diff)
}

/// Checks that every block applies, then applies them all; returns the paths touched.
///
/// # Errors
/// [`ApplyError`] when any block fails to parse or apply; then nothing was changed.
pub fn apply_all(repo: &git2::Repository, blocks: &[String]) -> Result<Vec<String>, ApplyError> {
    if blocks.is_empty() {
        return Ok(Vec::new());
    }
    let normalized: Vec<String> = blocks.iter().map(|b| normalize(b)).collect();
    let mut touched = Vec::new();
    for (i, text) in normalized.iter().enumerate() {
        let diff = parse(i + 1, text)?;
        for delta in diff.deltas() {
            for file in [delta.old_file(), delta.new_file()] {
                if let Some(p) = file.path() {
                    let p = p.to_string_lossy().into_owned();
                    if !touched.contains(&p) {
                        touched.push(p);
                    }
                }
            }
        }
    }
    let combined: String = normalized.concat();
    let diff = parse(0, &combined)?;
    let mut check = git2::ApplyOptions::new();
    check.check(true);
    if let Err(e) = repo.apply(&diff, git2::ApplyLocation::WorkDir, Some(&mut check)) {
        // Name the first block that fails on its own; otherwise the combination is at fault.
        for (i, text) in normalized.iter().enumerate() {
            let single = parse(i + 1, text)?;
            let mut opts = git2::ApplyOptions::new();
            opts.check(true);
            if let Err(e) = repo.apply(&single, git2::ApplyLocation::WorkDir, Some(&mut opts)) {
                return Err(ApplyError::DoesNotApply {
                    block: i + 1,
                    message: e.message().to_owned(),
                });
            }
        }
        return Err(ApplyError::DoesNotApply {
            block: 0,
            message: e.message().to_owned(),
        });
    }
    repo.apply(&diff, git2::ApplyLocation::WorkDir, None)
        .map_err(|e| ApplyError::DoesNotApply {
            block: 0,
            message: e.message().to_owned(),
        })?;
    touched.sort();
    Ok(touched)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_only_diff_fences() {
        let text = "intro\n```diff\n--- a/x\n+++ b/x\n```\n```rust\nfn x(){}\n```\n````patch\n--- a/y\n```\n+++ b/y\n````\n";
        let blocks = extract_diff_blocks(text);
        assert_eq!(
            blocks,
            vec![
                "--- a/x\n+++ b/x\n".to_owned(),
                "--- a/y\n```\n+++ b/y\n".to_owned()
            ]
        );
    }

    #[test]
    fn unterminated_fence_is_dropped() {
        assert!(extract_diff_blocks("```diff\n--- a/x\n").is_empty());
    }

    #[test]
    fn normalize_adds_headers() {
        let n = normalize("--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1 @@\n+hi\n");
        assert!(
            n.starts_with("diff --git a/new.txt b/new.txt\nnew file mode 100644\n"),
            "{n}"
        );
        let already = "diff --git a/x b/x\nindex 1..2 100644\n--- a/x\n+++ b/x\n";
        assert_eq!(normalize(already), already);
    }

    proptest::proptest! {
        #[test]
        fn extraction_never_panics(s in "(?s).{0,500}") {
            for b in extract_diff_blocks(&s) {
                let _ = normalize(&b);
            }
        }
    }
}
