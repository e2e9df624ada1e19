//! `POST /webhooks/telegram` (SPEC §8.6): a Telegram `Update` carrying a text message becomes an
//! SSOT task, structured without any judgement.
//!
//! When `TELEGRAM_SECRET_TOKEN` is set, `X-Telegram-Bot-Api-Secret-Token` must match it (constant
//! time), else 401. The task id is the first 12 hex digits of sha256(`<chat_id>:<message_id>`), so
//! the same message always names the same task: the store's create refuses an existing id, which
//! makes concurrent duplicates one task and the others `telegram_dedup_hit`. Updates without a
//! text message are answered 200 without a task (Telegram would otherwise redeliver them) and
//! audited as `telegram_update_ignored`.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::error::{ApiError, json_response};
use super::github::RawBody;
use super::state::AppState;
use super::tasks::new_correlation_id;
use crate::audit::AuditEvent;
use crate::store::{HistoryEntry, Source, StoreError, TaskRecord, now_rfc3339};

/// The header Telegram sends with the webhook's secret token.
pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

/// The SSOT task id of a message: the first 12 hex digits of sha256(`<chat_id>:<message_id>`).
#[must_use]
pub fn task_id_of(chat_id: i64, message_id: i64) -> String {
    let digest = Sha256::digest(format!("{chat_id}:{message_id}").as_bytes());
    hex::encode(digest)[..12].to_owned()
}

/// The facts of a text message in an update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextMessage {
    /// `update_id`.
    pub update_id: Option<i64>,
    /// `message.chat.id`.
    pub chat_id: i64,
    /// `message.message_id`.
    pub message_id: i64,
    /// `message.text`.
    pub text: String,
    /// `message.date` (Unix seconds).
    pub date: Option<i64>,
}

/// The text message of an update, or why there is none.
///
/// # Errors
/// A short reason (`not_a_message`, `no_text`, `malformed_message`) when the update carries no
/// text message.
pub fn text_message(update: &Value) -> Result<TextMessage, &'static str> {
    let Some(message) = update.get("message") else {
        return Err("not_a_message");
    };
    let chat_id = message
        .get("chat")
        .and_then(|c| c.get("id"))
        .and_then(Value::as_i64);
    let message_id = message.get("message_id").and_then(Value::as_i64);
    let (Some(chat_id), Some(message_id)) = (chat_id, message_id) else {
        return Err("malformed_message");
    };
    let Some(text) = message
        .get("text")
        .and_then(Value::as_str)
        .filter(|t| !t.trim().is_empty())
    else {
        return Err("no_text");
    };
    Ok(TextMessage {
        update_id: update.get("update_id").and_then(Value::as_i64),
        chat_id,
        message_id,
        text: text.to_owned(),
        date: message.get("date").and_then(Value::as_i64),
    })
}

fn answer(body: &Value) -> Response {
    json_response(
        StatusCode::OK,
        Bytes::from(serde_json::to_vec(body).expect("JSON serializes")),
    )
}

/// The SSOT record of a message.
#[must_use]
pub fn record_of(message: &TextMessage) -> TaskRecord {
    let task_id = task_id_of(message.chat_id, message.message_id);
    let now = now_rfc3339();
    let mut extra = BTreeMap::new();
    extra.insert("chat_id".to_owned(), json!(message.chat_id));
    extra.insert("message_id".to_owned(), json!(message.message_id));
    if let Some(u) = message.update_id {
        extra.insert("update_id".to_owned(), json!(u));
    }
    if let Some(d) = message.date {
        extra.insert("message_date".to_owned(), json!(d));
    }
    TaskRecord {
        task_id: task_id.clone(),
        source: Source::Telegram,
        correlation_id: task_id,
        created_at: now.clone(),
        updated_at: now.clone(),
        version: 1,
        request_text: message.text.clone(),
        acceptance_criteria: Vec::new(),
        declared_scope: Vec::new(),
        decision: None,
        history: vec![HistoryEntry {
            at: now,
            event: "created".to_owned(),
            by: Some("telegram".to_owned()),
            version: None,
            reason: None,
            extra: BTreeMap::new(),
        }],
        ci_status: Value::Null,
        pipeline: None,
        extra,
    }
}

/// `POST /webhooks/telegram`.
///
/// # Errors
/// 401 when the secret token is set and the header does not match; 400 when the body is not a
/// JSON object; 500 when the store cannot write.
pub async fn handler(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    if let Some(secret) = state.webhooks().telegram_secret() {
        let presented = headers
            .get(SECRET_HEADER)
            .map_or(&[][..], axum::http::HeaderValue::as_bytes);
        if !bool::from(presented.ct_eq(secret)) {
            return Err(ApiError::Unauthorized(
                "missing or wrong X-Telegram-Bot-Api-Secret-Token",
            ));
        }
    }
    let update: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::InvalidJson(format!("the body is not a Telegram Update: {e}")))?;
    if !update.is_object() {
        return Err(ApiError::InvalidJson(
            "the body is not a Telegram Update (a JSON object)".to_owned(),
        ));
    }
    let message = match text_message(&update) {
        Ok(m) => m,
        Err(reason) => {
            state.audit().record(
                AuditEvent::new("telegram_update_ignored", new_correlation_id(), "telegram")
                    .detail(json!({
                        "reason": reason,
                        "update_id": update.get("update_id").and_then(Value::as_i64),
                    })),
            );
            return Ok(answer(
                &json!({ "ok": true, "task_id": null, "ignored": reason }),
            ));
        }
    };
    let record = record_of(&message);
    let task_id = record.task_id.clone();
    let detail = json!({
        "chat_id": message.chat_id,
        "message_id": message.message_id,
        "update_id": message.update_id,
    });
    let created = match state.store().create(record).await {
        Ok(_) => true,
        Err(StoreError::Exists(_)) => false,
        Err(e) => return Err(e.into()),
    };
    let event = if created {
        "telegram_task_created"
    } else {
        "telegram_dedup_hit"
    };
    state.audit().record(
        AuditEvent::new(event, task_id.clone(), "telegram")
            .task(task_id.clone())
            .detail(detail),
    );
    Ok(answer(&json!({
        "ok": true,
        "task_id": task_id,
        "created": created,
        "dedup_hit": !created,
        "correlation_id": task_id,
    })))
}
