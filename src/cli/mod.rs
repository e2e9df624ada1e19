//! The command line (SPEC §5): parsing, resolving the workspace and configuration, dispatching to
//! the domain, and mapping the result to an exit code in one place.

mod demo;
mod printer;
mod progress;
mod render;
mod serve;
mod telegram;
mod verify_phase;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use clap::{Args, Parser, Subcommand};

use crate::canonical::to_canonical_pretty;
use crate::config::{Config, Env};
use crate::exit::{ExitKind, Refusal, classify};
use crate::pipeline::Pipeline;
use crate::pipeline::engine::{Engine, Progress, Quiet};
use crate::workspace::{TaskName, Workspace};

/// gatekeeper: gated, ledgered, tamper-evident AI-assisted code changes.
#[derive(Debug, Parser)]
#[command(name = "gatekeeper", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct GlobalArgs {
    /// Run as if started in DIR.
    #[arg(short = 'C', global = true, value_name = "DIR")]
    directory: Option<PathBuf>,
    /// Print the resolved configuration as JSON and exit.
    #[arg(long, global = true, hide = true)]
    show_config: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build a sample repository whose task carries its own patch and run all steps offline.
    Demo {
        /// Where to build it (must not exist or be empty); default: a new temporary folder.
        dir: Option<PathBuf>,
    },
    /// Write a commented gatekeeper.yaml and the prompt folder.
    Init {
        /// The pipeline to configure.
        #[arg(long, default_value = "ai-stack-trace", value_parser = ["ai-stack-trace", "dev-process"])]
        pipeline: String,
    },
    /// Write a task's prompt, `docs/ai-gated/prompt/<TASK>.md`.
    New {
        /// The task name.
        task: String,
        /// The prompt text.
        #[arg(short = 'm', long = "message", conflicts_with = "file")]
        message: Option<String>,
        /// Copy the prompt from a file.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Start from an ingested SSOT task (`ssot/<ID>.json`): its request text and correlation id.
        #[arg(long = "from-ssot", value_name = "ID", conflicts_with_all = ["message", "file"])]
        from_ssot: Option<String>,
    },
    /// Run one step of a task.
    Step {
        /// The step number.
        n: u32,
        /// The task name.
        task: String,
        /// Record each provider answer as a cassette in DIR (answered later by provider `replay`).
        #[arg(long, value_name = "DIR")]
        record: Option<PathBuf>,
    },
    /// Run a task's steps, skipping those done and fresh.
    Run {
        /// The task name.
        task: String,
        /// Stop after this step.
        #[arg(long)]
        to: Option<u32>,
        /// Record each provider answer as a cassette in DIR (answered later by provider `replay`).
        #[arg(long, value_name = "DIR")]
        record: Option<PathBuf>,
    },
    /// Show the steps of a task, or every task.
    Status {
        /// The task name (all tasks when omitted).
        task: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show each changed path of a task with its verdict and the glob that decided it.
    Scope {
        /// The task name.
        task: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a new Ed25519 key pair for signing ledgers.
    Keygen,
    /// Record a human approval of a done phase, opening the next phase's gate.
    ///
    /// Without `--phase`: approve the task itself in `ssot/<TASK>.json` (`require_human_approval`).
    Approve {
        /// The task name.
        task: String,
        /// The phase (step) approved.
        #[arg(long)]
        phase: Option<u32>,
        /// Who approves (default `$USER`).
        #[arg(long)]
        by: Option<String>,
    },
    /// Reject a task in `ssot/<TASK>.json` (step 8 then stays closed under `require_human_approval`).
    Reject {
        /// The task name.
        task: String,
        /// Who rejects (default `$USER`).
        #[arg(long)]
        by: Option<String>,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Self-Audit Checklist and Final Verification Rubric, every row computed by a real check.
    Audit {
        /// The task to audit (default: every task of the workspace).
        task: Option<String>,
        /// Output format (both are always written to reports/).
        #[arg(long, default_value = "md", value_parser = ["md", "json"])]
        format: String,
    },
    /// Every tracked file with size, sha256 and role, to reports/inventory.json.
    Inventory {
        /// Where to write it.
        #[arg(long, default_value = "reports/inventory.json")]
        out: PathBuf,
    },
    /// Gate a pull request: every change covered by a verified, approved task of the PR.
    Ci {
        /// The branch or commit the PR targets (default `$GITHUB_BASE_REF`, else `origin/main`).
        #[arg(long)]
        base: Option<String>,
        /// Output format.
        #[arg(long, default_value = "text", value_parser = ["text", "github", "json"])]
        format: String,
    },
    /// Plant canaries in a scratch repository and check that every gate rejects each of them.
    Selftest,
    /// Serve the task API, its event stream and the dashboard over `ssot/` (SPEC §8).
    Serve(serve::ServeArgs),
    /// Run a phase's acceptance scenario and write its report (SPEC §9).
    VerifyPhase(verify_phase::VerifyPhaseArgs),
    /// Forward Telegram updates to the task API (SPEC §8.6).
    Telegram(telegram::TelegramArgs),
    /// Check a ledger's integrity: chain, file hashes, contracts, approval binding.
    Verify {
        /// The task name.
        #[arg(required_unless_present = "staged")]
        task: Option<String>,
        /// Verify every task whose ledger has staged changes (the pre-commit hook).
        #[arg(long, conflicts_with = "task")]
        staged: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// What a command needs: the workspace, its configuration and pipeline, the environment.
struct Context<'a> {
    ws: Workspace,
    config: Config,
    pipeline: Pipeline,
    env: &'a Env,
    command_line: String,
}

impl<'a> Context<'a> {
    fn resolve(start: &Path, env: &'a Env, command_line: String) -> Result<Context<'a>> {
        let ws = Workspace::discover(start)?;
        let config = Config::load(&ws.config_path())?;
        let pipeline = Pipeline::load(&config.pipeline, ws.root())?;
        Ok(Context {
            ws,
            config,
            pipeline,
            env,
            command_line,
        })
    }

    fn engine<'b>(&'b self, progress: &'b dyn Progress) -> Engine<'b> {
        Engine {
            ws: &self.ws,
            config: &self.config,
            pipeline: &self.pipeline,
            env: self.env,
            progress,
            command_line: self.command_line.clone(),
        }
    }
}

/// Parses and runs a command line; prints errors; returns the exit kind.
pub fn main<I, T>(args: I, env: &Env) -> ExitKind
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let command_line = args
        .iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                ExitKind::Usage
            } else {
                ExitKind::Done
            };
        }
    };
    match dispatch(cli, env, command_line) {
        Ok(kind) => kind,
        Err(err) => {
            let (kind, refusal) = classify(&err);
            printer::error(&err, refusal);
            kind
        }
    }
}

fn dispatch(cli: Cli, env: &Env, command_line: String) -> Result<ExitKind> {
    let start = match &cli.global.directory {
        Some(d) => d.clone(),
        None => std::env::current_dir().context("failed to read the current directory")?,
    };
    if let Command::Demo { dir } = &cli.command {
        return demo::run(dir.as_deref(), env);
    }
    if let Command::Selftest = &cli.command {
        let checks = crate::selftest::run(env)?;
        printer::out(&crate::selftest::table(&checks));
        return Ok(if checks.iter().all(|c| c.pass) {
            ExitKind::Done
        } else {
            ExitKind::Failed
        });
    }
    if let Command::Keygen = &cli.command {
        let signer = crate::ledger::signing::Signer::generate()?;
        printer::out(&format!(
            "GATEKEEPER_SIGNING_KEY={}\npublic key: {}",
            signer.secret_hex(),
            signer.public_hex()
        ));
        printer::hint(
            "keep the secret in your CI's secret store as GATEKEEPER_SIGNING_KEY; put the public key under `trust.keys` in gatekeeper.yaml",
        );
        return Ok(ExitKind::Done);
    }
    if let Command::Serve(args) = &cli.command {
        return serve::run(args, &start, env);
    }
    if let Command::VerifyPhase(args) = &cli.command {
        return verify_phase::run(args, &start, env);
    }
    if let Command::Telegram(args) = &cli.command {
        return telegram::run(args, &start, env);
    }
    if let Command::Ci { base, format } = &cli.command
        && !cli.global.show_config
    {
        // Policy comes from the base revision (SPEC §6): the working tree's configuration and
        // pipeline are the pull request's, neither read nor needed.
        let (ws, repo) = Workspace::discover_repo(&start)?;
        return ci(&ws, &repo, env, base.as_deref(), format);
    }
    let ctx = Context::resolve(&start, env, command_line)?;
    if cli.global.show_config {
        printer::out(&to_canonical_pretty(&ctx.config));
        return Ok(ExitKind::Done);
    }
    let spinner = progress::Spinner::default();
    match cli.command {
        Command::Demo { .. }
        | Command::Keygen
        | Command::Selftest
        | Command::Serve(_)
        | Command::VerifyPhase(_)
        | Command::Telegram(_)
        | Command::Ci { .. } => unreachable!("handled above"),
        Command::Init { pipeline } => init(&ctx.ws, &pipeline),
        Command::New {
            task,
            from_ssot: Some(id),
            ..
        } => telegram::new_from_ssot(&ctx.ws, &TaskName::parse(&task)?, &id),
        Command::New {
            task,
            message,
            file,
            from_ssot: None,
        } => new(&ctx.ws, &TaskName::parse(&task)?, message, file.as_deref()),
        Command::Step { n, task, record } => {
            let task = TaskName::parse(&task)?;
            let recording = recording_env(env, &start, record.as_deref())?;
            let mut engine = ctx.engine(&spinner);
            if let Some(e) = &recording {
                engine.env = e;
            }
            let outcome = engine.step(&task, n)?;
            Ok(render::outcomes(&[outcome]))
        }
        Command::Run { task, to, record } => {
            let task = TaskName::parse(&task)?;
            let recording = recording_env(env, &start, record.as_deref())?;
            let mut engine = ctx.engine(&spinner);
            if let Some(e) = &recording {
                engine.env = e;
            }
            let outcomes = engine.run(&task, to)?;
            Ok(render::outcomes(&outcomes))
        }
        Command::Status { task, json } => status(&ctx, task.as_deref(), json),
        Command::Scope { task, json } => {
            let task = TaskName::parse(&task)?;
            require_ledger(&ctx.ws, &task)?;
            let report = ctx.engine(&Quiet).scope(&task)?;
            if json {
                printer::out(&to_canonical_pretty(&report));
            } else {
                printer::out(&render::scope(&report));
            }
            Ok(if report.ok {
                ExitKind::Done
            } else {
                ExitKind::ScopeViolation
            })
        }
        Command::Approve { task, phase, by } => {
            let task = TaskName::parse(&task)?;
            let by = by
                .or_else(|| env.get("USER").map(str::to_owned))
                .unwrap_or_else(|| "unknown".to_owned());
            let Some(phase) = phase else {
                // Without `--phase`: the task's SSOT decision (SPEC §8.1).
                return decide(
                    &ctx,
                    &task,
                    crate::store::Verdict::Approved,
                    &by,
                    None,
                    "approved",
                );
            };
            let outcome = ctx.engine(&Quiet).approve(&task, phase, &by)?;
            Ok(render::outcomes(&[outcome]))
        }
        Command::Reject { task, by, reason } => {
            let task = TaskName::parse(&task)?;
            let by = by
                .or_else(|| env.get("USER").map(str::to_owned))
                .unwrap_or_else(|| "unknown".to_owned());
            decide(
                &ctx,
                &task,
                crate::store::Verdict::Rejected,
                &by,
                reason,
                "rejected",
            )
        }
        Command::Audit { task, format } => audit(&ctx, task.as_deref(), &format),
        Command::Inventory { out } => {
            let inventory = crate::inventory::build(&ctx.ws)?;
            let path = if out.is_absolute() {
                out
            } else {
                ctx.ws.root().join(out)
            };
            crate::fsx::write_atomic(&path, to_canonical_pretty(&inventory).as_bytes())?;
            let roles: Vec<String> = inventory
                .by_role
                .iter()
                .map(|(r, t)| format!("{r} {}", t.files))
                .collect();
            printer::out(&format!(
                "{} tracked file(s), {} bytes ({}) → {}",
                inventory.total_files,
                inventory.total_bytes,
                roles.join(", "),
                path.display()
            ));
            Ok(ExitKind::Done)
        }
        Command::Verify { task, staged, json } => {
            let tasks = match task {
                Some(t) => vec![TaskName::parse(&t)?],
                None if staged => staged_tasks(&ctx.ws)?,
                None => Vec::new(),
            };
            let mut exit = ExitKind::Done;
            for task in &tasks {
                let report = ctx.engine(&Quiet).verify(task)?;
                if json {
                    printer::out(&to_canonical_pretty(&report));
                } else {
                    printer::out(&render::verify(task, &report));
                }
                if !report.findings.is_empty() {
                    exit = ExitKind::Integrity;
                }
            }
            Ok(exit)
        }
    }
}

fn ci(
    ws: &Workspace,
    repo: &git2::Repository,
    env: &Env,
    base: Option<&str>,
    format: &str,
) -> Result<ExitKind> {
    let report = crate::ci::run_in(ws, repo, env, base)?;
    let rendered = match format {
        "github" => crate::ci::format::github(&report),
        "json" => crate::ci::format::json(&report),
        _ => crate::ci::format::text(&report),
    };
    printer::out(&rendered);
    if let Some(summary) = env.get("GITHUB_STEP_SUMMARY") {
        crate::fsx::append_line(Path::new(summary), &crate::ci::format::markdown(&report))
            .context("failed to append to $GITHUB_STEP_SUMMARY")?;
    }
    Ok(report.exit)
}

/// `--record DIR`: the environment the providers see, carrying the absolute cassette folder.
fn recording_env(env: &Env, start: &Path, dir: Option<&Path>) -> Result<Option<Env>> {
    let Some(dir) = dir else { return Ok(None) };
    let dir = std::path::absolute(start.join(dir))
        .with_context(|| format!("cannot resolve `--record {}`", dir.display()))?;
    let dir = dir.to_str().ok_or_else(|| {
        Refusal::usage(format!("`--record {}` is not a UTF-8 path", dir.display()))
            .hint("pick a folder whose path is UTF-8")
    })?;
    let var = crate::providers::replay::RECORD_VAR;
    Ok(Some(Env::from_pairs(
        env.iter()
            .filter(|(k, _)| *k != var)
            .chain([(var, dir)])
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
    )))
}

/// The tasks whose ledgers have staged changes.
fn staged_tasks(ws: &Workspace) -> Result<Vec<TaskName>> {
    let repo = ws.repo()?;
    let head = repo.head().ok().and_then(|h| h.peel_to_tree().ok());
    let diff = repo.diff_tree_to_index(head.as_ref(), None, None)?;
    let mut tasks = std::collections::BTreeSet::new();
    for delta in diff.deltas() {
        for file in [delta.old_file(), delta.new_file()] {
            let Some(path) = file.path().and_then(|p| p.to_str()) else {
                continue;
            };
            let Some(rest) = path.strip_prefix(&format!("{}/", crate::workspace::LEDGER_ROOT))
            else {
                continue;
            };
            if let Some(name) = rest.split('/').next().and_then(|n| TaskName::parse(n).ok())
                && ws.ledger_dir(&name).exists()
            {
                tasks.insert(name);
            }
        }
    }
    Ok(tasks.into_iter().collect())
}

fn audit(ctx: &Context<'_>, task: Option<&str>, format: &str) -> Result<ExitKind> {
    let task = task.map(TaskName::parse).transpose()?;
    if let Some(t) = &task {
        require_ledger(&ctx.ws, t)?;
    }
    let report =
        crate::selfaudit::run(&ctx.ws, &ctx.config, &ctx.pipeline, ctx.env, task.as_ref())?;
    let md = crate::selfaudit::markdown(&report);
    let json = to_canonical_pretty(&report);
    let reports = ctx.ws.root().join("reports");
    crate::fsx::write_atomic(&reports.join("self-audit.md"), md.as_bytes())?;
    crate::fsx::write_atomic(&reports.join("self-audit.json"), json.as_bytes())?;
    printer::out(if format == "json" { &json } else { &md });
    if report.pass {
        Ok(ExitKind::Done)
    } else {
        printer::hint(
            "the failing rows are listed under KNOWN GAPS / TODOs (reports/self-audit.md)",
        );
        Ok(ExitKind::Failed)
    }
}

/// Records the task's SSOT decision through the store's locked write path.
fn decide(
    ctx: &Context<'_>,
    task: &TaskName,
    verdict: crate::store::Verdict,
    by: &str,
    reason: Option<String>,
    label: &str,
) -> Result<ExitKind> {
    let correlation_id = crate::ledger::Ledger::open(&ctx.ws, task)
        .map(|l| l.correlation_id().to_owned())
        .unwrap_or_default();
    let record = crate::pipeline::mirror::decide(
        &crate::pipeline::mirror::ssot_dir(&ctx.ws),
        task.as_str(),
        &correlation_id,
        verdict,
        by,
        reason,
    )
    .map_err(|e| Refusal::usage(format!("{e:#}")))?;
    printer::out(&format!(
        "{label} `{task}` by {by}: ssot/{task}.json is at version {}\n",
        record.version
    ));
    Ok(ExitKind::Done)
}

fn require_ledger(ws: &Workspace, task: &TaskName) -> Result<()> {
    if ws.ledger_dir(task).join(crate::ledger::JOURNAL).is_file() {
        Ok(())
    } else {
        Err(Refusal::usage(format!("task `{task}` has no ledger"))
            .hint(format!("run `gatekeeper step 0 {task}` first"))
            .into())
    }
}

fn status(ctx: &Context<'_>, task: Option<&str>, json: bool) -> Result<ExitKind> {
    let engine = ctx.engine(&Quiet);
    match task {
        Some(task) => {
            let task = TaskName::parse(task)?;
            require_ledger(&ctx.ws, &task)?;
            let st = engine.status(&task)?;
            if json {
                printer::out(&to_canonical_pretty(&st));
            } else {
                printer::out(&render::status(&st));
            }
        }
        None => {
            let rows = render::overview(&ctx.ws, &ctx.pipeline)?;
            if json {
                printer::out(&to_canonical_pretty(&serde_json::json!({ "tasks": rows })));
            } else {
                printer::out(&render::overview_table(&rows));
            }
        }
    }
    Ok(ExitKind::Done)
}

const CONFIG_TEMPLATE: &str = include_str!("../../templates/gatekeeper.yaml");

fn init(ws: &Workspace, pipeline: &str) -> Result<ExitKind> {
    let path = ws.config_path();
    if path.exists() {
        return Err(Refusal::usage(format!(
            "`{}` already exists; init changes nothing",
            path.display()
        ))
        .hint("edit it, or delete it and run `gatekeeper init` again")
        .into());
    }
    let text = CONFIG_TEMPLATE.replace("{{PIPELINE}}", pipeline);
    Config::parse(text.as_bytes(), "built-in gatekeeper.yaml")
        .context("the built-in configuration is invalid")?;
    crate::fsx::create_dir_all(&ws.root().join(crate::workspace::PROMPT_DIR))?;
    crate::fsx::write_atomic(&path, text.as_bytes())?;
    printer::out(&format!("wrote {}", path.display()));
    printer::hint(
        "write a task with `gatekeeper new <TASK> -m \"what to do\"`, commit gatekeeper.yaml, then `gatekeeper run <TASK>`",
    );
    Ok(ExitKind::Done)
}

fn new(
    ws: &Workspace,
    task: &TaskName,
    message: Option<String>,
    file: Option<&Path>,
) -> Result<ExitKind> {
    let path = ws.prompt_path(task);
    if path.exists() {
        return Err(Refusal::usage(format!(
            "the prompt `{}` already exists",
            Workspace::prompt_rel(task)
        ))
        .hint("edit it, or pick another task name")
        .into());
    }
    let text = match (message, file) {
        (Some(m), _) => {
            let mut m = m;
            if !m.ends_with('\n') {
                m.push('\n');
            }
            m
        }
        (None, Some(f)) => fs_err::read_to_string(f).map_err(|e| {
            Refusal::usage(format!("cannot read `{}`: {e}", f.display()))
                .hint("pass a readable UTF-8 file to `--file`")
        })?,
        (None, None) => format!(
            "# {task}\n\nDescribe the change.\n\n## Acceptance criteria\n\n- AC-1: …\n\n## Allowed paths\n\n- `src/**`\n\n## Forbidden\n\n- `.github/**`\n"
        ),
    };
    if text.trim().is_empty() {
        return Err(Refusal::usage("the prompt is empty")
            .hint("pass the task text with `-m` or `--file`")
            .into());
    }
    crate::fsx::write_atomic(&path, text.as_bytes())?;
    printer::out(&format!("wrote {}", Workspace::prompt_rel(task)));
    printer::hint(&format!("run `gatekeeper run {task}`"));
    Ok(ExitKind::Done)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
