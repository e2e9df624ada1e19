//! The file backend of the SSOT store: one canonical JSON file per task, `ssot/<task_id>.json`.
//!
//! Every write runs on one writer thread that owns the files, under an exclusive lock on
//! `ssot/.lock` shared with other processes: it reads the record from disk (so a change made by
//! the CLI a moment ago is not lost), checks `If-Match`, applies the change, increments `version`,
//! writes the file atomically ([`crate::fsx::write_atomic`]) and only then updates the in-memory
//! index and announces the change. Reads never touch the disk. The [`super::watch`] module feeds
//! changes made by other processes to the same thread, so announcements keep the order of writes.
//!
//! [`create_record`] and [`update_record`] are the same write path for synchronous callers in
//! other processes (the pipeline's SSOT mirror), so concurrent CLI and server writers never lose
//! an update.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock, mpsc};

use anyhow::Context as _;
use futures_util::future::BoxFuture;
use tokio::sync::oneshot;

use super::{
    ChangeSink, Cursor, ListQuery, Mutation, Origin, Page, StoreError, StoredTask, TaskId,
    TaskRecord, TaskStore, is_valid_task_id, now_rfc3339,
};
use crate::canonical::to_canonical_pretty;

/// The name of the lock file inside `ssot/` that serialises writers across processes.
pub const LOCK_FILE: &str = ".lock";

/// The path of a task's file.
#[must_use]
pub fn record_path(dir: &Path, id: &TaskId) -> PathBuf {
    dir.join(format!("{id}.json"))
}

/// The task id a file name stands for: `<id>.json` with a valid id, not a dotfile or temp file.
#[must_use]
pub fn id_of_file_name(name: &str) -> Option<TaskId> {
    let stem = name.strip_suffix(".json")?;
    if stem.starts_with('.') {
        return None;
    }
    TaskId::parse(stem).ok()
}

/// Reads and parses a task's file; `Ok(None)` when it does not exist.
///
/// # Errors
/// When the file cannot be read, is not a task record, or names another task.
pub fn read_record(dir: &Path, id: &TaskId) -> Result<Option<TaskRecord>, StoreError> {
    let path = record_path(dir, id);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(StoreError::Io(
                anyhow::Error::new(e).context(format!("failed to read `{}`", path.display())),
            ));
        }
    };
    parse_record(&bytes, id).map(Some).map_err(|e| {
        StoreError::Io(e.context(format!("`{}` is not a task record", path.display())))
    })
}

fn parse_record(bytes: &[u8], id: &TaskId) -> anyhow::Result<TaskRecord> {
    let record: TaskRecord = serde_json::from_slice(bytes)?;
    anyhow::ensure!(
        record.task_id == id.as_str(),
        "its `task_id` is `{}`, not the file's name",
        record.task_id.escape_debug()
    );
    Ok(record)
}

/// The exclusive cross-process write lock of a store folder, held until dropped.
pub struct DirLock {
    file: File,
}

impl DirLock {
    /// Takes the lock, waiting for another holder to release it.
    ///
    /// # Errors
    /// When the lock file cannot be opened or locked.
    pub fn acquire(dir: &Path) -> anyhow::Result<DirLock> {
        let path = dir.join(LOCK_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("failed to open `{}`", path.display()))?;
        file.lock()
            .with_context(|| format!("failed to lock `{}`", path.display()))?;
        Ok(DirLock { file })
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

fn write_record(dir: &Path, record: &TaskRecord) -> Result<(), StoreError> {
    let id = TaskId::parse(&record.task_id).map_err(|e| StoreError::Invalid(e.to_string()))?;
    crate::fsx::write_atomic(
        &record_path(dir, &id),
        to_canonical_pretty(record).as_bytes(),
    )?;
    Ok(())
}

/// Creates `ssot/<task_id>.json` with `version` 1 under the folder lock.
///
/// # Errors
/// [`StoreError::Exists`] when the file exists; [`StoreError::Invalid`] for a bad id; I/O errors.
pub fn create_record(dir: &Path, mut record: TaskRecord) -> Result<TaskRecord, StoreError> {
    let id = TaskId::parse(&record.task_id).map_err(|e| StoreError::Invalid(e.to_string()))?;
    crate::fsx::create_dir_all(dir)?;
    let _lock = DirLock::acquire(dir)?;
    if record_path(dir, &id).exists() {
        return Err(StoreError::Exists(id.to_string()));
    }
    record.version = 1;
    if record.updated_at.is_empty() {
        record.updated_at.clone_from(&record.created_at);
    }
    for entry in &mut record.history {
        entry.version.get_or_insert(1);
    }
    write_record(dir, &record)?;
    Ok(record)
}

/// Applies `mutation` to the record on disk under the folder lock: checks `if_match`, increments
/// `version`, sets `updated_at`, stamps new history entries with the new version, writes atomically.
///
/// # Errors
/// [`StoreError::NotFound`], [`StoreError::VersionMismatch`], the mutation's refusal, I/O errors.
pub fn update_record(
    dir: &Path,
    id: &TaskId,
    if_match: Option<u64>,
    mutation: Mutation,
) -> Result<TaskRecord, StoreError> {
    let _lock = DirLock::acquire(dir)?;
    let Some(mut record) = read_record(dir, id)? else {
        return Err(StoreError::NotFound(id.to_string()));
    };
    if let Some(expected) = if_match
        && expected != record.version
    {
        return Err(StoreError::VersionMismatch {
            task_id: id.to_string(),
            expected,
            actual: record.version,
        });
    }
    let before = record.history.len();
    let version = record.version;
    let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| mutation(&mut record)));
    match applied {
        Ok(result) => result?,
        Err(_) => {
            return Err(StoreError::Io(anyhow::anyhow!(
                "a change to task `{id}` panicked; nothing was written"
            )));
        }
    }
    // The record's identity and version belong to the store, whatever the mutation did.
    record.task_id = id.to_string();
    record.version = version + 1;
    record.updated_at = now_rfc3339();
    let new_version = record.version;
    for entry in record.history.iter_mut().skip(before) {
        entry.version.get_or_insert(new_version);
    }
    write_record(dir, &record)?;
    Ok(record)
}

/// Tasks in memory, by id and newest first.
#[derive(Default)]
struct Index {
    by_id: HashMap<String, Arc<StoredTask>>,
    order: BTreeSet<(Reverse<i64>, String)>,
}

impl Index {
    fn install(&mut self, task: Arc<StoredTask>) {
        let id = task.record.task_id.clone();
        if let Some(old) = self.by_id.insert(id.clone(), Arc::clone(&task)) {
            self.order.remove(&(Reverse(old.created_ms), id.clone()));
        }
        self.order.insert((Reverse(task.created_ms), id));
    }

    fn remove(&mut self, id: &str) -> bool {
        match self.by_id.remove(id) {
            Some(old) => {
                self.order.remove(&(Reverse(old.created_ms), id.to_owned()));
                true
            }
            None => false,
        }
    }

    fn page(&self, query: &ListQuery) -> Page {
        let start = match &query.cursor {
            Some(Cursor {
                created_ms,
                task_id,
            }) => Bound::Excluded((Reverse(*created_ms), task_id.clone())),
            None => Bound::Unbounded,
        };
        let mut tasks = Vec::with_capacity(query.limit.min(self.by_id.len()));
        let mut more = false;
        for (_, id) in self.order.range((start, Bound::Unbounded)) {
            let Some(task) = self.by_id.get(id) else {
                continue;
            };
            if query.status.is_some_and(|s| s != task.status) {
                continue;
            }
            if tasks.len() == query.limit {
                more = true;
                break;
            }
            tasks.push(Arc::clone(task));
        }
        let next_cursor = if more {
            tasks.last().map(|t| {
                Cursor {
                    created_ms: t.created_ms,
                    task_id: t.record.task_id.clone(),
                }
                .encode()
            })
        } else {
            None
        };
        Page { tasks, next_cursor }
    }
}

type Reply = oneshot::Sender<Result<Arc<StoredTask>, StoreError>>;

/// Work for the writer thread.
enum Command {
    Create(Box<TaskRecord>, Reply),
    Update {
        id: TaskId,
        if_match: Option<u64>,
        mutation: Mutation,
        reply: Reply,
    },
    /// A file changed on disk (another process, or our own write seen by the watcher).
    Reload(TaskId),
}

/// What the writer thread shares with the readers.
struct Shared {
    dir: PathBuf,
    index: RwLock<Index>,
    sink: ChangeSink,
}

impl Shared {
    fn install(&self, record: TaskRecord, origin: Origin) -> Arc<StoredTask> {
        let task = Arc::new(StoredTask::new(record));
        self.index
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .install(Arc::clone(&task));
        (self.sink)(task.change(origin));
        task
    }

    fn current(&self, id: &str) -> Option<Arc<StoredTask>> {
        self.index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .by_id
            .get(id)
            .cloned()
    }

    fn run(&self, commands: &mpsc::Receiver<Command>) {
        while let Ok(command) = commands.recv() {
            match command {
                Command::Create(record, reply) => {
                    let result =
                        create_record(&self.dir, *record).map(|r| self.install(r, Origin::Store));
                    let _ = reply.send(result);
                }
                Command::Update {
                    id,
                    if_match,
                    mutation,
                    reply,
                } => {
                    let result = update_record(&self.dir, &id, if_match, mutation);
                    if let Err(StoreError::NotFound(_)) = &result {
                        self.forget(&id);
                    }
                    let _ = reply.send(result.map(|r| self.install(r, Origin::Store)));
                }
                Command::Reload(id) => self.reload(&id),
            }
        }
    }

    fn forget(&self, id: &TaskId) {
        self.index
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id.as_str());
    }

    fn reload(&self, id: &TaskId) {
        match read_record(&self.dir, id) {
            Ok(Some(record)) => {
                let unchanged = self
                    .current(id.as_str())
                    .is_some_and(|t| t.record == record);
                if !unchanged {
                    self.install(record, Origin::External);
                }
            }
            Ok(None) => self.forget(id),
            Err(e) => tracing::warn!("ignoring a change to `{id}`: {e:#}"),
        }
    }
}

/// The file-backed [`TaskStore`].
pub struct FileStore {
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
    load_errors: Vec<String>,
    _watcher: Option<super::watch::DirWatcher>,
}

/// How to open a [`FileStore`].
pub struct FileStoreOptions {
    /// The `ssot/` folder (created when missing).
    pub dir: PathBuf,
    /// Receives every change, in order.
    pub sink: ChangeSink,
    /// Watch the folder for changes made by other processes.
    pub watch: bool,
}

impl FileStore {
    /// Opens the store: starts the writer thread and the watcher, then loads every record.
    /// Files that are not valid records are skipped and listed in [`FileStore::load_errors`].
    ///
    /// # Errors
    /// When the folder cannot be created or read, or the writer thread cannot start.
    pub fn open(options: FileStoreOptions) -> anyhow::Result<FileStore> {
        let FileStoreOptions { dir, sink, watch } = options;
        crate::fsx::create_dir_all(&dir)?;
        let shared = Arc::new(Shared {
            dir: dir.clone(),
            index: RwLock::new(Index::default()),
            sink,
        });
        let (commands, receiver) = mpsc::channel();
        let writer = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("ssot-writer".to_owned())
            .spawn(move || writer.run(&receiver))
            .context("failed to start the SSOT writer thread")?;
        // Watch before loading, so that no change made in between is missed.
        let watcher = if watch {
            let reloads = commands.clone();
            Some(super::watch::DirWatcher::start(&dir, move |id| {
                let _ = reloads.send(Command::Reload(id));
            })?)
        } else {
            None
        };
        let mut load_errors = Vec::new();
        let mut index = Index::default();
        let entries = fs_err::read_dir(&dir)
            .with_context(|| format!("failed to list `{}`", dir.display()))?;
        for entry in entries {
            let entry = entry?;
            let Some(id) = entry.file_name().to_str().and_then(id_of_file_name) else {
                continue;
            };
            match read_record(&dir, &id) {
                Ok(Some(record)) => index.install(Arc::new(StoredTask::new(record))),
                Ok(None) => {}
                Err(e) => load_errors.push(format!("{e:#}")),
            }
        }
        {
            // A change the watcher reloaded meanwhile is newer than what was read here.
            let mut live = shared.index.write().unwrap_or_else(PoisonError::into_inner);
            for (id, task) in index.by_id {
                if !live.by_id.contains_key(&id) {
                    live.install(task);
                }
            }
        }
        Ok(FileStore {
            shared,
            commands,
            load_errors,
            _watcher: watcher,
        })
    }

    /// The files skipped at load time, one message each.
    #[must_use]
    pub fn load_errors(&self) -> &[String] {
        &self.load_errors
    }

    /// The `ssot/` folder.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    fn submit(
        &self,
        command: Command,
        reply: oneshot::Receiver<Result<Arc<StoredTask>, StoreError>>,
    ) -> BoxFuture<'_, Result<Arc<StoredTask>, StoreError>> {
        let sent = self.commands.send(command).is_ok();
        Box::pin(async move {
            if !sent {
                return Err(StoreError::Io(anyhow::anyhow!(
                    "the SSOT writer has stopped"
                )));
            }
            reply.await.unwrap_or_else(|_| {
                Err(StoreError::Io(anyhow::anyhow!(
                    "the SSOT writer has stopped"
                )))
            })
        })
    }
}

impl TaskStore for FileStore {
    fn get<'a>(
        &'a self,
        id: &'a TaskId,
    ) -> BoxFuture<'a, Result<Option<Arc<StoredTask>>, StoreError>> {
        Box::pin(std::future::ready(Ok(self.shared.current(id.as_str()))))
    }

    fn list(&self, query: ListQuery) -> BoxFuture<'_, Result<Page, StoreError>> {
        let page = self
            .shared
            .index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .page(&query);
        Box::pin(std::future::ready(Ok(page)))
    }

    fn create(&self, record: TaskRecord) -> BoxFuture<'_, Result<Arc<StoredTask>, StoreError>> {
        if !is_valid_task_id(&record.task_id) {
            let e = TaskId::parse(&record.task_id)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            return Box::pin(std::future::ready(Err(StoreError::Invalid(e))));
        }
        let (reply, receiver) = oneshot::channel();
        self.submit(Command::Create(Box::new(record), reply), receiver)
    }

    fn update(
        &self,
        id: TaskId,
        if_match: Option<u64>,
        mutation: Mutation,
    ) -> BoxFuture<'_, Result<Arc<StoredTask>, StoreError>> {
        let (reply, receiver) = oneshot::channel();
        self.submit(
            Command::Update {
                id,
                if_match,
                mutation,
                reply,
            },
            receiver,
        )
    }

    fn len(&self) -> usize {
        self.shared
            .index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .by_id
            .len()
    }
}
