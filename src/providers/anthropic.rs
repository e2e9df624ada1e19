//! The `anthropic` provider: the Messages API, `POST {base}/v1/messages` with `x-api-key` and
//! `anthropic-version: 2023-06-01` (wire-formats.md §1). The answer is the concatenated `text`
//! blocks; `stop_reason` must be `end_turn` or `stop_sequence` (`max_tokens` is a truncated answer
//! and fails the step); tokens in are `input_tokens` plus the cache counts, tokens out
//! `output_tokens`; the request id is the `request-id` response header.

use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use super::http::{
    self, Api, CORRELATION_HEADER, Failure, HttpRequest, Parsed, Secret, str_at, u64_at,
};
use crate::config::{Env, RoleConfig};
use crate::exit::Refusal;

/// The default base URL (SPEC §4).
pub const DEFAULT_BASE: &str = "https://api.anthropic.com";
/// The API version header value the SDKs send.
pub const API_VERSION: &str = "2023-06-01";
/// `max_tokens` when the role sets none.
pub const DEFAULT_MAX_TOKENS: u32 = 8192;

/// The settings of one binding.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Base URL without a trailing `/`.
    pub base: String,
    /// `ANTHROPIC_API_KEY`.
    pub key: Secret,
    /// Model.
    pub model: String,
    /// `max_tokens`.
    pub max_tokens: u32,
}

impl Settings {
    /// Reads a role binding and the environment (`ANTHROPIC_API_KEY`, `ANTHROPIC_BASE_URL`).
    ///
    /// # Errors
    /// A usage refusal when the key or the model is missing.
    pub fn from_role(role: &str, config: &RoleConfig, env: &Env) -> Result<Self, Refusal> {
        let model = http::require_model(role, "anthropic", config)?;
        let (key, base) = http::key_and_base(
            role,
            "anthropic",
            env,
            "ANTHROPIC_API_KEY",
            "ANTHROPIC_BASE_URL",
            DEFAULT_BASE,
        )?;
        Ok(Settings {
            base,
            key,
            model,
            max_tokens: config.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        })
    }
}

/// Builds the request (pure).
#[must_use]
pub fn build_request(s: &Settings, prompt: &str, correlation_id: &str) -> HttpRequest {
    HttpRequest {
        url: format!("{}/v1/messages", s.base),
        headers: vec![
            ("content-type", "application/json".to_owned()),
            ("anthropic-version", API_VERSION.to_owned()),
            (CORRELATION_HEADER, correlation_id.to_owned()),
        ],
        auth: ("x-api-key", s.key.clone()),
        body: json!({
            "model": s.model,
            "max_tokens": s.max_tokens,
            "messages": [{"role": "user", "content": prompt}],
        }),
    }
}

/// Parses a response (pure).
///
/// # Errors
/// A [`Failure`]: retryable for 429/5xx/529 (with `retry-after`), fatal for other statuses,
/// a body that is not a message, a truncated or refused answer, or no text.
pub fn parse_response(status: u16, headers: &HeaderMap, body: &[u8]) -> Result<Parsed, Failure> {
    let request_id = headers
        .get("request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if status != 200 {
        return Err(error_failure(status, headers, body, request_id.as_deref()));
    }
    let v = http::json_body(body)?;
    if str_at(&v, "/type") == Some("error") {
        // An error object with a 200 (a proxy, or a mid-stream error forwarded whole).
        let kind = str_at(&v, "/error/type").unwrap_or("error");
        let message = str_at(&v, "/error/message").unwrap_or("");
        let failure = format!("HTTP 200 carrying {kind}: {message}");
        return Err(if kind == "overloaded_error" || kind == "api_error" {
            Failure::Retryable {
                message: failure,
                retry_after: None,
            }
        } else {
            Failure::Fatal(failure)
        });
    }
    let Some(blocks) = v.get("content").and_then(Value::as_array) else {
        return Err(Failure::Fatal(
            "HTTP 200 but the body is not a message (no `content` list); nothing was written"
                .to_owned(),
        ));
    };
    let text: String = blocks
        .iter()
        .filter(|b| str_at(b, "/type") == Some("text"))
        .filter_map(|b| str_at(b, "/text"))
        .collect();
    match str_at(&v, "/stop_reason") {
        Some("end_turn" | "stop_sequence") => {}
        Some("max_tokens") => {
            return Err(Failure::Fatal(format!(
                "the answer was cut off at max_tokens ({} output tokens); raise `max_tokens` on the role; nothing was written",
                u64_at(&v, "/usage/output_tokens")
            )));
        }
        Some("refusal") => {
            return Err(Failure::Fatal(
                "the model refused to answer (stop_reason `refusal`)".to_owned(),
            ));
        }
        Some(other) => {
            return Err(Failure::Fatal(format!(
                "the answer stopped for `{other}`, which gatekeeper cannot use; nothing was written"
            )));
        }
        None => {
            return Err(Failure::Fatal(
                "HTTP 200 but the message has no `stop_reason`: the answer may be incomplete; nothing was written".to_owned(),
            ));
        }
    }
    if text.trim().is_empty() {
        return Err(Failure::Fatal(
            "the answer holds no text; nothing was written".to_owned(),
        ));
    }
    Ok(Parsed {
        text,
        tokens_in: u64_at(&v, "/usage/input_tokens")
            + u64_at(&v, "/usage/cache_creation_input_tokens")
            + u64_at(&v, "/usage/cache_read_input_tokens"),
        tokens_out: u64_at(&v, "/usage/output_tokens"),
        request_id: request_id.or_else(|| str_at(&v, "/id").map(str::to_owned)),
        model: str_at(&v, "/model").map(str::to_owned),
    })
}

fn error_failure(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    request_id: Option<&str>,
) -> Failure {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let (kind, message) = match &parsed {
        Some(v) if v.pointer("/error").is_some() => (
            str_at(v, "/error/type").unwrap_or("error").to_owned(),
            str_at(v, "/error/message").unwrap_or("").to_owned(),
        ),
        _ => ("error".to_owned(), http::excerpt(body)),
    };
    let request_id = request_id.map(str::to_owned).or_else(|| {
        parsed
            .as_ref()
            .and_then(|v| str_at(v, "/request_id").map(str::to_owned))
    });
    let mut text = format!("HTTP {status} {kind}: {message}");
    if let Some(id) = request_id {
        text.push_str(&format!(" (request id {id})"));
    }
    // A spend limit does not lift on retry.
    let spend_limit = parsed
        .as_ref()
        .and_then(|v| str_at(v, "/error/details/error_code"))
        == Some("enforced_spend_limit_reached");
    if spend_limit {
        return Failure::Fatal(text);
    }
    http::status_failure(status, headers, text)
}

impl Api for Settings {
    fn name(&self) -> &'static str {
        "anthropic"
    }
    fn model(&self) -> &str {
        &self.model
    }
    fn key_var(&self) -> &'static str {
        "ANTHROPIC_API_KEY"
    }
    fn build(&self, prompt: &str, correlation_id: &str) -> HttpRequest {
        build_request(self, prompt, correlation_id)
    }
    fn parse(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> Result<Parsed, Failure> {
        parse_response(status, headers, body)
    }
}
