//! `gatekeeper audit` (SPEC §7): seed 000's Self-Audit Checklist and Final Verification Rubric,
//! each row computed by a real check — a command's exit code, a pattern at file:line, a file's
//! presence, a fact of the ledger, a secret scan, a clean tree, the assumptions register — and
//! `Manual` only where nothing can be checked. Failing rows become KNOWN GAPS / TODOs.

pub mod assumptions;

use std::fmt::Write as _;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::config::{Config, Env};
use crate::ledger::Ledger;
use crate::ledger::integrity::approved_change_set;
use crate::ledger::journal::events;
use crate::pipeline::Pipeline;
use crate::pipeline::decisions::{first_backticked, section_bullets};
use crate::pipeline::engine::{Engine, Quiet};
use crate::scope::ScopeRules;
use crate::workspace::{TaskName, Workspace};

/// The embedded default rows.
pub const DEFAULTS: &str = include_str!("../../templates/audit-defaults.yaml");

/// A fact of the ledger a row can check.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LedgerFact {
    /// Every step ended at a recorded gate: each finished step's predecessor was done first, and
    /// phases were approved before the next began.
    GatesFollowed,
    /// Every changed file is named in `codex/apply.md`, a fix, or a phase's `[FILE]` block.
    ChangesExplained,
    /// `gatekeeper verify` finds nothing.
    Verified,
    /// The last run of the checks passed.
    ChecksPassed,
    /// The decisions state whether schema changes are required.
    SchemaDeclared,
    /// Every acceptance criterion of the prompt is addressed in the implementation or review.
    CriteriaAddressed,
    /// Step 8 committed once per approval.
    IdempotentCommit,
}

/// How a row is checked.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CheckSpec {
    /// A command (`sh -c`) must exit 0.
    Command {
        /// The command line.
        run: String,
    },
    /// A regex must match in the tracked files under `paths` (or, with `absent`, must not).
    Pattern {
        /// The regex.
        regex: String,
        /// Globs of the files to search (all tracked files when empty).
        #[serde(default)]
        paths: Vec<String>,
        /// Pass when nothing matches.
        #[serde(default)]
        absent: bool,
    },
    /// One of the globs must match a tracked file.
    File {
        /// Globs.
        globs: Vec<String>,
    },
    /// No tracked file holds a known secret shape.
    SecretScan,
    /// `git status` is clean.
    CleanTree,
    /// A ledger fact.
    Ledger {
        /// Which one.
        fact: LedgerFact,
    },
    /// The assumptions register is complete.
    Assumptions,
    /// Nothing can be checked mechanically.
    Manual {
        /// What a person should look at.
        #[serde(default)]
        note: Option<String>,
    },
}

/// One configured row.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RowConfig {
    /// The checklist item or rubric criterion.
    pub item: String,
    /// The rubric's description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// How it is checked.
    pub check: CheckSpec,
    /// What to do when it fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_up: Option<String>,
    /// Who owns the follow-up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// When it is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta: Option<String>,
}

/// `audit:` in gatekeeper.yaml.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Replaces the default checklist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checklist: Option<Vec<RowConfig>>,
    /// Replaces the default rubric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rubric: Option<Vec<RowConfig>>,
    /// Globs the secret scan skips (test fixtures with fake keys, say).
    #[serde(default)]
    pub secret_scan_exclude: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Defaults {
    checklist: Vec<RowConfig>,
    rubric: Vec<RowConfig>,
}

/// A row's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Outcome {
    /// Checked and holds.
    Pass,
    /// Checked and does not hold.
    Fail,
    /// Cannot be checked mechanically.
    Manual,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Pass => "Pass",
            Outcome::Fail => "Fail",
            Outcome::Manual => "Manual",
        }
    }
}

/// One computed row.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// Item or criterion.
    pub item: String,
    /// The rubric's description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Pass, Fail or Manual.
    pub result: Outcome,
    /// `file:line`, a command and its exit code, or what a person should look at.
    pub evidence: String,
    /// The follow-up.
    pub follow_up: String,
    /// Owner of the follow-up.
    pub owner: String,
    /// Due date.
    pub eta: String,
}

/// The self-audit.
#[derive(Clone, Debug, Serialize)]
pub struct SelfAudit {
    /// The task audited, if any (else every task of the workspace).
    pub task: Option<String>,
    /// The Self-Audit Checklist.
    pub checklist: Vec<Row>,
    /// The Final Verification Rubric.
    pub rubric: Vec<Row>,
    /// The assumptions register.
    pub assumptions: assumptions::Register,
    /// True when no row failed.
    pub pass: bool,
}

struct Ctx<'a> {
    ws: &'a Workspace,
    config: &'a Config,
    pipeline: &'a Pipeline,
    env: &'a Env,
    tasks: Vec<TaskName>,
    tracked: Vec<String>,
    register: &'a assumptions::Register,
}

/// Runs the self-audit.
///
/// # Errors
/// Bad default rows (a build error), git errors.
pub fn run(
    ws: &Workspace,
    config: &Config,
    pipeline: &Pipeline,
    env: &Env,
    task: Option<&TaskName>,
) -> Result<SelfAudit> {
    let defaults: Defaults = serde_norway::from_str(DEFAULTS)?;
    let checklist_cfg = config.audit.checklist.clone().unwrap_or(defaults.checklist);
    let rubric_cfg = config.audit.rubric.clone().unwrap_or(defaults.rubric);
    let tasks = match task {
        Some(t) => vec![t.clone()],
        None => ws.task_names()?,
    };
    let repo = ws.repo()?;
    let tracked: Vec<String> = repo
        .index()?
        .iter()
        .filter_map(|e| String::from_utf8(e.path).ok())
        .collect();
    let register = assumptions::read(ws.root(), task.map(TaskName::as_str))?;
    let ctx = Ctx {
        ws,
        config,
        pipeline,
        env,
        tasks,
        tracked,
        register: &register,
    };
    let checklist: Vec<Row> = checklist_cfg.iter().map(|r| ctx.row(r)).collect();
    let rubric: Vec<Row> = rubric_cfg.iter().map(|r| ctx.row(r)).collect();
    let pass = checklist
        .iter()
        .chain(&rubric)
        .all(|r| r.result != Outcome::Fail);
    Ok(SelfAudit {
        task: task.map(ToString::to_string),
        checklist,
        rubric,
        assumptions: register,
        pass,
    })
}

type Checked = (Outcome, String);

impl Ctx<'_> {
    fn row(&self, cfg: &RowConfig) -> Row {
        let (result, evidence) = self
            .check(&cfg.check)
            .unwrap_or_else(|e| (Outcome::Fail, format!("the check could not run: {e:#}")));
        let follow_up = match result {
            Outcome::Pass => "—".to_owned(),
            Outcome::Manual => match &cfg.check {
                CheckSpec::Manual { note: Some(n) } => format!("review by hand: {n}"),
                _ => "review by hand".to_owned(),
            },
            Outcome::Fail => cfg
                .follow_up
                .clone()
                .unwrap_or_else(|| "fix and re-run `gatekeeper audit`".to_owned()),
        };
        Row {
            item: cfg.item.clone(),
            description: cfg.description.clone(),
            result,
            evidence,
            follow_up,
            owner: cfg.owner.clone().unwrap_or_else(|| "unassigned".to_owned()),
            eta: cfg.eta.clone().unwrap_or_else(|| "not set".to_owned()),
        }
    }

    fn check(&self, spec: &CheckSpec) -> Result<Checked> {
        match spec {
            CheckSpec::Manual { note } => Ok((
                Outcome::Manual,
                note.clone()
                    .unwrap_or_else(|| "nothing to check mechanically".to_owned()),
            )),
            CheckSpec::Command { run } => {
                let done = crate::process::run(&crate::process::Spec {
                    argv: crate::process::shell(run),
                    cwd: self.ws.root(),
                    stdin: None,
                    env: self.env,
                    extra_env: Vec::new(),
                    timeout: std::time::Duration::from_secs(30 * 60),
                })?;
                let code = done.code.map_or_else(
                    || "no exit code (killed)".to_owned(),
                    |c| format!("exit {c}"),
                );
                Ok((
                    if done.success() {
                        Outcome::Pass
                    } else {
                        Outcome::Fail
                    },
                    format!("`{run}`: {code}"),
                ))
            }
            CheckSpec::Pattern {
                regex,
                paths,
                absent,
            } => self.pattern(regex, paths, *absent),
            CheckSpec::File { globs } => {
                let rules = ScopeRules::new(globs, Vec::<String>::new())?;
                Ok(
                    match self.tracked.iter().find(|p| rules.check(p).in_scope()) {
                        Some(p) => (Outcome::Pass, format!("{p}:1")),
                        None => (
                            Outcome::Fail,
                            format!("no tracked file matches {}", globs.join(", ")),
                        ),
                    },
                )
            }
            CheckSpec::SecretScan => self.secret_scan(),
            CheckSpec::CleanTree => {
                let repo = self.ws.repo()?;
                let mut opts = git2::StatusOptions::new();
                opts.include_untracked(true).recurse_untracked_dirs(true);
                let dirty: Vec<String> = repo
                    .statuses(Some(&mut opts))?
                    .iter()
                    .filter_map(|s| s.path().ok().map(str::to_owned))
                    .collect();
                // gatekeeper's own files and the changes a task recorded are accounted for.
                let recorded: std::collections::BTreeSet<String> = self
                    .ledgers()
                    .iter()
                    .filter_map(|(_, l)| recorded_change_set(l))
                    .flat_map(|c| c.paths.into_iter().map(|p| p.path))
                    .collect();
                let stray: Vec<&String> = dirty
                    .iter()
                    .filter(|p| {
                        !(p.starts_with(".ai-stack-trace/")
                            || p.starts_with("reports/")
                            || p.starts_with("docs/ai-gated/")
                            || recorded.contains(*p))
                    })
                    .collect();
                Ok(match stray.first() {
                    None if dirty.is_empty() => (Outcome::Pass, "git status: clean".to_owned()),
                    None => (
                        Outcome::Pass,
                        format!(
                            "git status: {} change(s), all gatekeeper's or recorded by a task",
                            dirty.len()
                        ),
                    ),
                    Some(first) => (
                        Outcome::Fail,
                        format!(
                            "{} change(s) no task accounts for, first `{first}`",
                            stray.len()
                        ),
                    ),
                })
            }
            CheckSpec::Assumptions => {
                let r = self.register;
                Ok(if r.files.is_empty() {
                    (
                        Outcome::Manual,
                        "no register (`docs/assumptions.yaml`); list any assumption there"
                            .to_owned(),
                    )
                } else if let Some(first) = r.incomplete.first() {
                    (
                        Outcome::Fail,
                        format!("{} incomplete: {first}", r.incomplete.len()),
                    )
                } else {
                    (
                        Outcome::Pass,
                        format!(
                            "{}:1 ({} entries, {} pending)",
                            r.files[0],
                            r.entries.len(),
                            r.pending.len()
                        ),
                    )
                })
            }
            CheckSpec::Ledger { fact } => self.ledger_fact(*fact),
        }
    }

    fn pattern(&self, regex: &str, paths: &[String], absent: bool) -> Result<Checked> {
        let re = regex::Regex::new(regex)?;
        let rules = if paths.is_empty() {
            ScopeRules::new(["**"], Vec::<String>::new())?
        } else {
            ScopeRules::new(paths, Vec::<String>::new())?
        };
        for p in self.tracked.iter().filter(|p| rules.check(p).in_scope()) {
            let Ok(text) = std::fs::read_to_string(self.ws.root().join(p)) else {
                continue;
            };
            if let Some(m) = re.find(&text) {
                let line = text[..m.start()].matches('\n').count() + 1;
                let at = format!("{p}:{line}");
                return Ok(if absent {
                    (Outcome::Fail, format!("{at} matches `{regex}`"))
                } else {
                    (Outcome::Pass, at)
                });
            }
        }
        Ok(if absent {
            (Outcome::Pass, format!("no match for `{regex}`"))
        } else {
            (Outcome::Fail, format!("no tracked file matches `{regex}`"))
        })
    }

    fn secret_scan(&self) -> Result<Checked> {
        let skip = ScopeRules::new(&self.config.audit.secret_scan_exclude, Vec::<String>::new())?;
        let mut scanned = 0;
        for p in &self.tracked {
            if skip.check(p).in_scope() {
                continue;
            }
            let Ok(bytes) = std::fs::read(self.ws.root().join(p)) else {
                continue;
            };
            if bytes.len() > (1 << 20) || bytes.contains(&0) {
                continue;
            }
            scanned += 1;
            let text = String::from_utf8_lossy(&bytes);
            if let Some((line, kind)) = crate::secrets::scan(&text).first() {
                return Ok((Outcome::Fail, format!("{p}:{line} holds a secret ({kind})")));
            }
        }
        Ok((
            Outcome::Pass,
            format!("no secret shapes in {scanned} tracked file(s)"),
        ))
    }

    fn ledgers(&self) -> Vec<(TaskName, Ledger)> {
        self.tasks
            .iter()
            .filter_map(|t| Ledger::open(self.ws, t).ok().map(|l| (t.clone(), l)))
            .filter(|(_, l)| l.exists())
            .collect()
    }

    fn ledger_fact(&self, fact: LedgerFact) -> Result<Checked> {
        let ledgers = self.ledgers();
        if ledgers.is_empty() {
            return Ok((
                Outcome::Manual,
                "no task ledger to check (`gatekeeper audit <TASK>`)".to_owned(),
            ));
        }
        let mut evidence = Vec::new();
        for (task, ledger) in &ledgers {
            let (outcome, at) = self.fact_of(fact, task, ledger)?;
            if outcome != Outcome::Pass {
                return Ok((outcome, at));
            }
            evidence.push(at);
        }
        Ok((Outcome::Pass, evidence.join("; ")))
    }

    fn fact_of(&self, fact: LedgerFact, task: &TaskName, ledger: &Ledger) -> Result<Checked> {
        let rel = |f: &str| format!("{}/{f}", Workspace::ledger_rel(task));
        let journal = rel("ledger.jsonl");
        match fact {
            LedgerFact::Verified => {
                let engine = Engine {
                    ws: self.ws,
                    config: self.config,
                    pipeline: self.pipeline,
                    env: self.env,
                    progress: &Quiet,
                    command_line: "gatekeeper audit".to_owned(),
                };
                let report = engine.verify(task)?;
                Ok(match report.findings.first() {
                    None => (
                        Outcome::Pass,
                        format!(
                            "{journal}:{} (chain, {} files, contracts verified)",
                            report.journal_lines, report.files_checked
                        ),
                    ),
                    Some(f) => (
                        Outcome::Fail,
                        format!("{}: {}", f.path.clone().unwrap_or(journal), f.message),
                    ),
                })
            }
            LedgerFact::GatesFollowed => Ok(gates_followed(self.pipeline, ledger, &journal)),
            LedgerFact::ChecksPassed => {
                let log = ledger.read_text("tests/run.log")?;
                let last = log
                    .lines()
                    .enumerate()
                    .filter(|(_, l)| l.starts_with("=== attempt") && l.contains(" passed, "))
                    .last();
                Ok(match last {
                    Some((i, l)) if l.contains(" 0 failed") => {
                        (Outcome::Pass, format!("{}:{}", rel("tests/run.log"), i + 1))
                    }
                    Some((i, _)) => (
                        Outcome::Fail,
                        format!("{}:{} (checks failed)", rel("tests/run.log"), i + 1),
                    ),
                    None if !self
                        .pipeline
                        .steps
                        .iter()
                        .any(|s| s.kind == crate::pipeline::StepKind::Checks) =>
                    {
                        (
                            Outcome::Manual,
                            format!(
                                "the `{}` pipeline runs no checks; add a `command` row",
                                self.pipeline.name
                            ),
                        )
                    }
                    None => (Outcome::Fail, format!("task `{task}` has no check run yet")),
                })
            }
            LedgerFact::SchemaDeclared => {
                let text = ledger.read_text("claude/decisions.md")?;
                let found = text
                    .lines()
                    .position(|l| l.to_lowercase().contains("schema changes required:"));
                Ok(match found {
                    Some(i) => (
                        Outcome::Pass,
                        format!("{}:{}", rel("claude/decisions.md"), i + 1),
                    ),
                    None if text.is_empty() => (
                        Outcome::Manual,
                        format!("task `{task}` has no decisions (this pipeline may have none)"),
                    ),
                    None => (
                        Outcome::Fail,
                        format!(
                            "{} states no `Schema changes required:`",
                            rel("claude/decisions.md")
                        ),
                    ),
                })
            }
            LedgerFact::ChangesExplained => changes_explained(task, ledger),
            LedgerFact::CriteriaAddressed => criteria_addressed(task, ledger),
            LedgerFact::IdempotentCommit => {
                let commits = ledger
                    .entries()
                    .iter()
                    .filter(|e| {
                        e.event == events::COMMITTED
                            && e.data.get("recovered") == Some(&serde_json::Value::Bool(false))
                    })
                    .count();
                let approvals = ledger
                    .entries()
                    .iter()
                    .filter(|e| e.event == events::APPROVED)
                    .count();
                Ok(if commits == 0 {
                    (
                        Outcome::Manual,
                        format!("task `{task}` has not committed yet"),
                    )
                } else if commits <= approvals {
                    let line = ledger
                        .entries()
                        .iter()
                        .rposition(|e| e.event == events::COMMITTED)
                        .unwrap_or(0)
                        + 1;
                    (
                        Outcome::Pass,
                        format!(
                            "{journal}:{line} ({commits} commit(s) for {approvals} approval(s))"
                        ),
                    )
                } else {
                    (
                        Outcome::Fail,
                        format!("{journal}: {commits} commits for {approvals} approval(s)"),
                    )
                })
            }
        }
    }
}

/// Each finished step started only after its predecessor finished `done`, and a phase that needs
/// an approval started only after one was recorded. Pure over the journal.
fn gates_followed(pipeline: &Pipeline, ledger: &Ledger, journal: &str) -> Checked {
    let entries = ledger.entries();
    let mut last_line = 0;
    for (i, e) in entries.iter().enumerate() {
        if e.event != events::STEP_STARTED {
            continue;
        }
        let Some(step) = e.step else { continue };
        let Some(prev) = pipeline.previous(step) else {
            continue;
        };
        let done_before = entries[..i].iter().any(|p| {
            p.step == Some(prev.id)
                && p.event == events::STEP_FINISHED
                && p.data_str("outcome") == Some("done")
        });
        if !done_before {
            return (
                Outcome::Fail,
                format!(
                    "{journal}:{} step {step} started before step {} was done",
                    i + 1,
                    prev.id
                ),
            );
        }
        if let Some(def) = pipeline.step(step).filter(|d| d.approval) {
            let approved = entries[..i].iter().any(|p| {
                p.event == events::APPROVAL
                    && p.data.get("phase").and_then(serde_json::Value::as_u64)
                        == Some(u64::from(prev.id))
            });
            if !approved {
                return (
                    Outcome::Fail,
                    format!(
                        "{journal}:{} phase {} started without an approval of phase {}",
                        i + 1,
                        def.id,
                        prev.id
                    ),
                );
            }
        }
        last_line = i + 1;
    }
    (Outcome::Pass, format!("{journal}:{last_line}"))
}

/// The change set a task approved, or else the last one it recorded: the latest phase
/// `change_set` event (or `scope_checked` of a ledger written when those carried the set), else
/// step 4's `diff_snapshot` in `codex/task_result.json` (`scope_checked` now journals only the
/// set's digest and size).
fn recorded_change_set(ledger: &Ledger) -> Option<crate::scope::changeset::ChangeSet> {
    if let Some(approved) = approved_change_set(ledger.entries()) {
        return Some(approved);
    }
    let journalled = ledger
        .entries()
        .iter()
        .rev()
        .find(|e| e.event == events::SCOPE_CHECKED || e.event == events::CHANGE_SET)
        .filter(|e| e.data.contains_key("change_set"));
    if let Some(e) = journalled {
        return e.data.field("change_set");
    }
    let bytes = ledger.read("codex/task_result.json").ok()??;
    let result: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    serde::Deserialize::deserialize(result.get("diff_snapshot")?.get("change_set")?).ok()
}

fn changes_explained(task: &TaskName, ledger: &Ledger) -> Result<Checked> {
    let change_set = recorded_change_set(ledger);
    let Some(change_set) = change_set else {
        return Ok((
            Outcome::Manual,
            format!("task `{task}` has changed no file yet"),
        ));
    };
    let mut docs = Vec::new();
    for rel in ["codex/apply.md", "codex/phase-3.md"] {
        docs.push((rel.to_owned(), ledger.read_text(rel)?));
    }
    if let Ok(dir) = std::fs::read_dir(ledger.path("codex")) {
        let mut fixes: Vec<String> = dir
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("fix-"))
            .collect();
        fixes.sort();
        for f in fixes {
            let rel = format!("codex/{f}");
            docs.push((rel.clone(), ledger.read_text(&rel)?));
        }
    }
    let mut first = None;
    for p in &change_set.paths {
        let found = docs.iter().find_map(|(rel, text)| {
            text.lines()
                .position(|l| l.contains(&p.path))
                .map(|i| format!("{}/{rel}:{}", Workspace::ledger_rel(task), i + 1))
        });
        match found {
            Some(at) => {
                first.get_or_insert(at);
            }
            None => {
                return Ok((
                    Outcome::Fail,
                    format!(
                        "`{}` changed but no apply.md, fix or [FILE] block of task `{task}` names it",
                        p.path
                    ),
                ));
            }
        }
    }
    Ok((
        Outcome::Pass,
        first.unwrap_or_else(|| format!("task `{task}`: no changed file")),
    ))
}

/// The acceptance criteria of a prompt: `(id, text)`, ids `AC-n` (an explicit `AC-x:` prefix is
/// kept). Pure (SPEC §10).
#[must_use]
pub fn acceptance_criteria(prompt: &str) -> Vec<(String, String)> {
    section_bullets(prompt, |h| h.contains("acceptance criteria"))
        .into_iter()
        .enumerate()
        .map(|(i, b)| match b.split_once(':') {
            Some((id, text)) if id.trim().starts_with("AC-") && !id.contains(' ') => {
                (id.trim().to_owned(), text.trim().to_owned())
            }
            _ => (format!("AC-{}", i + 1), b),
        })
        .collect()
}

fn criteria_addressed(task: &TaskName, ledger: &Ledger) -> Result<Checked> {
    let criteria = acceptance_criteria(&ledger.read_text("inputs/prompt.md")?);
    if criteria.is_empty() {
        return Ok((
            Outcome::Manual,
            format!("the prompt of `{task}` lists no acceptance criteria"),
        ));
    }
    let docs = [
        ("codex/apply.md", ledger.read_text("codex/apply.md")?),
        (
            "claude/post-implement-audit.md",
            ledger.read_text("claude/post-implement-audit.md")?,
        ),
        ("codex/phase-3.md", ledger.read_text("codex/phase-3.md")?),
        ("codex/phase-5.md", ledger.read_text("codex/phase-5.md")?),
    ];
    let mut at = None;
    for (id, text) in &criteria {
        let needle = first_backticked(text).unwrap_or(text);
        let hit = docs.iter().find_map(|(rel, doc)| {
            doc.lines()
                .position(|l| l.contains(id.as_str()) || l.contains(needle))
                .map(|i| format!("{}/{rel}:{}", Workspace::ledger_rel(task), i + 1))
        });
        match hit {
            Some(h) => {
                at.get_or_insert(h);
            }
            None => {
                return Ok((
                    Outcome::Fail,
                    format!(
                        "{id} (`{text}`) is addressed nowhere in the implementation or the review of `{task}`"
                    ),
                ));
            }
        }
    }
    Ok((Outcome::Pass, at.unwrap_or_default()))
}

/// The report as markdown, in seed 000's column layout.
#[must_use]
pub fn markdown(a: &SelfAudit) -> String {
    let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
    let mut out = String::from("# Self-audit");
    if let Some(t) = &a.task {
        let _ = write!(out, " of task `{t}`");
    }
    out.push_str("\n\n## Self-Audit Checklist\n\n| Checklist Item | Result | Evidence (file:line) | Follow-up |\n| --- | --- | --- | --- |\n");
    for r in &a.checklist {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            cell(&r.item),
            r.result.label(),
            cell(&r.evidence),
            cell(&r.follow_up)
        );
    }
    out.push_str("\n## Final Verification Rubric\n\n| Criterion | Description | Pass/Fail | Evidence (file:line) |\n| --- | --- | --- | --- |\n");
    for r in &a.rubric {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            cell(&r.item),
            cell(r.description.as_deref().unwrap_or("")),
            r.result.label(),
            cell(&r.evidence)
        );
    }
    out.push_str("\n## Assumptions\n\n");
    if a.assumptions.files.is_empty() {
        out.push_str("No assumptions register (`docs/assumptions.yaml`).\n");
    } else {
        let _ = writeln!(
            out,
            "{} assumption(s) in {}.",
            a.assumptions.entries.len(),
            a.assumptions.files.join(", ")
        );
        for p in &a.assumptions.pending {
            let _ = writeln!(out, "- pending confirmation: {}", cell(p));
        }
        for i in &a.assumptions.incomplete {
            let _ = writeln!(out, "- INCOMPLETE: {}", cell(i));
        }
    }
    out.push_str("\n## KNOWN GAPS / TODOs\n\n");
    let gaps: Vec<&Row> = a
        .checklist
        .iter()
        .chain(&a.rubric)
        .filter(|r| r.result == Outcome::Fail)
        .collect();
    if gaps.is_empty() {
        out.push_str("None: every checked row passed.\n");
    } else {
        out.push_str(
            "| Item | Evidence | Follow-up | Owner | ETA |\n| --- | --- | --- | --- | --- |\n",
        );
        for r in gaps {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                cell(&r.item),
                cell(&r.evidence),
                cell(&r.follow_up),
                cell(&r.owner),
                cell(&r.eta)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse() {
        let d: Defaults = serde_norway::from_str(DEFAULTS).unwrap();
        assert_eq!(d.checklist.len(), 12);
        assert_eq!(d.rubric.len(), 9);
    }

    #[test]
    fn criteria_ids() {
        let p = "# T\n## Acceptance criteria\n- AC-7: kept id\n- plain text\n* `x` works\n## Next\n- no\n";
        assert_eq!(
            acceptance_criteria(p),
            vec![
                ("AC-7".into(), "kept id".into()),
                ("AC-2".into(), "plain text".into()),
                ("AC-3".into(), "`x` works".into())
            ]
        );
    }
}
