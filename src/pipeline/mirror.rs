//! The SSOT mirror of a pipeline task (SPEC §8.1): every step updates `ssot/<TASK>.json` through
//! the store's locked write path ([`crate::store::files`]), so a running server sees the pipeline's
//! progress and a concurrent writer never loses an update.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde_json::{Value, json};

use crate::store::files::{create_record, read_record, update_record};
use crate::store::{
    Criterion, Decision, HistoryEntry, PipelineState, Source, StoreError, TaskId, TaskRecord,
    Verdict, now_rfc3339,
};
use crate::workspace::Workspace;

/// The folder of the SSOT store of a workspace.
#[must_use]
pub fn ssot_dir(ws: &Workspace) -> PathBuf {
    ws.root().join("ssot")
}

/// What a step tells the mirror.
#[derive(Clone, Debug, Default)]
pub struct Update {
    /// Task name.
    pub task: String,
    /// Correlation id of the ledger.
    pub correlation_id: String,
    /// The step that ran.
    pub step: u32,
    /// Its state (`done`, `no`, `failed`, …).
    pub state: String,
    /// Contracts the ledger holds.
    pub contracts: Vec<String>,
    /// The prompt text, when ingested.
    pub request_text: Option<String>,
    /// `acceptance_criteria` of the prompt.
    pub criteria: Vec<(String, String)>,
    /// The approved allowed paths.
    pub declared_scope: Vec<String>,
    /// `ack`, `task_result`, `verdict` (SPEC §10 records), when present.
    pub records: BTreeMap<String, Value>,
}

fn apply(record: &mut TaskRecord, u: &Update) {
    record.pipeline = Some(PipelineState {
        task: u.task.clone(),
        step: Some(u.step),
        state: u.state.clone(),
        contracts: u.contracts.clone(),
    });
    if let Some(text) = &u.request_text
        && record.request_text.is_empty()
    {
        record.request_text.clone_from(text);
    }
    if !u.criteria.is_empty() {
        record.acceptance_criteria = u
            .criteria
            .iter()
            .map(|(id, text)| Criterion {
                id: id.clone(),
                text: text.clone(),
            })
            .collect();
    }
    if !u.declared_scope.is_empty() {
        record.declared_scope.clone_from(&u.declared_scope);
    }
    if record.correlation_id.is_empty() {
        record.correlation_id.clone_from(&u.correlation_id);
    }
    for (k, v) in &u.records {
        record.extra.insert(k.clone(), v.clone());
    }
    let mut extra = BTreeMap::new();
    extra.insert("step".to_owned(), json!(u.step));
    extra.insert("state".to_owned(), json!(u.state));
    record.history.push(HistoryEntry {
        at: now_rfc3339(),
        event: "step_finished".to_owned(),
        by: Some("gatekeeper".to_owned()),
        version: None,
        reason: None,
        extra,
    });
}

/// A new CLI-sourced record, its history starting with `created` by `by`.
fn new_record(id: &TaskId, correlation_id: &str, by: &str) -> TaskRecord {
    let now = now_rfc3339();
    TaskRecord {
        task_id: id.to_string(),
        source: Source::Cli,
        correlation_id: correlation_id.to_owned(),
        created_at: now.clone(),
        updated_at: now.clone(),
        version: 0,
        request_text: String::new(),
        acceptance_criteria: Vec::new(),
        declared_scope: Vec::new(),
        decision: None,
        history: vec![HistoryEntry {
            at: now,
            event: "created".to_owned(),
            by: Some(by.to_owned()),
            version: None,
            reason: None,
            extra: BTreeMap::new(),
        }],
        ci_status: Value::Null,
        pipeline: None,
        extra: BTreeMap::new(),
    }
}

/// Creates or updates `ssot/<TASK>.json`. A task name that is not a valid SSOT id is skipped.
///
/// # Errors
/// Store errors.
pub fn mirror(dir: &Path, u: &Update) -> Result<()> {
    let Ok(id) = TaskId::parse(&u.task) else {
        return Ok(());
    };
    for _ in 0..3 {
        if read_record(dir, &id)?.is_some() {
            let u2 = u.clone();
            update_record(
                dir,
                &id,
                None,
                Box::new(move |r| {
                    apply(r, &u2);
                    Ok(())
                }),
            )?;
            return Ok(());
        }
        let mut record = new_record(&id, &u.correlation_id, "gatekeeper");
        apply(&mut record, u);
        match create_record(dir, record) {
            Ok(_) => return Ok(()),
            Err(StoreError::Exists(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(anyhow::anyhow!(
        "could not mirror task `{}` into the SSOT store",
        u.task
    ))
}

/// Records a human decision on `ssot/<TASK>.json` (`gatekeeper approve|reject <TASK>`), creating
/// the record when the task has none yet.
///
/// # Errors
/// An invalid task id, store errors.
pub fn decide(
    dir: &Path,
    task: &str,
    correlation_id: &str,
    verdict: Verdict,
    by: &str,
    reason: Option<String>,
) -> Result<TaskRecord> {
    let id = TaskId::parse(task)?;
    if read_record(dir, &id)?.is_none() {
        match create_record(dir, new_record(&id, correlation_id, by)) {
            Ok(_) | Err(StoreError::Exists(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let by = by.to_owned();
    Ok(update_record(
        dir,
        &id,
        None,
        Box::new(move |r| {
            let at = now_rfc3339();
            r.decision = Some(Decision {
                verdict,
                by: by.clone(),
                reason: reason.clone(),
                at: at.clone(),
            });
            r.history.push(HistoryEntry {
                at,
                event: verdict.as_str().to_owned(),
                by: Some(by),
                version: None,
                reason,
                extra: BTreeMap::new(),
            });
            Ok(())
        }),
    )?)
}
