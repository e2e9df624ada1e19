//! The audit log `audit/events.jsonl` (SPEC §8.4): one canonical JSON line per event, appended,
//! never rewritten, with `ts, event, correlation_id, task_id, actor, detail`.
//!
//! [`AuditLog::record`] never blocks and never does I/O: it hands the event to one writer thread,
//! which takes every event waiting, formats them, and appends the batch with one locked write and
//! one fsync ([`crate::fsx::append_line`]). Lines are never torn or interleaved, also with other
//! processes appending to the same file, and the log does not limit the server's throughput.
//! An event reaches the disk within a few milliseconds of being recorded; a process killed in
//! between loses those last events, never part of a line.

use std::borrow::Cow;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;
use tokio::sync::oneshot;

/// The audit log's path relative to the server root.
pub const EVENTS_FILE: &str = "audit/events.jsonl";

/// The largest batch, in bytes, written at once.
const MAX_BATCH_BYTES: usize = 4 << 20;

/// How long the writer lets events gather before one write and one fsync. Callers never wait for
/// it ([`AuditLog::flush`] waits at most this long more); it bounds fsyncs to a few hundred a
/// second under load, which keeps the log from costing the server its throughput.
const GROUP_COMMIT: Duration = Duration::from_millis(2);

/// One audit event. Building one for a read allocates nothing: the ids are shared `Arc<str>`s,
/// the names are static, and the time is formatted by the writer thread.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEvent {
    /// When it happened.
    pub ts: jiff::Timestamp,
    /// What happened: `task_read`, `task_list`, `task_created`, `task_approved`, `task_rejected`,
    /// `auth_failed`, `api_error`, `sse_client_connect`, `sse_client_disconnect`, `sse_broadcast`, ….
    pub event: Cow<'static, str>,
    /// The task's correlation id, or the request's when no task is involved.
    pub correlation_id: Arc<str>,
    /// The task, when one is involved.
    pub task_id: Option<Arc<str>>,
    /// Who caused it: `admin`, `anonymous`, `watcher`, `server`, ….
    pub actor: Cow<'static, str>,
    /// Event-specific facts.
    pub detail: Detail,
}

/// The `detail` of an event.
#[derive(Clone, Debug, PartialEq)]
pub enum Detail {
    /// Any JSON value (objects keep their keys sorted).
    Json(Value),
    /// `{"status": …, "version": …}`, the detail of reads, without building a JSON value.
    Version {
        /// The task's status.
        status: &'static str,
        /// The task's version.
        version: u64,
    },
}

impl AuditEvent {
    /// An event stamped now, with no task and an empty detail.
    pub fn new(
        event: impl Into<Cow<'static, str>>,
        correlation_id: impl Into<Arc<str>>,
        actor: impl Into<Cow<'static, str>>,
    ) -> AuditEvent {
        AuditEvent {
            ts: jiff::Timestamp::now(),
            event: event.into(),
            correlation_id: correlation_id.into(),
            task_id: None,
            actor: actor.into(),
            detail: Detail::Json(Value::Object(serde_json::Map::new())),
        }
    }

    /// Names the task.
    #[must_use]
    pub fn task(mut self, task_id: impl Into<Arc<str>>) -> AuditEvent {
        self.task_id = Some(task_id.into());
        self
    }

    /// Sets the detail.
    #[must_use]
    pub fn detail(mut self, detail: Value) -> AuditEvent {
        self.detail = Detail::Json(detail);
        self
    }

    /// Sets the detail to `{"status": status, "version": version}`.
    #[must_use]
    pub fn version_detail(mut self, status: &'static str, version: u64) -> AuditEvent {
        self.detail = Detail::Version { status, version };
        self
    }

    /// The event's line: canonical JSON (keys sorted), without the newline.
    #[must_use]
    pub fn to_line(&self) -> String {
        let mut out = Vec::with_capacity(256);
        write_line(&mut out, self, &mut TimeCache::default());
        String::from_utf8(out).expect("JSON is UTF-8")
    }
}

/// Formats timestamps as `YYYY-MM-DDTHH:MM:SS.mmmZ`, reusing the part up to the second.
#[derive(Default)]
struct TimeCache {
    second: Option<i64>,
    prefix: String,
}

impl TimeCache {
    fn write(&mut self, out: &mut Vec<u8>, ts: jiff::Timestamp) {
        let second = ts.as_second();
        if self.second != Some(second) {
            self.prefix = ts.strftime("%Y-%m-%dT%H:%M:%S").to_string();
            self.second = Some(second);
        }
        out.extend_from_slice(self.prefix.as_bytes());
        let millis = ts.subsec_millisecond().clamp(0, 999);
        let _ = write!(out, ".{millis:03}Z");
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("a string serializes");
}

/// Writes the canonical line of `event`: keys in sorted order, written directly.
fn write_line(out: &mut Vec<u8>, event: &AuditEvent, times: &mut TimeCache) {
    out.extend_from_slice(b"{\"actor\":");
    write_str(out, &event.actor);
    out.extend_from_slice(b",\"correlation_id\":");
    write_str(out, &event.correlation_id);
    out.extend_from_slice(b",\"detail\":");
    match &event.detail {
        Detail::Json(value) => {
            serde_json::to_writer(&mut *out, value).expect("a JSON value serializes");
        }
        Detail::Version { status, version } => {
            out.extend_from_slice(b"{\"status\":");
            write_str(out, status);
            let _ = write!(out, ",\"version\":{version}}}");
        }
    }
    out.extend_from_slice(b",\"event\":");
    write_str(out, &event.event);
    out.extend_from_slice(b",\"task_id\":");
    match &event.task_id {
        Some(id) => write_str(out, id),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"ts\":\"");
    times.write(out, event.ts);
    out.extend_from_slice(b"\"}");
}

enum Message {
    Event(AuditEvent),
    Flush(oneshot::Sender<Result<(), String>>),
}

#[derive(Default)]
struct Stats {
    written: AtomicU64,
    failed: AtomicU64,
    queued: AtomicU64,
}

/// A handle on the audit log; cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    sender: mpsc::Sender<Message>,
    stats: Arc<Stats>,
    path: Arc<PathBuf>,
}

impl AuditLog {
    /// Opens (creating when missing) the log at `path` and starts its writer thread.
    ///
    /// # Errors
    /// When the folder cannot be created or the thread cannot start.
    pub fn open(path: &Path) -> anyhow::Result<AuditLog> {
        if let Some(parent) = path.parent() {
            crate::fsx::create_dir_all(parent)?;
        }
        let (sender, receiver) = mpsc::channel();
        let stats = Arc::new(Stats::default());
        let writer_stats = Arc::clone(&stats);
        let writer_path = path.to_path_buf();
        std::thread::Builder::new()
            .name("audit-writer".to_owned())
            .spawn(move || write_loop(&writer_path, &receiver, &writer_stats))
            .context("failed to start the audit writer thread")?;
        Ok(AuditLog {
            sender,
            stats,
            path: Arc::new(path.to_path_buf()),
        })
    }

    /// Queues an event; returns at once.
    pub fn record(&self, event: AuditEvent) {
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        if self.sender.send(Message::Event(event)).is_err() {
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits until every event queued before this call is on disk.
    ///
    /// # Errors
    /// When the writer has stopped or the last write failed.
    pub async fn flush(&self) -> anyhow::Result<()> {
        let (reply, done) = oneshot::channel();
        self.sender
            .send(Message::Flush(reply))
            .map_err(|_| anyhow::anyhow!("the audit writer has stopped"))?;
        done.await
            .map_err(|_| anyhow::anyhow!("the audit writer has stopped"))?
            .map_err(|e| anyhow::anyhow!(e))
    }

    /// Lines written so far by this process.
    #[must_use]
    pub fn written(&self) -> u64 {
        self.stats.written.load(Ordering::Relaxed)
    }

    /// Events that could not be written.
    #[must_use]
    pub fn failed(&self) -> u64 {
        self.stats.failed.load(Ordering::Relaxed)
    }

    /// Events queued and not yet written or failed.
    #[must_use]
    pub fn pending(&self) -> u64 {
        let queued = self.stats.queued.load(Ordering::Relaxed);
        queued.saturating_sub(self.written() + self.failed())
    }

    /// The log's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn write_loop(path: &Path, receiver: &mpsc::Receiver<Message>, stats: &Stats) {
    let mut batch: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut times = TimeCache::default();
    let mut waiting = Vec::new();
    while let Ok(first) = receiver.recv() {
        let mut lines = 0u64;
        // Group commit: let events gather for a short window, then write and fsync them at once.
        // The writer is asleep rather than waiting on the channel meanwhile, so senders wake
        // nobody: an event costs its sender one lock-free push, not a system call.
        if matches!(first, Message::Event(_)) {
            std::thread::sleep(GROUP_COMMIT);
        }
        let mut next = Some(first);
        while let Some(message) = next {
            match message {
                Message::Event(event) => {
                    write_line(&mut batch, &event, &mut times);
                    batch.push(b'\n');
                    lines += 1;
                }
                Message::Flush(reply) => waiting.push(reply),
            }
            next = if batch.len() >= MAX_BATCH_BYTES {
                None
            } else {
                receiver.try_recv().ok()
            };
        }
        let result = if batch.is_empty() {
            Ok(())
        } else {
            // `append_line` adds the final newline; the whole batch is one locked write.
            let text = std::str::from_utf8(&batch[..batch.len() - 1]).expect("JSON is UTF-8");
            crate::fsx::append_line(path, text).map_err(|e| format!("{e:#}"))
        };
        match &result {
            Ok(()) => stats.written.fetch_add(lines, Ordering::Relaxed),
            Err(e) => {
                tracing::error!("audit log: {e}");
                stats.failed.fetch_add(lines, Ordering::Relaxed)
            }
        };
        batch.clear();
        if batch.capacity() > MAX_BATCH_BYTES * 2 {
            batch.shrink_to(64 * 1024);
        }
        for reply in waiting.drain(..) {
            let _ = reply.send(result.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn concurrent_records_are_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(EVENTS_FILE);
        let log = AuditLog::open(&path).unwrap();
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for i in 0..500 {
                        log.record(
                            AuditEvent::new("task_read", format!("c-{t}"), "anonymous")
                                .task(format!("t-{i}"))
                                .detail(serde_json::json!({"pad": "x".repeat(5000)})),
                        );
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        log.flush().await.unwrap();
        assert_eq!(log.written(), 2000);
        assert_eq!(log.pending(), 0);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2000);
        for line in lines {
            let v: Value = serde_json::from_str(line).unwrap();
            assert_eq!(line, crate::canonical::to_canonical_string(&v));
            let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
            assert_eq!(
                keys,
                [
                    "actor",
                    "correlation_id",
                    "detail",
                    "event",
                    "task_id",
                    "ts"
                ]
            );
        }
    }
}
