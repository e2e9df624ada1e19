//! The audit log `audit/events.jsonl` (SPEC §8.4): one canonical JSON line per event, appended,
//! never rewritten, with `ts, event, correlation_id, task_id, actor, detail`.
//!
//! [`AuditLog::record`] never blocks and never does I/O: it hands the event to one writer thread,
//! which takes every event waiting, formats them, and appends the batch with one locked write and
//! one fsync ([`crate::fsx::append_line`]). Lines are never torn or interleaved, also with other
//! processes appending to the same file, and the log does not limit the server's throughput.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use anyhow::Context as _;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::oneshot;

/// The audit log's path relative to the server root.
pub const EVENTS_FILE: &str = "audit/events.jsonl";

/// The largest batch, in bytes, written at once.
const MAX_BATCH_BYTES: usize = 4 << 20;

/// One audit event.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AuditEvent {
    /// When it happened (RFC 3339 UTC, milliseconds).
    pub ts: String,
    /// What happened: `task_read`, `task_list`, `task_created`, `task_approved`, `task_rejected`,
    /// `auth_failed`, `api_error`, `sse_client_connect`, `sse_client_disconnect`, `sse_broadcast`, ….
    pub event: String,
    /// The task's correlation id, or the request's when no task is involved.
    pub correlation_id: String,
    /// The task, when one is involved.
    pub task_id: Option<String>,
    /// Who caused it: `admin`, `anonymous`, `watcher`, `server`, ….
    pub actor: String,
    /// Event-specific facts.
    pub detail: Value,
}

impl AuditEvent {
    /// An event stamped now, with no task and an empty detail.
    pub fn new(
        event: impl Into<String>,
        correlation_id: impl Into<String>,
        actor: impl Into<String>,
    ) -> AuditEvent {
        AuditEvent {
            ts: crate::store::now_rfc3339(),
            event: event.into(),
            correlation_id: correlation_id.into(),
            task_id: None,
            actor: actor.into(),
            detail: Value::Object(serde_json::Map::new()),
        }
    }

    /// Names the task.
    #[must_use]
    pub fn task(mut self, task_id: impl Into<String>) -> AuditEvent {
        self.task_id = Some(task_id.into());
        self
    }

    /// Sets the detail.
    #[must_use]
    pub fn detail(mut self, detail: Value) -> AuditEvent {
        self.detail = detail;
        self
    }
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
    let mut batch = String::new();
    let mut waiting = Vec::new();
    while let Ok(first) = receiver.recv() {
        let mut lines = 0u64;
        let mut next = Some(first);
        while let Some(message) = next {
            match message {
                Message::Event(event) => {
                    batch.push_str(&crate::canonical::to_canonical_string(&event));
                    batch.push('\n');
                    lines += 1;
                }
                Message::Flush(reply) => waiting.push(reply),
            }
            next = if batch.len() < MAX_BATCH_BYTES {
                receiver.try_recv().ok()
            } else {
                None
            };
        }
        let result = if batch.is_empty() {
            Ok(())
        } else {
            // `append_line` adds the final newline; the whole batch is one locked write.
            crate::fsx::append_line(path, batch.trim_end_matches('\n'))
                .map_err(|e| format!("{e:#}"))
        };
        match &result {
            Ok(()) => stats.written.fetch_add(lines, Ordering::Relaxed),
            Err(e) => {
                tracing::error!("audit log: {e}");
                stats.failed.fetch_add(lines, Ordering::Relaxed)
            }
        };
        batch.clear();
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
