//! One process at a time per task (SPEC §2 "Locking"): an OS file lock on
//! `.git/gatekeeper/locks/<TASK>.lock`, released by the OS when the process ends (even by
//! `kill -9`). The file holds the holder's pid and command so a second process can name it.
//!
//! The lock file is the one file gatekeeper writes in place rather than through `fsx`: it must be
//! the very file that carries the lock.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};

use anyhow::{Context, Result};

use crate::exit::Refusal;
use crate::workspace::{TaskName, Workspace};

/// A held task lock; dropping it releases the lock.
#[derive(Debug)]
pub struct TaskLock {
    _file: File,
}

impl TaskLock {
    /// Takes the lock or fails at once naming the holder (exit 3).
    ///
    /// # Errors
    /// A gate refusal when another process holds it; I/O errors.
    pub fn acquire(ws: &Workspace, task: &TaskName, command: &str) -> Result<TaskLock> {
        let dir = ws.lock_dir()?;
        crate::fsx::create_dir_all(&dir)?;
        let path = dir.join(format!("{task}.lock"));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("failed to open the lock file `{}`", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let holder = if holder.is_empty() {
                    "another process".to_owned()
                } else {
                    holder.to_owned()
                };
                return Err(
                    Refusal::gate(format!("task `{task}` is locked by {holder}"))
                        .hint("wait for that process to finish (one process at a time per task)")
                        .into(),
                );
            }
            Err(TryLockError::Error(e)) => {
                return Err(
                    anyhow::Error::new(e).context(format!("failed to lock `{}`", path.display()))
                );
            }
        }
        file.set_len(0)?;
        file.rewind()?;
        write!(
            file,
            "pid {} (`{command}`) since {}",
            std::process::id(),
            crate::ledger::now_rfc3339()
        )?;
        file.flush()?;
        Ok(TaskLock { _file: file })
    }
}
