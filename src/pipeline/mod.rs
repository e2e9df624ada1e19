//! Pipelines are data (SPEC §2): a YAML list of steps, each a built-in behaviour (`kind`) done by a
//! role, with the ledger files it reads and writes and the contracts it requires or earns. The
//! built-in pipelines are embedded; a workspace may name its own file. The engine that runs them
//! is generic ([`engine`]).

pub mod checks;
pub mod decisions;
pub mod engine;
pub mod gates;
pub mod mirror;
pub mod patch;
pub mod prompts;
pub mod protocol;
pub mod requires;
pub mod verdict;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::exit::Refusal;
use crate::hash::sha256_hex;

/// The permission to write a contract. Only this module tree can mint one, so only the engine
/// writes contracts (SPEC §13 "no command writes a contract except the step that earns it").
#[derive(Debug)]
pub struct ContractPermit {
    _private: (),
}

impl ContractPermit {
    pub(in crate::pipeline) fn new() -> Self {
        ContractPermit { _private: () }
    }
}

/// The built-in behaviours a step can have.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum StepKind {
    /// Copy the prompt into `inputs/prompt.md`; record the base commit and correlation id.
    Ingest,
    /// Ask the role and write its answer to the step's first `writes` file.
    Generate,
    /// Like `generate`, then parse the decisions format and verdict; earn the contract on YES.
    Decisions,
    /// Ask the role to implement; apply its ```diff blocks (or let an agent edit); scope check.
    Implement,
    /// Run the configured checks with the fix loop.
    Checks,
    /// Review: verdict joined with the mechanical checks; earn the contract and bind the approval.
    Review,
    /// Commit the approved change set and the ledger; deploy; write `final/status.json`.
    Commit,
    /// A dev-process phase (seed 000): the answer must end with the approval marker; with
    /// `apply`, its ```diff blocks are applied to the working tree.
    Phase,
}

/// The line every dev-process phase ends with (seed 000).
pub const APPROVAL_MARKER: &str = "=== AWAITING APPROVAL — DO NOT PROCEED ===";

/// One step of a pipeline.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StepDef {
    /// The step number (`gatekeeper step <N>`).
    pub id: u32,
    /// A short name.
    pub name: String,
    /// `system`, `gemini`, `claude` or `codex`.
    pub role: String,
    /// The behaviour.
    pub kind: StepKind,
    /// The prompt template (`prompts/<template>.md.j2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Ledger files read (globs allowed); their hashes decide staleness.
    #[serde(default)]
    pub reads: Vec<String>,
    /// Ledger files written (globs allowed).
    #[serde(default)]
    pub writes: Vec<String>,
    /// Contracts that must exist and be journalled.
    #[serde(default)]
    pub requires: Vec<String>,
    /// The verdict key the answer must end with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    /// The contract earned on YES.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract: Option<String>,
    /// The previous step needs a recorded human approval (`gatekeeper approve --phase`).
    #[serde(default)]
    pub approval: bool,
    /// Apply the answer's ```diff blocks (phase steps).
    #[serde(default)]
    pub apply: bool,
}

impl StepDef {
    /// The main output file (the first `writes` entry).
    #[must_use]
    pub fn output(&self) -> Option<&str> {
        self.writes.first().map(String::as_str)
    }
}

/// A pipeline definition.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    /// Its name.
    pub name: String,
    /// One line about it.
    #[serde(default)]
    pub description: String,
    /// The steps, in order.
    pub steps: Vec<StepDef>,
    /// Acceptance reports every task of this pipeline requires (SPEC §9, [`requires`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires_reports: Vec<String>,
    /// sha256 of the definition's bytes (part of every step's inputs).
    #[serde(skip)]
    pub source_sha256: String,
}

/// The embedded default pipeline.
pub const AI_STACK_TRACE: &str = include_str!("../../pipelines/ai-stack-trace.yaml");
/// The embedded dev-process pipeline.
pub const DEV_PROCESS: &str = include_str!("../../pipelines/dev-process.yaml");

const ROLES: &[&str] = &["system", "gemini", "claude", "codex"];

impl Pipeline {
    /// Loads a pipeline by built-in name or path (relative to `root`).
    ///
    /// # Errors
    /// A usage refusal (exit 2) for an unknown name, unreadable file or invalid definition.
    pub fn load(name_or_path: &str, root: &Path) -> Result<Pipeline, Refusal> {
        match name_or_path {
            "ai-stack-trace" => {
                Pipeline::parse(AI_STACK_TRACE, "built-in pipeline `ai-stack-trace`")
            }
            "dev-process" => Pipeline::parse(DEV_PROCESS, "built-in pipeline `dev-process`"),
            other => {
                let path = root.join(other);
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    Refusal::usage(format!("cannot read the pipeline `{other}` ({e})"))
                        .hint("set `pipeline:` in gatekeeper.yaml to `ai-stack-trace`, `dev-process` or a readable pipeline file")
                })?;
                Pipeline::parse(&text, other)
            }
        }
    }

    /// Parses and validates a definition.
    ///
    /// # Errors
    /// A usage refusal naming the problem.
    pub fn parse(text: &str, origin: &str) -> Result<Pipeline, Refusal> {
        let de = serde_norway::Deserializer::from_str(text);
        let mut p: Pipeline = serde_path_to_error::deserialize(de).map_err(|err| {
            let path = err.path().to_string();
            let inner = err.into_inner();
            let loc = inner
                .location()
                .map(|l| format!("{}:{}", l.line(), l.column()))
                .unwrap_or_default();
            Refusal::usage(format!("{origin}:{loc}: {inner} at `{path}`"))
                .hint("fix the pipeline definition")
        })?;
        p.source_sha256 = sha256_hex(text.as_bytes());
        p.validate(origin)?;
        Ok(p)
    }

    fn validate(&self, origin: &str) -> Result<(), Refusal> {
        let bad = |what: String| {
            Err(Refusal::usage(format!("{origin}: {what}")).hint("fix the pipeline definition"))
        };
        if self.steps.is_empty() {
            return bad("the pipeline has no steps".to_owned());
        }
        for (i, path) in self.requires_reports.iter().enumerate() {
            if let Err(e) = requires::normalize(path) {
                return bad(format!("{e} at `requires_reports[{i}]`"));
            }
        }
        let mut earned: Vec<&str> = Vec::new();
        for (i, s) in self.steps.iter().enumerate() {
            if i > 0 && s.id <= self.steps[i - 1].id {
                return bad(format!(
                    "step ids must increase (step `{}` has id {})",
                    s.name, s.id
                ));
            }
            if !ROLES.contains(&s.role.as_str()) {
                return bad(format!("step {} has unknown role `{}`", s.id, s.role));
            }
            for req in &s.requires {
                if !earned.contains(&req.as_str()) {
                    return bad(format!(
                        "step {} requires contract `{req}`, which no earlier step earns",
                        s.id
                    ));
                }
            }
            if let Some(c) = &s.contract {
                earned.push(c);
            }
            let needs_template = !matches!(s.kind, StepKind::Ingest | StepKind::Commit);
            if needs_template && s.template.is_none() {
                return bad(format!("step {} (`{}`) needs a `template`", s.id, s.name));
            }
            if s.approval && i == 0 {
                return bad(format!(
                    "step {} needs an approval of a previous step, but it is the first",
                    s.id
                ));
            }
            if matches!(
                s.kind,
                StepKind::Generate
                    | StepKind::Decisions
                    | StepKind::Review
                    | StepKind::Implement
                    | StepKind::Phase
            ) && s.writes.is_empty()
            {
                return bad(format!("step {} (`{}`) writes nothing", s.id, s.name));
            }
            for w in s.writes.iter().chain(&s.reads) {
                let top = w.split('/').next().unwrap_or_default();
                if w.contains("..") || !crate::ledger::FOLDERS.contains(&top) {
                    return bad(format!(
                        "step {} names `{w}`, which is not inside a ledger folder ({})",
                        s.id,
                        crate::ledger::FOLDERS.join(", ")
                    ));
                }
            }
        }
        Ok(())
    }

    /// A step by id.
    #[must_use]
    pub fn step(&self, id: u32) -> Option<&StepDef> {
        self.steps.iter().find(|s| s.id == id)
    }

    /// The step before `id`.
    #[must_use]
    pub fn previous(&self, id: u32) -> Option<&StepDef> {
        let i = self.steps.iter().position(|s| s.id == id)?;
        i.checked_sub(1).map(|j| &self.steps[j])
    }

    /// The step that earns a contract.
    #[must_use]
    pub fn earner_of(&self, contract: &str) -> Option<&StepDef> {
        self.steps
            .iter()
            .find(|s| s.contract.as_deref() == Some(contract))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_pipeline_is_valid() {
        let p = Pipeline::load("ai-stack-trace", Path::new(".")).unwrap();
        assert_eq!(p.steps.len(), 9);
        assert_eq!(p.earner_of("CLAUDE_FINAL_OK").unwrap().id, 6);
        let d = Pipeline::load("dev-process", Path::new(".")).unwrap();
        assert_eq!(d.steps.len(), 6);
        assert!(d.step(3).unwrap().apply);
    }

    #[test]
    fn invalid_definitions_are_refused() {
        let e = Pipeline::parse("name: x\nsteps: []\n", "p.yaml").unwrap_err();
        assert!(e.what.contains("no steps"));
        let e = Pipeline::parse(
            "name: x\nsteps:\n  - { id: 0, name: a, role: codex, kind: generate, template: t, writes: [codex/a.md], requires: [X] }\n",
            "p.yaml",
        )
        .unwrap_err();
        assert!(e.what.contains("requires contract `X`"), "{}", e.what);
        let e = Pipeline::parse(
            "name: x\nsteps:\n  - { id: 0, name: a, role: codex, kind: generate, template: t, writes: [../a.md] }\n",
            "p.yaml",
        )
        .unwrap_err();
        assert!(e.what.contains("not inside a ledger folder"), "{}", e.what);
    }
}
