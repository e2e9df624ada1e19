//! Step 5's checks (SPEC §2, §11): the configured commands, run in order in the workspace root by
//! `sh -c`, each logged with its command, exit code, duration and output.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use crate::config::{CheckConfig, Env};
use crate::process;

/// Default per-check timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// One check's result.
#[derive(Clone, Debug)]
pub struct CheckRun {
    /// The check's name.
    pub name: String,
    /// The command line.
    pub command: String,
    /// Exit code (`None`: killed or timed out).
    pub code: Option<i32>,
    /// Wall time.
    pub duration: Duration,
    /// stdout then stderr.
    pub output: String,
    /// True when it timed out.
    pub timed_out: bool,
    /// The acceptance report the check names, as read after it ran (SPEC §9).
    pub report: Option<ReportFacts>,
}

/// What an acceptance report said (SPEC §9: "acceptance only looks at the report").
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ReportFacts {
    /// Workspace-relative path of the report.
    pub path: String,
    /// sha256 of the report, `None` when it is missing.
    pub sha256: Option<String>,
    /// Its `pass` field; false when missing or unreadable.
    pub pass: bool,
    /// Its `fail_reasons`, or why it could not be read.
    pub fail_reasons: Vec<String>,
    /// Its artifacts: path (relative to the report's folder) → sha256 of the file now.
    pub artifacts: std::collections::BTreeMap<String, Option<String>>,
}

/// Reads a report named by a check. Pure apart from reading the files.
#[must_use]
pub fn read_report(root: &Path, rel: &str) -> ReportFacts {
    let path = root.join(rel);
    let mut facts = ReportFacts {
        path: rel.to_owned(),
        sha256: None,
        pass: false,
        fail_reasons: Vec::new(),
        artifacts: Default::default(),
    };
    let Ok(bytes) = std::fs::read(&path) else {
        facts
            .fail_reasons
            .push(format!("the report `{rel}` does not exist"));
        return facts;
    };
    facts.sha256 = Some(crate::hash::sha256_hex(&bytes));
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        facts
            .fail_reasons
            .push(format!("the report `{rel}` is not JSON"));
        return facts;
    };
    facts.pass = v.get("pass").and_then(serde_json::Value::as_bool) == Some(true);
    facts.fail_reasons.extend(
        v.get("fail_reasons")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str().map(str::to_owned)),
    );
    if !facts.pass && facts.fail_reasons.is_empty() {
        facts
            .fail_reasons
            .push(format!("the report `{rel}` does not say `pass: true`"));
    }
    let base = path.parent().unwrap_or(root);
    for a in v
        .get("artifacts")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(p) = a.get("path").and_then(serde_json::Value::as_str) {
            let sha = if p.contains("..") {
                None
            } else {
                crate::hash::sha256_file(&base.join(p)).ok()
            };
            facts.artifacts.insert(p.to_owned(), sha);
        }
    }
    facts
}

impl CheckRun {
    /// True when the check passed.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.code == Some(0) && self.report.as_ref().is_none_or(|r| r.pass)
    }
}

/// Runs every check in order (all of them, so the log shows every failure).
///
/// # Errors
/// When a check cannot be started (`sh` missing).
pub fn run_all(checks: &[CheckConfig], root: &Path, env: &Env) -> Result<Vec<CheckRun>> {
    let mut out = Vec::new();
    for check in checks {
        let timeout = check.timeout.unwrap_or(DEFAULT_TIMEOUT);
        let done = process::run(&process::Spec {
            argv: process::shell(&check.run),
            cwd: root,
            stdin: None,
            env,
            extra_env: Vec::new(),
            timeout,
        })?;
        let mut output = String::from_utf8_lossy(&done.stdout).into_owned();
        output.push_str(&String::from_utf8_lossy(&done.stderr));
        out.push(CheckRun {
            name: check.name.clone(),
            command: check.run.clone(),
            code: done.code,
            duration: done.duration,
            output,
            timed_out: done.timed_out,
            report: check.report.as_deref().map(|rel| read_report(root, rel)),
        });
    }
    Ok(out)
}

/// Formats one attempt's section of `tests/run.log`.
#[must_use]
pub fn format_attempt(attempt: u32, runs: &[CheckRun]) -> String {
    let mut log = String::new();
    let _ = writeln!(log, "=== attempt {attempt} ===");
    if runs.is_empty() {
        log.push_str("no checks are configured (gatekeeper.yaml `checks:`); nothing to run\n");
    }
    for r in runs {
        let _ = writeln!(log, "--- check `{}`", r.name);
        let _ = writeln!(log, "$ {}", r.command);
        let code = match (r.code, r.timed_out) {
            (_, true) => "timeout".to_owned(),
            (Some(c), false) => c.to_string(),
            (None, false) => "signal".to_owned(),
        };
        let _ = writeln!(log, "exit: {code}");
        let _ = writeln!(log, "duration_ms: {}", r.duration.as_millis());
        log.push_str(&r.output);
        if !r.output.is_empty() && !r.output.ends_with('\n') {
            log.push('\n');
        }
        if let Some(rep) = &r.report {
            let _ = writeln!(log, "report: {} pass: {}", rep.path, rep.pass);
            for reason in &rep.fail_reasons {
                let _ = writeln!(log, "fail_reason: {reason}");
            }
        }
        let _ = writeln!(log, "--- {}", if r.passed() { "passed" } else { "FAILED" });
    }
    let failed = runs.iter().filter(|r| !r.passed()).count();
    let _ = writeln!(
        log,
        "=== attempt {attempt}: {} passed, {failed} failed ===",
        runs.len() - failed
    );
    log
}
