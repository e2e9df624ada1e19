//! The sample repository of `gatekeeper demo` and `gatekeeper selftest`: a greeter whose task
//! prompt carries its own patch, so the stand-ins run it end to end offline.

use std::path::Path;

use anyhow::{Context as _, Result};

use crate::fsx;

/// The sample task's name.
pub const TASK: &str = "greeting";

/// The sample configuration: stand-ins and one check that passes once the patch is applied.
pub const CONFIG: &str = "version: 1\npipeline: ai-stack-trace\nroles:\n  gemini: { provider: standin }\n  claude: { provider: standin }\n  codex:  { provider: standin }\nchecks:\n  - { name: greeting, run: \"grep -q 'Hello, gatekeeper!' src/greeting.txt\" }\n";

/// The sample task's prompt.
pub const PROMPT: &str = r"# Greet gatekeeper instead of the world

The greeting in `src/greeting.txt` should name gatekeeper. Nothing else changes.

## Acceptance criteria

- AC-1: `src/greeting.txt` says `Hello, gatekeeper!`
- AC-2: `README.md` is unchanged

## Allowed paths

- `src/greeting.txt`

## Forbidden

- `README.md`
- no new files

## Patch

```diff
--- a/src/greeting.txt
+++ b/src/greeting.txt
@@ -1 +1 @@
-Hello, world!
+Hello, gatekeeper!
```
";

/// Builds the sample repository in `root` (an empty folder): files, configuration, one commit,
/// and the uncommitted task prompt. Returns the initial commit id.
///
/// # Errors
/// I/O or git errors.
pub fn build(root: &Path) -> Result<String> {
    let repo = git2::Repository::init(root).context("failed to create the sample repository")?;
    fsx::write_atomic(
        &root.join("README.md"),
        b"# greeter\n\nPrints a greeting.\n",
    )?;
    fsx::write_atomic(&root.join("src/greeting.txt"), b"Hello, world!\n")?;
    fsx::write_atomic(&root.join("gatekeeper.yaml"), CONFIG.as_bytes())?;
    let mut index = repo.index()?;
    for p in ["README.md", "src/greeting.txt", "gatekeeper.yaml"] {
        index.add_path(Path::new(p))?;
    }
    index.write()?;
    let tree = repo.find_tree(index.write_tree()?)?;
    let sig = git2::Signature::now("gatekeeper demo", "demo@gatekeeper.invalid")?;
    let oid = repo.commit(Some("HEAD"), &sig, &sig, "initial: a greeter\n", &tree, &[])?;
    fsx::write_atomic(
        &root.join(format!("docs/ai-gated/prompt/{TASK}.md")),
        PROMPT.as_bytes(),
    )?;
    Ok(oid.to_string())
}
