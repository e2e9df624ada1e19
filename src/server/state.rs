//! [`AppState`]: what every handler shares — the store, the event hub, the audit log, the admin
//! token and the metrics — behind one `Arc`, cheap to clone.
//!
//! [`AppState::open`] wires the file store's change feed to the hub (and audits changes made by
//! other processes); [`AppState::from_parts`] takes any [`TaskStore`], for other backends.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Result;
use serde_json::json;

use super::auth::AdminToken;
use super::events::EventHub;
use super::github::{DeliveryLog, Webhooks};
use super::metrics::Metrics;
use crate::audit::{AuditEvent, AuditLog, EVENTS_FILE};
use crate::store::files::FileStoreOptions;
use axum::body::Bytes;

use crate::store::{ChangeSink, FileStore, ListQuery, Origin, Status, TaskStore};

/// How a server over a folder is set up.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// The root holding `ssot/` and `audit/`.
    pub root: PathBuf,
    /// The admin token; `None` makes every admin route answer 503.
    pub admin_token: Option<String>,
    /// How far (in events) an SSE client may fall behind before it is dropped.
    pub sse_client_buffer: usize,
    /// How many past events `Last-Event-ID` can replay.
    pub sse_replay: usize,
    /// Watch `ssot/` for changes made by other processes.
    pub watch: bool,
    /// `WEBHOOK_SECRET` (SPEC §8.5); `None` makes `POST /webhooks/github` answer 503.
    pub webhook_secret: Option<String>,
    /// `TELEGRAM_SECRET_TOKEN` (SPEC §8.6); when set, Telegram updates must carry it.
    pub telegram_secret: Option<String>,
}

impl ServerOptions {
    /// Defaults over `root`: no admin token, 1,024-event buffers, watching on.
    #[must_use]
    pub fn new(root: impl Into<PathBuf>) -> ServerOptions {
        ServerOptions {
            root: root.into(),
            admin_token: None,
            sse_client_buffer: 1024,
            sse_replay: 1024,
            watch: true,
            webhook_secret: None,
            telegram_secret: None,
        }
    }

    /// Sets the admin token.
    #[must_use]
    pub fn admin_token(mut self, token: impl Into<String>) -> ServerOptions {
        self.admin_token = Some(token.into());
        self
    }
}

struct Inner {
    list_cache: ListCache,
    store: Arc<dyn TaskStore>,
    hub: EventHub,
    audit: AuditLog,
    admin: Option<AdminToken>,
    metrics: Metrics,
    webhooks: Webhooks,
}

/// The shared state of the server.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// The folder of SSOT records under a server root.
pub const SSOT_DIR: &str = "ssot";

impl AppState {
    /// Opens the file store under `options.root` and the audit log, and connects them to a new
    /// event hub. Returns the state and the messages of SSOT files that could not be loaded.
    ///
    /// # Errors
    /// When the folders cannot be created or read, or a background thread cannot start.
    pub fn open(options: &ServerOptions) -> Result<(AppState, Vec<String>)> {
        let audit = AuditLog::open(&options.root.join(EVENTS_FILE))?;
        let metrics = Metrics::default();
        let hub = EventHub::new(
            options.sse_client_buffer,
            options.sse_replay,
            audit.clone(),
            metrics.clone(),
        );
        let list_cache = ListCache::default();
        let sink = change_sink(&hub, &audit, &metrics, &list_cache);
        let store = FileStore::open(FileStoreOptions {
            dir: options.root.join(SSOT_DIR),
            sink,
            watch: options.watch,
        })?;
        let load_errors = store.load_errors().to_vec();
        for message in &load_errors {
            audit.record(
                AuditEvent::new(
                    "ssot_load_error",
                    super::tasks::new_correlation_id(),
                    "server",
                )
                .detail(json!({ "message": message })),
            );
        }
        let webhooks = Webhooks::new(
            options.webhook_secret.as_deref(),
            options.telegram_secret.as_deref(),
            DeliveryLog::open(&options.root)?,
        );
        let state = AppState(Arc::new(Inner {
            list_cache,
            store: Arc::new(store),
            hub,
            audit,
            admin: options.admin_token.as_deref().and_then(AdminToken::new),
            metrics,
            webhooks,
        }));
        Ok((state, load_errors))
    }

    /// A state over any store. The store's change sink must be [`change_sink`] of the same hub,
    /// audit log, metrics and list cache.
    #[must_use]
    pub fn from_parts(
        store: Arc<dyn TaskStore>,
        hub: EventHub,
        audit: AuditLog,
        admin: Option<AdminToken>,
        metrics: Metrics,
        list_cache: ListCache,
    ) -> AppState {
        AppState(Arc::new(Inner {
            list_cache,
            store,
            hub,
            audit,
            admin,
            metrics,
            webhooks: Webhooks::disabled(),
        }))
    }

    /// The webhook settings (SPEC §8.5, §8.6).
    #[must_use]
    pub fn webhooks(&self) -> &Webhooks {
        &self.0.webhooks
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &dyn TaskStore {
        &*self.0.store
    }

    /// The event hub.
    #[must_use]
    pub fn hub(&self) -> &EventHub {
        &self.0.hub
    }

    /// The audit log.
    #[must_use]
    pub fn audit(&self) -> &AuditLog {
        &self.0.audit
    }

    /// The admin token, when one is configured.
    #[must_use]
    pub fn admin_token(&self) -> Option<&AdminToken> {
        self.0.admin.as_ref()
    }

    /// The metrics.
    #[must_use]
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// The cache of first list pages.
    #[must_use]
    pub fn list_cache(&self) -> &ListCache {
        &self.0.list_cache
    }
}

/// The first pages of `GET /api/tasks` (no cursor), by status filter and limit, valid until the
/// next change. A page is stored under the generation read *before* it was computed, and every
/// change bumps the generation after the store's index changed, so a stale page is never served.
#[derive(Clone, Default)]
pub struct ListCache(Arc<ListCacheInner>);

#[derive(Default)]
struct ListCacheInner {
    generation: AtomicU64,
    pages: Mutex<HashMap<PageKey, CachedPage>>,
}

/// A first page is known by its status filter and limit.
type PageKey = (Option<Status>, usize);

struct CachedPage {
    generation: u64,
    body: Bytes,
    count: usize,
}

/// The most pages kept; the cache is emptied when it is full.
const LIST_CACHE_PAGES: usize = 64;

impl ListCache {
    /// The current generation.
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.0.generation.load(Ordering::Acquire)
    }

    /// Invalidates every page (called for every change).
    pub fn bump(&self) {
        self.0.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// A valid page for `query`, with its task count.
    #[must_use]
    pub fn get(&self, query: &ListQuery) -> Option<(Bytes, usize)> {
        if query.cursor.is_some() {
            return None;
        }
        let generation = self.generation();
        let pages = self.0.pages.lock().unwrap_or_else(PoisonError::into_inner);
        match pages.get(&(query.status, query.limit)) {
            Some(page) if page.generation == generation => Some((page.body.clone(), page.count)),
            _ => None,
        }
    }

    /// Keeps a page computed at `generation`.
    pub fn put(&self, generation: u64, query: &ListQuery, body: Bytes, count: usize) {
        if query.cursor.is_some() || generation != self.generation() {
            return;
        }
        let mut pages = self.0.pages.lock().unwrap_or_else(PoisonError::into_inner);
        if pages.len() >= LIST_CACHE_PAGES {
            pages.clear();
        }
        pages.insert(
            (query.status, query.limit),
            CachedPage {
                generation,
                body,
                count,
            },
        );
    }
}

/// The change feed of a store: every change goes to the hub; changes made by other processes are
/// audited here too (the API audits its own writes with their actor).
#[must_use]
pub fn change_sink(
    hub: &EventHub,
    audit: &AuditLog,
    metrics: &Metrics,
    list_cache: &ListCache,
) -> ChangeSink {
    let hub = hub.clone();
    let audit = audit.clone();
    let metrics = metrics.clone();
    let list_cache = list_cache.clone();
    Arc::new(move |change| {
        list_cache.bump();
        if change.origin == Origin::External {
            metrics.external_change();
            audit.record(
                AuditEvent::new("task_updated", change.correlation_id.as_str(), "watcher")
                    .task(change.task_id.as_str())
                    .detail(json!({
                        "version": change.version,
                        "status": change.status.as_str(),
                        "origin": "external",
                    })),
            );
        }
        hub.publish(&change);
    })
}
