//! The `openai` provider: the Responses API, `POST {base}/responses` with `Authorization: Bearer`
//! (wire-formats.md §3.1). The answer is the `output_text` parts of the `message` items (reasoning
//! items before them are skipped); `status` must be `completed` (`incomplete` is a truncated
//! answer). Tokens come from `usage.input_tokens`/`output_tokens`; the request id is the
//! `x-request-id` response header. The request sets `store: false`: gatekeeper keeps its own
//! record and needs no server-side copy.

use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use super::http::{
    self, Api, CORRELATION_HEADER, Failure, HttpRequest, Parsed, Secret, str_at, u64_at,
};
use crate::config::{Env, RoleConfig};
use crate::exit::Refusal;

/// The default base URL (SPEC §4); it includes `/v1`.
pub const DEFAULT_BASE: &str = "https://api.openai.com/v1";

/// The settings of one binding.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Base URL without a trailing `/`.
    pub base: String,
    /// `OPENAI_API_KEY`.
    pub key: Secret,
    /// Model.
    pub model: String,
    /// `max_output_tokens`, when the role sets `max_tokens`.
    pub max_tokens: Option<u32>,
}

impl Settings {
    /// Reads a role binding and the environment (`OPENAI_API_KEY`, `OPENAI_BASE_URL`).
    ///
    /// # Errors
    /// A usage refusal when the key or the model is missing.
    pub fn from_role(role: &str, config: &RoleConfig, env: &Env) -> Result<Self, Refusal> {
        let model = http::require_model(role, "openai", config)?;
        let (key, base) = http::key_and_base(
            role,
            "openai",
            env,
            "OPENAI_API_KEY",
            "OPENAI_BASE_URL",
            DEFAULT_BASE,
        )?;
        Ok(Settings {
            base,
            key,
            model,
            max_tokens: config.max_tokens,
        })
    }
}

/// Builds the request (pure).
#[must_use]
pub fn build_request(s: &Settings, prompt: &str, correlation_id: &str) -> HttpRequest {
    let mut body = json!({
        "model": s.model,
        "input": prompt,
        "store": false,
    });
    if let Some(max) = s.max_tokens {
        body["max_output_tokens"] = json!(max);
    }
    HttpRequest {
        url: format!("{}/responses", s.base),
        headers: vec![
            ("content-type", "application/json".to_owned()),
            (CORRELATION_HEADER, correlation_id.to_owned()),
        ],
        auth: (
            "authorization",
            Secret::new(format!("Bearer {}", s.key.expose())),
        ),
        body,
    }
}

/// Parses a response (pure).
///
/// # Errors
/// A [`Failure`]: retryable for 429/5xx (not for `insufficient_quota`), fatal for other
/// statuses, a failed or incomplete response, a refusal, or no text.
pub fn parse_response(status: u16, headers: &HeaderMap, body: &[u8]) -> Result<Parsed, Failure> {
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if status != 200 {
        return Err(error_failure(status, headers, body, request_id.as_deref()));
    }
    let v = http::json_body(body)?;
    match str_at(&v, "/status") {
        Some("completed") => {}
        Some("incomplete") => {
            let reason = str_at(&v, "/incomplete_details/reason").unwrap_or("unknown");
            return Err(Failure::Fatal(format!(
                "the answer is incomplete ({reason}){}; nothing was written",
                if reason == "max_output_tokens" {
                    "; raise `max_tokens` on the role"
                } else {
                    ""
                }
            )));
        }
        Some("failed") => {
            let message = str_at(&v, "/error/message").unwrap_or("no message");
            return Err(Failure::Fatal(format!("the response failed: {message}")));
        }
        Some(other) => {
            return Err(Failure::Fatal(format!(
                "the response is `{other}`, not completed; nothing was written"
            )));
        }
        None => {
            return Err(Failure::Fatal(
                "HTTP 200 but the body is not a response (no `status`); nothing was written"
                    .to_owned(),
            ));
        }
    }
    let mut text = String::new();
    let mut refusal = None;
    for item in v
        .get("output")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|i| str_at(i, "/type") == Some("message"))
    {
        for part in item
            .get("content")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            match str_at(part, "/type") {
                Some("output_text") => text.push_str(str_at(part, "/text").unwrap_or_default()),
                Some("refusal") => refusal = str_at(part, "/refusal").map(str::to_owned),
                _ => {}
            }
        }
    }
    if text.trim().is_empty() {
        return Err(Failure::Fatal(match refusal {
            Some(r) => format!("the model refused: {r}"),
            None => "the answer holds no text; nothing was written".to_owned(),
        }));
    }
    Ok(Parsed {
        text,
        tokens_in: u64_at(&v, "/usage/input_tokens"),
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
    let err = parsed.as_ref().and_then(|v| v.get("error"));
    let (kind, message) = match err {
        Some(e) => (
            str_at(e, "/code")
                .or_else(|| str_at(e, "/type"))
                .unwrap_or("error")
                .to_owned(),
            str_at(e, "/message").unwrap_or("").to_owned(),
        ),
        None => ("error".to_owned(), http::excerpt(body)),
    };
    let mut text = format!("HTTP {status} {kind}: {message}");
    if let Some(id) = request_id {
        text.push_str(&format!(" (request id {id})"));
    }
    // An exhausted quota is a 429 that no retry fixes.
    if kind == "insufficient_quota" {
        return Failure::Fatal(text);
    }
    http::status_failure(status, headers, text)
}

impl Api for Settings {
    fn name(&self) -> &'static str {
        "openai"
    }
    fn model(&self) -> &str {
        &self.model
    }
    fn key_var(&self) -> &'static str {
        "OPENAI_API_KEY"
    }
    fn build(&self, prompt: &str, correlation_id: &str) -> HttpRequest {
        build_request(self, prompt, correlation_id)
    }
    fn parse(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> Result<Parsed, Failure> {
        parse_response(status, headers, body)
    }
}
