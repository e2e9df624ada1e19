//! The `gemini` provider: `POST {base}/v1beta/models/{model}:generateContent` with the
//! `x-goog-api-key` header (wire-formats.md §2). The answer is the text parts of the first
//! candidate (thought parts left out); `finishReason` must be `STOP` (`MAX_TOKENS` is a truncated
//! answer, `SAFETY` and the like a refusal); no candidates on a 200 means the prompt was blocked.
//! Tokens in are `promptTokenCount`, out `candidatesTokenCount + thoughtsTokenCount`; the request
//! id is the body's `responseId`. Error bodies are `{"error":{code,message,status,details}}`;
//! `RetryInfo.retryDelay` is honoured like `Retry-After`.

use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use super::http::{
    self, Api, CORRELATION_HEADER, Failure, HttpRequest, Parsed, Secret, str_at, u64_at,
};
use crate::config::{Env, RoleConfig};
use crate::exit::Refusal;

/// The default base URL (SPEC §4).
pub const DEFAULT_BASE: &str = "https://generativelanguage.googleapis.com";

/// The settings of one binding.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Base URL without a trailing `/`.
    pub base: String,
    /// `GEMINI_API_KEY`.
    pub key: Secret,
    /// Model (`gemini-2.5-pro`; a leading `models/` is accepted).
    pub model: String,
    /// `generationConfig.maxOutputTokens`, when the role sets `max_tokens`.
    pub max_tokens: Option<u32>,
}

impl Settings {
    /// Reads a role binding and the environment (`GEMINI_API_KEY`, `GEMINI_BASE_URL`).
    ///
    /// # Errors
    /// A usage refusal when the key or the model is missing.
    pub fn from_role(role: &str, config: &RoleConfig, env: &Env) -> Result<Self, Refusal> {
        let model = http::require_model(role, "gemini", config)?;
        let (key, base) = http::key_and_base(
            role,
            "gemini",
            env,
            "GEMINI_API_KEY",
            "GEMINI_BASE_URL",
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
    let model = s.model.strip_prefix("models/").unwrap_or(&s.model);
    let mut body = json!({
        "contents": [{"role": "user", "parts": [{"text": prompt}]}],
    });
    if let Some(max) = s.max_tokens {
        body["generationConfig"] = json!({ "maxOutputTokens": max });
    }
    HttpRequest {
        url: format!("{}/v1beta/models/{model}:generateContent", s.base),
        headers: vec![
            ("content-type", "application/json".to_owned()),
            (CORRELATION_HEADER, correlation_id.to_owned()),
        ],
        auth: ("x-goog-api-key", s.key.clone()),
        body,
    }
}

/// Parses a response (pure).
///
/// # Errors
/// A [`Failure`]: retryable for 429/5xx (with `RetryInfo` or `retry-after`), fatal for other
/// statuses, a blocked prompt, a truncated or filtered answer, or no text.
pub fn parse_response(status: u16, headers: &HeaderMap, body: &[u8]) -> Result<Parsed, Failure> {
    if status != 200 {
        return Err(error_failure(status, headers, body));
    }
    let v = http::json_body(body)?;
    let Some(candidate) = v
        .get("candidates")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
    else {
        let reason = str_at(&v, "/promptFeedback/blockReason");
        return Err(Failure::Fatal(match reason {
            Some(r) => format!("the prompt was blocked ({r}); no answer; nothing was written"),
            None => "HTTP 200 without candidates: no answer; nothing was written".to_owned(),
        }));
    };
    let text: String = candidate
        .pointer("/content/parts")
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .filter(|p| p.get("thought").and_then(Value::as_bool) != Some(true))
                .filter_map(|p| str_at(p, "/text"))
                .collect()
        })
        .unwrap_or_default();
    match str_at(candidate, "/finishReason") {
        Some("STOP") => {}
        Some("MAX_TOKENS") => {
            return Err(Failure::Fatal(
                "the answer was cut off at the output token limit (finishReason MAX_TOKENS); raise `max_tokens` on the role; nothing was written".to_owned(),
            ));
        }
        Some(other) => {
            return Err(Failure::Fatal(format!(
                "the answer stopped for {other}; nothing was written"
            )));
        }
        None => {
            return Err(Failure::Fatal(
                "HTTP 200 but the candidate has no finishReason: the answer may be incomplete; nothing was written".to_owned(),
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
        tokens_in: u64_at(&v, "/usageMetadata/promptTokenCount"),
        tokens_out: u64_at(&v, "/usageMetadata/candidatesTokenCount")
            + u64_at(&v, "/usageMetadata/thoughtsTokenCount"),
        request_id: str_at(&v, "/responseId").map(str::to_owned),
        model: str_at(&v, "/modelVersion").map(str::to_owned),
    })
}

fn error_failure(status: u16, headers: &HeaderMap, body: &[u8]) -> Failure {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let Some(err) = parsed.as_ref().and_then(|v| v.get("error")) else {
        return http::status_failure(
            status,
            headers,
            format!("HTTP {status}: {}", http::excerpt(body)),
        );
    };
    let code = str_at(err, "/status").unwrap_or("ERROR");
    let message = str_at(err, "/message").unwrap_or("");
    let details = err
        .get("details")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let reason = details.iter().find_map(|d| str_at(d, "/reason"));
    let mut text = format!("HTTP {status} {code}: {message}");
    if let Some(r) = reason {
        text.push_str(&format!(" ({r})"));
    }
    let hint = details
        .iter()
        .find_map(|d| str_at(d, "/retryDelay"))
        .and_then(http::proto_duration);
    match http::status_failure(status, headers, text) {
        Failure::Retryable {
            message,
            retry_after,
        } => Failure::Retryable {
            message,
            retry_after: hint.or(retry_after),
        },
        fatal @ Failure::Fatal(_) => fatal,
    }
}

impl Api for Settings {
    fn name(&self) -> &'static str {
        "gemini"
    }
    fn model(&self) -> &str {
        &self.model
    }
    fn key_var(&self) -> &'static str {
        "GEMINI_API_KEY"
    }
    fn build(&self, prompt: &str, correlation_id: &str) -> HttpRequest {
        build_request(self, prompt, correlation_id)
    }
    fn parse(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> Result<Parsed, Failure> {
        parse_response(status, headers, body)
    }
}
