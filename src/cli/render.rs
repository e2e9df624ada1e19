//! Text renderings of the command results (the `--json` forms serialize the same values).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Result;
use serde::Serialize;

use super::printer;
use crate::exit::ExitKind;
use crate::ledger::Ledger;
use crate::ledger::integrity::Report;
use crate::pipeline::Pipeline;
use crate::pipeline::engine::{ScopeReport, StepOutcome, TaskStatus};
use crate::pipeline::gates::{self, StepState};
use crate::workspace::{TaskName, Workspace};

/// Prints step outcomes; returns the exit kind of the last one.
pub(super) fn outcomes(list: &[StepOutcome]) -> ExitKind {
    let mut last = ExitKind::Done;
    for o in list {
        if o.exit == ExitKind::Done {
            printer::out(&format!("step {} `{}`: {}", o.step, o.name, o.summary));
            for d in &o.details {
                printer::out(&format!("  {d}"));
            }
        } else {
            printer::note(&format!(
                "error: step {} `{}`: {}",
                o.step, o.name, o.summary
            ));
            for d in &o.details {
                printer::note(&format!("  - {d}"));
            }
            if let Some(h) = &o.hint {
                printer::hint(h);
            }
        }
        last = o.exit;
    }
    last
}

fn pad(s: &str, n: usize) -> String {
    format!("{s:<n$}")
}

/// `gatekeeper status <TASK>`.
pub(super) fn status(st: &TaskStatus) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "task {}  (pipeline {})", st.task, st.pipeline);
    if !st.correlation_id.is_empty() {
        let _ = writeln!(out, "correlation id {}", st.correlation_id);
    }
    if let Some(b) = &st.base_commit {
        let _ = writeln!(out, "base commit {b}");
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "{}{}{}{}TOKENS IN/OUT",
        pad("STEP", 6),
        pad("NAME", 22),
        pad("ROLE", 8),
        pad("STATE", 16)
    );
    for s in &st.steps {
        let tokens = if s.tokens_in + s.tokens_out > 0 {
            format!("{}/{}", s.tokens_in, s.tokens_out)
        } else {
            "-".to_owned()
        };
        let _ = writeln!(
            out,
            "{}{}{}{}{}",
            pad(&s.step.to_string(), 6),
            pad(&s.name, 22),
            pad(&s.role, 8),
            pad(s.state.label(), 16),
            tokens
        );
        if let Some(r) = s.state.reason().filter(|r| !r.is_empty()) {
            let _ = writeln!(out, "      ↳ {r}");
        }
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "contracts: {}",
        if st.contracts.is_empty() {
            "none".to_owned()
        } else {
            st.contracts.join(", ")
        }
    );
    let _ = writeln!(out, "tokens: {} in, {} out", st.tokens_in, st.tokens_out);
    if let Some(c) = &st.commit {
        let _ = writeln!(out, "commit: {c}");
    }
    match &st.next {
        Some(n) => {
            let _ = writeln!(out, "next: {n}");
        }
        None => out.push_str("all steps done\n"),
    }
    out
}

/// One row of `gatekeeper status` over every task.
#[derive(Clone, Debug, Serialize)]
pub(super) struct OverviewRow {
    task: String,
    steps_done: usize,
    steps: usize,
    last_step: Option<u32>,
    state: String,
    next: Option<String>,
}

/// Every task, from the journals alone (freshness is checked by `status <TASK>`).
pub(super) fn overview(ws: &Workspace, pipeline: &Pipeline) -> Result<Vec<OverviewRow>> {
    use rayon::prelude::*;
    // Each ledger is read and chain-checked on its own: in parallel, in name order.
    Ok(ws
        .task_names()?
        .par_iter()
        .map(|task| overview_row(ws, pipeline, task))
        .collect())
}

fn overview_row(ws: &Workspace, pipeline: &Pipeline, task: &TaskName) -> OverviewRow {
    let ledger = match Ledger::open(ws, task) {
        Ok(l) => l,
        Err(_) => {
            return OverviewRow {
                task: task.to_string(),
                steps_done: 0,
                steps: pipeline.steps.len(),
                last_step: None,
                state: "broken".to_owned(),
                next: Some(format!("gatekeeper verify {task}")),
            };
        }
    };
    let statuses = gates::evaluate(pipeline, ledger.entries(), &BTreeMap::new());
    let done = statuses
        .iter()
        .filter(|s| s.state == StepState::Done)
        .count();
    let open = statuses.iter().find(|s| s.state != StepState::Done);
    let last = statuses
        .iter()
        .rev()
        .find(|s| s.state != StepState::Pending)
        .map(|s| s.step);
    OverviewRow {
        task: task.to_string(),
        steps_done: done,
        steps: statuses.len(),
        last_step: last,
        state: open
            .map_or("done", |s| {
                if s.state == StepState::Pending {
                    "in-progress"
                } else {
                    s.state.label()
                }
            })
            .to_owned(),
        next: open.map(|s| format!("gatekeeper step {} {task}", s.step)),
    }
}

/// The overview as a table.
pub(super) fn overview_table(rows: &[OverviewRow]) -> String {
    if rows.is_empty() {
        return "no tasks yet (`gatekeeper new <TASK>` writes a prompt)\n".to_owned();
    }
    let width = rows.iter().map(|r| r.task.len()).max().unwrap_or(4).max(4) + 2;
    let mut out = format!(
        "{}{}{}{}\n",
        pad("TASK", width),
        pad("DONE", 8),
        pad("STATE", 16),
        "NEXT"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{}{}{}{}",
            pad(&r.task, width),
            pad(&format!("{}/{}", r.steps_done, r.steps), 8),
            pad(&r.state, 16),
            r.next.as_deref().unwrap_or("-")
        );
    }
    out
}

/// `gatekeeper scope <TASK>`.
pub(super) fn scope(r: &ScopeReport) -> String {
    let mut out = String::new();
    if r.paths.is_empty() {
        out.push_str("no changed paths\n");
    }
    let width = r.paths.iter().map(|p| p.path.len()).max().unwrap_or(0) + 2;
    for p in &r.paths {
        let verdict = match p.verdict {
            "allowed" => "allowed",
            "forbidden" => "FORBIDDEN",
            _ => "OUT OF SCOPE",
        };
        let glob = p
            .glob
            .as_deref()
            .map(|g| format!("`{g}`"))
            .unwrap_or_else(|| "no allowed glob matches".to_owned());
        let deleted = if p.deleted { " (deleted)" } else { "" };
        let _ = writeln!(
            out,
            "{}{}{glob}{deleted}",
            pad(&p.path, width),
            pad(verdict, 14)
        );
    }
    let bad = r.paths.iter().filter(|p| p.verdict != "allowed").count();
    let _ = writeln!(
        out,
        "\n{} path(s), {} in scope, {bad} not",
        r.paths.len(),
        r.paths.len() - bad
    );
    out
}

/// `gatekeeper verify <TASK>`.
pub(super) fn verify(task: &TaskName, r: &Report) -> String {
    let mut out = String::new();
    for f in &r.findings {
        let at = match (&f.path, f.line) {
            (Some(p), Some(l)) => format!("{p}:{l}: "),
            (Some(p), None) => format!("{p}: "),
            _ => String::new(),
        };
        let _ = writeln!(out, "FAIL {at}{}", f.message);
    }
    for n in &r.notes {
        let _ = writeln!(out, "note {n}");
    }
    if r.findings.is_empty() {
        let _ = writeln!(
            out,
            "ok: ledger of `{task}` verified ({} journal lines, {} files, contracts and approval binding)",
            r.journal_lines, r.files_checked
        );
    } else {
        let _ = writeln!(
            out,
            "{} integrity finding(s) in the ledger of `{task}`",
            r.findings.len()
        );
    }
    out
}
