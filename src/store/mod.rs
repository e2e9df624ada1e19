//! The SSOT store of the task API (SPEC §8.1): the task record, its computed status view, task id
//! validation, and the [`TaskStore`] trait that the server talks to.
//!
//! The default backend is [`files::FileStore`] (`ssot/<task_id>.json`, atomic writes, records held
//! in memory and refreshed by [`watch`]ing the folder). A backend for several replicas (PostgreSQL)
//! implements the same trait; nothing above this module knows which backend it talks to.
//!
//! This module must not know about HTTP: the server maps [`StoreError`] to statuses.

pub mod files;
pub mod watch;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use axum::body::Bytes;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use files::FileStore;

/// A validated SSOT task id: `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$` without `..` (SPEC §8.1).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId(String);

/// Why a task id was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid task id `{0}`: 1 to 128 characters of `A-Z`, `a-z`, `0-9`, `.`, `_`, `-`, starting with a letter or digit, without `..`"
)]
pub struct InvalidTaskId(pub String);

impl TaskId {
    /// Validates a task id.
    ///
    /// # Errors
    /// When `raw` breaks the SPEC §8.1 rule (the message shows it escaped).
    pub fn parse(raw: &str) -> Result<TaskId, InvalidTaskId> {
        TaskId::parse_owned(raw.to_owned())
    }

    /// Validates a task id, taking the string.
    ///
    /// # Errors
    /// When `raw` breaks the SPEC §8.1 rule (the message shows it escaped).
    pub fn parse_owned(raw: String) -> Result<TaskId, InvalidTaskId> {
        if is_valid_task_id(&raw) {
            Ok(TaskId(raw))
        } else {
            let shown: String = raw.chars().take(140).collect();
            Err(InvalidTaskId(shown.escape_debug().to_string()))
        }
    }

    /// The id as a string.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The task id rule of SPEC §8.1, as a predicate.
#[must_use]
pub fn is_valid_task_id(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    if bytes.is_empty() || bytes.len() > 128 || raw.contains("..") {
        return false;
    }
    bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Where a task came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Mirrored from a pipeline run on the command line.
    Cli,
    /// Created through `POST /api/tasks`.
    Api,
    /// Ingested from a Telegram message (SPEC §8.6).
    Telegram,
    /// Derived from a GitHub webhook (SPEC §8.5).
    Github,
}

/// One acceptance criterion (SPEC §10).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Criterion {
    /// `AC-1`, `AC-2`, ….
    pub id: String,
    /// The criterion text.
    pub text: String,
}

/// A human decision on a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Approved.
    Approved,
    /// Rejected.
    Rejected,
}

impl Verdict {
    /// `approved` or `rejected`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Approved => "approved",
            Verdict::Rejected => "rejected",
        }
    }
}

/// The latest decision of a task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Approved or rejected.
    pub verdict: Verdict,
    /// Who decided (`admin` through the API, a name through the CLI).
    pub by: String,
    /// Why, when given.
    #[serde(default)]
    pub reason: Option<String>,
    /// When (RFC 3339 UTC).
    pub at: String,
}

/// One entry of a task's history. Unknown keys written by other tools are kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// When (RFC 3339 UTC).
    pub at: String,
    /// What happened: `created`, `approved`, `rejected`, `step_finished`, ….
    pub event: String,
    /// Who did it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// The record version this entry produced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// A reason, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Other keys.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// The pipeline progress of a task mirrored from its ledger (SPEC §8.1).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PipelineState {
    /// The ledger's task name.
    #[serde(default)]
    pub task: String,
    /// The last step that ran.
    #[serde(default)]
    pub step: Option<u32>,
    /// Its state (`running`, `done`, `failed`, …).
    #[serde(default)]
    pub state: String,
    /// The contract files the ledger holds (`CLAUDE_DECISIONS_OK`, `CLAUDE_FINAL_OK`).
    #[serde(default)]
    pub contracts: Vec<String>,
}

/// The contract whose presence puts a task under review (SPEC §8.1 status view).
pub const FINAL_CONTRACT: &str = "CLAUDE_FINAL_OK";

/// A task record as stored in `ssot/<task_id>.json` (SPEC §8.1). Keys this type does not name
/// (the protocol records of SPEC §10, Telegram's `chat_id`/`message_id`, …) are kept in `extra`
/// and written back unchanged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// The task id (also the file name).
    pub task_id: String,
    /// Where the task came from.
    pub source: Source,
    /// Carried unchanged through every journal line, audit event and provider call (SPEC §2).
    pub correlation_id: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC, set by every write.
    pub updated_at: String,
    /// Incremented by every write (creation writes version 1).
    pub version: u64,
    /// What was asked.
    #[serde(default)]
    pub request_text: String,
    /// SPEC §10 criteria.
    #[serde(default)]
    pub acceptance_criteria: Vec<Criterion>,
    /// The approved allowed paths.
    #[serde(default)]
    pub declared_scope: Vec<String>,
    /// The latest human decision.
    #[serde(default)]
    pub decision: Option<Decision>,
    /// Every change, oldest first.
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
    /// The CI state set by GitHub webhooks (SPEC §8.5), `null` until one arrives.
    #[serde(default)]
    pub ci_status: Value,
    /// The mirrored pipeline progress, `null` for tasks without a ledger.
    #[serde(default)]
    pub pipeline: Option<PipelineState>,
    /// Other keys, kept as written.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// The status view of a task (SPEC §8.1, "task_engine").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Nothing to review yet.
    Pending,
    /// A task result exists, or the pipeline holds `CLAUDE_FINAL_OK`.
    NeedsReview,
    /// The latest decision approved it.
    Approved,
    /// The latest decision rejected it.
    Rejected,
}

impl Status {
    /// Every status, in the order of the view's rules.
    pub const ALL: [Status; 4] = [
        Status::Pending,
        Status::NeedsReview,
        Status::Approved,
        Status::Rejected,
    ];

    /// The wire name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::NeedsReview => "needs_review",
            Status::Approved => "approved",
            Status::Rejected => "rejected",
        }
    }

    /// Parses a wire name.
    #[must_use]
    pub fn parse(raw: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Computes the status view: the latest decision wins; else `needs_review` when a task result
/// exists or the pipeline holds `CLAUDE_FINAL_OK`; else `pending` (SPEC §8.1).
#[must_use]
pub fn status_of(record: &TaskRecord) -> Status {
    if let Some(decision) = &record.decision {
        return match decision.verdict {
            Verdict::Approved => Status::Approved,
            Verdict::Rejected => Status::Rejected,
        };
    }
    let has_result = record
        .extra
        .get("task_result")
        .is_some_and(|v| !v.is_null());
    let final_ok = record
        .pipeline
        .as_ref()
        .is_some_and(|p| p.contracts.iter().any(|c| c == FINAL_CONTRACT));
    if has_result || final_ok {
        Status::NeedsReview
    } else {
        Status::Pending
    }
}

/// A record as served: the record, its status, and its canonical JSON (with `status`), computed
/// once per change so that every read returns the same bytes.
#[derive(Debug)]
pub struct StoredTask {
    /// The record.
    pub record: TaskRecord,
    /// Its status view.
    pub status: Status,
    /// Canonical JSON of the record plus `status`.
    pub body: Bytes,
    /// Milliseconds since the epoch of `created_at` (0 when unparsable): the list order.
    pub created_ms: i64,
    /// The task id, shared (audit events of reads take it without copying).
    pub id: Arc<str>,
    /// The correlation id, shared.
    pub correlation_id: Arc<str>,
}

impl StoredTask {
    /// Computes the view of a record.
    #[must_use]
    pub fn new(record: TaskRecord) -> StoredTask {
        let status = status_of(&record);
        let mut value = serde_json::to_value(&record).expect("a task record serializes to JSON");
        if let Value::Object(map) = &mut value {
            map.insert(
                "status".to_owned(),
                Value::String(status.as_str().to_owned()),
            );
        }
        let body = Bytes::from(serde_json::to_vec(&value).expect("a JSON value serializes"));
        let created_ms = record
            .created_at
            .parse::<jiff::Timestamp>()
            .map_or(0, jiff::Timestamp::as_millisecond);
        StoredTask {
            id: Arc::from(record.task_id.as_str()),
            correlation_id: Arc::from(record.correlation_id.as_str()),
            record,
            status,
            body,
            created_ms,
        }
    }

    /// The change notice for this state.
    #[must_use]
    pub fn change(&self, origin: Origin) -> TaskChange {
        TaskChange {
            task_id: self.record.task_id.clone(),
            status: self.status,
            version: self.record.version,
            correlation_id: self.record.correlation_id.clone(),
            origin,
        }
    }
}

/// Who made a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A write through this store (the API).
    Store,
    /// A change another process made, noticed by watching `ssot/`.
    External,
}

/// A change notice: one per SSOT change, whoever made it (SPEC §8.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskChange {
    /// The task.
    pub task_id: String,
    /// Its status after the change.
    pub status: Status,
    /// Its version after the change.
    pub version: u64,
    /// Its correlation id.
    pub correlation_id: String,
    /// Who made it.
    pub origin: Origin,
}

/// Receives every change notice, in the order the changes were made. It must not block.
pub type ChangeSink = Arc<dyn Fn(TaskChange) + Send + Sync>;

/// A sink that drops every notice.
#[must_use]
pub fn discard_changes() -> ChangeSink {
    Arc::new(|_| {})
}

/// A list position: after the task with this creation time and id (newest first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// `created_ms` of the last task of the previous page.
    pub created_ms: i64,
    /// Its id.
    pub task_id: String,
}

impl Cursor {
    /// The opaque form given to clients.
    #[must_use]
    pub fn encode(&self) -> String {
        hex::encode(format!("{}:{}", self.created_ms, self.task_id))
    }

    /// Parses the opaque form; `None` when it is not one.
    #[must_use]
    pub fn decode(raw: &str) -> Option<Cursor> {
        let bytes = hex::decode(raw).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (ms, id) = text.split_once(':')?;
        let created_ms = ms.parse().ok()?;
        is_valid_task_id(id).then(|| Cursor {
            created_ms,
            task_id: id.to_owned(),
        })
    }
}

/// A list request: `GET /api/tasks?status=&limit=&cursor=`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListQuery {
    /// Only tasks with this status.
    pub status: Option<Status>,
    /// At most this many tasks.
    pub limit: usize,
    /// Start after this position.
    pub cursor: Option<Cursor>,
}

/// The default page size (SPEC §8.2).
pub const DEFAULT_LIMIT: usize = 100;
/// The largest page size accepted.
pub const MAX_LIMIT: usize = 1000;

/// One page of tasks, newest first.
#[derive(Debug, Default)]
pub struct Page {
    /// The tasks.
    pub tasks: Vec<Arc<StoredTask>>,
    /// Where the next page starts, when there is one.
    pub next_cursor: Option<String>,
}

/// A change to apply to a record under the store's write lock. It may refuse with
/// [`StoreError::Invalid`]; the store then writes nothing.
pub type Mutation = Box<dyn FnOnce(&mut TaskRecord) -> Result<(), StoreError> + Send>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such task.
    #[error("task `{0}` does not exist")]
    NotFound(String),
    /// A task with this id exists already.
    #[error("task `{0}` already exists")]
    Exists(String),
    /// `If-Match` named another version.
    #[error("task `{task_id}` is at version {actual}, not {expected}")]
    VersionMismatch {
        /// The task.
        task_id: String,
        /// The version the writer expected.
        expected: u64,
        /// The stored version.
        actual: u64,
    },
    /// The change is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// The store could not read or write.
    #[error(transparent)]
    Io(#[from] anyhow::Error),
}

/// The SSOT store seam. Reads come from memory; writes are serialised per store, increment
/// `version`, honour `If-Match`, and announce every change to the [`ChangeSink`] given at
/// construction, in order.
pub trait TaskStore: Send + Sync + 'static {
    /// One task, or `None`.
    fn get<'a>(
        &'a self,
        id: &'a TaskId,
    ) -> BoxFuture<'a, Result<Option<Arc<StoredTask>>, StoreError>>;

    /// A page of tasks, newest first.
    fn list(&self, query: ListQuery) -> BoxFuture<'_, Result<Page, StoreError>>;

    /// Creates a task; its `version` becomes 1. [`StoreError::Exists`] when the id is taken.
    fn create(&self, record: TaskRecord) -> BoxFuture<'_, Result<Arc<StoredTask>, StoreError>>;

    /// Applies `mutation` to the current record, increments `version` and sets `updated_at`.
    /// With `if_match`, refuses unless the current version equals it.
    fn update(
        &self,
        id: TaskId,
        if_match: Option<u64>,
        mutation: Mutation,
    ) -> BoxFuture<'_, Result<Arc<StoredTask>, StoreError>>;

    /// How many tasks the store holds.
    fn len(&self) -> usize;

    /// Whether the store is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The current time as RFC 3339 UTC with millisecond precision (record and audit timestamps).
#[must_use]
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}
