//! Every file write of gatekeeper goes through here (ARCHITECTURE invariant 5).
//!
//! [`write_atomic`] writes a temporary file in the same folder, fsyncs it, renames it over the
//! target and fsyncs the folder, so a reader (or a process killed at any instant) sees the old
//! bytes or the new ones, never a torn file (SPEC §8.1, §13). [`append_line`] appends one line
//! with a single `write` under an exclusive lock, so concurrent appenders never interleave.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

/// Atomically replaces `path` with `bytes`, creating parent folders as needed.
///
/// # Errors
/// When a folder cannot be created or the file cannot be written, synced or renamed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    fs_err::create_dir_all(parent)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".gk-tmp-")
        .tempfile_in(parent)
        .with_context(|| {
            format!(
                "failed to create a temporary file in `{}`",
                parent.display()
            )
        })?;
    tmp.write_all(bytes)
        .with_context(|| format!("failed to write `{}`", path.display()))?;
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("failed to sync `{}`", path.display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("failed to rename into `{}`", path.display()))?;
    sync_dir(parent);
    Ok(())
}

/// Replaces `path` by rename without fsync: for local caches (the journal head) whose loss on
/// power failure only weakens a check, and which must stay cheap.
///
/// # Errors
/// When the file cannot be written or renamed.
pub fn write_relaxed(path: &Path, bytes: &[u8]) -> Result<()> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    fs_err::create_dir_all(parent)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".gk-tmp-")
        .tempfile_in(parent)
        .with_context(|| {
            format!(
                "failed to create a temporary file in `{}`",
                parent.display()
            )
        })?;
    tmp.write_all(bytes)
        .with_context(|| format!("failed to write `{}`", path.display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("failed to rename into `{}`", path.display()))?;
    Ok(())
}

/// Appends `line` and a newline to `path` in one write, under an exclusive file lock.
///
/// # Errors
/// When the file cannot be opened, locked or written.
pub fn append_line(path: &Path, line: &str) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs_err::create_dir_all(parent)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("failed to open `{}` for appending", path.display()))?;
    file.lock()
        .with_context(|| format!("failed to lock `{}`", path.display()))?;
    let mut buf = Vec::with_capacity(line.len() + 1);
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
    let result = (&file)
        .write_all(&buf)
        .and_then(|()| file.sync_data())
        .with_context(|| format!("failed to append to `{}`", path.display()));
    // The lock is released when `file` is dropped; unlocking explicitly keeps the window short.
    let _ = file.unlock();
    result
}

/// Removes a file if it exists and syncs its folder.
///
/// # Errors
/// When the file exists but cannot be removed.
pub fn remove_file(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            if let Some(parent) = path.parent() {
                sync_dir(parent);
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("failed to remove `{}`", path.display())),
    }
}

/// Creates a folder and its parents.
///
/// # Errors
/// When the folder cannot be created.
pub fn create_dir_all(path: &Path) -> Result<()> {
    fs_err::create_dir_all(path)?;
    Ok(())
}

fn sync_dir(dir: &Path) {
    // Best effort: some filesystems refuse to fsync a directory; the rename is still atomic.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b/c.txt");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn concurrent_appends_never_interleave() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log.jsonl");
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let p = p.clone();
                std::thread::spawn(move || {
                    let line = format!("{t}:{}", "x".repeat(10_000));
                    for _ in 0..20 {
                        append_line(&p, &line).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 160);
        for line in lines {
            let (_, xs) = line.split_once(':').unwrap();
            assert_eq!(xs.len(), 10_000);
        }
    }
}
