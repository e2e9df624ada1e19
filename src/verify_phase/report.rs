//! The acceptance report of a phase (SPEC §9, seed 004): `reports/phase_<X>_acceptance.json` with
//! exactly `phase, pass, started_at, finished_at, how_to_run, metrics, artifacts[{path, sha256,
//! note}], fail_reasons[]`, and the same facts as markdown for people, plus the scenario's checks.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;
use serde_json::Value;

/// One file the report vouches for.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Artifact {
    /// Path relative to the workspace root (`/`-separated).
    pub path: String,
    /// Its sha256 when the report was written.
    pub sha256: String,
    /// What it is.
    pub note: String,
}

/// One check of a scenario, shown in the markdown report and in the checks artifact.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Check {
    /// A short stable name.
    pub name: String,
    /// Whether it passed.
    pub pass: bool,
    /// What was seen.
    pub detail: String,
}

/// The report of one phase.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AcceptanceReport {
    /// `A`, `B`, ….
    pub phase: String,
    /// True only when every check passed and no fail reason was recorded.
    pub pass: bool,
    /// RFC 3339 UTC.
    pub started_at: String,
    /// RFC 3339 UTC.
    pub finished_at: String,
    /// The command that produced it.
    pub how_to_run: String,
    /// The seed's metrics for the phase, exactly.
    pub metrics: BTreeMap<String, Value>,
    /// Files it vouches for.
    pub artifacts: Vec<Artifact>,
    /// Why it failed (empty when it passed).
    pub fail_reasons: Vec<String>,
}

/// Collects checks and metrics while a scenario runs.
#[derive(Debug)]
pub struct ReportBuilder {
    phase: String,
    started_at: String,
    how_to_run: String,
    /// The checks, in order.
    pub checks: Vec<Check>,
    metrics: BTreeMap<String, Value>,
    fail_reasons: Vec<String>,
    /// Lines of context for the markdown report (target, sizes, notes).
    pub notes: Vec<String>,
}

impl ReportBuilder {
    /// Starts a report now.
    #[must_use]
    pub fn start(phase: &str, how_to_run: &str) -> ReportBuilder {
        ReportBuilder {
            phase: phase.to_owned(),
            started_at: crate::store::now_rfc3339(),
            how_to_run: how_to_run.to_owned(),
            checks: Vec::new(),
            metrics: BTreeMap::new(),
            fail_reasons: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Records a check; a failed one adds a fail reason.
    pub fn check(&mut self, name: &str, pass: bool, detail: impl Into<String>) -> bool {
        let detail = detail.into();
        if !pass {
            self.fail_reasons.push(format!("{name}: {detail}"));
        }
        self.checks.push(Check {
            name: name.to_owned(),
            pass,
            detail,
        });
        pass
    }

    /// Records a fail reason that is not a check (a step that could not run).
    pub fn fail(&mut self, reason: impl Into<String>) {
        self.fail_reasons.push(reason.into());
    }

    /// Sets a metric.
    pub fn metric(&mut self, name: &str, value: impl Into<Value>) {
        self.metrics.insert(name.to_owned(), value.into());
    }

    /// Checks passed and failed so far.
    #[must_use]
    pub fn counts(&self) -> (usize, usize) {
        let passed = self.checks.iter().filter(|c| c.pass).count();
        (passed, self.checks.len() - passed)
    }

    /// Finishes the report.
    #[must_use]
    pub fn finish(self, artifacts: Vec<Artifact>) -> (AcceptanceReport, Vec<Check>, Vec<String>) {
        let report = AcceptanceReport {
            phase: self.phase,
            pass: self.fail_reasons.is_empty(),
            started_at: self.started_at,
            finished_at: crate::store::now_rfc3339(),
            how_to_run: self.how_to_run,
            metrics: self.metrics,
            artifacts,
            fail_reasons: self.fail_reasons,
        };
        (report, self.checks, self.notes)
    }
}

/// Describes a file written under the workspace for the report.
///
/// # Errors
/// When the file cannot be read.
pub fn artifact(workspace: &Path, path: &Path, note: &str) -> Result<Artifact> {
    let shown = path.strip_prefix(workspace).map_or_else(
        |_| path.display().to_string(),
        |rel| rel.to_string_lossy().replace('\\', "/"),
    );
    Ok(Artifact {
        path: shown,
        sha256: crate::hash::sha256_file(path)?,
        note: note.to_owned(),
    })
}

/// The file names of a phase's report in `dir`: `(json, md)`.
#[must_use]
pub fn report_paths(dir: &Path, phase: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("phase_{phase}_acceptance.json")),
        dir.join(format!("phase_{phase}_acceptance.md")),
    )
}

/// Renders the markdown report.
#[must_use]
pub fn markdown(report: &AcceptanceReport, checks: &[Check], notes: &[String]) -> String {
    let mut md = String::new();
    let verdict = if report.pass { "PASS" } else { "FAIL" };
    let _ = writeln!(md, "# Phase {} acceptance: {verdict}\n", report.phase);
    let _ = writeln!(md, "- started: {}", report.started_at);
    let _ = writeln!(md, "- finished: {}", report.finished_at);
    let _ = writeln!(md, "- how to run: `{}`", report.how_to_run);
    for note in notes {
        let _ = writeln!(md, "- {note}");
    }
    let _ = writeln!(md, "\n## Metrics\n\n| metric | value |\n|---|---|");
    for (name, value) in &report.metrics {
        let _ = writeln!(md, "| `{name}` | {value} |");
    }
    let _ = writeln!(
        md,
        "\n## Checks\n\n| check | result | detail |\n|---|---|---|"
    );
    for check in checks {
        let _ = writeln!(
            md,
            "| `{}` | {} | {} |",
            check.name,
            if check.pass { "pass" } else { "FAIL" },
            check.detail.replace('|', "\\|").replace('\n', " ")
        );
    }
    let _ = writeln!(
        md,
        "\n## Artifacts\n\n| path | sha256 | note |\n|---|---|---|"
    );
    for a in &report.artifacts {
        let _ = writeln!(md, "| `{}` | `{}` | {} |", a.path, a.sha256, a.note);
    }
    let _ = writeln!(md, "\n## Fail reasons\n");
    if report.fail_reasons.is_empty() {
        let _ = writeln!(md, "None.");
    } else {
        for reason in &report.fail_reasons {
            let _ = writeln!(md, "- {reason}");
        }
    }
    md
}

/// Writes the JSON and markdown reports into `dir`; returns their paths.
///
/// # Errors
/// When a file cannot be written.
pub fn write(
    dir: &Path,
    report: &AcceptanceReport,
    checks: &[Check],
    notes: &[String],
) -> Result<(PathBuf, PathBuf)> {
    let (json_path, md_path) = report_paths(dir, &report.phase);
    crate::fsx::write_atomic(
        &json_path,
        crate::canonical::to_canonical_pretty(report).as_bytes(),
    )?;
    crate::fsx::write_atomic(&md_path, markdown(report, checks, notes).as_bytes())?;
    Ok((json_path, md_path))
}
