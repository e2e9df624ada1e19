//! The CI gate (SPEC §6): a pull request's change set from the merge base, the tasks whose ledgers
//! it adds or changes, each ledger verified, both contracts journalled, every changed file equal to
//! what a task of the PR approved, and every other changed path covered by a task's scope or by
//! `ci.exempt`. Policy (exempt globs, trusted keys, `require_signed`, the pipeline) is read from the
//! base revision, never from the PR head.

pub mod format;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::config::{Config, Env};
use crate::exit::{ExitKind, Refusal};
use crate::ledger::integrity;
use crate::ledger::journal::events;
use crate::ledger::signing::Policy;
use crate::ledger::{JOURNAL, Ledger, contract};
use crate::pipeline::Pipeline;
use crate::pipeline::decisions::parse_decisions;
use crate::scope::changeset::{self, TreeChange};
use crate::scope::{PathVerdict, ScopeRules};
use crate::workspace::{
    CONFIG_FILE, LEDGER_ROOT, PROMPT_DIR, TaskName, Workspace, is_valid_task_name,
};

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Fails the gate.
    Error,
    /// Shown, does not fail.
    Warning,
}

/// One thing wrong with the pull request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Error or warning.
    pub severity: Severity,
    /// The exit code this finding means.
    #[serde(serialize_with = "ser_kind")]
    pub exit: ExitKind,
    /// A short title (`integrity`, `out of scope`, …).
    pub title: String,
    /// What is wrong, one line.
    pub message: String,
    /// The file concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The line concerned (1-based), where there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// The task concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
}

fn ser_kind<S: serde::Serializer>(k: &ExitKind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u8(k.code())
}

/// One task of the pull request.
#[derive(Clone, Debug, Serialize)]
pub struct TaskReport {
    /// The task.
    pub task: String,
    /// Paths its approval covers.
    pub approved_paths: usize,
    /// True when no error concerns it.
    pub ok: bool,
}

/// The gate's result.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The base revision as resolved.
    pub base: String,
    /// The merge base commit.
    pub merge_base: String,
    /// The head commit.
    pub head: String,
    /// Changed paths in the PR.
    pub changed_paths: usize,
    /// The tasks the PR carries.
    pub tasks: Vec<TaskReport>,
    /// Findings, most important first.
    pub findings: Vec<Finding>,
    /// The exit code.
    #[serde(serialize_with = "ser_kind")]
    pub exit: ExitKind,
}

impl Report {
    /// The error findings.
    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
    }
}

fn error(
    exit: ExitKind,
    title: &str,
    message: String,
    file: Option<String>,
    line: Option<usize>,
    task: Option<&str>,
) -> Finding {
    Finding {
        severity: Severity::Error,
        exit,
        title: title.to_owned(),
        message,
        file,
        line,
        task: task.map(str::to_owned),
    }
}

/// Resolves the base revision: `--base`, else `$GITHUB_BASE_REF` (as `origin/<ref>` or `<ref>`),
/// else `origin/main`.
fn resolve_base<'r>(
    repo: &'r git2::Repository,
    base: Option<&str>,
    env: &Env,
) -> Result<(String, git2::Commit<'r>)> {
    let candidates: Vec<String> = match (base, env.get("GITHUB_BASE_REF")) {
        (Some(b), _) => vec![b.to_owned()],
        (None, Some(r)) => vec![
            format!("origin/{r}"),
            r.to_owned(),
            format!("refs/remotes/origin/{r}"),
        ],
        (None, None) => vec!["origin/main".to_owned()],
    };
    for c in &candidates {
        if let Ok(commit) = repo.revparse_single(c).and_then(|o| o.peel_to_commit()) {
            return Ok((c.clone(), commit));
        }
    }
    let shown = candidates.first().cloned().unwrap_or_default();
    Err(
        Refusal::usage(format!("the base revision `{shown}` is not in this clone"))
            .hint(format!(
                "fetch it (`git fetch origin {}`) or pass `--base REV`",
                shown.trim_start_matches("origin/")
            ))
            .into(),
    )
}

/// Reads the policy (configuration and pipeline) from the base commit.
fn base_policy(repo: &git2::Repository, base: &git2::Commit<'_>) -> Result<(Config, Pipeline)> {
    let tree = base.tree()?;
    let read = |path: &str| -> Result<Option<Vec<u8>>> {
        match tree.get_path(std::path::Path::new(path)) {
            Ok(entry) => Ok(Some(repo.find_blob(entry.id())?.content().to_vec())),
            Err(_) => Ok(None),
        }
    };
    let config = match read(CONFIG_FILE)? {
        Some(bytes) => Config::parse(&bytes, &format!("{CONFIG_FILE} (base revision)"))?,
        None => Config::default(),
    };
    let pipeline = if config.pipeline == "ai-stack-trace" {
        Pipeline::load("ai-stack-trace", std::path::Path::new("."))?
    } else {
        let bytes = read(&config.pipeline)?.ok_or_else(|| {
            Refusal::usage(format!("the pipeline `{}` named by the base revision's {CONFIG_FILE} is not in the base revision", config.pipeline))
                .hint("commit the pipeline file on the base branch")
        })?;
        Pipeline::parse(&String::from_utf8_lossy(&bytes), &config.pipeline)?
    };
    Ok((config, pipeline))
}

/// Runs the gate over `merge-base(base, HEAD)..HEAD`, reading ledgers from the checked-out tree.
///
/// # Errors
/// Usage refusals for a missing base or merge base (with the fetch that fixes it); git errors.
pub fn run(ws: &Workspace, env: &Env, base: Option<&str>) -> Result<Report> {
    run_in(ws, &ws.repo()?, env, base)
}

/// [`run`] with the workspace's repository already open.
///
/// # Errors
/// As [`run`].
pub fn run_in(
    ws: &Workspace,
    repo: &git2::Repository,
    env: &Env,
    base: Option<&str>,
) -> Result<Report> {
    let head = repo
        .head()
        .and_then(|h| h.peel_to_commit())
        .context("HEAD does not point at a commit")?;
    let (base_name, base_commit) = resolve_base(repo, base, env)?;
    let merge_base = repo.merge_base(base_commit.id(), head.id()).map_err(|_| {
        if repo.is_shallow() {
            Refusal::usage(format!("the merge base of `{base_name}` and HEAD is not in this shallow clone"))
                .hint("fetch more history: `git fetch --deepen=200` (or `fetch-depth: 0` in actions/checkout) and run again")
        } else {
            Refusal::usage(format!("`{base_name}` and HEAD have no common history")).hint("pass the branch the PR targets with `--base`")
        }
    })?;
    let (config, pipeline) = base_policy(repo, &base_commit)?;
    // Only the trees are read: the approved change set is compared by git object id.
    let changes = changeset::tree_changes(
        repo,
        &merge_base.to_string(),
        &head.id().to_string(),
        &|_| false,
    )?;
    let mut findings = Vec::new();
    let tasks = pr_tasks(&changes, &mut findings);
    let policy = Policy {
        trusted: config.trust.keys.clone(),
        required: config.ci.require_signed,
    };

    let mut task_reports = Vec::new();
    let mut verified = Vec::new();
    for task in &tasks {
        let before = findings.len();
        if let Some(v) = check_task(ws, repo, task, &pipeline, &policy, &mut findings)? {
            verified.push((task_reports.len(), v));
        }
        task_reports.push(TaskReport {
            task: task.to_string(),
            approved_paths: 0,
            ok: findings[before..]
                .iter()
                .all(|f| f.severity != Severity::Error),
        });
    }
    // The approved sets are read in place from the journals' text.
    let mut approvals: BTreeMap<String, Approval<'_>> = BTreeMap::new();
    for (i, (ledger, committed)) in &verified {
        let Some(approved) = approved_paths(ledger) else {
            continue;
        };
        task_reports[*i].approved_paths = approved.len();
        approvals.insert(
            task_reports[*i].task.clone(),
            (approved, ledger, committed.as_deref()),
        );
    }
    check_coverage(repo, &changes, &tasks, &approvals, &config, &mut findings)?;

    findings.sort_by(|a, b| {
        (
            a.severity,
            std::cmp::Reverse(a.exit.code()),
            &a.file,
            a.line,
        )
            .cmp(&(
                b.severity,
                std::cmp::Reverse(b.exit.code()),
                &b.file,
                b.line,
            ))
    });
    let exit = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .fold(ExitKind::Done, |acc, f| acc.worst(f.exit));
    Ok(Report {
        base: base_name,
        merge_base: merge_base.to_string(),
        head: head.id().to_string(),
        changed_paths: changes.len(),
        tasks: task_reports,
        findings,
        exit,
    })
}

/// The tasks whose ledgers the PR adds or changes.
fn pr_tasks(changes: &[TreeChange], findings: &mut Vec<Finding>) -> Vec<TaskName> {
    let mut names = BTreeSet::new();
    let ledgers = format!("{LEDGER_ROOT}/");
    for p in changes {
        let Some(rest) = p.path.strip_prefix(&ledgers) else {
            continue;
        };
        let name = rest.split('/').next().unwrap_or_default();
        if is_valid_task_name(name) && rest.contains('/') {
            names.insert(name.to_owned());
        } else {
            findings.push(error(
                ExitKind::Integrity,
                "integrity",
                format!("`{}` is not inside a valid task ledger", p.path),
                Some(p.path.clone()),
                None,
                None,
            ));
        }
    }
    names
        .into_iter()
        .filter_map(|n| TaskName::parse(&n).ok())
        .collect()
}

/// A path of an approved change set, as the journal records it, borrowed from its text. The
/// hashes are hex digits, which JSON never escapes; a path may need escapes (then it is a copy).
#[derive(Deserialize)]
struct ApprovedPath<'a> {
    #[serde(borrow)]
    path: Cow<'a, str>,
    sha256: Option<&'a str>,
    mode: u32,
    #[serde(default)]
    oid: Option<&'a str>,
}

#[derive(Deserialize)]
struct ApprovedSet<'a> {
    #[serde(borrow)]
    paths: Vec<ApprovedPath<'a>>,
}

/// The change set the latest `approved` event of a ledger records (as
/// [`integrity::approved_change_set`] reads it).
fn approved_paths(ledger: &Ledger) -> Option<Vec<ApprovedPath<'_>>> {
    let e = ledger
        .entries()
        .iter()
        .rev()
        .find(|e| e.event == events::APPROVED)?;
    e.data
        .field_in::<ApprovedSet<'_>>("change_set")
        .map(|s| s.paths)
}

/// A task's approved paths, its ledger, and its commit if the repository has it.
type Approval<'a> = (Vec<ApprovedPath<'a>>, &'a Ledger, Option<&'a str>);

/// A task whose ledger was checked and records an approval: the ledger and its commit.
type Verified = (Ledger, Option<String>);

/// The scope a task's decisions allow (with `scope.always_allowed`) and forbid.
fn task_scope(ledger: &Ledger, config: &Config) -> Result<ScopeRules> {
    let decisions = parse_decisions(&ledger.read_text("claude/decisions.md")?);
    let allowed: Vec<&String> = decisions
        .allowed
        .iter()
        .chain(&config.scope.always_allowed)
        .collect();
    Ok(ScopeRules::new(allowed, &decisions.forbidden).unwrap_or_default())
}

fn check_task(
    ws: &Workspace,
    repo: &git2::Repository,
    task: &TaskName,
    pipeline: &Pipeline,
    policy: &Policy,
    findings: &mut Vec<Finding>,
) -> Result<Option<Verified>> {
    let t = Some(task.as_str());
    let journal_path = format!("{}/{JOURNAL}", Workspace::ledger_rel(task));
    if !ws.ledger_dir(task).join(JOURNAL).is_file() {
        findings.push(error(
            ExitKind::Integrity,
            "integrity",
            format!("the pull request removes or empties the ledger of task `{task}`"),
            Some(journal_path),
            None,
            t,
        ));
        return Ok(None);
    }
    let ledger = match Ledger::open(ws, task) {
        Ok(l) => l,
        Err(err) => {
            let message = err
                .chain()
                .find_map(|e| e.downcast_ref::<Refusal>())
                .map_or_else(|| format!("{err:#}"), |r| r.what.clone());
            let line = message
                .split("at line ")
                .nth(1)
                .and_then(|s| s.split(':').next())
                .and_then(|n| n.parse().ok());
            findings.push(error(
                ExitKind::Integrity,
                "integrity",
                message,
                Some(journal_path),
                line,
                t,
            ));
            return Ok(None);
        }
    };
    let options = integrity::Options {
        interrupted_outputs: Vec::new(),
        signatures: policy.clone(),
        binding: false,
    };
    let report = integrity::verify(ws, &ledger, &options)?;
    for f in report.findings {
        findings.push(error(
            ExitKind::Integrity,
            "integrity",
            f.message,
            f.path,
            f.line,
            t,
        ));
    }
    for name in pipeline.steps.iter().filter_map(|s| s.contract.as_deref()) {
        let exists = ledger.path(&contract::rel_path(name)).is_file();
        if !contract::is_journalled(ledger.entries(), name) && !exists {
            let earner = pipeline.earner_of(name).map_or(0, |s| s.id);
            findings.push(error(
                    ExitKind::GateClosed,
                    "missing contract",
                    format!("task `{task}` has no `contract/{name}`: run `gatekeeper step {earner} {task}` and get a YES"),
                    Some(format!("{}/contract/{name}", Workspace::ledger_rel(task))),
                    None,
                    t,
                ));
        }
        // A file without its journal record was reported as forged by `verify`.
    }
    if !ledger.entries().iter().any(|e| e.event == events::APPROVED) {
        return Ok(None);
    }
    let committed = ledger
        .entries()
        .iter()
        .rev()
        .find(|e| e.event == events::COMMITTED)
        .and_then(|e| e.data_str("commit"))
        .filter(|c| git2::Oid::from_str(c).is_ok_and(|o| repo.find_commit(o).is_ok()))
        .map(str::to_owned);
    Ok(Some((ledger, committed)))
}

fn check_coverage(
    repo: &git2::Repository,
    changes: &[TreeChange],
    tasks: &[TaskName],
    approvals: &BTreeMap<String, Approval<'_>>,
    config: &Config,
    findings: &mut Vec<Finding>,
) -> Result<()> {
    let exempt = ScopeRules::new(&config.ci.exempt, Vec::<String>::new()).unwrap_or_default();
    let prompts: BTreeSet<String> = tasks.iter().map(Workspace::prompt_rel).collect();
    let mirrors: BTreeSet<String> = tasks
        .iter()
        .map(crate::ledger::integrity::ssot_rel)
        .collect();
    let ledgers = format!("{LEDGER_ROOT}/");
    // Every approved path with the task that approved it, sorted by path (tasks in name order
    // within a path): the holders of a path are one slice of it.
    let mut approved_at: Vec<(&str, &String, &ApprovedPath<'_>)> = approvals
        .iter()
        .flat_map(|(task, (approved, _, _))| {
            approved.iter().map(move |ap| (ap.path.as_ref(), task, ap))
        })
        .collect();
    approved_at.sort_by(|a, b| a.0.cmp(b.0));
    // `changes` is sorted by path too (`tree_changes`): one walk pairs them.
    let mut next = 0;
    let mut scopes: Option<Vec<(&String, ScopeRules)>> = None;
    for p in changes {
        if p.path.starts_with(&ledgers)
            || prompts.contains(&p.path)
            || p.path == crate::ledger::integrity::SSOT_LOCK_REL
            || mirrors.contains(&p.path)
        {
            continue;
        }
        while approved_at
            .get(next)
            .is_some_and(|(path, _, _)| *path < p.path.as_str())
        {
            next += 1;
        }
        let to = next
            + approved_at[next..]
                .iter()
                .take_while(|(path, _, _)| *path == p.path)
                .count();
        let holders = &approved_at[next..to];
        if let Some((_, task, approved)) = holders.last() {
            let mut held = false;
            for (_, _, ap) in holders {
                if changeset::holds(repo, p, ap.mode, ap.sha256, ap.oid)? {
                    held = true;
                    break;
                }
            }
            if !held {
                let line = approvals
                    .get(*task)
                    .and_then(|(_, _, c)| *c)
                    .and_then(|c| first_difference(repo, c, &p.path, p).ok().flatten());
                findings.push(error(
                    ExitKind::Integrity,
                    "edited after approval",
                    format!(
                        "`{}` differs from the content task `{task}` approved{}",
                        p.path,
                        if approved.sha256.is_none() {
                            " (approved as deleted)"
                        } else {
                            ""
                        }
                    ),
                    Some(p.path.clone()),
                    line,
                    Some(task),
                ));
            }
            continue;
        }
        // The tasks' scopes, built the first time a path is not held by an approval.
        let scopes = match &scopes {
            Some(s) => s,
            None => scopes.insert(
                approvals
                    .iter()
                    .map(|(task, (_, ledger, _))| Ok((task, task_scope(ledger, config)?)))
                    .collect::<Result<Vec<_>>>()?,
            ),
        };
        let allowing = scopes
            .iter()
            .find(|(_, rules)| rules.check(&p.path).in_scope());
        if let Some((task, _)) = allowing {
            findings.push(error(
                ExitKind::Integrity,
                "changed after approval",
                format!("`{}` is inside task `{task}`'s scope but not in the change set its review approved", p.path),
                Some(p.path.clone()),
                None,
                Some(task),
            ));
            continue;
        }
        if exempt.check(&p.path).in_scope() {
            continue;
        }
        let forbidding = scopes
            .iter()
            .find_map(|(t, rules)| match rules.check(&p.path) {
                PathVerdict::Forbidden(g) => Some((t, g)),
                _ => None,
            });
        let message = match forbidding {
            Some((t, g)) => format!("`{}` is forbidden by task `{t}` (`{g}`)", p.path),
            None if tasks.is_empty() => format!(
                "`{}` changed, but the pull request carries no gatekeeper task",
                p.path
            ),
            None => format!(
                "`{}` is not covered by any task of the pull request nor by `ci.exempt`",
                p.path
            ),
        };
        findings.push(error(
            ExitKind::ScopeViolation,
            "out of scope",
            message,
            Some(p.path.clone()),
            None,
            None,
        ));
    }
    let mut next = 0;
    for (path, task, _) in &approved_at {
        while changes.get(next).is_some_and(|c| c.path.as_str() < *path) {
            next += 1;
        }
        let in_pr = changes.get(next).is_some_and(|c| c.path == *path);
        if !in_pr && !path.starts_with(PROMPT_DIR) {
            findings.push(error(
                ExitKind::Integrity,
                "approved change missing",
                format!("task `{task}` approved a change to `{path}` that the pull request does not carry"),
                Some((*path).to_owned()),
                None,
                Some(task),
            ));
        }
    }
    Ok(())
}

/// The first line where the head content of `path` differs from the approved commit's.
fn first_difference(
    repo: &git2::Repository,
    commit: &str,
    path: &str,
    head: &TreeChange,
) -> Result<Option<usize>> {
    if head.head.is_none() {
        return Ok(None);
    }
    let approved = repo.find_commit(git2::Oid::from_str(commit)?)?.tree()?;
    let Ok(entry) = approved.get_path(std::path::Path::new(path)) else {
        return Ok(Some(1));
    };
    let old = repo.find_blob(entry.id())?.content().to_vec();
    let head_tree = repo.head()?.peel_to_commit()?.tree()?;
    let Ok(entry) = head_tree.get_path(std::path::Path::new(path)) else {
        return Ok(None);
    };
    let new = repo.find_blob(entry.id())?.content().to_vec();
    let old_lines: Vec<&[u8]> = old.split(|b| *b == b'\n').collect();
    let new_lines: Vec<&[u8]> = new.split(|b| *b == b'\n').collect();
    let n = old_lines
        .iter()
        .zip(&new_lines)
        .take_while(|(a, b)| a == b)
        .count();
    Ok(Some(n + 1))
}
