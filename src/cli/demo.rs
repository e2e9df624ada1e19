//! `gatekeeper demo [DIR]`: builds a sample repository whose task prompt carries its own patch,
//! runs all nine steps with the offline stand-ins, and shows the ledger, the status and where to
//! look next.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context as _, Result};

use super::{Context, printer, progress, render};
use crate::config::Env;
use crate::exit::{ExitKind, Refusal};
use crate::fsx;
use crate::workspace::TaskName;

/// The sample task's name.
pub(super) const TASK: &str = "greeting";

const CONFIG: &str = "version: 1\npipeline: ai-stack-trace\nroles:\n  gemini: { provider: standin }\n  claude: { provider: standin }\n  codex:  { provider: standin }\nchecks:\n  - { name: greeting, run: \"grep -q 'Hello, gatekeeper!' src/greeting.txt\" }\n";

const PROMPT: &str = r"# Greet gatekeeper instead of the world

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

pub(super) fn run(dir: Option<&Path>, env: &Env) -> Result<ExitKind> {
    let root = match dir {
        Some(d) => {
            if d.exists() && fs_err::read_dir(d)?.next().is_some() {
                return Err(Refusal::usage(format!("`{}` exists and is not empty", d.display()))
                    .hint("pass a new or empty folder to `gatekeeper demo`, or none for a temporary one")
                    .into());
            }
            fsx::create_dir_all(d)?;
            d.canonicalize()?
        }
        None => tempfile::Builder::new()
            .prefix("gatekeeper-demo-")
            .tempdir()?
            .keep(),
    };
    build_sample(&root)?;
    printer::note(&format!("sample repository: {}", root.display()));
    let ctx = Context::resolve(&root, env, format!("gatekeeper demo {}", root.display()))?;
    let spinner = progress::Spinner::default();
    let task = TaskName::parse(TASK)?;
    let outcomes = ctx.engine(&spinner).run(&task, None)?;
    let exit = render::outcomes(&outcomes);
    let mut out = String::from("\nledger:\n");
    tree(&root.join(".ai-stack-trace").join(TASK), &root, &mut out)?;
    out.push('\n');
    out.push_str(&render::status(
        &ctx.engine(&crate::pipeline::engine::Quiet).status(&task)?,
    ));
    let _ = write!(
        out,
        "\nwhere to look:\n  cd {0}\n  git log --oneline                      # the change commit and the ledger commit\n  cat .ai-stack-trace/{TASK}/claude/decisions.md   # the approved scope\n  cat .ai-stack-trace/{TASK}/final/status.json     # commitSha, deploy, timestamp\n  gatekeeper verify {TASK}                # chain, hashes, contracts, approval binding\n  gatekeeper status {TASK}\n",
        root.display()
    );
    printer::out(&out);
    Ok(exit)
}

fn build_sample(root: &Path) -> Result<()> {
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
    repo.commit(Some("HEAD"), &sig, &sig, "initial: a greeter\n", &tree, &[])?;
    fsx::write_atomic(
        &root.join(format!("docs/ai-gated/prompt/{TASK}.md")),
        PROMPT.as_bytes(),
    )?;
    Ok(())
}

fn tree(dir: &Path, root: &Path, out: &mut String) -> Result<()> {
    for item in walkdir::WalkDir::new(dir).sort_by_file_name().min_depth(1) {
        let item = item?;
        let depth = item.depth();
        let name = item.file_name().to_string_lossy();
        let _ = writeln!(
            out,
            "{}{}{}",
            "  ".repeat(depth),
            name,
            if item.file_type().is_dir() { "/" } else { "" }
        );
    }
    let _ = root;
    Ok(())
}
