//! The engine: runs a pipeline's steps over a task's ledger. For each step: lock, verify the
//! ledger, evaluate the gate (predecessor done and fresh, contracts journalled, kind-specific
//! prerequisites), withdraw contracts of steps being re-run, journal the start, render the prompt,
//! call the provider, redact, parse, write, journal the end with the step's input hashes.
//! Refusals happen before anything is written.

use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{Context, Result, anyhow};
use serde::Serialize;
use serde_json::{Value, json};

use super::checks;
use super::decisions::{Decisions, parse_decisions, parse_decisions_doc, section_bullets};
use super::gates::{self, ContractState, Inputs, StepState, StepStatus};
use super::patch;
use super::prompts;
use super::protocol;
use super::requires;
use super::verdict::{Verdict, parse_verdict};
use super::{ContractPermit, Pipeline, StepDef, StepKind};
use crate::canonical::{to_canonical_pretty, to_canonical_string};
use crate::config::{Config, DeployFormat, Env, SECRET_VARS};
use crate::exit::{ExitKind, Refusal};
use crate::hash::{sha256_file, sha256_hex};
use crate::ledger::integrity::{self, approved_change_set, base_commit, task_change_set};
use crate::ledger::journal::events;
use crate::ledger::lock::TaskLock;
use crate::ledger::{Ledger, contract};
use crate::providers::{self, Provider, Request};
use crate::scope::changeset::ChangeSet;
use crate::scope::{PathVerdict, ScopeRules};
use crate::secrets;
use crate::workspace::{LEDGER_ROOT, TaskName, Workspace};

/// Progress callbacks (a spinner on a terminal, nothing elsewhere).
pub trait Progress {
    /// A step (or a provider call within it) began.
    fn begin(&self, step: u32, name: &str, role: &str);
    /// It ended.
    fn end(&self);
}

/// No progress output.
#[derive(Debug, Default, Clone, Copy)]
pub struct Quiet;

impl Progress for Quiet {
    fn begin(&self, _: u32, _: &str, _: &str) {}
    fn end(&self) {}
}

/// How a step ended (refusals are errors instead).
#[derive(Clone, Debug, Serialize)]
pub struct StepOutcome {
    /// Step id.
    pub step: u32,
    /// Step name.
    pub name: String,
    /// The exit code this outcome means.
    #[serde(serialize_with = "ser_exit")]
    pub exit: ExitKind,
    /// One line.
    pub summary: String,
    /// Reasons, paths, findings.
    pub details: Vec<String>,
    /// What to do next.
    pub hint: Option<String>,
    /// True when `run` skipped it as done and fresh.
    pub skipped: bool,
}

fn ser_exit<S: serde::Serializer>(k: &ExitKind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u8(k.code())
}

/// A task's status (`gatekeeper status --json`).
#[derive(Clone, Debug, Serialize)]
pub struct TaskStatus {
    /// Task name.
    pub task: String,
    /// Pipeline name.
    pub pipeline: String,
    /// Correlation id (empty before step 0).
    pub correlation_id: String,
    /// Base commit (HEAD at step 0).
    pub base_commit: Option<String>,
    /// Every step.
    pub steps: Vec<StepStatus>,
    /// Contracts that exist and are journalled.
    pub contracts: Vec<String>,
    /// The command that moves the task on, or `None` when all steps are done.
    pub next: Option<String>,
    /// Tokens in over the task.
    pub tokens_in: u64,
    /// Tokens out over the task.
    pub tokens_out: u64,
    /// The commit step 8 made.
    pub commit: Option<String>,
}

/// One path of `gatekeeper scope`.
#[derive(Clone, Debug, Serialize)]
pub struct ScopeLine {
    /// The path.
    pub path: String,
    /// `allowed`, `forbidden` or `out_of_scope`.
    pub verdict: &'static str,
    /// The glob that decided, if any.
    pub glob: Option<String>,
    /// `deleted` when the path no longer exists.
    pub deleted: bool,
}

/// `gatekeeper scope` output.
#[derive(Clone, Debug, Serialize)]
pub struct ScopeReport {
    /// Task.
    pub task: String,
    /// Allowed globs (approved plus `scope.always_allowed`).
    pub allowed: Vec<String>,
    /// Forbidden globs.
    pub forbidden: Vec<String>,
    /// Every changed path.
    pub paths: Vec<ScopeLine>,
    /// True when every path is in scope.
    pub ok: bool,
}

/// The engine over one workspace.
pub struct Engine<'a> {
    /// The workspace.
    pub ws: &'a Workspace,
    /// The configuration.
    pub config: &'a Config,
    /// The pipeline.
    pub pipeline: &'a Pipeline,
    /// The environment.
    pub env: &'a Env,
    /// Progress display.
    pub progress: &'a dyn Progress,
    /// The command line, shown to a second process that finds the task locked.
    pub command_line: String,
}

struct Run<'e, 'a> {
    engine: &'e Engine<'a>,
    ledger: Ledger,
    tree: OnceCell<ChangeSet>,
}

impl Engine<'_> {
    /// Runs one step (`gatekeeper step <N> <TASK>`).
    ///
    /// # Errors
    /// Refusals (exit 2, 3, 7) before anything is written; failures (exit 1).
    pub fn step(&self, task: &TaskName, id: u32) -> Result<StepOutcome> {
        let def = self.step_def(id)?;
        let _lock = TaskLock::acquire(self.ws, task, &self.command_line)?;
        let mut run = Run {
            engine: self,
            ledger: self.open_for_writing(task)?,
            tree: OnceCell::new(),
        };
        run.exec(def)
    }

    /// Runs steps from the first one not done and fresh up to `to` (`gatekeeper run`), with
    /// review rounds: a NO at a review step sends its issues to the codex role, then the checks
    /// and the review run again, at most `review_rounds` times.
    ///
    /// # Errors
    /// As [`Engine::step`].
    pub fn run(&self, task: &TaskName, to: Option<u32>) -> Result<Vec<StepOutcome>> {
        if let Some(to) = to {
            self.step_def(to)?;
        }
        let _lock = TaskLock::acquire(self.ws, task, &self.command_line)?;
        let mut run = Run {
            engine: self,
            ledger: self.open_for_writing(task)?,
            tree: OnceCell::new(),
        };
        let mut outcomes = Vec::new();
        let mut rounds = 0;
        let mut forced: Option<u32> = None;
        let steps: Vec<&StepDef> = self
            .pipeline
            .steps
            .iter()
            .filter(|s| to.is_none_or(|to| s.id <= to))
            .collect();
        let mut i = 0;
        while i < steps.len() {
            let def = steps[i];
            let is_forced = forced.is_some_and(|f| def.id >= f);
            if !is_forced && run.is_fresh(def.id)? {
                outcomes.push(StepOutcome {
                    step: def.id,
                    name: def.name.clone(),
                    exit: ExitKind::Done,
                    summary: "done and fresh; skipped".to_owned(),
                    details: Vec::new(),
                    hint: None,
                    skipped: true,
                });
                i += 1;
                continue;
            }
            let outcome = match run.exec(def) {
                Ok(o) => o,
                Err(err) => {
                    // A refusal or failure ends the run; earlier outcomes are still reported.
                    let (kind, refusal) = crate::exit::classify(&err);
                    outcomes.push(StepOutcome {
                        step: def.id,
                        name: def.name.clone(),
                        exit: kind,
                        summary: refusal.map_or_else(|| format!("{err:#}"), |r| r.what.clone()),
                        details: Vec::new(),
                        hint: refusal.and_then(|r| r.fix.clone()),
                        skipped: false,
                    });
                    break;
                }
            };
            let exit = outcome.exit;
            let retry = exit == ExitKind::ReviewerNo
                && def.kind == StepKind::Review
                && rounds < self.config.review_rounds;
            let feedback = outcome.details.clone();
            outcomes.push(outcome);
            if retry {
                let Some(checks_index) = steps.iter().position(|s| s.kind == StepKind::Checks)
                else {
                    break;
                };
                rounds += 1;
                run.review_fix_round(steps[checks_index], def, &feedback, rounds)?;
                forced = Some(steps[checks_index].id);
                i = checks_index;
                continue;
            }
            if exit != ExitKind::Done {
                break;
            }
            if forced.is_some_and(|_| def.kind == StepKind::Review) {
                forced = None;
            }
            i += 1;
        }
        Ok(outcomes)
    }

    /// Records a human approval of a done and fresh step (`gatekeeper approve <TASK> --phase N`),
    /// which opens the gate of the next step when it needs one.
    ///
    /// # Errors
    /// Refusals when the task is locked, its ledger fails verification (7), or the step is not
    /// done and fresh (3).
    pub fn approve(&self, task: &TaskName, phase: u32, by: &str) -> Result<StepOutcome> {
        let def = self.step_def(phase)?;
        let _lock = TaskLock::acquire(self.ws, task, &self.command_line)?;
        let mut run = Run {
            engine: self,
            ledger: self.open_for_writing(task)?,
            tree: OnceCell::new(),
        };
        if !run.ledger.exists() {
            return Err(Refusal::gate(format!(
                "task `{task}` has not been ingested (no ledger yet)"
            ))
            .hint(format!("run `gatekeeper step 0 {task}`"))
            .into());
        }
        run.check_integrity()?;
        let statuses = run.statuses()?;
        if let Some(st) = statuses
            .iter()
            .find(|s| s.step == phase && s.state != StepState::Done)
        {
            return Err(Refusal::gate(format!(
                "step {phase} `{}` is {}; only a done and fresh step can be approved",
                def.name,
                st.state.label()
            ))
            .hint(format!("run `gatekeeper step {phase} {task}` first"))
            .into());
        }
        run.ledger.event(
            Some(phase),
            events::APPROVAL,
            json!({"phase": phase, "by": by}),
        )?;
        let mut o = Run::outcome(def, ExitKind::Done, format!("approved by {by}"));
        if let Some(next) = self
            .pipeline
            .steps
            .iter()
            .find(|s| s.approval && self.pipeline.previous(s.id).is_some_and(|p| p.id == phase))
        {
            o.details
                .push(format!("next: `gatekeeper step {} {task}`", next.id));
        }
        Ok(o)
    }

    /// The status of a task.
    ///
    /// # Errors
    /// Integrity refusal when the journal is broken; I/O errors.
    pub fn status(&self, task: &TaskName) -> Result<TaskStatus> {
        let run = Run {
            engine: self,
            ledger: Ledger::open(self.ws, task)?,
            tree: OnceCell::new(),
        };
        run.status()
    }

    /// The scope check of a task's current change set.
    ///
    /// # Errors
    /// A gate refusal when there are no decisions yet.
    pub fn scope(&self, task: &TaskName) -> Result<ScopeReport> {
        let run = Run {
            engine: self,
            ledger: Ledger::open(self.ws, task)?,
            tree: OnceCell::new(),
        };
        run.scope_report()
    }

    /// Verifies a task's ledger.
    ///
    /// # Errors
    /// I/O errors; a broken journal is returned as an integrity refusal.
    pub fn verify(&self, task: &TaskName) -> Result<integrity::Report> {
        let ledger = Ledger::open(self.ws, task)?;
        if !ledger.exists() && !ledger.dir().exists() {
            return Err(Refusal::usage(format!("task `{task}` has no ledger"))
                .hint(format!("run `gatekeeper step 0 {task}` first"))
                .into());
        }
        let run = Run {
            engine: self,
            ledger,
            tree: OnceCell::new(),
        };
        run.verify()
    }

    /// The signature policy of this workspace.
    #[must_use]
    pub fn signature_policy(&self) -> crate::ledger::signing::Policy {
        crate::ledger::signing::Policy {
            trusted: self.config.trust.keys.clone(),
            required: self.config.ci.require_signed,
        }
    }

    /// Opens a task's ledger for writing, signing with `GATEKEEPER_SIGNING_KEY` when it is set.
    fn open_for_writing(&self, task: &TaskName) -> Result<Ledger> {
        let mut ledger = Ledger::open(self.ws, task)?;
        if let Some(secret) = self.env.get("GATEKEEPER_SIGNING_KEY") {
            ledger.set_signer(crate::ledger::signing::Signer::from_hex(secret)?);
        }
        Ok(ledger)
    }

    fn step_def(&self, id: u32) -> Result<&StepDef> {
        self.pipeline.step(id).ok_or_else(|| {
            let ids: Vec<String> = self
                .pipeline
                .steps
                .iter()
                .map(|s| s.id.to_string())
                .collect();
            Refusal::usage(format!(
                "the pipeline `{}` has no step {id}",
                self.pipeline.name
            ))
            .hint(format!("steps are {}", ids.join(", ")))
            .into()
        })
    }
}

fn obj(v: Value) -> serde_json::Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

impl Run<'_, '_> {
    fn task(&self) -> TaskName {
        self.ledger.task().clone()
    }

    fn tree(&self) -> Result<&ChangeSet> {
        if let Some(t) = self.tree.get() {
            return Ok(t);
        }
        let base = base_commit(self.ledger.entries())
            .ok_or_else(|| anyhow!("the journal records no base commit"))?;
        let set = task_change_set(self.engine.ws, self.ledger.task(), &base)?;
        Ok(self.tree.get_or_init(|| set))
    }

    fn invalidate_tree(&mut self) {
        self.tree = OnceCell::new();
    }

    // ----- facts -------------------------------------------------------------------------

    fn ledger_files_matching(&self, pattern: &str) -> Result<Vec<String>> {
        if !pattern.contains(['*', '?', '[']) {
            return Ok(vec![pattern.to_owned()]);
        }
        let rules = ScopeRules::new([pattern], Vec::<String>::new())
            .map_err(|e| anyhow!("bad pipeline pattern: {e}"))?;
        let (dir, _) = pattern.split_once('/').unwrap_or(("", pattern));
        let mut out = Vec::new();
        let folder = self.ledger.path(dir);
        if folder.is_dir() {
            for entry in fs_err::read_dir(&folder)? {
                let entry = entry?;
                let rel = format!("{dir}/{}", entry.file_name().to_string_lossy());
                if entry.file_type()?.is_file() && rules.check(&rel).in_scope() {
                    out.push(rel);
                }
            }
        }
        out.sort_by_key(|a| natural_key(a));
        Ok(out)
    }

    fn current_inputs(&self, def: &StepDef) -> Result<Inputs> {
        let mut inputs = Inputs::new();
        inputs.insert(
            "pipeline".to_owned(),
            self.engine.pipeline.source_sha256.clone(),
        );
        if let Some(t) = &def.template {
            let template = prompts::find(self.engine.ws.root(), t)?;
            inputs.insert(format!("template:{t}"), template.sha256());
        }
        for pattern in &def.reads {
            for rel in self.ledger_files_matching(pattern)? {
                let sha = match self.ledger.read(&rel)? {
                    Some(bytes) => sha256_hex(&bytes),
                    None => "missing".to_owned(),
                };
                inputs.insert(format!("ledger:{rel}"), sha);
            }
        }
        match def.kind {
            StepKind::Ingest => {
                let rel = Workspace::prompt_rel(self.ledger.task());
                let path = self.engine.ws.root().join(&rel);
                let sha = if path.is_file() {
                    sha256_file(&path)?
                } else {
                    "missing".to_owned()
                };
                inputs.insert(format!("prompt:{rel}"), sha);
            }
            StepKind::Checks => {
                inputs.insert(
                    "checks".to_owned(),
                    sha256_hex(to_canonical_string(&self.engine.config.checks).as_bytes()),
                );
                inputs.insert("tree".to_owned(), self.tree()?.digest());
            }
            StepKind::Review => {
                inputs.insert("tree".to_owned(), self.tree()?.digest());
            }
            StepKind::Commit => {
                inputs.insert(
                    "deploy".to_owned(),
                    sha256_hex(to_canonical_string(&self.engine.config.deploy).as_bytes()),
                );
            }
            StepKind::Generate | StepKind::Decisions | StepKind::Implement | StepKind::Phase => {}
        }
        Ok(inputs)
    }

    fn statuses(&self) -> Result<Vec<StepStatus>> {
        let facts = gates::facts(self.ledger.entries());
        let mut current = BTreeMap::new();
        for def in &self.engine.pipeline.steps {
            let done = facts
                .get(&def.id)
                .and_then(|f| f.finished)
                .is_some_and(|e| e.data_str("outcome") == Some("done"));
            if done {
                current.insert(def.id, self.current_inputs(def)?);
            }
        }
        Ok(gates::evaluate(
            self.engine.pipeline,
            self.ledger.entries(),
            &current,
        ))
    }

    fn is_fresh(&self, id: u32) -> Result<bool> {
        Ok(self
            .statuses()?
            .iter()
            .any(|s| s.step == id && s.state == StepState::Done))
    }

    fn contract_state(&self, name: &str) -> ContractState {
        let exists = self.ledger.path(&contract::rel_path(name)).exists();
        match (exists, contract::is_journalled(self.ledger.entries(), name)) {
            (true, true) => ContractState::Valid,
            (false, _) => ContractState::Missing,
            (true, false) => ContractState::Forged,
        }
    }

    fn interrupted_outputs(&self) -> Vec<String> {
        let facts = gates::facts(self.ledger.entries());
        let mut out = Vec::new();
        for def in &self.engine.pipeline.steps {
            if let Some(f) = facts.get(&def.id) {
                let interrupted = match (f.started, f.finished) {
                    (Some(_), None) => true,
                    (Some(s), Some(e)) => s.seq > e.seq,
                    _ => false,
                };
                if interrupted {
                    out.extend(
                        def.writes
                            .iter()
                            .filter(|w| !w.starts_with("contract/"))
                            .cloned(),
                    );
                }
            }
        }
        out
    }

    /// True when a human approved step `phase` after it last finished.
    fn approval_recorded(&self, phase: u32) -> bool {
        let entries = self.ledger.entries();
        let finished = entries
            .iter()
            .rev()
            .find(|e| e.step == Some(phase) && e.event == events::STEP_FINISHED)
            .map(|e| e.seq);
        let approved = entries
            .iter()
            .rev()
            .find(|e| {
                e.event == events::APPROVAL
                    && e.data.get("phase").and_then(Value::as_u64) == Some(u64::from(phase))
            })
            .map(|e| e.seq);
        matches!((finished, approved), (Some(f), Some(a)) if a > f)
    }

    fn phase(&mut self, def: &StepDef) -> Result<StepOutcome> {
        let task = self.task();
        let template = def.template.clone().unwrap_or_default();
        let extra = if template == "phase-4" {
            let audit = crate::selfaudit::run(
                self.engine.ws,
                self.engine.config,
                self.engine.pipeline,
                self.engine.env,
                Some(&task),
            )?;
            json!({ "self_audit": crate::selfaudit::markdown(&audit) })
        } else {
            json!({})
        };
        let (text, provider) = self.ask(def, &template, extra)?;
        let last = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default()
            .trim_end();
        if last != super::APPROVAL_MARKER {
            return Err(anyhow!(
                "step {} `{}`: the answer does not end with `{}`; nothing was written",
                def.id,
                def.name,
                super::APPROVAL_MARKER
            ));
        }
        let out = def.output().unwrap_or("codex/phase.md").to_owned();
        let touched = if def.apply {
            self.apply_answer(def, &text, provider.as_ref(), &out)?
        } else {
            Vec::new()
        };
        self.ledger
            .write_file(Some(def.id), &out, text.as_bytes())?;
        if def.apply {
            self.invalidate_tree();
            let tree = self.tree()?.clone();
            self.ledger.event(
                Some(def.id),
                events::CHANGE_SET,
                json!({"change_set": tree, "digest": tree.digest()}),
            )?;
        }
        let mut o = Self::outcome(
            def,
            ExitKind::Done,
            format!("wrote `{out}`; awaiting approval"),
        );
        o.details = touched.iter().map(|p| format!("patched `{p}`")).collect();
        if self.engine.pipeline.steps.iter().any(|s| {
            s.approval
                && self
                    .engine
                    .pipeline
                    .previous(s.id)
                    .is_some_and(|p| p.id == def.id)
        }) {
            o.details.push(format!(
                "next: review it, then `gatekeeper approve {task} --phase {}`",
                def.id
            ));
        }
        Ok(o)
    }

    fn verify(&self) -> Result<integrity::Report> {
        self.verify_with(self.engine.signature_policy())
    }

    fn verify_with(&self, signatures: crate::ledger::signing::Policy) -> Result<integrity::Report> {
        let options = integrity::Options {
            interrupted_outputs: self.interrupted_outputs(),
            signatures,
            binding: true,
        };
        integrity::verify(self.engine.ws, &self.ledger, &options)
    }

    fn status(&self) -> Result<TaskStatus> {
        let task = self.task();
        let steps = self.statuses()?;
        let next = steps
            .iter()
            .find(|s| s.state != StepState::Done)
            .map(|s| format!("gatekeeper step {} {task}", s.step));
        let contracts = self
            .engine
            .pipeline
            .steps
            .iter()
            .filter_map(|s| s.contract.clone())
            .filter(|c| self.contract_state(c) == ContractState::Valid)
            .collect();
        let (tokens_in, tokens_out) = self
            .ledger
            .entries()
            .iter()
            .filter(|e| e.event == events::PROVIDER_CALL)
            .fold((0, 0), |(i, o), e| {
                let g = |k: &str| e.data.get(k).and_then(Value::as_u64).unwrap_or(0);
                (i + g("tokens_in"), o + g("tokens_out"))
            });
        let commit = self
            .ledger
            .entries()
            .iter()
            .rev()
            .find(|e| e.event == events::COMMITTED)
            .and_then(|e| e.data_str("commit"))
            .map(str::to_owned);
        Ok(TaskStatus {
            task: task.to_string(),
            pipeline: self.engine.pipeline.name.clone(),
            correlation_id: self.ledger.correlation_id().to_owned(),
            base_commit: base_commit(self.ledger.entries()),
            steps,
            contracts,
            next,
            tokens_in,
            tokens_out,
            commit,
        })
    }

    fn decisions(&self) -> Result<Decisions> {
        Ok(parse_decisions(
            &self.ledger.read_text("claude/decisions.md")?,
        ))
    }

    fn scope_rules(&self, decisions: &Decisions) -> Result<ScopeRules> {
        let allowed: Vec<&String> = decisions
            .allowed
            .iter()
            .chain(&self.engine.config.scope.always_allowed)
            .collect();
        ScopeRules::new(allowed, &decisions.forbidden).map_err(|e| {
            Refusal::new(ExitKind::ReviewerNo, format!("the decisions hold a {e}"))
                .hint(format!(
                    "re-run `gatekeeper step 2 {}` to get valid globs",
                    self.ledger.task()
                ))
                .into()
        })
    }

    fn scope_report(&self) -> Result<ScopeReport> {
        let task = self.task();
        if self.ledger.read("claude/decisions.md")?.is_none() {
            return Err(Refusal::gate(format!(
                "task `{task}` has no decisions yet (`claude/decisions.md`)"
            ))
            .hint(format!("run `gatekeeper run {task} --to 2`"))
            .into());
        }
        let decisions = self.decisions()?;
        let rules = self.scope_rules(&decisions)?;
        let mut paths = Vec::new();
        for p in &self.tree()?.paths {
            let (verdict, glob) = match rules.check(&p.path) {
                PathVerdict::Allowed(g) => ("allowed", Some(g)),
                PathVerdict::Forbidden(g) => ("forbidden", Some(g)),
                PathVerdict::OutOfScope => ("out_of_scope", None),
            };
            paths.push(ScopeLine {
                path: p.path.clone(),
                verdict,
                glob,
                deleted: p.sha256.is_none(),
            });
        }
        let ok = paths.iter().all(|p| p.verdict == "allowed");
        let mut allowed = decisions.allowed.clone();
        allowed.extend(self.engine.config.scope.always_allowed.iter().cloned());
        Ok(ScopeReport {
            task: task.to_string(),
            allowed,
            forbidden: decisions.forbidden,
            paths,
            ok,
        })
    }

    fn repo_files(&self) -> Result<Vec<String>> {
        let repo = self.engine.ws.repo()?;
        let index = repo.index()?;
        Ok(index
            .iter()
            .filter_map(|e| String::from_utf8(e.path).ok())
            .collect())
    }

    fn diff_text(&self, limit: usize) -> Result<String> {
        let Some(base) = base_commit(self.ledger.entries()) else {
            return Ok(String::new());
        };
        let repo = self.engine.ws.repo()?;
        let tree = repo.find_commit(git2::Oid::from_str(&base)?)?.tree()?;
        let mut opts = git2::DiffOptions::new();
        opts.include_untracked(true)
            .recurse_untracked_dirs(true)
            .show_untracked_content(true);
        let diff = repo.diff_tree_to_workdir_with_index(Some(&tree), Some(&mut opts))?;
        let exempt = integrity::task_exempt(self.ledger.task());
        let mut out = String::new();
        let mut truncated = false;
        diff.print(git2::DiffFormat::Patch, |delta, _hunk, line| {
            let path = delta
                .new_file()
                .path()
                .or_else(|| delta.old_file().path())
                .map(|p| p.to_string_lossy().into_owned());
            if path.as_deref().is_some_and(&exempt) {
                return true;
            }
            if out.len() > limit {
                truncated = true;
                return false;
            }
            if matches!(line.origin(), '+' | '-' | ' ') {
                out.push(line.origin());
            }
            out.push_str(&String::from_utf8_lossy(line.content()));
            true
        })
        .or_else(|e| if truncated { Ok(()) } else { Err(e) })?;
        if truncated {
            let _ = write!(out, "\n[diff truncated at {limit} bytes]\n");
        }
        Ok(out)
    }

    fn context(&self, def: &StepDef, extra: Value) -> Result<Value> {
        let l = &self.ledger;
        let decisions = self.decisions()?;
        let mut fixes = Vec::new();
        for rel in self.ledger_files_matching("codex/fix-*.md")? {
            fixes.push(json!({ "name": rel, "text": l.read_text(&rel)? }));
        }
        let needs_tree =
            matches!(def.kind, StepKind::Review) || def.template.as_deref() == Some("final-verify");
        let scope_report: Vec<Value> = if needs_tree && base_commit(l.entries()).is_some() {
            self.scope_report()
                .map(|r| {
                    r.paths
                        .iter()
                        .map(|p| json!({"path": p.path, "verdict": p.verdict, "glob": p.glob}))
                        .collect()
                })
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let diff = if def.kind == StepKind::Review {
            self.diff_text(200_000)?
        } else {
            String::new()
        };
        let mut ctx = json!({
            "task": l.task().as_str(),
            "step": def.id,
            "prompt": l.read_text("inputs/prompt.md")?,
            "audit": l.read_text("gemini/audit.md")?,
            "decisions": l.read_text("claude/decisions.md")?,
            "plan": l.read_text("codex/plan.md")?,
            "apply": l.read_text("codex/apply.md")?,
            "post_audit": l.read_text("claude/post-implement-audit.md")?,
            "run_log": l.read_text("tests/run.log")?,
            "fixes": fixes,
            "checks": self.engine.config.checks.iter().map(|c| c.run.clone()).collect::<Vec<_>>(),
            "allowed_paths": decisions.allowed,
            "acceptance_criteria": self.criteria()?.into_iter().map(|(id, text)| json!({"id": id, "text": text})).collect::<Vec<_>>(),
            "forbidden": decisions.forbidden,
            "repo_files": if def.template.as_deref() == Some("audit") { self.repo_files()? } else { Vec::new() },
            "diff": diff,
            "scope_report": scope_report,
            "mechanical_ok": false,
            "mechanical_reasons": Vec::<String>::new(),
            "failing_log": "",
            "review_feedback": "",
            "fix_name": "",
            "self_audit": "",
            "phases": {
                "1": l.read_text("codex/phase-1.md")?,
                "2": l.read_text("codex/phase-2.md")?,
                "3": l.read_text("codex/phase-3.md")?,
                "4": l.read_text("codex/phase-4.md")?,
            },
        });
        if let (Value::Object(base), Value::Object(extra)) = (&mut ctx, extra) {
            base.extend(extra);
        }
        Ok(ctx)
    }

    // ----- the step ----------------------------------------------------------------------

    /// Refuses (exit 7) when the ledger fails verification.
    fn check_integrity(&self) -> Result<()> {
        let task = self.task();
        // Gates check the signatures present; `verify` and `ci` also demand them at rest (a
        // journal mid-step has an unsigned head by construction).
        let mut policy = self.engine.signature_policy();
        policy.required = false;
        let report = self.verify_with(policy)?;
        if let Some(first) = report.findings.first() {
            let more = report.findings.len() - 1;
            return Err(Refusal::integrity(format!(
                "the ledger of `{task}` fails verification: {}{}{}",
                first
                    .path
                    .as_deref()
                    .map(|p| format!("`{p}`: "))
                    .unwrap_or_default(),
                first.message,
                if more > 0 {
                    format!(" (and {more} more)")
                } else {
                    String::new()
                }
            ))
            .hint(format!("see `gatekeeper verify {task}`"))
            .into());
        }
        Ok(())
    }

    fn exec(&mut self, def: &StepDef) -> Result<StepOutcome> {
        let task = self.task();
        // The ledger must be intact before any gate opens (SPEC §13).
        if self.ledger.exists() {
            self.check_integrity()?;
        } else if def.kind != StepKind::Ingest {
            return Err(Refusal::gate(format!(
                "task `{task}` has not been ingested (no ledger yet)"
            ))
            .hint(format!("run `gatekeeper step 0 {task}`"))
            .into());
        }
        let statuses = self.statuses()?;
        gates::check(
            self.engine.pipeline,
            &statuses,
            def,
            task.as_str(),
            &|c| self.contract_state(c),
            &|phase| self.approval_recorded(phase),
        )?;
        self.precheck(def)?;
        let reports = self.reports_gate(def)?;

        // Re-running a step withdraws the contracts of it and every later step.
        for later in self.engine.pipeline.steps.iter().filter(|s| s.id >= def.id) {
            if let Some(c) = &later.contract
                && contract::is_journalled(self.ledger.entries(), c)
            {
                contract::revoke(
                    &mut self.ledger,
                    def.id,
                    c,
                    &format!("step {} is being re-run", def.id),
                )?;
            }
        }
        if def.kind == StepKind::Ingest && self.ledger.correlation_id().is_empty() {
            // A task started from an ingested SSOT record keeps its correlation id (SPEC §2).
            let id = ssot_correlation_id(self.engine.ws, &task)
                .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
            self.ledger.set_correlation_id(id);
        }
        self.ledger.event(
            Some(def.id),
            events::STEP_STARTED,
            json!({"name": def.name, "role": def.role}),
        )?;
        if !reports.is_empty() {
            self.ledger.event(
                Some(def.id),
                events::REPORTS_REQUIRED,
                json!({"reports": reports}),
            )?;
        }
        self.engine.progress.begin(def.id, &def.name, &def.role);
        let result = self.exec_kind(def);
        self.engine.progress.end();
        self.invalidate_tree();
        match result {
            Ok(outcome) => {
                let label = match outcome.exit {
                    ExitKind::Done => "done",
                    ExitKind::ReviewerNo => "no",
                    ExitKind::ScopeViolation => "scope_violation",
                    ExitKind::ChecksFailing => "checks_failing",
                    _ => "failed",
                };
                let inputs = self.current_inputs(def)?;
                let reason = if outcome.exit == ExitKind::Done {
                    String::new()
                } else {
                    outcome.summary.clone()
                };
                self.ledger.event(
                    Some(def.id),
                    events::STEP_FINISHED,
                    json!({"outcome": label, "reason": reason, "inputs": inputs}),
                )?;
                self.mirror_ssot(def, label)?;
                if def.kind == StepKind::Commit && outcome.exit == ExitKind::Done {
                    self.commit_ledger_tail(def)?;
                }
                Ok(outcome)
            }
            Err(err) => {
                let (kind, _) = crate::exit::classify(&err);
                let label = match kind {
                    ExitKind::ReviewerNo => "no",
                    _ => "failed",
                };
                let message = format!("{err:#}");
                self.ledger.event(
                    Some(def.id),
                    events::STEP_FINISHED,
                    json!({"outcome": label, "reason": message, "inputs": {}}),
                )?;
                self.mirror_ssot(def, label)?;
                Err(err)
            }
        }
    }

    /// Mirrors the task into `ssot/<TASK>.json` (SPEC §8.1).
    fn mirror_ssot(&self, def: &StepDef, state: &str) -> Result<()> {
        let l = &self.ledger;
        let prompt = l.read("inputs/prompt.md")?;
        let mut records = BTreeMap::new();
        for (key, rel) in [
            ("ack", "codex/ack.json"),
            ("task_result", "codex/task_result.json"),
            ("verdict", "claude/verdict.json"),
        ] {
            if let Some(bytes) = l.read(rel)?
                && let Ok(v) = serde_json::from_slice::<Value>(&bytes)
            {
                records.insert(key.to_owned(), v);
            }
        }
        let update = super::mirror::Update {
            task: l.task().to_string(),
            correlation_id: l.correlation_id().to_owned(),
            step: def.id,
            state: state.to_owned(),
            contracts: self
                .engine
                .pipeline
                .steps
                .iter()
                .filter_map(|s| s.contract.clone())
                .filter(|c| self.contract_state(c) == ContractState::Valid)
                .collect(),
            request_text: prompt
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned()),
            criteria: self.criteria()?,
            declared_scope: self.decisions()?.allowed,
            records,
        };
        super::mirror::mirror(&super::mirror::ssot_dir(self.engine.ws), &update)
    }

    /// The reports this task requires (SPEC §9): gatekeeper.yaml, the pipeline, then the
    /// prompt's `## Requires reports` (the workspace's prompt file at ingest, the ledger's copy
    /// after), normalized, without repeats.
    fn required_reports(&self, def: &StepDef) -> Result<Vec<String>> {
        let prompt = if def.kind == StepKind::Ingest {
            std::fs::read_to_string(self.engine.ws.prompt_path(&self.task())).unwrap_or_default()
        } else {
            self.ledger.read_text("inputs/prompt.md")?
        };
        let from_prompt = protocol::parse_required_reports(&prompt);
        let mut out: Vec<String> = Vec::new();
        for (origin, path) in self
            .engine
            .config
            .requires_reports
            .iter()
            .map(|p| ("gatekeeper.yaml", p))
            .chain(
                self.engine
                    .pipeline
                    .requires_reports
                    .iter()
                    .map(|p| ("the pipeline", p)),
            )
            .chain(from_prompt.iter().map(|p| ("the prompt", p)))
        {
            let path = requires::normalize(path).map_err(|e| {
                Refusal::usage(format!("{e} (in the `requires_reports` of {origin})")).hint(
                    "name each report relative to the workspace root, e.g. `reports/phase_A_acceptance.json`",
                )
            })?;
            if !out.contains(&path) {
                out.push(path);
            }
        }
        Ok(out)
    }

    /// Holds the task (exit 3) until every report it requires exists, says `pass: true`, and is
    /// byte-for-byte what another task's verified ledger recorded when its check passed.
    fn reports_gate(&self, def: &StepDef) -> Result<Vec<requires::Satisfied>> {
        let required = self.required_reports(def)?;
        if required.is_empty() {
            return Ok(Vec::new());
        }
        let task = self.task();
        let mut others = Vec::new();
        for name in self.engine.ws.task_names()? {
            if name == task {
                continue;
            }
            // A ledger that cannot even be parsed records nothing.
            if let Ok(ledger) = Ledger::open(self.engine.ws, &name) {
                others.push(ledger);
            }
        }
        let mut satisfied = Vec::new();
        for path in &required {
            let facts = checks::read_report(self.engine.ws.root(), path);
            let current = requires::Current {
                sha256: facts.sha256,
                pass: facts.pass,
                fail_reasons: facts.fail_reasons,
            };
            let mut claims = Vec::new();
            for ledger in &others {
                let Some(check) = requires::last_check(ledger.entries(), path) else {
                    continue;
                };
                let integrity = if check.passed && check.sha256 == current.sha256 {
                    let report = self.engine.verify(ledger.task())?;
                    report.findings.first().map(|f| f.message.clone())
                } else {
                    None
                };
                claims.push(requires::Claim {
                    task: ledger.task().to_string(),
                    check,
                    integrity,
                });
            }
            satisfied.push(requires::evaluate(task.as_str(), path, &current, &claims)?);
        }
        Ok(satisfied)
    }

    /// Kind-specific prerequisites, checked before anything is written.
    fn precheck(&self, def: &StepDef) -> Result<()> {
        let task = self.task();
        let ws = self.engine.ws;
        match def.kind {
            StepKind::Ingest => {
                let rel = Workspace::prompt_rel(&task);
                match std::fs::read(ws.root().join(&rel)) {
                    Ok(b) if !b.iter().all(u8::is_ascii_whitespace) => {}
                    Ok(_) => {
                        return Err(Refusal::gate(format!("the prompt `{rel}` is empty"))
                            .hint(format!("write the task into `{rel}`"))
                            .into());
                    }
                    Err(_) => {
                        return Err(Refusal::gate(format!("the prompt `{rel}` does not exist"))
                            .hint(format!(
                                "run `gatekeeper new {task} -m \"what to do\"` or write `{rel}`"
                            ))
                            .into());
                    }
                }
                let repo = ws.repo()?;
                if repo
                    .head()
                    .ok()
                    .and_then(|h| h.peel_to_commit().ok())
                    .is_none()
                {
                    return Err(Refusal::gate(
                        "the repository has no commit yet; step 0 records HEAD as the task's base",
                    )
                    .hint("commit first: `git add -A && git commit -m initial`")
                    .into());
                }
                let dirty = dirty_paths(&repo, &rel, &task)?;
                if !dirty.is_empty() {
                    let shown: Vec<String> =
                        dirty.iter().take(5).map(|p| format!("`{p}`")).collect();
                    return Err(Refusal::gate(format!(
                        "the working tree is not clean: {} changed path(s) ({}{})",
                        dirty.len(),
                        shown.join(", "),
                        if dirty.len() > 5 { ", …" } else { "" }
                    ))
                    .hint("commit or stash them first (`git stash -u`); only the prompt and `.ai-stack-trace/` may differ")
                    .into());
                }
            }
            StepKind::Commit => {
                if self.engine.config.require_human_approval {
                    let verdict = ssot_decision(ws, &task)?;
                    if verdict.as_deref() != Some("approved") {
                        return Err(Refusal::gate(format!(
                            "step {} needs a human approval (`require_human_approval: true`), and the task's decision is {}",
                            def.id,
                            verdict.map_or_else(|| "missing".to_owned(), |v| format!("`{v}`"))
                        ))
                        .hint(format!("approve it through the API or the dashboard, or run `gatekeeper approve {task}`"))
                        .into());
                    }
                }
                if approved_change_set(self.ledger.entries()).is_none() {
                    return Err(Refusal::gate("no approved change set is journalled")
                        .hint(format!("run `gatekeeper step 6 {task}`"))
                        .into());
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn exec_kind(&mut self, def: &StepDef) -> Result<StepOutcome> {
        match def.kind {
            StepKind::Ingest => self.ingest(def),
            StepKind::Generate => self.generate(def),
            StepKind::Decisions => self.decide(def),
            StepKind::Implement => self.implement(def),
            StepKind::Checks => self.checks(def),
            StepKind::Review => self.review(def),
            StepKind::Commit => self.commit(def),
            StepKind::Phase => self.phase(def),
        }
    }

    fn outcome(def: &StepDef, exit: ExitKind, summary: impl Into<String>) -> StepOutcome {
        StepOutcome {
            step: def.id,
            name: def.name.clone(),
            exit,
            summary: summary.into(),
            details: Vec::new(),
            hint: None,
            skipped: false,
        }
    }

    fn provider(&self, role: &str) -> Result<Box<dyn Provider>> {
        let binding = self.engine.config.role(role);
        Ok(providers::build(role, &binding, self.engine.env)?)
    }

    /// Renders the step's template, calls the role's provider, journals the call, redacts the
    /// answer, and refuses an empty one. Writes nothing but journal lines.
    fn ask(
        &mut self,
        def: &StepDef,
        template: &str,
        extra: Value,
    ) -> Result<(String, Box<dyn Provider>)> {
        let template_src = prompts::find(self.engine.ws.root(), template)?;
        let context = self.context(def, extra)?;
        let prompt = prompts::render(&template_src, &context)?;
        let provider = self.provider(&def.role)?;
        let task = self.task();
        let correlation_id = self.ledger.correlation_id().to_owned();
        let request = Request {
            task: task.as_str(),
            step: def.id,
            role: &def.role,
            template,
            prompt: &prompt,
            correlation_id: &correlation_id,
            context: &context,
            root: self.engine.ws.root(),
        };
        let answer = provider.complete(&request);
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                let mut data = match &e.record {
                    Some(r) => obj(serde_json::to_value(r)?),
                    None => serde_json::Map::new(),
                };
                data.insert("ok".to_owned(), json!(false));
                data.insert("error".to_owned(), json!(e.to_string()));
                data.insert("template".to_owned(), json!(template));
                data.insert(
                    "prompt_sha256".to_owned(),
                    json!(sha256_hex(prompt.as_bytes())),
                );
                self.ledger
                    .event(Some(def.id), events::PROVIDER_CALL, Value::Object(data))?;
                return Err(anyhow::Error::new(e).context(format!(
                    "step {} `{}`: the {} role's provider failed",
                    def.id, def.name, def.role
                )));
            }
        };
        let mut data = obj(serde_json::to_value(&answer.record)?);
        data.insert("ok".to_owned(), json!(true));
        data.insert("template".to_owned(), json!(template));
        data.insert(
            "prompt_sha256".to_owned(),
            json!(sha256_hex(prompt.as_bytes())),
        );
        data.insert(
            "answer_sha256".to_owned(),
            json!(sha256_hex(answer.text.as_bytes())),
        );
        self.ledger
            .append(Some(def.id), events::PROVIDER_CALL, BTreeMap::new(), data)?;
        let text = self.redact(def.id, &answer.text, "answer")?;
        if text.trim().is_empty() {
            return Err(anyhow!(
                "step {} `{}`: the {} role's provider gave an empty answer; nothing was written",
                def.id,
                def.name,
                def.role
            ));
        }
        Ok((text, provider))
    }

    fn redact(&mut self, step: u32, text: &str, what: &str) -> Result<String> {
        let known: Vec<(&str, &str)> = SECRET_VARS
            .iter()
            .filter_map(|k| self.engine.env.get(k).map(|v| (*k, v)))
            .collect();
        let (out, found) = secrets::redact(text, &known);
        for r in found {
            self.ledger.event(
                Some(step),
                events::REDACTION,
                json!({"in": what, "kind": r.kind, "count": r.count}),
            )?;
        }
        Ok(out)
    }

    fn write_output(&mut self, def: &StepDef, text: &str) -> Result<String> {
        let out = def
            .output()
            .ok_or_else(|| anyhow!("step {} declares no output", def.id))?
            .to_owned();
        self.ledger
            .write_file(Some(def.id), &out, text.as_bytes())?;
        Ok(out)
    }

    // ----- kinds -------------------------------------------------------------------------

    fn ingest(&mut self, def: &StepDef) -> Result<StepOutcome> {
        let task = self.task();
        let repo = self.engine.ws.repo()?;
        let head = repo.head()?.peel_to_commit()?.id().to_string();
        self.ledger.create_folders()?;
        let rel = Workspace::prompt_rel(&task);
        self.ledger.event(
            Some(def.id),
            events::TASK_STARTED,
            json!({"base_commit": head, "prompt": rel, "pipeline": self.engine.pipeline.name}),
        )?;
        let bytes = fs_err::read(self.engine.ws.root().join(&rel))?;
        let out = def.output().unwrap_or("inputs/prompt.md").to_owned();
        self.ledger.write_file(Some(def.id), &out, &bytes)?;
        let mut o = Self::outcome(
            def,
            ExitKind::Done,
            format!("ingested `{rel}`; base commit {}", &head[..12]),
        );
        o.details
            .push(format!("correlation id {}", self.ledger.correlation_id()));
        Ok(o)
    }

    fn generate(&mut self, def: &StepDef) -> Result<StepOutcome> {
        let template = def.template.clone().unwrap_or_default();
        let (text, _) = self.ask(def, &template, json!({}))?;
        let out = self.write_output(def, &text)?;
        Ok(Self::outcome(def, ExitKind::Done, format!("wrote `{out}`")))
    }

    fn decide(&mut self, def: &StepDef) -> Result<StepOutcome> {
        let template = def.template.clone().unwrap_or_default();
        let (text, _) = self.ask(def, &template, json!({}))?;
        let out = self.write_output(def, &text)?;
        let mut doc = parse_decisions_doc(&text);
        let key = def
            .verdict
            .clone()
            .unwrap_or_else(|| "CLAUDE_DECISIONS_OK".to_owned());
        if key != "CLAUDE_DECISIONS_OK" {
            doc.verdict = parse_verdict(&text, &key);
        }
        if doc.verdict.is_yes() {
            for g in doc.decisions.allowed.iter().chain(&doc.decisions.forbidden) {
                if let Err(e) = crate::scope::validate_glob(g) {
                    doc.verdict = Verdict::Malformed(format!("the decisions hold a {e}"));
                    break;
                }
            }
        }
        let task = self.task();
        match &doc.verdict {
            Verdict::Yes => {
                let name = def.contract.clone().unwrap_or(key);
                contract::write(&mut self.ledger, &ContractPermit::new(), def.id, &name)?;
                let mut o = Self::outcome(
                    def,
                    ExitKind::Done,
                    format!("wrote `{out}`; YES: `contract/{name}` written"),
                );
                o.details = doc
                    .decisions
                    .allowed
                    .iter()
                    .map(|p| format!("allowed: `{p}`"))
                    .collect();
                o.details.extend(
                    doc.decisions
                        .forbidden
                        .iter()
                        .map(|p| format!("forbidden: `{p}`")),
                );
                Ok(o)
            }
            Verdict::No => {
                let mut o = Self::outcome(
                    def,
                    ExitKind::ReviewerNo,
                    format!("the reviewer said NO (`{out}`); no contract was written"),
                );
                o.details =
                    section_bullets(&text, |h| h.contains("target flow") || h.contains("reason"));
                o.hint = Some(format!(
                    "read `{}/{out}`, amend `{}`, then run `gatekeeper step 0 {task}` and `gatekeeper run {task}`",
                    Workspace::ledger_rel(&task),
                    Workspace::prompt_rel(&task)
                ));
                Ok(o)
            }
            Verdict::Malformed(reason) => {
                let mut o = Self::outcome(
                    def,
                    ExitKind::ReviewerNo,
                    format!(
                        "the verdict is malformed, treated as NO: {reason}; no contract was written"
                    ),
                );
                o.hint = Some(format!("re-run `gatekeeper step {} {task}`", def.id));
                Ok(o)
            }
        }
    }

    /// Applies the ```diff blocks of an answer (unless the provider edits the tree itself).
    fn apply_answer(
        &mut self,
        def: &StepDef,
        text: &str,
        provider: &dyn Provider,
        what: &str,
    ) -> Result<Vec<String>> {
        if provider.edits_tree() {
            return Ok(Vec::new());
        }
        let blocks = patch::extract_diff_blocks(text);
        if blocks.is_empty() {
            return Ok(Vec::new());
        }
        let repo = self.engine.ws.repo()?;
        let base_tree = base_commit(self.ledger.entries())
            .and_then(|b| git2::Oid::from_str(&b).ok())
            .and_then(|oid| repo.find_commit(oid).ok())
            .and_then(|c| c.tree().ok());
        let applied = patch::apply_all(&repo, &blocks, base_tree.as_ref()).map_err(|e| {
            anyhow!(
                "step {} `{}`: {e}; nothing was applied and `{what}` was not written",
                def.id,
                def.name
            )
        })?;
        self.ledger.event(
            Some(def.id),
            events::PATCH_APPLIED,
            json!({"blocks": blocks.len(), "paths": applied.touched, "already_applied": applied.already_applied}),
        )?;
        self.invalidate_tree();
        Ok(applied.touched)
    }

    /// Runs the scope check now; returns the offending lines (empty when in scope).
    fn scope_violations(&mut self, def: &StepDef) -> Result<Vec<String>> {
        // An agent that edits the tree may also have edited the ledger (its own decisions, say):
        // the scope check must not trust a ledger that fails verification.
        self.check_integrity()?;
        self.invalidate_tree();
        let report = self.scope_report()?;
        let bad: Vec<String> = report
            .paths
            .iter()
            .filter(|p| p.verdict != "allowed")
            .map(|p| match &p.glob {
                Some(g) => format!("`{}`: {} by `{g}`", p.path, p.verdict.replace('_', " ")),
                None => format!("`{}`: outside the approved paths", p.path),
            })
            .collect();
        // The set itself is not journalled here: its digest and size are, and the full set is
        // recorded where it is bound (`codex/task_result.json` at step 4, `approved` at step 6).
        // A journal line listing every changed path at each check made the journal grow with
        // the change and every gate and `ci` slower to parse it (docs/performance.md).
        let tree = self.tree()?;
        let (digest, changed) = (tree.digest(), tree.paths.len());
        self.ledger.event(
            Some(def.id),
            events::SCOPE_CHECKED,
            json!({"ok": bad.is_empty(), "violations": bad, "digest": digest, "changed_paths": changed}),
        )?;
        Ok(bad)
    }

    fn scope_violation_outcome(&self, def: &StepDef, bad: Vec<String>) -> StepOutcome {
        let task = self.task();
        let mut o = Self::outcome(
            def,
            ExitKind::ScopeViolation,
            format!(
                "scope violation: {} path(s) outside the approved paths; the tree is left as it is for inspection",
                bad.len()
            ),
        );
        o.details = bad;
        o.hint = Some(format!(
            "see `gatekeeper scope {task}`; revert those paths (`git checkout -- <path>` / delete them), or amend the scope by re-running `gatekeeper step 2 {task}`"
        ));
        o
    }

    fn implement(&mut self, def: &StepDef) -> Result<StepOutcome> {
        let template = def.template.clone().unwrap_or_default();
        let (text, provider) = self.ask(def, &template, json!({}))?;
        let out = def.output().unwrap_or("codex/apply.md").to_owned();
        let touched = self.apply_answer(def, &text, provider.as_ref(), &out)?;
        self.ledger
            .write_file(Some(def.id), &out, text.as_bytes())?;
        let bad = self.scope_violations(def)?;
        if !bad.is_empty() {
            return Ok(self.scope_violation_outcome(def, bad));
        }
        if let Some(no) = self.protocol_ack(def, &text)? {
            return Ok(no);
        }
        let changed = self.tree()?.paths.len();
        let mut o = Self::outcome(
            def,
            ExitKind::Done,
            format!("wrote `{out}`; {changed} changed path(s), all inside the approved paths"),
        );
        o.details = touched.iter().map(|p| format!("patched `{p}`")).collect();
        Ok(o)
    }

    /// The acceptance criteria of the task's prompt (SPEC §10).
    fn criteria(&self) -> Result<Vec<protocol::Criterion>> {
        Ok(crate::selfaudit::acceptance_criteria(
            &self.ledger.read_text("inputs/prompt.md")?,
        ))
    }

    /// SPEC §10 at step 4: writes `codex/ack.json` and `codex/task_result.json`; an echo rate
    /// below 1.0 is a NO (exit 4).
    fn protocol_ack(&mut self, def: &StepDef, text: &str) -> Result<Option<StepOutcome>> {
        let criteria = self.criteria()?;
        let scope = self.decisions()?.allowed;
        let ack = protocol::parse_ack(text);
        let report = protocol::echo_report(&criteria, &scope, &ack);
        let ack_json = protocol::ack_json(&criteria, &scope, &ack, &report);
        let tree = self.tree()?.clone();
        let result = json!({
            "task": self.task().as_str(),
            "work_log": ack.work_log,
            "diff_snapshot": {"change_set": tree, "digest": tree.digest()},
        });
        let ack_rel = def
            .writes
            .get(1)
            .map_or("codex/ack.json", String::as_str)
            .to_owned();
        let result_rel = def
            .writes
            .get(2)
            .map_or("codex/task_result.json", String::as_str)
            .to_owned();
        self.ledger.write_file(
            Some(def.id),
            &ack_rel,
            to_canonical_pretty(&ack_json).as_bytes(),
        )?;
        self.ledger.write_file(
            Some(def.id),
            &result_rel,
            to_canonical_pretty(&result).as_bytes(),
        )?;
        self.ledger.event(
            Some(def.id),
            events::ACK_CHECKED,
            json!({"echo_match_rate": report.echo_match_rate, "matched": report.matched, "expected": report.expected, "missing": report.missing, "work_log": ack.work_log.len()}),
        )?;
        if report.matched == report.expected {
            return Ok(None);
        }
        let mut o = Self::outcome(
            def,
            ExitKind::ReviewerNo,
            format!(
                "the ACK echoes {} of {} acceptance criteria and scope items exactly (echo_match_rate {:.2}); it must echo every one",
                report.matched, report.expected, report.echo_match_rate
            ),
        );
        if ack.present && !ack.at_start {
            o.details.push(
                "the answer must begin with its `## ACK` section; an ACK further down is not read"
                    .to_owned(),
            );
        }
        o.details.extend(
            report
                .missing
                .iter()
                .map(|m| format!("not echoed verbatim: {m}")),
        );
        o.hint = Some(format!(
            "see `{}/{ack_rel}`; re-run `gatekeeper step {} {}`",
            Workspace::ledger_rel(self.ledger.task()),
            def.id,
            self.ledger.task()
        ));
        Ok(Some(o))
    }

    fn next_fix_number(&self) -> Result<usize> {
        Ok(self.ledger_files_matching("codex/fix-*.md")?.len() + 1)
    }

    fn checks(&mut self, def: &StepDef) -> Result<StepOutcome> {
        let log_rel = def
            .writes
            .first()
            .cloned()
            .unwrap_or_else(|| "tests/run.log".to_owned());
        let mut log = String::new();
        let mut attempt = 1;
        loop {
            let runs = checks::run_all(
                &self.engine.config.checks,
                self.engine.ws.root(),
                self.engine.env,
            )?;
            let section = checks::format_attempt(attempt, &runs);
            log.push_str(&section);
            let redacted = self.redact(def.id, &log, &log_rel)?;
            self.ledger
                .write_file(Some(def.id), &log_rel, redacted.as_bytes())?;
            let failed: Vec<String> = runs
                .iter()
                .filter(|r| !r.passed())
                .map(|r| r.name.clone())
                .collect();
            self.ledger.event(
                Some(def.id),
                events::CHECKS_RUN,
                json!({"attempt": attempt, "passed": runs.len() - failed.len(), "failed": failed}),
            )?;
            for r in &runs {
                if let Some(rep) = &r.report {
                    // SPEC §9: the report's and its artifacts' hashes are journalled.
                    self.ledger.event(
                        Some(def.id),
                        events::REPORT_CHECKED,
                        json!({"check": r.name, "report": rep}),
                    )?;
                }
            }
            if failed.is_empty() {
                return Ok(Self::outcome(
                    def,
                    ExitKind::Done,
                    format!(
                        "{} check(s) passed on attempt {attempt}; log in `{log_rel}`",
                        runs.len()
                    ),
                ));
            }
            if attempt > self.engine.config.fix_attempts {
                let mut o = Self::outcome(
                    def,
                    ExitKind::ChecksFailing,
                    format!(
                        "checks still failing after {} fix attempt(s): {}",
                        attempt - 1,
                        failed.join(", ")
                    ),
                );
                o.hint = Some(format!(
                    "read `{}/{log_rel}`, fix the code, then run `gatekeeper step {} {}`",
                    Workspace::ledger_rel(self.ledger.task()),
                    def.id,
                    self.ledger.task()
                ));
                return Ok(o);
            }
            let failing_log = self.redact(def.id, &section, &log_rel)?;
            if let Some(bad) = self.fix(def, json!({"failing_log": failing_log}))? {
                return Ok(self.scope_violation_outcome(def, bad));
            }
            attempt += 1;
        }
    }

    /// One fix by the codex role: writes `codex/fix-<N>.md`, applies its diffs, re-checks scope.
    /// Returns the scope violations, if any.
    fn fix(&mut self, def: &StepDef, extra: Value) -> Result<Option<Vec<String>>> {
        let n = self.next_fix_number()?;
        let rel = format!("codex/fix-{n}.md");
        let mut extra = obj(extra);
        extra.insert("fix_name".to_owned(), json!(format!("fix-{n}")));
        let template = def.template.clone().unwrap_or_else(|| "fix".to_owned());
        let (text, provider) = self.ask(def, &template, Value::Object(extra))?;
        self.apply_answer(def, &text, provider.as_ref(), &rel)?;
        self.ledger
            .write_file(Some(def.id), &rel, text.as_bytes())?;
        let bad = self.scope_violations(def)?;
        Ok((!bad.is_empty()).then_some(bad))
    }

    fn review_fix_round(
        &mut self,
        checks_def: &StepDef,
        review_def: &StepDef,
        feedback: &[String],
        round: u32,
    ) -> Result<()> {
        // Fidelity (SPEC §10): the issues go back byte-for-byte as in verdict.json.
        let verdict_rel = review_def
            .writes
            .get(1)
            .map_or("claude/verdict.json", String::as_str);
        let issues = serde_json::from_str::<Value>(&self.ledger.read_text(verdict_rel)?)
            .ok()
            .and_then(|v| v.get("issues").cloned());
        let text = match issues {
            Some(issues) => protocol::issues_bytes(&issues),
            None => feedback.join("\n"),
        };
        self.ledger.event(
            Some(checks_def.id),
            events::FIX_REQUESTED,
            json!({"round": round, "from_step": review_def.id, "issues_sha256": sha256_hex(text.as_bytes())}),
        )?;
        if let Some(bad) = self.fix(checks_def, json!({"review_feedback": text}))? {
            return Err(Refusal::new(
                ExitKind::ScopeViolation,
                format!("the review fix left the approved paths: {}", bad.join("; ")),
            )
            .hint(format!("see `gatekeeper scope {}`", self.ledger.task()))
            .into());
        }
        Ok(())
    }

    fn review(&mut self, def: &StepDef) -> Result<StepOutcome> {
        let task = self.task();
        let report = self.scope_report()?;
        let checks_ok = true; // The gate admitted this step, so the checks step is done and fresh.
        let mut reasons = Vec::new();
        if report.ok {
            reasons.push(format!(
                "ok: {} changed path(s), all inside the approved paths",
                report.paths.len()
            ));
        }
        for p in report.paths.iter().filter(|p| p.verdict != "allowed") {
            reasons.push(format!("`{}` is {}", p.path, p.verdict.replace('_', " ")));
        }
        reasons.push("ok: the last run of the checks passed (tests/run.log)".to_owned());
        let mechanical_ok = report.ok && checks_ok;
        let template = def.template.clone().unwrap_or_default();
        let (text, _) = self.ask(
            def,
            &template,
            json!({"mechanical_ok": mechanical_ok, "mechanical_reasons": reasons}),
        )?;
        let key = def
            .verdict
            .clone()
            .unwrap_or_else(|| "CLAUDE_FINAL_OK".to_owned());
        let mut verdict = parse_verdict(&text, &key);
        let parsed = protocol::parse_issues(&text);
        let parsed_issues = match parsed {
            Ok(i) => i,
            Err((i, reason)) => {
                verdict = Verdict::Malformed(reason);
                i
            }
        };
        let issues: Vec<String> = parsed_issues
            .iter()
            .map(|i| {
                let refs: Vec<&str> = i
                    .criterion_ref
                    .iter()
                    .chain(&i.work_log_ref)
                    .map(String::as_str)
                    .collect();
                if refs.is_empty() {
                    i.text.clone()
                } else {
                    format!("{}: {}", refs.join(" "), i.text)
                }
            })
            .collect();
        let out = self.write_output(def, &text)?;
        let approve = verdict.is_yes() && mechanical_ok;
        let issues_value = serde_json::to_value(&parsed_issues)?;
        let verdict_json = json!({
            "decision": if approve { "approve" } else { "reject" },
            "verdict": verdict,
            "mechanical": {"scope_ok": report.ok, "checks_ok": checks_ok, "reasons": reasons},
            "issues": issues_value,
        });
        if let Some(vrel) = def.writes.get(1) {
            self.ledger.write_file(
                Some(def.id),
                vrel,
                to_canonical_pretty(&verdict_json).as_bytes(),
            )?;
            self.ledger.event(
                Some(def.id),
                events::REVIEW_ISSUES,
                json!({"count": parsed_issues.len(), "issues_sha256": sha256_hex(protocol::issues_bytes(&issues_value).as_bytes())}),
            )?;
        }
        if approve {
            let name = def.contract.clone().unwrap_or(key);
            let tree = self.tree()?.clone();
            self.ledger.event(
                Some(def.id),
                events::APPROVED,
                json!({"change_set": tree, "digest": tree.digest()}),
            )?;
            contract::write(&mut self.ledger, &ContractPermit::new(), def.id, &name)?;
            return Ok(Self::outcome(
                def,
                ExitKind::Done,
                format!(
                    "YES: `contract/{name}` written; approved change set of {} path(s) bound",
                    tree.paths.len()
                ),
            ));
        }
        if !report.ok {
            let bad = report
                .paths
                .iter()
                .filter(|p| p.verdict != "allowed")
                .map(|p| format!("`{}`: {}", p.path, p.verdict))
                .collect();
            return Ok(self.scope_violation_outcome(def, bad));
        }
        let mut o = Self::outcome(
            def,
            ExitKind::ReviewerNo,
            match &verdict {
                Verdict::Malformed(r) => format!("the verdict is malformed, treated as NO: {r}"),
                _ => "the reviewer said NO; no contract was written".to_owned(),
            },
        );
        o.details = issues;
        o.hint = Some(format!(
            "read `{}/{out}`; `gatekeeper run {task}` sends the issues back to the codex role (at most {} rounds)",
            Workspace::ledger_rel(&task),
            self.engine.config.review_rounds
        ));
        Ok(o)
    }

    // ----- step 8 ------------------------------------------------------------------------

    fn latest_seq(&self, event: &str) -> Option<u64> {
        self.ledger
            .entries()
            .iter()
            .rev()
            .find(|e| e.event == event)
            .map(|e| e.seq)
    }

    fn commit(&mut self, def: &StepDef) -> Result<StepOutcome> {
        let task = self.task();
        let approved_at = self.latest_seq(events::APPROVED).unwrap_or(0);
        let approved = approved_change_set(self.ledger.entries())
            .ok_or_else(|| anyhow!("no approved change set"))?;
        let after = |e: &&crate::ledger::journal::Entry| e.seq > approved_at;
        let existing = self
            .ledger
            .entries()
            .iter()
            .filter(after)
            .find(|e| e.event == events::COMMITTED)
            .and_then(|e| e.data_str("commit"))
            .map(str::to_owned);
        let repo = self.engine.ws.repo()?;
        let commit_sha = if let Some(sha) = existing {
            sha
        } else {
            let intent = self
                .ledger
                .entries()
                .iter()
                .filter(after)
                .any(|e| e.event == events::COMMIT_INTENT);
            let found = if intent {
                find_own_commit(&repo, &task, &approved)?
            } else {
                None
            };
            if let Some(sha) = found {
                self.ledger.event(
                    Some(def.id),
                    events::COMMITTED,
                    json!({"commit": sha, "recovered": true}),
                )?;
                sha
            } else {
                self.ledger.event(
                    Some(def.id),
                    events::COMMIT_INTENT,
                    json!({"digest": approved.digest()}),
                )?;
                let sha = self.make_commit(&repo, &approved)?;
                self.ledger.event(
                    Some(def.id),
                    events::COMMITTED,
                    json!({"commit": sha, "recovered": false}),
                )?;
                sha
            }
        };
        let (deploy_url, deploy_id, context) = match &self.engine.config.deploy {
            None => (None, None, "no-deploy".to_owned()),
            Some(deploy) => {
                let context = deploy
                    .context
                    .clone()
                    .unwrap_or_else(|| "production".to_owned());
                let done = self
                    .ledger
                    .entries()
                    .iter()
                    .filter(after)
                    .rev()
                    .find(|e| e.event == events::DEPLOYED || e.event == events::DEPLOY_INTENT)
                    .cloned();
                match done {
                    Some(e)
                        if e.event == events::DEPLOYED
                            && e.data.get("ok") == Some(&json!(true)) =>
                    {
                        (
                            e.data_str("url").map(str::to_owned),
                            e.data_str("id").map(str::to_owned),
                            context,
                        )
                    }
                    Some(e) if e.event == events::DEPLOY_INTENT => {
                        return Err(Refusal::new(
                            ExitKind::Failed,
                            format!("a deploy for this approval started at {} and its outcome was never recorded; gatekeeper never deploys twice for one approval", e.ts),
                        )
                        .hint(format!("check the deploy by hand; to deploy again, re-approve with `gatekeeper step 6 {task}`"))
                        .into());
                    }
                    _ => {
                        let (url, id) = self.deploy(def, deploy, &commit_sha)?;
                        (url, id, context)
                    }
                }
            }
        };
        let status = json!({
            "commitSha": commit_sha,
            "deployUrl": deploy_url,
            "deployId": deploy_id,
            "timestamp": crate::ledger::now_rfc3339(),
            "context": context,
        });
        self.ledger.write_file(
            Some(def.id),
            "final/status.json",
            to_canonical_pretty(&status).as_bytes(),
        )?;
        let mut o = Self::outcome(
            def,
            ExitKind::Done,
            format!(
                "committed {}; wrote `final/status.json`",
                &commit_sha[..12.min(commit_sha.len())]
            ),
        );
        if let Some(url) = deploy_url {
            o.details.push(format!("deployed: {url}"));
        }
        Ok(o)
    }

    fn deploy(
        &mut self,
        def: &StepDef,
        deploy: &crate::config::DeployConfig,
        commit: &str,
    ) -> Result<(Option<String>, Option<String>)> {
        self.ledger.event(
            Some(def.id),
            events::DEPLOY_INTENT,
            json!({"commit": commit}),
        )?;
        let done = crate::process::run(&crate::process::Spec {
            argv: crate::process::shell(&deploy.run),
            cwd: self.engine.ws.root(),
            stdin: None,
            env: self.engine.env,
            extra_env: vec![("GATEKEEPER_COMMIT".to_owned(), commit.to_owned())],
            timeout: std::time::Duration::from_secs(3600),
        })?;
        let stdout = String::from_utf8_lossy(&done.stdout).into_owned();
        if !done.success() {
            let mut log = format!("$ {}\nexit: {:?}\n", deploy.run, done.code);
            log.push_str(&stdout);
            log.push_str(&String::from_utf8_lossy(&done.stderr));
            let log = self.redact(def.id, &log, "final/deploy-error.log")?;
            self.ledger
                .write_file(Some(def.id), "final/deploy-error.log", log.as_bytes())?;
            self.ledger.event(
                Some(def.id),
                events::DEPLOYED,
                json!({"ok": false, "code": done.code}),
            )?;
            return Err(anyhow!(
                "the deploy command failed (exit {}); see `{}/final/deploy-error.log`",
                done.code
                    .map_or_else(|| "signal".to_owned(), |c| c.to_string()),
                Workspace::ledger_rel(self.ledger.task())
            ));
        }
        let (url, id) = parse_deploy_output(deploy.format, &stdout);
        self.ledger.event(
            Some(def.id),
            events::DEPLOYED,
            json!({"ok": true, "url": url, "id": id}),
        )?;
        Ok((url, id))
    }

    fn make_commit(&self, repo: &git2::Repository, approved: &ChangeSet) -> Result<String> {
        let task = self.task();
        let mut index = repo.index()?;
        for p in &approved.paths {
            let path = std::path::Path::new(&p.path);
            if p.sha256.is_some() {
                index
                    .add_path(path)
                    .with_context(|| format!("failed to stage `{}`", p.path))?;
            } else {
                let _ = index.remove_path(path);
            }
        }
        self.stage_ledger(&mut index)?;
        index.write()?;
        let tree = repo.find_tree(index.write_tree()?)?;
        let parent = repo.head()?.peel_to_commit()?;
        let prompt = self.ledger.read_text("inputs/prompt.md")?;
        let first = prompt
            .lines()
            .map(|l| l.trim().trim_start_matches('#').trim())
            .find(|l| !l.is_empty())
            .unwrap_or("task");
        let message = format!("gatekeeper({task}): {first}\n");
        let sig = signature(repo)?;
        let oid = repo.commit(Some("HEAD"), &sig, &sig, &message, &tree, &[&parent])?;
        Ok(oid.to_string())
    }

    fn stage_ledger(&self, index: &mut git2::Index) -> Result<()> {
        let task = self.task();
        let root = self.engine.ws.root();
        for item in walkdir::WalkDir::new(self.ledger.dir()).follow_links(false) {
            let item = item?;
            if item.file_type().is_file() {
                let rel = item.path().strip_prefix(root)?;
                index
                    .add_path(rel)
                    .with_context(|| format!("failed to stage `{}`", rel.display()))?;
            }
        }
        let prompt = Workspace::prompt_rel(&task);
        if root.join(&prompt).is_file() {
            index.add_path(std::path::Path::new(&prompt))?;
        }
        for rel in [
            integrity::ssot_rel(&task),
            integrity::SSOT_LOCK_REL.to_owned(),
        ] {
            if root.join(&rel).is_file() {
                index.add_path(std::path::Path::new(&rel))?;
            }
        }
        Ok(())
    }

    /// After step 8 finished: commits the ledger lines written after the change commit, so the
    /// tree is clean and the pull request carries the whole ledger.
    fn commit_ledger_tail(&self, def: &StepDef) -> Result<()> {
        let task = self.task();
        let repo = self.engine.ws.repo()?;
        let mut index = repo.index()?;
        self.stage_ledger(&mut index)?;
        index.write()?;
        let tree_id = index.write_tree()?;
        let parent = repo.head()?.peel_to_commit()?;
        if parent.tree_id() == tree_id {
            return Ok(());
        }
        let tree = repo.find_tree(tree_id)?;
        let sig = signature(&repo)?;
        let message = format!(
            "gatekeeper({task}): ledger of step {} `{}`\n",
            def.id, def.name
        );
        repo.commit(Some("HEAD"), &sig, &sig, &message, &tree, &[&parent])?;
        Ok(())
    }
}

fn signature(repo: &git2::Repository) -> Result<git2::Signature<'static>> {
    match repo.signature() {
        Ok(s) => Ok(s.to_owned()),
        Err(_) => Ok(git2::Signature::now("gatekeeper", "gatekeeper@localhost")?),
    }
}

/// Finds the change commit an interrupted step 8 already made: a commit on HEAD's first-parent
/// line whose message is this task's and whose tree holds exactly the approved content.
fn find_own_commit(
    repo: &git2::Repository,
    task: &TaskName,
    approved: &ChangeSet,
) -> Result<Option<String>> {
    let prefix = format!("gatekeeper({task}): ");
    let mut commit = repo.head()?.peel_to_commit()?;
    for _ in 0..50 {
        if commit
            .message()
            .is_ok_and(|m| m.starts_with(&prefix) && !m.contains(": ledger of step"))
        {
            let tree = commit.tree()?;
            let matches = approved.paths.iter().all(|p| {
                match (tree.get_path(std::path::Path::new(&p.path)), &p.sha256) {
                    (Ok(entry), Some(sha)) => repo
                        .find_blob(entry.id())
                        .map(|b| sha256_hex(b.content()) == *sha)
                        .unwrap_or(false),
                    (Err(_), None) => true,
                    _ => false,
                }
            });
            if matches {
                return Ok(Some(commit.id().to_string()));
            }
        }
        match commit.parent(0) {
            Ok(p) => commit = p,
            Err(_) => break,
        }
    }
    Ok(None)
}

fn parse_deploy_output(format: DeployFormat, stdout: &str) -> (Option<String>, Option<String>) {
    match format {
        DeployFormat::NetlifyJson => {
            let v: Value = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
            let url = v
                .get("deploy_url")
                .or_else(|| v.get("url"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            let id = v
                .get("deploy_id")
                .and_then(Value::as_str)
                .map(str::to_owned);
            (url, id)
        }
        DeployFormat::Text => {
            let url = stdout
                .split_whitespace()
                .rev()
                .find(|w| w.starts_with("https://") || w.starts_with("http://"))
                .map(str::to_owned);
            (url, None)
        }
    }
}

/// Paths that make the tree "not clean" for step 0: anything but `.ai-stack-trace/` and the
/// task's prompt.
fn dirty_paths(repo: &git2::Repository, prompt_rel: &str, task: &TaskName) -> Result<Vec<String>> {
    let exempt = integrity::task_exempt(task);
    let mut opts = git2::StatusOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(false);
    let statuses = repo.statuses(Some(&mut opts))?;
    let mut out = Vec::new();
    for s in statuses.iter() {
        let Ok(path) = s.path() else { continue };
        if path.starts_with(&format!("{LEDGER_ROOT}/")) || path == prompt_rel || exempt(path) {
            continue;
        }
        out.push(path.to_owned());
    }
    Ok(out)
}

/// The decision verdict of `ssot/<TASK>.json`, if any (SPEC §8.1).
fn ssot_decision(ws: &Workspace, task: &TaskName) -> Result<Option<String>> {
    let path = ws.root().join("ssot").join(format!("{task}.json"));
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(None);
    };
    let v: Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("`{}` is not valid JSON", path.display()))?;
    Ok(v.get("decision")
        .and_then(|d| d.get("verdict"))
        .and_then(Value::as_str)
        .map(str::to_owned))
}

/// The correlation id of `ssot/<TASK>.json`, when it exists and holds a sane one (SPEC §8.6).
fn ssot_correlation_id(ws: &Workspace, task: &TaskName) -> Option<String> {
    let path = ws.root().join("ssot").join(format!("{task}.json"));
    let v: Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    v.get("correlation_id")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty() && c.len() <= 128 && c.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
}

/// Sort key putting `fix-10.md` after `fix-9.md`.
fn natural_key(s: &str) -> (String, u64) {
    let digits: String = s.chars().filter(char::is_ascii_digit).collect();
    (
        s.chars().filter(|c| !c.is_ascii_digit()).collect(),
        digits.parse().unwrap_or(0),
    )
}
