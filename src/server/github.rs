//! `POST /webhooks/github` (SPEC §8.5): a signed GitHub event sets `ci_status` of the task named
//! by its head branch.
//!
//! The signature is `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>` with
//! `WEBHOOK_SECRET`, checked with [`Mac::verify_slice`] (constant time) over the body bytes as
//! they arrived. Without a secret the route answers 503 (fail closed); a bad or missing signature
//! 401. `X-GitHub-Delivery` is the event id: the ids already handled are remembered in a bounded
//! list persisted atomically under the server root ([`DeliveryLog`]), so a replay, also after a
//! restart, is a dedup hit that changes nothing. Deliveries are handled one at a time (they are
//! rare), so concurrent duplicates have one effect. Every outcome is audited as
//! `webhook_received` with `signature_valid`, `event_id` and `dedup_hit`.

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::error::{ApiError, json_response};
use super::state::AppState;
use super::tasks::new_correlation_id;
use crate::audit::AuditEvent;
use crate::store::{HistoryEntry, StoreError, TaskId, TaskRecord, now_rfc3339};

/// How many delivery ids are remembered (the oldest are forgotten first).
pub const DELIVERY_MEMORY: usize = 10_000;

/// Where the delivery ids are kept, under the server root.
pub const DELIVERIES_FILE: &str = "webhooks/github_deliveries.json";

/// The events that set `ci_status`.
pub const CI_EVENTS: [&str; 3] = ["check_suite", "check_run", "workflow_run"];

type HmacSha256 = Hmac<Sha256>;

/// `sha256=<hex>`: the `X-Hub-Signature-256` value GitHub sends for `body` signed with `secret`.
#[must_use]
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `header` (`sha256=<64 hex>`) is the signature of `body` with `secret`, compared in
/// constant time. A malformed header is simply not valid.
#[must_use]
pub fn signature_valid(secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(hex_sig) = header.and_then(|h| h.trim().strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(presented) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = HmacSha256::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&presented).is_ok()
}

/// The delivery ids already handled: a bounded, ordered set, persisted atomically after every
/// addition when it has a file.
#[derive(Debug)]
pub struct DeliveryLog {
    path: Option<PathBuf>,
    inner: tokio::sync::Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    order: VecDeque<String>,
    set: HashSet<String>,
}

impl DeliveryLog {
    /// An in-memory log (forgotten at exit).
    #[must_use]
    pub fn in_memory() -> DeliveryLog {
        DeliveryLog {
            path: None,
            inner: tokio::sync::Mutex::new(Seen::default()),
        }
    }

    /// Opens `<root>/webhooks/github_deliveries.json` (a JSON array of ids, oldest first),
    /// creating nothing until the first delivery.
    ///
    /// # Errors
    /// When the file exists but cannot be read or parsed.
    pub fn open(root: &Path) -> anyhow::Result<DeliveryLog> {
        let path = root.join(DELIVERIES_FILE);
        let mut seen = Seen::default();
        if path.exists() {
            let text = fs_err::read_to_string(&path)?;
            let ids: Vec<String> = serde_json::from_str(&text)
                .with_context(|| format!("`{}` is not a JSON list of ids", path.display()))?;
            for id in ids {
                if seen.set.insert(id.clone()) {
                    seen.order.push_back(id);
                }
            }
        }
        Ok(DeliveryLog {
            path: Some(path),
            inner: tokio::sync::Mutex::new(seen),
        })
    }

    /// How many ids are remembered.
    pub async fn len(&self) -> usize {
        self.inner.lock().await.order.len()
    }

    /// Whether no id is remembered.
    pub async fn is_empty(&self) -> bool {
        self.len().await == 0
    }
}

impl Seen {
    fn remember(&mut self, id: &str) {
        if self.set.insert(id.to_owned()) {
            self.order.push_back(id.to_owned());
        }
        while self.order.len() > DELIVERY_MEMORY {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }
}

/// The webhook settings of a server: the secrets and the delivery log.
#[derive(Debug)]
pub struct Webhooks {
    github_secret: Option<Vec<u8>>,
    telegram_secret: Option<Vec<u8>>,
    deliveries: DeliveryLog,
}

impl Webhooks {
    /// No secrets (GitHub answers 503; Telegram takes every update) and an in-memory log.
    #[must_use]
    pub fn disabled() -> Webhooks {
        Webhooks {
            github_secret: None,
            telegram_secret: None,
            deliveries: DeliveryLog::in_memory(),
        }
    }

    /// Settings from the secrets (empty ones count as unset) and a delivery log.
    #[must_use]
    pub fn new(
        github_secret: Option<&str>,
        telegram_secret: Option<&str>,
        deliveries: DeliveryLog,
    ) -> Webhooks {
        let bytes = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(|s| s.as_bytes().to_vec());
        Webhooks {
            github_secret: bytes(github_secret),
            telegram_secret: bytes(telegram_secret),
            deliveries,
        }
    }

    /// The Telegram secret token, when one is set.
    #[must_use]
    pub fn telegram_secret(&self) -> Option<&[u8]> {
        self.telegram_secret.as_deref()
    }

    /// The delivery log.
    #[must_use]
    pub fn deliveries(&self) -> &DeliveryLog {
        &self.deliveries
    }
}

/// The raw request body, as the signature needs it: read within [`super::BODY_TIMEOUT`] (else
/// 408), at most [`super::BODY_LIMIT`] bytes (else 413), both answered in the JSON error shape.
#[derive(Debug)]
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let read = tokio::time::timeout(super::BODY_TIMEOUT, Bytes::from_request(req, state));
        let bytes = read
            .await
            .map_err(|_| ApiError::RequestTimeout)?
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge
                } else {
                    ApiError::BadRequest(format!("the request body could not be read: {rejection}"))
                }
            })?;
        Ok(RawBody(bytes))
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn is_sane_id(v: &str) -> bool {
    !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic())
}

/// The task a CI event is about: the head branch, or its last `/` segment, when it is a valid
/// task id. The id is only ever used as a store key.
#[must_use]
pub fn task_of_branch(branch: &str) -> Option<TaskId> {
    TaskId::parse(branch).ok().or_else(|| {
        branch
            .rsplit('/')
            .next()
            .and_then(|last| TaskId::parse(last).ok())
    })
}

/// The CI facts of a `check_suite`, `check_run` or `workflow_run` payload: its head branch and the
/// `ci_status` value to store.
/// (Public for the `github_webhook` fuzz target.)
pub fn ci_facts(event: &str, payload: &Value, delivery: &str) -> Option<(String, Value)> {
    let object = match event {
        "check_suite" => payload.get("check_suite")?,
        "check_run" => payload.get("check_run")?,
        "workflow_run" => payload.get("workflow_run")?,
        _ => return None,
    };
    let branch = object
        .get("head_branch")
        .and_then(Value::as_str)
        .or_else(|| {
            object
                .get("check_suite")
                .and_then(|s| s.get("head_branch"))
                .and_then(Value::as_str)
        })?;
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let status = json!({
        "event": event,
        "action": text(payload.get("action")),
        "status": text(object.get("status")),
        "conclusion": text(object.get("conclusion")),
        "head_sha": text(object.get("head_sha")),
        "head_branch": branch,
        "name": text(object.get("name")),
        "url": text(object.get("html_url")),
        "delivery": delivery,
        "updated_at": now_rfc3339(),
    });
    Some((branch.to_owned(), status))
}

fn audit(
    state: &AppState,
    correlation_id: &str,
    task: Option<&str>,
    signature_valid: bool,
    event_id: Option<&str>,
    dedup_hit: bool,
    detail: Value,
) {
    let mut event = AuditEvent::new("webhook_received", correlation_id.to_owned(), "github");
    if let Some(t) = task {
        event = event.task(t.to_owned());
    }
    let mut map = serde_json::Map::new();
    map.insert("source".to_owned(), json!("github"));
    map.insert("signature_valid".to_owned(), json!(signature_valid));
    map.insert("event_id".to_owned(), json!(event_id));
    map.insert("dedup_hit".to_owned(), json!(dedup_hit));
    if let Value::Object(extra) = detail {
        map.extend(extra);
    }
    state.audit().record(event.detail(Value::Object(map)));
}

fn ok(body: &Value) -> Response {
    json_response(
        StatusCode::OK,
        Bytes::from(serde_json::to_vec(body).expect("JSON serializes")),
    )
}

/// 503 `webhook_disabled`: no secret configured.
fn disabled() -> Response {
    json_response(
        StatusCode::SERVICE_UNAVAILABLE,
        Bytes::from_static(
            br#"{"error":{"code":"webhook_disabled","message":"GitHub webhooks are disabled: the server has no WEBHOOK_SECRET"}}"#,
        ),
    )
}

/// `POST /webhooks/github`.
///
/// # Errors
/// 401 for a bad or missing signature, 400 for a missing delivery id or a body that is not JSON,
/// 500 when the store cannot write (the delivery is then not remembered, so a redelivery retries).
pub async fn handler(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let correlation_id = new_correlation_id();
    let delivery = header(&headers, "x-github-delivery").filter(|d| is_sane_id(d));
    let event = header(&headers, "x-github-event").unwrap_or("").to_owned();
    let Some(secret) = state.webhooks().github_secret.as_deref() else {
        audit(
            &state,
            &correlation_id,
            None,
            false,
            delivery,
            false,
            json!({ "outcome": "disabled", "github_event": event }),
        );
        return Ok(disabled());
    };
    if !signature_valid(secret, &body, header(&headers, "x-hub-signature-256")) {
        audit(
            &state,
            &correlation_id,
            None,
            false,
            delivery,
            false,
            json!({ "outcome": "rejected", "github_event": event }),
        );
        return Err(ApiError::Unauthorized(
            "missing or invalid X-Hub-Signature-256",
        ));
    }
    let Some(delivery) = delivery else {
        audit(
            &state,
            &correlation_id,
            None,
            true,
            None,
            false,
            json!({ "outcome": "no_delivery_id", "github_event": event }),
        );
        return Err(ApiError::BadRequest(
            "X-GitHub-Delivery is missing or not a sane id".to_owned(),
        ));
    };
    let payload: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            audit(
                &state,
                &correlation_id,
                None,
                true,
                Some(delivery),
                false,
                json!({ "outcome": "invalid_json", "github_event": event }),
            );
            return Err(ApiError::InvalidJson(format!("the body is not JSON: {e}")));
        }
    };
    let log = state.webhooks().deliveries();
    // One delivery at a time: the check, the effect and the remembering happen under the lock.
    let mut seen = log.inner.lock().await;
    if seen.set.contains(delivery) {
        drop(seen);
        audit(
            &state,
            &correlation_id,
            None,
            true,
            Some(delivery),
            true,
            json!({ "outcome": "duplicate", "github_event": event }),
        );
        return Ok(ok(
            &json!({ "ok": true, "dedup_hit": true, "event_id": delivery }),
        ));
    }
    let (outcome, task) = apply(&state, &event, &payload, delivery).await?;
    seen.remember(delivery);
    if let Some(path) = &log.path {
        let ids: Vec<&String> = seen.order.iter().collect();
        let bytes = serde_json::to_vec(&ids).expect("ids serialize");
        let path = path.clone();
        tokio::task::spawn_blocking(move || crate::fsx::write_atomic(&path, &bytes))
            .await
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("the writer panicked: {e}")))?
            .map_err(ApiError::Internal)?;
    }
    drop(seen);
    let (task_id, correlation) = match &task {
        Some((id, c)) => (Some(id.as_str()), c.as_str()),
        None => (None, correlation_id.as_str()),
    };
    audit(
        &state,
        correlation,
        task_id,
        true,
        Some(delivery),
        false,
        json!({ "outcome": outcome, "github_event": event }),
    );
    Ok(ok(&json!({
        "ok": true,
        "dedup_hit": false,
        "event_id": delivery,
        "outcome": outcome,
        "task_id": task_id,
    })))
}

/// Applies a verified, new event: `ci_status` for CI events of a known task. Returns the outcome
/// and the task with its correlation id when one was updated.
async fn apply(
    state: &AppState,
    event: &str,
    payload: &Value,
    delivery: &str,
) -> Result<(&'static str, Option<(String, String)>), ApiError> {
    if !CI_EVENTS.contains(&event) {
        return Ok(("ignored_event", None));
    }
    let Some((branch, ci_status)) = ci_facts(event, payload, delivery) else {
        return Ok(("no_head_branch", None));
    };
    let Some(id) = task_of_branch(&branch) else {
        return Ok(("invalid_task_id", None));
    };
    let delivery = delivery.to_owned();
    let event = event.to_owned();
    let mutation = Box::new(move |record: &mut TaskRecord| {
        record.ci_status = ci_status;
        let mut extra = std::collections::BTreeMap::new();
        extra.insert("delivery".to_owned(), Value::String(delivery));
        extra.insert("github_event".to_owned(), Value::String(event));
        record.history.push(HistoryEntry {
            at: now_rfc3339(),
            event: "ci_status".to_owned(),
            by: Some("github".to_owned()),
            version: None,
            reason: None,
            extra,
        });
        Ok(())
    });
    match state.store().update(id.clone(), None, mutation).await {
        Ok(task) => Ok((
            "ci_status_updated",
            Some((id.to_string(), task.record.correlation_id.clone())),
        )),
        Err(StoreError::NotFound(_)) => Ok(("unknown_task", None)),
        Err(e) => Err(e.into()),
    }
}
