//! [`AppState`]: what every handler shares — the store, the event hub, the audit log, the admin
//! token and the metrics — behind one `Arc`, cheap to clone.
//!
//! [`AppState::open`] wires the file store's change feed to the hub (and audits changes made by
//! other processes); [`AppState::from_parts`] takes any [`TaskStore`], for other backends.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use serde_json::json;

use super::auth::AdminToken;
use super::events::EventHub;
use super::metrics::Metrics;
use crate::audit::{AuditEvent, AuditLog, EVENTS_FILE};
use crate::store::files::FileStoreOptions;
use crate::store::{ChangeSink, FileStore, Origin, TaskStore};

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
    store: Arc<dyn TaskStore>,
    hub: EventHub,
    audit: AuditLog,
    admin: Option<AdminToken>,
    metrics: Metrics,
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
        let sink = change_sink(&hub, &audit, &metrics);
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
                    uuid::Uuid::now_v7().to_string(),
                    "server",
                )
                .detail(json!({ "message": message })),
            );
        }
        let state = AppState::from_parts(
            Arc::new(store),
            hub,
            audit,
            options.admin_token.as_deref().and_then(AdminToken::new),
            metrics,
        );
        Ok((state, load_errors))
    }

    /// A state over any store. The store's change sink should be [`change_sink`] of the same hub.
    #[must_use]
    pub fn from_parts(
        store: Arc<dyn TaskStore>,
        hub: EventHub,
        audit: AuditLog,
        admin: Option<AdminToken>,
        metrics: Metrics,
    ) -> AppState {
        AppState(Arc::new(Inner {
            store,
            hub,
            audit,
            admin,
            metrics,
        }))
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
}

/// The change feed of a store: every change goes to the hub; changes made by other processes are
/// audited here too (the API audits its own writes with their actor).
#[must_use]
pub fn change_sink(hub: &EventHub, audit: &AuditLog, metrics: &Metrics) -> ChangeSink {
    let hub = hub.clone();
    let audit = audit.clone();
    let metrics = metrics.clone();
    Arc::new(move |change| {
        if change.origin == Origin::External {
            metrics.external_change();
            audit.record(
                AuditEvent::new("task_updated", &change.correlation_id, "watcher")
                    .task(&change.task_id)
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
