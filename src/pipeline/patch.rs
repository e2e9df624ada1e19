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

/// The inverse of a normalized block: applying it undoes the block. Used to recognise a block
/// whose change is already in the tree (a re-run of the step). Pure.
#[must_use]
pub fn reverse(block: &str) -> String {
    let lines: Vec<&str> = block.lines().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if let Some(rest) = line.strip_prefix("diff --git ") {
            let swapped = match rest.split_once(" b/") {
                Some((a, b)) => format!("diff --git a/{b} b/{}", a.trim_start_matches("a/")),
                None => rest.to_owned(),
            };
            out.push_str(&swapped);
        } else if line.starts_with("--- ")
            && i + 1 < lines.len()
            && lines[i + 1].starts_with("+++ ")
        {
            let old = &line[4..];
            let new = &lines[i + 1][4..];
            let flip = |p: &str, to: &str| {
                if p == "/dev/null" {
                    p.to_owned()
                } else {
                    format!(
                        "{to}{}",
                        p.trim_start_matches("a/").trim_start_matches("b/")
                    )
                }
            };
            out.push_str(&format!("--- {}\n+++ {}", flip(new, "a/"), flip(old, "b/")));
            i += 1;
        } else if let Some(rest) = line.strip_prefix("new file mode ") {
            out.push_str(&format!("deleted file mode {rest}"));
        } else if let Some(rest) = line.strip_prefix("deleted file mode ") {
            out.push_str(&format!("new file mode {rest}"));
        } else if let Some(rest) = line.strip_prefix("@@ -") {
            // @@ -a,b +c,d @@ tail  →  @@ -c,d +a,b @@ tail
            match rest
                .split_once(" +")
                .and_then(|(old, r)| r.split_once(" @@").map(|(new, tail)| (old, new, tail)))
            {
                Some((old, new, tail)) => out.push_str(&format!("@@ -{new} +{old} @@{tail}")),
                None => out.push_str(line),
            }
        } else if let Some(rest) = line.strip_prefix('+') {
            out.push('-');
            out.push_str(rest);
        } else if let Some(rest) = line.strip_prefix('-') {
            out.push('+');
            out.push_str(rest);
        } else if line.starts_with("index ") {
            i += 1;
            continue;
        } else {
            out.push_str(line);
        }
        out.push('\n');
        i += 1;
    }
    out
}

fn applies(repo: &git2::Repository, diff: &git2::Diff<'_>) -> Result<(), git2::Error> {
    let mut check = git2::ApplyOptions::new();
    check.check(true);
    repo.apply(diff, git2::ApplyLocation::WorkDir, Some(&mut check))
}

/// What [`apply_all`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// The paths the applied blocks touch, sorted.
    pub touched: Vec<String>,
    /// Blocks (1-based) skipped because their change is already in the tree.
    pub already_applied: Vec<usize>,
}

/// Checks that every block applies (or is already applied), then applies the rest together.
///
/// # Errors
/// [`ApplyError`] when any block fails to parse or apply; then nothing was changed.
/// A block counts as already applied when its reverse applies to the working tree *and* it
/// applies to `base` (the task's base tree): the change was made from the base, and is there.
pub fn apply_all(
    repo: &git2::Repository,
    blocks: &[String],
    base: Option<&git2::Tree<'_>>,
) -> Result<Applied, ApplyError> {
    let mut result = Applied::default();
    let mut pending = Vec::new();
    for (i, block) in blocks.iter().enumerate() {
        let text = normalize(block);
        let diff = parse(i + 1, &text)?;
        if let Err(e) = applies(repo, &diff) {
            let undone = parse(i + 1, &reverse(&text)).ok();
            let from_base = base.is_some_and(|t| repo.apply_to_tree(t, &diff, None).is_ok());
            if from_base && undone.as_ref().is_some_and(|d| applies(repo, d).is_ok()) {
                result.already_applied.push(i + 1);
                continue;
            }
            return Err(ApplyError::DoesNotApply {
                block: i + 1,
                message: e.message().to_owned(),
            });
        }
        for delta in diff.deltas() {
            for file in [delta.old_file(), delta.new_file()] {
                if let Some(p) = file.path() {
                    let p = p.to_string_lossy().into_owned();
                    if !result.touched.contains(&p) {
                        result.touched.push(p);
                    }
                }
            }
        }
        pending.push(text);
    }
    if pending.is_empty() {
        return Ok(result);
    }
    let combined: String = pending.concat();
    let diff = parse(0, &combined)?;
    applies(repo, &diff).map_err(|e| ApplyError::DoesNotApply {
        block: 0,
        message: e.message().to_owned(),
    })?;
    repo.apply(&diff, git2::ApplyLocation::WorkDir, None)
        .map_err(|e| ApplyError::DoesNotApply {
            block: 0,
            message: e.message().to_owned(),
        })?;
    result.touched.sort();
    Ok(result)
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
    fn reverse_swaps_sides() {
        let b = normalize("--- a/x\n+++ b/x\n@@ -1 +1,2 @@ ctx\n-old\n+new\n+more\n");
        let r = reverse(&b);
        assert!(r.contains("@@ -1,2 +1 @@ ctx\n+old\n-new\n-more\n"), "{r}");
        let n = normalize("--- /dev/null\n+++ b/n.txt\n@@ -0,0 +1 @@\n+hi\n");
        let r = reverse(&n);
        assert!(
            r.contains("deleted file mode 100644\n--- a/n.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-hi"),
            "{r}"
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
