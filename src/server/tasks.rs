//! `/api/tasks…` (SPEC §8.2): list, read, create, approve, reject. Every answer is canonical JSON;
//! a read returns the bytes the store computed when the record last changed, so repeated reads of
//! an unchanged record are byte-identical. Every call is audited with the task's correlation id.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{ApiError, ApiJson, OptionalJson, json_response};
use super::state::AppState;
use crate::audit::AuditEvent;
use crate::store::{
    Criterion, Cursor, DEFAULT_LIMIT, Decision, HistoryEntry, ListQuery, MAX_LIMIT, PipelineState,
    Source, Status, StoredTask, TaskId, TaskRecord, Verdict, now_rfc3339,
};

/// The request's own correlation id: `X-Correlation-Id` when it is a sane value, else a new one.
#[must_use]
pub fn request_correlation_id(headers: &HeaderMap) -> String {
    correlation_id_or_new(
        headers
            .get("x-correlation-id")
            .and_then(|v| v.to_str().ok()),
    )
}

/// `given` when it is a sane correlation id, else a new one.
#[must_use]
pub fn correlation_id_or_new(given: Option<&str>) -> String {
    given
        .filter(|v| is_sane_correlation_id(v))
        .map_or_else(new_correlation_id, str::to_owned)
}

/// A new time-ordered id (UUID v7). Its random part comes from a thread-local generator rather
/// than the OS, so that minting one per list request costs no system call; correlation ids need
/// to be unique, not secret.
#[must_use]
pub fn new_correlation_id() -> String {
    let mut random = [0u8; 10];
    for byte in &mut random {
        *byte = fastrand::u8(..);
    }
    let millis = u64::try_from(jiff::Timestamp::now().as_millisecond()).unwrap_or(0);
    uuid::Builder::from_unix_timestamp_millis(millis, &random)
        .into_uuid()
        .to_string()
}

fn is_sane_correlation_id(v: &str) -> bool {
    !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic())
}

fn task_id(path: Result<Path<String>, PathRejection>) -> Result<TaskId, ApiError> {
    let Path(raw) = path.map_err(|e| ApiError::BadRequest(format!("invalid path: {e}")))?;
    Ok(TaskId::parse_owned(raw)?)
}

fn task_response(status: StatusCode, task: &StoredTask) -> Response {
    let mut response = json_response(status, task.body.clone());
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", task.record.version)) {
        headers.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&task.record.correlation_id) {
        headers.insert("x-correlation-id", v);
    }
    response
}

/// The query of `GET /api/tasks`.
#[derive(Debug, Deserialize)]
pub struct ListParams {
    status: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

fn list_query(params: ListParams) -> Result<ListQuery, ApiError> {
    let status = match params.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(Status::parse(s).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "unknown status `{}`: use pending, needs_review, approved or rejected",
                s.escape_debug()
            ))
        })?),
    };
    let limit = match params.limit.as_deref() {
        None | Some("") => DEFAULT_LIMIT,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::BadRequest(format!("`limit` must be a number from 1 to {MAX_LIMIT}"))
            })?,
    };
    let cursor = match params.cursor.as_deref() {
        None | Some("") => None,
        Some(s) => Some(Cursor::decode(s).ok_or_else(|| {
            ApiError::BadRequest("`cursor` is not one this server gave out".to_owned())
        })?),
    };
    Ok(ListQuery {
        status,
        limit,
        cursor,
    })
}

/// `GET /api/tasks?status=&limit=&cursor=`: newest first.
///
/// # Errors
/// 400 for a bad query.
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::BadRequest(format!("invalid query: {e}")))?;
    let query = list_query(params)?;
    let (body, count) = match state.list_cache().get(&query) {
        Some(hit) => hit,
        None => {
            let generation = state.list_cache().generation();
            let page = state.store().list(query.clone()).await?;
            let body = list_body(&page);
            let count = page.tasks.len();
            state
                .list_cache()
                .put(generation, &query, body.clone(), count);
            (body, count)
        }
    };
    state.audit().record(
        AuditEvent::new("task_list", request_correlation_id(&headers), "anonymous").detail(json!({
            "count": count,
            "status": query.status.map(Status::as_str),
            "limit": query.limit,
            "cursor": query.cursor.is_some(),
        })),
    );
    Ok(json_response(StatusCode::OK, body))
}

/// `{"next_cursor":…,"tasks":[…]}`, canonical by construction: keys in order, each task's
/// bytes already canonical.
fn list_body(page: &crate::store::Page) -> Bytes {
    let cursor_json = serde_json::to_string(&page.next_cursor).expect("a string serializes");
    let size: usize = page.tasks.iter().map(|t| t.body.len() + 1).sum();
    let mut body = Vec::with_capacity(size + cursor_json.len() + 32);
    body.extend_from_slice(b"{\"next_cursor\":");
    body.extend_from_slice(cursor_json.as_bytes());
    body.extend_from_slice(b",\"tasks\":[");
    for (i, task) in page.tasks.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&task.body);
    }
    body.extend_from_slice(b"]}");
    Bytes::from(body)
}

/// `GET /api/tasks/{id}`: the record with its computed `status`.
///
/// # Errors
/// 400 for a bad id, 404 when there is no such task.
pub async fn get_one(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = task_id(path)?;
    let Some(task) = state.store().get(&id).await? else {
        return Err(ApiError::NotFound(format!("task `{id}` does not exist")));
    };
    state.audit().record(
        AuditEvent::new("task_read", Arc::clone(&task.correlation_id), "anonymous")
            .task(Arc::clone(&task.id))
            .version_detail(task.status.as_str(), task.record.version),
    );
    Ok(task_response(StatusCode::OK, &task))
}

/// The body of `POST /api/tasks`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTask {
    /// The id; a new UUID when omitted.
    task_id: Option<String>,
    /// What is asked.
    request_text: String,
    /// Criteria.
    #[serde(default)]
    acceptance_criteria: Vec<Criterion>,
    /// Allowed paths.
    #[serde(default)]
    declared_scope: Vec<String>,
    /// An existing correlation id to carry on; a new one when omitted.
    correlation_id: Option<String>,
    /// Pipeline progress, when the task mirrors a ledger.
    pipeline: Option<PipelineState>,
}

/// `POST /api/tasks` (admin): 201 with the record; 409 when the id is taken.
///
/// # Errors
/// 400 for a bad id or body, 409 when it exists, 413/415 from the body extractor.
pub async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateTask>,
) -> Result<Response, ApiError> {
    let id = match &body.task_id {
        Some(raw) => TaskId::parse(raw)?,
        None => TaskId::parse_owned(new_correlation_id())?,
    };
    let correlation_id = match body.correlation_id {
        Some(c) if is_sane_correlation_id(&c) => c,
        Some(_) => {
            return Err(ApiError::BadRequest(
                "`correlation_id` must be 1 to 128 printable ASCII characters".to_owned(),
            ));
        }
        None => new_correlation_id(),
    };
    let now = now_rfc3339();
    let record = TaskRecord {
        task_id: id.to_string(),
        source: Source::Api,
        correlation_id,
        created_at: now.clone(),
        updated_at: now.clone(),
        version: 1,
        request_text: body.request_text,
        acceptance_criteria: body.acceptance_criteria,
        declared_scope: body.declared_scope,
        decision: None,
        history: vec![HistoryEntry {
            at: now,
            event: "created".to_owned(),
            by: Some("admin".to_owned()),
            version: None,
            reason: None,
            extra: std::collections::BTreeMap::new(),
        }],
        ci_status: Value::Null,
        pipeline: body.pipeline,
        extra: std::collections::BTreeMap::new(),
    };
    let task = state.store().create(record).await?;
    state.audit().record(
        AuditEvent::new("task_created", Arc::clone(&task.correlation_id), "admin")
            .task(id.as_str())
            .detail(json!({ "version": task.record.version, "source": "api" })),
    );
    let mut response = task_response(StatusCode::CREATED, &task);
    if let Ok(v) = HeaderValue::from_str(&format!("/api/tasks/{id}")) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

/// The optional body of approve and reject.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    /// Why.
    reason: Option<String>,
    /// Who decides (default `admin`).
    by: Option<String>,
}

/// Parses `If-Match`: a version number, bare or quoted (`"3"`, `W/"3"`); `*` matches any.
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let raw = value
        .to_str()
        .map_err(|_| ApiError::BadRequest("`If-Match` is not ASCII".to_owned()))?
        .trim();
    if raw == "*" {
        return Ok(None);
    }
    let bare = raw.strip_prefix("W/").unwrap_or(raw).trim_matches('"');
    bare.parse::<u64>().map(Some).map_err(|_| {
        ApiError::BadRequest("`If-Match` must be a record version, such as `3`".to_owned())
    })
}

async fn decide(
    state: AppState,
    path: Result<Path<String>, PathRejection>,
    headers: &HeaderMap,
    body: Option<DecisionBody>,
    verdict: Verdict,
) -> Result<Response, ApiError> {
    let id = task_id(path)?;
    let expected = if_match(headers)?;
    let DecisionBody { reason, by } = body.unwrap_or_default();
    let by = match by {
        None => "admin".to_owned(),
        Some(b) if !b.trim().is_empty() && b.chars().count() <= 64 => b,
        Some(_) => {
            return Err(ApiError::BadRequest(
                "`by` must be 1 to 64 characters".to_owned(),
            ));
        }
    };
    let (history_by, history_reason) = (by.clone(), reason.clone());
    let mutation = Box::new(move |record: &mut TaskRecord| {
        let at = now_rfc3339();
        record.decision = Some(Decision {
            verdict,
            by,
            reason,
            at: at.clone(),
        });
        record.history.push(HistoryEntry {
            at,
            event: verdict.as_str().to_owned(),
            by: Some(history_by),
            version: None,
            reason: history_reason,
            extra: std::collections::BTreeMap::new(),
        });
        Ok(())
    });
    let task = state.store().update(id.clone(), expected, mutation).await?;
    let event = match verdict {
        Verdict::Approved => "task_approved",
        Verdict::Rejected => "task_rejected",
    };
    let decision = task.record.decision.as_ref();
    state.audit().record(
        AuditEvent::new(event, Arc::clone(&task.correlation_id), "admin")
            .task(id.as_str())
            .detail(json!({
                "version": task.record.version,
                "by": decision.map(|d| d.by.as_str()),
                "reason": decision.and_then(|d| d.reason.as_deref()),
                "if_match": expected,
            })),
    );
    Ok(task_response(StatusCode::OK, &task))
}

/// `POST /api/tasks/{id}/approve` (admin).
///
/// # Errors
/// 400, 404, 412, 413, 415 as the request deserves.
pub async fn approve(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    OptionalJson(body): OptionalJson<DecisionBody>,
) -> Result<Response, ApiError> {
    decide(state, path, &headers, body, Verdict::Approved).await
}

/// `POST /api/tasks/{id}/reject` (admin).
///
/// # Errors
/// 400, 404, 412, 413, 415 as the request deserves.
pub async fn reject(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    OptionalJson(body): OptionalJson<DecisionBody>,
) -> Result<Response, ApiError> {
    decide(state, path, &headers, body, Verdict::Rejected).await
}
