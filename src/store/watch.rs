//! Notices changes that other processes (the CLI's pipeline mirror, a person with an editor) make
//! to `ssot/`, so that they reach the API and the event stream (SPEC §8.1, §8.3).
//!
//! Each event on a `<task_id>.json` file becomes one call of the callback with the task id; the
//! store re-reads the file and announces it only when it differs from what it holds. Temporary
//! files of atomic writes and the lock file are ignored. This module reads no file itself.

use std::path::Path;

use anyhow::Context as _;
use notify::{EventKind, RecursiveMode, Watcher as _};

use super::TaskId;
use super::files::id_of_file_name;

/// A running watch of one folder; stops when dropped.
pub struct DirWatcher {
    _watcher: notify::RecommendedWatcher,
}

impl DirWatcher {
    /// Watches `dir` (not recursively) and calls `on_change` with the id of every task file that
    /// was created, written, renamed or removed.
    ///
    /// # Errors
    /// When the platform watcher cannot be created or cannot watch `dir`.
    pub fn start(dir: &Path, on_change: impl Fn(TaskId) + Send + 'static) -> anyhow::Result<Self> {
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else { return };
                if matches!(event.kind, EventKind::Access(_)) {
                    return;
                }
                for path in &event.paths {
                    if let Some(id) = path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .and_then(id_of_file_name)
                    {
                        on_change(id);
                    }
                }
            })
            .context("failed to start watching for SSOT changes")?;
        watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .with_context(|| format!("failed to watch `{}`", dir.display()))?;
        Ok(DirWatcher { _watcher: watcher })
    }
}
