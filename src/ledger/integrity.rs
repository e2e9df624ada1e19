//! `gatekeeper verify` (SPEC §2, §13): the journal chain and local head, every ledger file against
//! the hash the journal recorded, contracts (content and journal record), symlinks, and the
//! approval binding (the tree still equals what step 6 approved). Every gate runs this first.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Serialize;

use super::journal::{Entry, events, line_hash};
use super::signing::{self, Policy};
use super::{JOURNAL, Ledger, contract};
use crate::hash::sha256_file;
use crate::scope::ScopeRules;
use crate::scope::changeset::{self, ChangeSet};
use crate::workspace::Workspace;

/// One integrity problem.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The workspace-relative path concerned, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The journal line concerned (1-based), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

/// The result of a verification.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// Problems: any of them makes the ledger untrustworthy (exit 7).
    pub findings: Vec<Finding>,
    /// Facts worth showing that are not failures (an interrupted step's partial files).
    pub notes: Vec<String>,
    /// Journal lines checked.
    pub journal_lines: usize,
    /// Ledger files checked.
    pub files_checked: usize,
}

/// The ledger files the journal says exist now, with their hashes.
#[must_use]
pub fn recorded_files(entries: &[Entry]) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    for e in entries {
        match e.event.as_str() {
            events::CONTRACT_REVOKED => {
                if let Some(name) = e.data_str("contract") {
                    files.remove(&contract::rel_path(name));
                }
            }
            _ => {
                for (path, sha) in &e.files {
                    files.insert(path.clone(), sha.clone());
                }
            }
        }
    }
    files
}

/// The approved change set recorded by the latest `approved` event, if any.
#[must_use]
pub fn approved_change_set(entries: &[Entry]) -> Option<ChangeSet> {
    let e = entries.iter().rev().find(|e| e.event == events::APPROVED)?;
    // Read from the line's text into the typed set: it can hold thousands of paths.
    e.data.field("change_set")
}

/// The task's base commit, from its latest `task_started` event.
#[must_use]
pub fn base_commit(entries: &[Entry]) -> Option<String> {
    entries
        .iter()
        .rev()
        .find(|e| e.event == events::TASK_STARTED)
        .and_then(|e| e.data_str("base_commit"))
        .map(str::to_owned)
}

/// The change set of a task against its base: its own ledger and prompt are exempt.
///
/// # Errors
/// Git or I/O errors.
pub fn task_change_set(
    ws: &Workspace,
    task: &crate::workspace::TaskName,
    base: &str,
) -> Result<ChangeSet> {
    let exempt = task_exempt(task);
    changeset::compute(&ws.repo()?, base, &exempt)
}

/// The paths that never belong to a task's change set: its ledger, its prompt, and the state a
/// server rooted in the workspace keeps ([`is_state_file`]; SPEC §8.1: pipeline tasks mirror
/// themselves into `ssot/`, so a task's mirror and those of other tasks are state, not code).
pub fn task_exempt(task: &crate::workspace::TaskName) -> impl Fn(&str) -> bool + use<> {
    let ledger_prefix = format!("{}/", Workspace::ledger_rel(task));
    let prompt = Workspace::prompt_rel(task);
    move |p: &str| p.starts_with(&ledger_prefix) || p == prompt || is_state_file(p)
}

/// True for a file `gatekeeper serve` keeps under its root (the workspace root by default): the
/// SSOT store's files, the audit log and the webhook delivery ids, with their temporary files.
/// A server running beside a pipeline must not dirty the tree step 0 requires clean.
#[must_use]
pub fn is_state_file(p: &str) -> bool {
    if is_ssot_file(p)
        || p == crate::audit::EVENTS_FILE
        || p == crate::server::github::DELIVERIES_FILE
    {
        return true;
    }
    // The atomic-write temporaries beside those files.
    [
        crate::audit::EVENTS_FILE,
        crate::server::github::DELIVERIES_FILE,
    ]
    .iter()
    .filter_map(|f| f.rsplit_once('/').map(|(dir, _)| dir))
    .any(|dir| {
        p.strip_prefix(dir)
            .and_then(|rest| rest.strip_prefix("/.gk-tmp-"))
            .is_some_and(|name| !name.is_empty() && !name.contains('/'))
    })
}

/// True for a file directly inside `ssot/` (a task record, the lock, a temporary file).
#[must_use]
pub fn is_ssot_file(p: &str) -> bool {
    p.strip_prefix("ssot/")
        .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
}

/// `ssot/<TASK>.json`, the task's SSOT mirror.
#[must_use]
pub fn ssot_rel(task: &crate::workspace::TaskName) -> String {
    format!("ssot/{task}.json")
}

/// The SSOT store's lock file.
pub const SSOT_LOCK_REL: &str = "ssot/.lock";

/// What a verification checks besides the chain and the files.
#[derive(Clone, Debug)]
pub struct Options {
    /// Globs of the files an interrupted step may have left half-recorded; differences there are
    /// notes, not findings.
    pub interrupted_outputs: Vec<String>,
    /// Signature policy.
    pub signatures: Policy,
    /// Check the approval binding against the working tree or the task's commit (the CI gate
    /// does its own binding check against the pull request instead).
    pub binding: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            interrupted_outputs: Vec::new(),
            signatures: Policy::default(),
            binding: true,
        }
    }
}

/// Verifies a ledger.
///
/// # Errors
/// I/O or git errors (a broken journal is reported by [`Ledger::open`] before this runs).
pub fn verify(ws: &Workspace, ledger: &Ledger, options: &Options) -> Result<Report> {
    let mut report = Report {
        journal_lines: ledger.entries().len(),
        ..Report::default()
    };
    let ledger_rel = Workspace::ledger_rel(ledger.task());
    let tolerated =
        ScopeRules::new(&options.interrupted_outputs, Vec::<String>::new()).unwrap_or_default();
    let finding = |path: Option<String>, line: Option<usize>, message: String| Finding {
        path,
        line,
        message,
    };

    check_head(ledger, &ledger_rel, &mut report);

    let recorded = recorded_files(ledger.entries());
    let mut seen = BTreeMap::new();
    if ledger.dir().exists() {
        for item in walkdir::WalkDir::new(ledger.dir())
            .follow_links(false)
            .min_depth(1)
        {
            let item = item?;
            let rel = item
                .path()
                .strip_prefix(ledger.dir())
                .map(|p| p.to_string_lossy().replace('\\', "/"))
                .unwrap_or_default();
            let shown = format!("{ledger_rel}/{rel}");
            if item.file_type().is_symlink() {
                report.findings.push(finding(
                    Some(shown),
                    None,
                    "a symlink inside the ledger (ledgers hold regular files only; a link can point outside it)".to_owned(),
                ));
                continue;
            }
            if !item.file_type().is_file() || rel == JOURNAL {
                continue;
            }
            report.files_checked += 1;
            let actual = sha256_file(item.path())?;
            seen.insert(rel.clone(), ());
            let is_contract = rel.starts_with("contract/");
            match recorded.get(&rel) {
                Some(sha) if *sha == actual => {}
                Some(_) if !is_contract && tolerated.check(&rel).in_scope() => {
                    report.notes.push(format!("`{shown}` was being written when a step was interrupted; re-run that step"));
                }
                Some(_) => report.findings.push(finding(
                    Some(shown),
                    None,
                    if is_contract {
                        "the contract differs from the one gatekeeper wrote (edited)".to_owned()
                    } else {
                        "the file differs from the sha256 the journal recorded (edited after it was written)".to_owned()
                    },
                )),
                None if is_contract => report.findings.push(finding(
                    Some(shown),
                    None,
                    "a forged contract: the journal records no contract_written for it".to_owned(),
                )),
                None if tolerated.check(&rel).in_scope() => {
                    report.notes.push(format!("`{shown}` was being written when a step was interrupted; re-run that step"));
                }
                None => report.findings.push(finding(
                    Some(shown),
                    None,
                    "a file the journal does not record (written behind gatekeeper's back)".to_owned(),
                )),
            }
        }
    }
    for rel in recorded.keys() {
        if !seen.contains_key(rel) {
            report.findings.push(finding(
                Some(format!("{ledger_rel}/{rel}")),
                None,
                "the journal records this file but it is missing (deleted)".to_owned(),
            ));
        }
    }
    for (rel, sha) in &recorded {
        if let Some(name) = rel.strip_prefix("contract/") {
            let expected = contract::content(name, ledger.task().as_str());
            if *sha != crate::hash::sha256_hex(expected.as_bytes()) {
                report.findings.push(finding(
                    Some(format!("{ledger_rel}/{rel}")),
                    None,
                    format!(
                        "the journalled contract does not hold `{}`",
                        expected.trim_end()
                    ),
                ));
            }
        }
    }

    check_signatures(
        ledger.entries(),
        &format!("{ledger_rel}/{JOURNAL}"),
        &options.signatures,
        &mut report,
    );
    check_fidelity(
        ledger.entries(),
        &format!("{ledger_rel}/{JOURNAL}"),
        &mut report,
    );
    if options.binding && contract::is_journalled(ledger.entries(), "CLAUDE_FINAL_OK") {
        check_binding(ws, ledger, &mut report)?;
    }
    Ok(report)
}

/// Fidelity (SPEC §10): every fix round's `issues_sha256` must equal the hash step 6 recorded for
/// the issues of the verdict it answers (the latest `review_issues` before it).
pub fn check_fidelity(entries: &[Entry], journal: &str, report: &mut Report) {
    let mut recorded: Option<&str> = None;
    for (i, e) in entries.iter().enumerate() {
        if e.event == events::REVIEW_ISSUES {
            recorded = e.data_str("issues_sha256");
        } else if e.event == events::FIX_REQUESTED
            && let Some(expected) = recorded
            && e.data_str("issues_sha256") != Some(expected)
        {
            report.findings.push(Finding {
                path: Some(journal.to_owned()),
                line: Some(i + 1),
                message: format!(
                    "fidelity: the issues sent to the fix round (sha256 {}) differ from those of verdict.json (sha256 {expected})",
                    e.data_str("issues_sha256").unwrap_or("missing")
                ),
            });
        }
    }
}

/// Checks every `signature` line, and with `policy.required` that each contract event and the
/// journal's last line carry a trusted signature.
pub fn check_signatures(entries: &[Entry], journal: &str, policy: &Policy, report: &mut Report) {
    let valid_trusted = |e: &Entry| {
        e.event == events::SIGNATURE
            && match (e.data_str("key"), e.data_str("sig"), e.prev.as_deref()) {
                (Some(k), Some(sig), Some(prev)) => {
                    signing::verify(k, prev, sig) && policy.trusts(k)
                }
                _ => false,
            }
    };
    for e in entries.iter().filter(|e| e.event == events::SIGNATURE) {
        let line = usize::try_from(e.seq)
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        let (Some(key), Some(sig), Some(prev)) =
            (e.data_str("key"), e.data_str("sig"), e.prev.as_deref())
        else {
            report.findings.push(Finding {
                path: Some(journal.to_owned()),
                line: Some(line),
                message: "a malformed signature line".to_owned(),
            });
            continue;
        };
        if !signing::verify(key, prev, sig) {
            report.findings.push(Finding {
                path: Some(journal.to_owned()),
                line: Some(line),
                message:
                    "the signature does not match the journal before it (the journal was rewritten)"
                        .to_owned(),
            });
        } else if !policy.trusted.is_empty() && !policy.trusts(key) {
            report.findings.push(Finding {
                path: Some(journal.to_owned()),
                line: Some(line),
                message: format!("signed by `{key}`, which is not in `trust.keys`"),
            });
        }
    }
    if !policy.required {
        return;
    }
    for (i, e) in entries.iter().enumerate() {
        if e.event == events::CONTRACT_WRITTEN && !entries.get(i + 1).is_some_and(valid_trusted) {
            report.findings.push(Finding {
                path: Some(journal.to_owned()),
                line: Some(i + 1),
                message: "the contract event carries no trusted signature (`ci.require_signed`)"
                    .to_owned(),
            });
        }
    }
    if !entries.last().is_some_and(valid_trusted) {
        report.findings.push(Finding {
            path: Some(journal.to_owned()),
            line: Some(entries.len()),
            message: "the journal head carries no trusted signature (`ci.require_signed`)"
                .to_owned(),
        });
    }
}

fn check_head(ledger: &Ledger, ledger_rel: &str, report: &mut Report) {
    let Ok(text) = std::fs::read_to_string(ledger.head_path()) else {
        return;
    };
    let mut parts = text.split_whitespace();
    let (Some(seq), Some(hash)) = (
        parts.next().and_then(|s| s.parse::<usize>().ok()),
        parts.next(),
    ) else {
        return;
    };
    let journal = format!("{ledger_rel}/{JOURNAL}");
    match ledger.entries().get(seq) {
        None => report.findings.push(Finding {
            path: Some(journal),
            line: Some(ledger.entries().len()),
            message: format!(
                "the journal has {} lines but this machine recorded {}: it was truncated (if you checked out an older revision on purpose, remove `.git/gatekeeper/heads/{}`)",
                ledger.entries().len(),
                seq + 1,
                ledger.task()
            ),
        }),
        Some(e) if line_hash(&e.encode()) != hash => report.findings.push(Finding {
            path: Some(journal),
            line: Some(seq + 1),
            message: "the journal line differs from the one this machine wrote (edited or replaced)".to_owned(),
        }),
        Some(_) => {}
    }
}

fn check_binding(ws: &Workspace, ledger: &Ledger, report: &mut Report) -> Result<()> {
    let Some(approved) = approved_change_set(ledger.entries()) else {
        report.findings.push(Finding {
            path: None,
            line: None,
            message: "CLAUDE_FINAL_OK is journalled but no approved change set is recorded"
                .to_owned(),
        });
        return Ok(());
    };
    let Some(base) = base_commit(ledger.entries()) else {
        report.findings.push(Finding {
            path: None,
            line: None,
            message: "the journal records no base commit".to_owned(),
        });
        return Ok(());
    };
    // A committed task is bound to its commit; later tasks may change the working tree.
    let committed = ledger
        .entries()
        .iter()
        .rev()
        .find(|e| e.event == events::COMMITTED)
        .and_then(|e| e.data_str("commit"))
        .map(str::to_owned);
    let repo = ws.repo()?;
    let now = match committed
        .filter(|c| git2::Oid::from_str(c).is_ok_and(|o| repo.find_commit(o).is_ok()))
    {
        Some(commit) => {
            let exempt = task_exempt(ledger.task());
            changeset::compute_between(&repo, &base, &commit, &exempt)?
        }
        None => task_change_set(ws, ledger.task(), &base)?,
    };
    for (path, what) in now.differences(&approved) {
        report.findings.push(Finding {
            path: Some(path),
            line: None,
            message: format!("{what} (approval binding)"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod fidelity_tests {
    use super::*;

    fn entry(seq: u64, event: &str, sha: &str) -> Entry {
        let mut data = serde_json::Map::new();
        data.insert("issues_sha256".to_owned(), serde_json::json!(sha));
        Entry {
            seq,
            ts: "2026-01-01T00:00:00Z".to_owned(),
            task: "t".to_owned(),
            correlation_id: "c".to_owned(),
            step: Some(6),
            event: event.to_owned(),
            files: BTreeMap::new(),
            data: data.into(),
            prev: None,
        }
    }

    #[test]
    fn a_fix_round_must_carry_the_hash_of_the_verdict_it_answers() {
        let good = [
            entry(0, events::REVIEW_ISSUES, "aa"),
            entry(1, events::FIX_REQUESTED, "aa"),
            entry(2, events::REVIEW_ISSUES, "bb"),
            entry(3, events::FIX_REQUESTED, "bb"),
        ];
        let mut report = Report::default();
        check_fidelity(&good, "ledger.jsonl", &mut report);
        assert!(report.findings.is_empty(), "{:?}", report.findings);
        let bad = [
            entry(0, events::REVIEW_ISSUES, "aa"),
            entry(1, events::FIX_REQUESTED, "bb"),
        ];
        check_fidelity(&bad, "ledger.jsonl", &mut report);
        assert_eq!(report.findings.len(), 1);
        assert_eq!(report.findings[0].line, Some(2));
        assert!(report.findings[0].message.contains("fidelity"));
    }
}

#[cfg(test)]
mod tests {
    use super::is_state_file;

    #[test]
    fn server_state_files_are_state_and_nothing_else_is() {
        for p in [
            "ssot/t.json",
            "ssot/.lock",
            "audit/events.jsonl",
            "audit/.gk-tmp-abc123",
            "webhooks/github_deliveries.json",
            "webhooks/.gk-tmp-x",
        ] {
            assert!(is_state_file(p), "{p}");
        }
        for p in [
            "ssot/sub/t.json",
            "audit/other.rs",
            "audit/.gk-tmp-",
            "audit/.gk-tmp-a/b",
            "webhooks/handler.rs",
            "src/audit/events.jsonl",
            "ssot/",
        ] {
            assert!(!is_state_file(p), "{p}");
        }
    }
}
