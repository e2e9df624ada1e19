//! `requires_reports` (SPEC §9): a task may depend on acceptance reports that other tasks'
//! step-5 checks produced. Every step of the task stays closed (exit 3) until each required
//! report exists, says `pass: true`, and has the very bytes a verified ledger recorded when the
//! check that produced it passed — so module B's task cannot start, nor go on, unless module A's
//! report passed and has not changed since.
//!
//! The requirements are the union of `requires_reports` in gatekeeper.yaml, in the pipeline
//! definition and in the prompt's `## Requires reports` section. This module is pure: the engine
//! reads the files and the ledgers and hands the facts in.

use serde::Serialize;

use crate::exit::Refusal;
use crate::ledger::journal::{Entry, events};

/// Checks that a required report path is workspace-relative and plain, and returns it without a
/// leading `./`.
///
/// # Errors
/// What is wrong with it, for a usage refusal.
pub fn normalize(path: &str) -> Result<String, String> {
    let p = path.trim();
    let p = p.strip_prefix("./").unwrap_or(p);
    if p.is_empty() {
        return Err("an empty report path".to_owned());
    }
    if p.starts_with('/') || p.contains('\\') || p.contains(':') {
        return Err(format!(
            "the report path `{path}` is not relative to the workspace root"
        ));
    }
    if p.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(format!(
            "the report path `{path}` has an empty, `.` or `..` component"
        ));
    }
    Ok(p.to_owned())
}

/// What one journal says about a report: its latest check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastCheck {
    /// The step whose check read it.
    pub step: u32,
    /// The report's sha256 as read then (`None`: it was missing).
    pub sha256: Option<String>,
    /// True when the report said `pass: true` and the step then finished `done`.
    pub passed: bool,
}

/// The latest `report_checked` event of `path` in a journal, and whether the check passed: the
/// report said `pass: true` and the next end of that step is `step_finished` with outcome `done`
/// (a re-run that started since and has not finished leaves the earlier pass standing).
#[must_use]
pub fn last_check(entries: &[Entry], path: &str) -> Option<LastCheck> {
    let (at, step, report) = entries.iter().enumerate().rev().find_map(|(i, e)| {
        if e.event != events::REPORT_CHECKED {
            return None;
        }
        let report = e.data.get("report")?;
        let p = report.get("path")?.as_str()?;
        (normalize(p).ok()? == path).then_some((i, e.step?, report))
    })?;
    let sha256 = report
        .get("sha256")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    let said_pass = report.get("pass").and_then(serde_json::Value::as_bool) == Some(true);
    let finished_done = entries[at + 1..]
        .iter()
        .find(|e| e.step == Some(step) && e.event == events::STEP_FINISHED)
        .is_some_and(|e| e.data_str("outcome") == Some("done"));
    Some(LastCheck {
        step,
        passed: said_pass && finished_done && sha256.is_some(),
        sha256,
    })
}

/// The report as it is now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Current {
    /// sha256 of its bytes (`None`: missing).
    pub sha256: Option<String>,
    /// Its `pass` field.
    pub pass: bool,
    /// Its `fail_reasons`, or why it could not be read.
    pub fail_reasons: Vec<String>,
}

/// One other task's ledger, as far as a requirement is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The task.
    pub task: String,
    /// Its latest check of the report.
    pub check: LastCheck,
    /// `None` when the ledger verifies; otherwise why it does not.
    pub integrity: Option<String>,
}

/// A satisfied requirement, as journalled (`reports_required`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Satisfied {
    /// The report path.
    pub path: String,
    /// Its sha256, equal now and when it passed.
    pub sha256: String,
    /// The task whose check passed it.
    pub task: String,
    /// That task's step.
    pub step: u32,
}

/// Decides one requirement of `task`.
///
/// # Errors
/// A gate refusal (exit 3) naming the report, what is wrong and what to do.
pub fn evaluate(
    task: &str,
    path: &str,
    current: &Current,
    claims: &[Claim],
) -> Result<Satisfied, Refusal> {
    let producer_hint = format!(
        "run the task whose step-5 check names `report: {path}` until step 5 passes, then retry"
    );
    let Some(now) = &current.sha256 else {
        return Err(Refusal::gate(format!(
            "task `{task}` requires the report `{path}`, which does not exist"
        ))
        .hint(producer_hint));
    };
    if !current.pass {
        let why = if current.fail_reasons.is_empty() {
            String::new()
        } else {
            format!(" ({})", current.fail_reasons.join("; "))
        };
        return Err(Refusal::gate(format!(
            "task `{task}` requires the report `{path}`, which does not say `pass: true`{why}"
        ))
        .hint(producer_hint));
    }
    if let Some(c) = claims
        .iter()
        .find(|c| c.check.passed && c.check.sha256.as_deref() == Some(now.as_str()))
    {
        if let Some(problem) = &c.integrity {
            return Err(Refusal::gate(format!(
                "task `{task}` requires the report `{path}`; the ledger of `{}` that records it passing fails verification: {problem}",
                c.task
            ))
            .hint(format!("see `gatekeeper verify {}`", c.task)));
        }
        return Ok(Satisfied {
            path: path.to_owned(),
            sha256: now.clone(),
            task: c.task.clone(),
            step: c.check.step,
        });
    }
    if let Some(c) = claims.iter().find(|c| c.check.passed) {
        let then = c.check.sha256.as_deref().unwrap_or_default();
        return Err(Refusal::gate(format!(
            "task `{task}` requires the report `{path}`, which changed since it passed in task `{}` (sha256 {} then, {} now)",
            c.task,
            short(then),
            short(now)
        ))
        .hint(format!(
            "restore the report, or re-run step {} of `{}` so that its check passes the report as it is now",
            c.check.step, c.task
        )));
    }
    Err(Refusal::gate(format!(
        "task `{task}` requires the report `{path}`, and no task's ledger records it passing a step-5 check"
    ))
    .hint(producer_hint))
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn entry(step: u32, event: &str, data: Value) -> Entry {
        let Value::Object(data) = data else {
            unreachable!("tests pass objects")
        };
        Entry {
            seq: 0,
            ts: String::new(),
            task: "a".into(),
            correlation_id: String::new(),
            step: Some(step),
            event: event.into(),
            files: Default::default(),
            data: data.into(),
            prev: None,
        }
    }

    fn checked(path: &str, sha: &str, pass: bool) -> Entry {
        entry(
            5,
            events::REPORT_CHECKED,
            json!({"check": "phase-a", "report": {"path": path, "sha256": sha, "pass": pass}}),
        )
    }

    fn finished(outcome: &str) -> Entry {
        entry(5, events::STEP_FINISHED, json!({"outcome": outcome}))
    }

    #[test]
    fn paths_are_normalized_or_refused() {
        assert_eq!(normalize("./reports/a.json").unwrap(), "reports/a.json");
        for bad in [
            "", "/etc/x", "../x", "a/../b", "a//b", "c:/x", "a\\b", "a/./b",
        ] {
            assert!(normalize(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_last_check_decides_and_needs_a_done_step() {
        let p = "reports/a.json";
        let e = vec![
            entry(5, events::STEP_STARTED, json!({})),
            checked(p, "s1", false),
            checked("./reports/a.json", "s2", true),
            finished("done"),
        ];
        assert_eq!(
            last_check(&e, p),
            Some(LastCheck {
                step: 5,
                sha256: Some("s2".into()),
                passed: true
            })
        );
        let failed = vec![checked(p, "s2", true), finished("checks_failing")];
        assert!(!last_check(&failed, p).unwrap().passed);
        let unfinished = vec![checked(p, "s2", true)];
        assert!(!last_check(&unfinished, p).unwrap().passed);
        let later_fail = vec![
            checked(p, "s2", true),
            finished("done"),
            checked(p, "s3", false),
            finished("checks_failing"),
        ];
        assert_eq!(
            last_check(&later_fail, p).unwrap().sha256.as_deref(),
            Some("s3")
        );
        assert!(!last_check(&later_fail, p).unwrap().passed);
        assert_eq!(last_check(&e, "reports/b.json"), None);
    }

    fn claim(task: &str, sha: &str, passed: bool) -> Claim {
        Claim {
            task: task.into(),
            check: LastCheck {
                step: 5,
                sha256: Some(sha.into()),
                passed,
            },
            integrity: None,
        }
    }

    fn now(sha: Option<&str>, pass: bool) -> Current {
        Current {
            sha256: sha.map(str::to_owned),
            pass,
            fail_reasons: vec!["p95 too high".into()],
        }
    }

    #[test]
    fn a_requirement_holds_only_for_the_bytes_that_passed() {
        let p = "reports/a.json";
        let ok = evaluate("b", p, &now(Some("s2"), true), &[claim("a", "s2", true)]).unwrap();
        assert_eq!(
            (ok.task.as_str(), ok.sha256.as_str(), ok.step),
            ("a", "s2", 5)
        );

        let refused = |current: Current, claims: &[Claim]| {
            evaluate("b", p, &current, claims).unwrap_err().to_string()
        };
        assert!(refused(now(None, false), &[]).contains("does not exist"));
        let r = refused(now(Some("s2"), false), &[claim("a", "s2", true)]);
        assert!(
            r.contains("pass: true") && r.contains("p95 too high"),
            "{r}"
        );
        let r = refused(now(Some("s9"), true), &[claim("a", "s2", true)]);
        assert!(r.contains("changed since it passed in task `a`"), "{r}");
        let r = refused(now(Some("s2"), true), &[claim("a", "s2", false)]);
        assert!(r.contains("no task's ledger records it passing"), "{r}");
        assert!(refused(now(Some("s2"), true), &[]).contains("no task's ledger"));
        let mut forged = claim("a", "s2", true);
        forged.integrity = Some("line 3 was edited".into());
        let r = refused(now(Some("s2"), true), &[forged]);
        assert!(
            r.contains("fails verification") && r.contains("line 3"),
            "{r}"
        );
    }
}
