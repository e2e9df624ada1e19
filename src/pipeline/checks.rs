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
}

impl CheckRun {
    /// True when the check passed.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.code == Some(0)
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
