//! `gatekeeper demo [DIR]`: builds a sample repository whose task prompt carries its own patch,
//! runs all nine steps with the offline stand-ins, and shows the ledger, the status and where to
//! look next.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;

use super::{Context, printer, progress, render};
use crate::config::Env;
use crate::exit::{ExitKind, Refusal};
use crate::fsx;
use crate::sample::TASK;
use crate::workspace::TaskName;

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
    crate::sample::build(&root)?;
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
