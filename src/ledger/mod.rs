//! The ledger `.ai-stack-trace/<TASK>/` (SPEC §2): its folders, its files, and the journal that
//! records every write. All ledger writes go through [`Ledger`], which appends the matching journal
//! line, so a file the journal does not record was written behind gatekeeper's back.

pub mod contract;
pub mod integrity;
pub mod journal;
pub mod lock;
pub mod signing;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{Map, Value};

use crate::exit::Refusal;
use crate::fsx;
use crate::hash::sha256_hex;
use crate::workspace::{TaskName, Workspace};
use journal::{Entry, events, line_hash, parse_journal};

/// The ledger folders, exactly (SPEC §2).
pub const FOLDERS: [&str; 7] = [
    "inputs", "gemini", "claude", "codex", "tests", "contract", "final",
];
/// The journal's file name at the ledger root.
pub const JOURNAL: &str = "ledger.jsonl";

/// The current time as RFC 3339 UTC with second precision.
#[must_use]
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or_else(|_| jiff::Timestamp::now())
        .to_string()
}

/// An open ledger with its parsed, chain-checked journal.
#[derive(Debug)]
pub struct Ledger {
    task: TaskName,
    dir: PathBuf,
    head_path: PathBuf,
    entries: Vec<Entry>,
    last_hash: Option<String>,
    correlation_id: String,
    signer: Option<signing::Signer>,
}

impl Ledger {
    /// Opens a task's ledger (which may not exist yet), parsing and chain-checking its journal.
    ///
    /// # Errors
    /// An integrity refusal (exit 7) when the journal is broken; I/O errors.
    pub fn open(ws: &Workspace, task: &TaskName) -> Result<Ledger> {
        let dir = ws.ledger_dir(task);
        let head_path = ws.gatekeeper_dir().join("heads").join(task.as_str());
        let journal_path = dir.join(JOURNAL);
        let meta = std::fs::symlink_metadata(&journal_path);
        if let Ok(m) = &meta
            && m.file_type().is_symlink()
        {
            return Err(Refusal::integrity(format!(
                "`{}/{JOURNAL}` is a symlink; a journal must be a regular file inside the ledger",
                Workspace::ledger_rel(task)
            ))
            .into());
        }
        let bytes = match std::fs::read(&journal_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("failed to read `{}`", journal_path.display())));
            }
        };
        let (entries, last_hash) = parse_journal(bytes, task.as_str()).map_err(|e| {
            Refusal::integrity(format!(
                "the journal `{}/{JOURNAL}` is broken at line {}: {}",
                Workspace::ledger_rel(task),
                e.line,
                e.message
            ))
            .hint(format!("the ledger was changed behind gatekeeper's back; inspect it with `git diff -- {}` or start a new task", Workspace::ledger_rel(task)))
        })?;
        let correlation_id = entries
            .first()
            .map(|e| e.correlation_id.clone())
            .unwrap_or_default();
        Ok(Ledger {
            task: task.clone(),
            dir,
            head_path,
            entries,
            last_hash,
            correlation_id,
            signer: None,
        })
    }

    /// The task.
    #[must_use]
    pub fn task(&self) -> &TaskName {
        &self.task
    }

    /// The ledger folder.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// True when the journal has at least one line.
    #[must_use]
    pub fn exists(&self) -> bool {
        !self.entries.is_empty()
    }

    /// The journal entries, in order.
    #[must_use]
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The task's correlation id (empty before step 0).
    #[must_use]
    pub fn correlation_id(&self) -> &str {
        &self.correlation_id
    }

    /// Signs contract events and step ends from now on (SPEC §2 "Signing").
    pub fn set_signer(&mut self, signer: signing::Signer) {
        self.signer = Some(signer);
    }

    /// Sets the correlation id (step 0 of a new task).
    pub fn set_correlation_id(&mut self, id: String) {
        self.correlation_id = id;
    }

    /// The absolute path of a ledger-relative path.
    #[must_use]
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// Where the local journal head is kept (inside `.git`).
    #[must_use]
    pub fn head_path(&self) -> &Path {
        &self.head_path
    }

    /// Creates the ledger folders.
    ///
    /// # Errors
    /// I/O errors.
    pub fn create_folders(&self) -> Result<()> {
        for folder in FOLDERS {
            fsx::create_dir_all(&self.dir.join(folder))?;
        }
        Ok(())
    }

    /// Reads a ledger file, `None` when it does not exist.
    ///
    /// # Errors
    /// I/O errors other than "not found".
    pub fn read(&self, rel: &str) -> Result<Option<Vec<u8>>> {
        match std::fs::read(self.path(rel)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow::Error::new(e)
                .context(format!("failed to read `{}`", self.path(rel).display()))),
        }
    }

    /// Reads a ledger file as text (lossy), empty when missing.
    ///
    /// # Errors
    /// I/O errors other than "not found".
    pub fn read_text(&self, rel: &str) -> Result<String> {
        Ok(self
            .read(rel)?
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default())
    }

    /// Appends a journal line.
    ///
    /// # Errors
    /// I/O errors.
    pub fn append(
        &mut self,
        step: Option<u32>,
        event: &str,
        files: BTreeMap<String, String>,
        data: Map<String, Value>,
    ) -> Result<()> {
        let entry = Entry {
            seq: self.entries.len() as u64,
            ts: now_rfc3339(),
            task: self.task.to_string(),
            correlation_id: self.correlation_id.clone(),
            step,
            event: event.to_owned(),
            files,
            data: data.into(),
            prev: self.last_hash.clone(),
        };
        let line = entry.encode();
        fsx::append_line(&self.dir.join(JOURNAL), &line)?;
        let hash = line_hash(&line);
        // The local head lets `verify` notice a truncated or edited tail on this machine.
        fsx::write_relaxed(
            &self.head_path,
            format!("{} {hash}\n", entry.seq).as_bytes(),
        )?;
        self.last_hash = Some(hash.clone());
        let signs = entry.event == events::CONTRACT_WRITTEN || entry.event == events::STEP_FINISHED;
        let step = entry.step;
        self.entries.push(entry);
        if signs && let Some(signer) = &self.signer {
            let mut data = Map::new();
            data.insert("key".to_owned(), Value::String(signer.public_hex()));
            data.insert("sig".to_owned(), Value::String(signer.sign(&hash)));
            self.append(step, events::SIGNATURE, BTreeMap::new(), data)?;
        }
        Ok(())
    }

    /// Appends a journal line with only `data`.
    ///
    /// # Errors
    /// I/O errors.
    pub fn event(&mut self, step: Option<u32>, event: &str, data: Value) -> Result<()> {
        let data = match data {
            Value::Object(m) => m,
            Value::Null => Map::new(),
            other => {
                let mut m = Map::new();
                m.insert("value".to_owned(), other);
                m
            }
        };
        self.append(step, event, BTreeMap::new(), data)
    }

    /// Writes a ledger file atomically and journals its sha256. Returns the sha256.
    ///
    /// # Errors
    /// I/O errors.
    pub fn write_file(&mut self, step: Option<u32>, rel: &str, bytes: &[u8]) -> Result<String> {
        let path = self.path(rel);
        fsx::write_atomic(&path, bytes)
            .with_context(|| format!("failed to write the ledger file `{rel}`"))?;
        let sha = sha256_hex(bytes);
        let mut files = BTreeMap::new();
        files.insert(rel.to_owned(), sha.clone());
        self.append(step, events::FILE_WRITTEN, files, Map::new())?;
        Ok(sha)
    }

    /// The last `step_finished` entry of a step, if any, and whether a later `step_started` of the
    /// same step is unfinished.
    #[must_use]
    pub fn last_of(&self, step: u32, event: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.step == Some(step) && e.event == event)
    }
}
