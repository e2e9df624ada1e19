//! Step states and gates (SPEC §2, §5), computed from journal facts and current input hashes.
//! Pure: the engine gathers the facts, this module decides.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Pipeline, StepDef};
use crate::exit::{ExitKind, Refusal};
use crate::ledger::journal::{Entry, events};

/// Input name → sha256, as recorded at a step's end or computed now.
pub type Inputs = BTreeMap<String, String>;

/// Where a step stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "state", content = "reason")]
pub enum StepState {
    /// Never run.
    Pending,
    /// Done, and its inputs and predecessor are unchanged.
    Done,
    /// Done once, but an input or an earlier step changed since.
    Stale(String),
    /// Started and never finished (the process died); re-run it.
    Interrupted,
    /// The reviewer said NO (or the verdict was malformed).
    No(String),
    /// Ended with a scope violation.
    ScopeViolation(String),
    /// Checks still failing after the fix loop.
    ChecksFailing(String),
    /// Failed (I/O, provider, deploy or internal error).
    Failed(String),
}

impl StepState {
    /// The state's name as shown in tables and `--json`.
    #[must_use]
    pub fn label(&self) -> &'static str {
        match self {
            StepState::Pending => "pending",
            StepState::Done => "done",
            StepState::Stale(_) => "stale",
            StepState::Interrupted => "interrupted",
            StepState::No(_) => "no",
            StepState::ScopeViolation(_) => "scope-violation",
            StepState::ChecksFailing(_) => "checks-failing",
            StepState::Failed(_) => "failed",
        }
    }

    /// The reason, if the state has one.
    #[must_use]
    pub fn reason(&self) -> Option<&str> {
        match self {
            StepState::Stale(r)
            | StepState::No(r)
            | StepState::ScopeViolation(r)
            | StepState::ChecksFailing(r)
            | StepState::Failed(r) => Some(r),
            StepState::Pending | StepState::Done | StepState::Interrupted => None,
        }
    }
}

/// A step with its state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StepStatus {
    /// Step id.
    pub step: u32,
    /// Step name.
    pub name: String,
    /// Role.
    pub role: String,
    /// State.
    #[serde(flatten)]
    pub state: StepState,
    /// When it last finished.
    pub finished_at: Option<String>,
    /// Provider tokens in, summed over the step's calls since it last started.
    pub tokens_in: u64,
    /// Provider tokens out.
    pub tokens_out: u64,
}

/// Journal facts about one step.
#[derive(Clone, Debug, Default)]
pub struct StepFacts<'a> {
    /// The last `step_started`.
    pub started: Option<&'a Entry>,
    /// The last `step_finished`.
    pub finished: Option<&'a Entry>,
}

/// The facts of every step.
#[must_use]
pub fn facts(entries: &[Entry]) -> BTreeMap<u32, StepFacts<'_>> {
    let mut out: BTreeMap<u32, StepFacts<'_>> = BTreeMap::new();
    for e in entries {
        let Some(step) = e.step else { continue };
        match e.event.as_str() {
            events::STEP_STARTED => out.entry(step).or_default().started = Some(e),
            events::STEP_FINISHED => out.entry(step).or_default().finished = Some(e),
            _ => {}
        }
    }
    out
}

/// The inputs a finished step recorded.
#[must_use]
pub fn recorded_inputs(finished: &Entry) -> Inputs {
    finished
        .data
        .get("inputs")
        .and_then(|v| v.as_object())
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// Evaluates every step. `current` holds the current inputs of steps whose last run finished
/// `done` (the engine computes them; a missing entry counts as unchanged).
#[must_use]
pub fn evaluate(
    pipeline: &Pipeline,
    entries: &[Entry],
    current: &BTreeMap<u32, Inputs>,
) -> Vec<StepStatus> {
    let facts = facts(entries);
    let mut out = Vec::new();
    let mut previous_fresh: Option<(u32, bool)> = None;
    for def in &pipeline.steps {
        let f = facts.get(&def.id).cloned().unwrap_or_default();
        let state = state_of(def, entries, &f, current.get(&def.id), previous_fresh);
        let (tokens_in, tokens_out) = tokens(entries, def.id, f.started.map(|e| e.seq));
        previous_fresh = Some((def.id, state == StepState::Done));
        out.push(StepStatus {
            step: def.id,
            name: def.name.clone(),
            role: def.role.clone(),
            finished_at: f.finished.map(|e| e.ts.clone()),
            state,
            tokens_in,
            tokens_out,
        });
    }
    out
}

fn state_of(
    def: &StepDef,
    entries: &[Entry],
    f: &StepFacts<'_>,
    current: Option<&Inputs>,
    previous: Option<(u32, bool)>,
) -> StepState {
    let Some(finished) = f.finished else {
        return if f.started.is_some() {
            StepState::Interrupted
        } else {
            StepState::Pending
        };
    };
    if f.started.is_some_and(|s| s.seq > finished.seq) {
        return StepState::Interrupted;
    }
    let reason = || finished.data_str("reason").unwrap_or_default().to_owned();
    match finished.data_str("outcome").unwrap_or_default() {
        "done" => {}
        "no" => return StepState::No(reason()),
        "scope_violation" => return StepState::ScopeViolation(reason()),
        "checks_failing" => return StepState::ChecksFailing(reason()),
        _ => return StepState::Failed(reason()),
    }
    // A step whose contract was withdrawn (an earlier step re-ran) has to earn it again.
    if let Some(c) = &def.contract
        && !crate::ledger::contract::is_journalled(entries, c)
    {
        return StepState::Stale(format!("its contract `{c}` was withdrawn by a re-run"));
    }
    if let Some((prev_id, false)) = previous {
        return StepState::Stale(format!("step {prev_id} is no longer done"));
    }
    if let Some(now) = current {
        let then = recorded_inputs(finished);
        if let Some(changed) = changed_input(&then, now) {
            let _ = def;
            return StepState::Stale(changed);
        }
    }
    StepState::Done
}

/// The first input that differs, described.
#[must_use]
pub fn changed_input(then: &Inputs, now: &Inputs) -> Option<String> {
    for (k, v) in now {
        match then.get(k) {
            None => return Some(format!("`{}` is new since the step ran", shown(k))),
            Some(old) if old != v => {
                return Some(format!("`{}` changed since the step ran", shown(k)));
            }
            Some(_) => {}
        }
    }
    then.keys()
        .find(|k| !now.contains_key(*k))
        .map(|k| format!("`{}` is gone since the step ran", shown(k)))
}

fn shown(key: &str) -> &str {
    match key {
        "tree" => "the working tree",
        "pipeline" => "the pipeline definition",
        k => k
            .strip_prefix("ledger:")
            .or_else(|| k.strip_prefix("prompt:"))
            .unwrap_or(k),
    }
}

fn tokens(entries: &[Entry], step: u32, since: Option<u64>) -> (u64, u64) {
    let since = since.unwrap_or(0);
    entries
        .iter()
        .filter(|e| e.step == Some(step) && e.event == events::PROVIDER_CALL && e.seq >= since)
        .fold((0, 0), |(i, o), e| {
            let get = |k: &str| {
                e.data
                    .get(k)
                    .and_then(serde_json::Value::as_u64)
                    .unwrap_or(0)
            };
            (i + get("tokens_in"), o + get("tokens_out"))
        })
}

/// What the engine knows about a required contract now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContractState {
    /// The file exists and the journal's last word on it is `contract_written`.
    Valid,
    /// No file.
    Missing,
    /// A file the journal does not record (or records as revoked).
    Forged,
}

/// The gate of a step: its predecessor must be done and fresh, its contracts present and
/// journalled.
///
/// # Errors
/// A refusal (exit 3, or 7 for a forged contract) naming what is missing and the fixing command.
pub fn check(
    pipeline: &Pipeline,
    statuses: &[StepStatus],
    step: &StepDef,
    task: &str,
    contract_state: &dyn Fn(&str) -> ContractState,
    approval_recorded: &dyn Fn(u32) -> bool,
) -> Result<(), Refusal> {
    if let Some(prev) = pipeline.previous(step.id) {
        let st = statuses.iter().find(|s| s.step == prev.id);
        if let Some(st) = st.filter(|s| s.state != StepState::Done) {
            let first_open = statuses
                .iter()
                .find(|s| s.state != StepState::Done)
                .map_or(prev.id, |s| s.step);
            let state = match st.state.reason() {
                Some(r) if !r.is_empty() => format!("{} ({r})", st.state.label()),
                _ => st.state.label().to_owned(),
            };
            let fix = if first_open == prev.id {
                format!("run `gatekeeper step {} {task}`", prev.id)
            } else {
                format!("run `gatekeeper run {task} --to {}`", prev.id)
            };
            return Err(Refusal::gate(format!(
                "step {} `{}` needs step {} `{}` done and fresh, but it is {state}",
                step.id, step.name, prev.id, prev.name
            ))
            .hint(fix));
        }
    }
    if step.approval
        && let Some(prev) = pipeline.previous(step.id)
        && !approval_recorded(prev.id)
    {
        return Err(Refusal::gate(format!(
                    "step {} `{}` needs a human approval of step {} `{}`, and none is recorded since it last ran",
                    step.id, step.name, prev.id, prev.name
                ))
                .hint(format!(
                    "review `.ai-stack-trace/{task}/{}`, then run `gatekeeper approve {task} --phase {}`",
                    prev.output().unwrap_or("ledger.jsonl"),
                    prev.id
                )));
    }
    for name in &step.requires {
        let earner = pipeline.earner_of(name).map_or(0, |s| s.id);
        match contract_state(name) {
            ContractState::Valid => {}
            ContractState::Missing => {
                return Err(Refusal::gate(format!(
                    "step {} `{}` needs `contract/{name}`, which does not exist",
                    step.id, step.name
                ))
                .hint(format!(
                    "run `gatekeeper step {earner} {task}` and get a YES verdict first"
                )));
            }
            ContractState::Forged => {
                return Err(Refusal::new(
                    ExitKind::Integrity,
                    format!("`contract/{name}` exists but the journal does not record it: the contract is forged"),
                )
                .hint(format!("delete it and run `gatekeeper step {earner} {task}`; see `gatekeeper verify {task}`")));
            }
        }
    }
    Ok(())
}
