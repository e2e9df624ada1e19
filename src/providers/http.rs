//! What the HTTP providers share (SPEC §4): the secret type, the request a pure `build_request`
//! describes, the retry loop (exponential backoff with jitter that honours `Retry-After`), the
//! per-attempt timeout, and the blocking bridge from the synchronous [`Provider`] trait to a
//! current-thread tokio runtime running reqwest.
//!
//! Each API (`anthropic.rs`, `gemini.rs`, `openai.rs`) only knows its wire format: a pure
//! `build_request` and a pure `parse_response`. This module does the I/O.

use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use super::{Answer, CallRecord, DEFAULT_TIMEOUT, Provider, ProviderError, Request};
use crate::config::{Env, RoleConfig, SECRET_VARS};
use crate::exit::Refusal;
use crate::secrets;

/// Retries on retryable errors when the role sets none (SPEC §4).
pub const DEFAULT_RETRIES: u32 = 3;

/// The header carrying the task's correlation id on every request (SPEC §2).
pub const CORRELATION_HEADER: &str = "x-correlation-id";

/// A secret (an API key). `Debug` and `Display` never show it; only [`Secret::expose`] does, at
/// the one place that puts it on the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    #[must_use]
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the request header only.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A `POST` with a JSON body, as a pure `build_request` describes it.
#[derive(Clone, Debug)]
pub struct HttpRequest {
    /// The full URL.
    pub url: String,
    /// Headers that carry no secret (lower-case names).
    pub headers: Vec<(&'static str, String)>,
    /// The authentication header: name and value (the value is a secret).
    pub auth: (&'static str, Secret),
    /// The JSON body.
    pub body: Value,
}

impl HttpRequest {
    /// A header's value (tests and the mock checks).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What a successful call gave.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// The answer text.
    pub text: String,
    /// Input tokens (including cached input where the API counts it apart).
    pub tokens_in: u64,
    /// Output tokens (including reasoning/thinking tokens).
    pub tokens_out: u64,
    /// The provider's request or response id.
    pub request_id: Option<String>,
    /// The model that answered, when the API says.
    pub model: Option<String>,
}

/// Why an attempt did not give an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Worth another attempt (429, 500, 502, 503, 529, connection errors), after `retry_after`
    /// when the server said so.
    Retryable {
        /// Status and message.
        message: String,
        /// The server's `Retry-After` (or equivalent), if any.
        retry_after: Option<Duration>,
    },
    /// Not worth another attempt (4xx, a malformed, empty or truncated answer, a timeout).
    Fatal(String),
}

impl Failure {
    /// The message.
    #[must_use]
    pub fn message(&self) -> &str {
        match self {
            Failure::Retryable { message, .. } | Failure::Fatal(message) => message,
        }
    }
}

/// True for the statuses SPEC §4 retries: 429, 500, 502, 503, 529.
#[must_use]
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 529)
}

/// The server's retry hint: `retry-after-ms` (milliseconds), else `retry-after` as seconds
/// (fractions allowed) or as an HTTP date.
#[must_use]
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = get("retry-after-ms")
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let value = get("retry-after")?;
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(value)
        .ok()?;
    let now = jiff::Timestamp::now();
    let wait = at.duration_since(now);
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

/// Parses a protobuf duration string (`"38s"`, `"1.5s"`), as in Gemini's `RetryInfo.retryDelay`.
#[must_use]
pub fn proto_duration(s: &str) -> Option<Duration> {
    let secs: f64 = s.trim().strip_suffix('s')?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// A status failure: retryable or fatal by status, with the server's retry hint. `x-should-retry:
/// false` makes any status fatal (quota and spend limits that no retry fixes).
#[must_use]
pub fn status_failure(status: u16, headers: &HeaderMap, message: String) -> Failure {
    let should_retry = headers
        .get("x-should-retry")
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    if is_retryable_status(status) && should_retry != Some("false") {
        Failure::Retryable {
            message,
            retry_after: retry_after(headers),
        }
    } else {
        Failure::Fatal(message)
    }
}

/// Parses a 200 body as JSON, failing cleanly on an empty or truncated one.
///
/// # Errors
/// A fatal failure naming what was wrong with the body.
pub fn json_body(body: &[u8]) -> Result<Value, Failure> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Failure::Fatal(
            "HTTP 200 with an empty body; nothing was written".to_owned(),
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        let what = if e.is_eof() {
            "a truncated JSON body"
        } else {
            "a body that is not valid JSON"
        };
        Failure::Fatal(format!("HTTP 200 with {what} ({e}); nothing was written"))
    })
}

/// A short, single-line excerpt of a body that is not the expected JSON (for error messages).
#[must_use]
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.is_empty() {
        return "(empty body)".to_owned();
    }
    let mut out: String = one_line.chars().take(200).collect();
    if one_line.chars().count() > 200 {
        out.push('…');
    }
    out
}

/// The string at a JSON pointer, if any.
#[must_use]
pub fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

/// The unsigned integer at a JSON pointer, 0 when absent.
#[must_use]
pub fn u64_at(v: &Value, pointer: &str) -> u64 {
    v.pointer(pointer).and_then(Value::as_u64).unwrap_or(0)
}

/// The retry policy: at most `retries` retries, backoff `base · 2^n` capped at `max`, less up to
/// 25 % jitter; a server hint is waited at least, and a hint above `max_retry_after` ends the
/// call instead of stalling it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub retries: u32,
    /// The first backoff.
    pub base: Duration,
    /// The largest backoff.
    pub max: Duration,
    /// The longest server hint gatekeeper waits.
    pub max_retry_after: Duration,
}

impl RetryPolicy {
    /// The policy with `retries` retries and the default delays (0.5 s doubling to 8 s; hints up
    /// to 60 s).
    #[must_use]
    pub fn new(retries: u32) -> Self {
        RetryPolicy {
            retries,
            base: Duration::from_millis(500),
            max: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
        }
    }

    /// The delay before retry number `retry` (0-based), given the server's hint.
    #[must_use]
    pub fn delay(&self, retry: u32, hint: Option<Duration>, rng: &mut fastrand::Rng) -> Duration {
        let factor = 2u32.saturating_pow(retry.min(16));
        let backoff = self.base.saturating_mul(factor).min(self.max);
        let jittered = backoff.mul_f64(1.0 - 0.25 * rng.f64());
        match hint {
            Some(h) => h.max(jittered),
            None => jittered,
        }
    }
}

/// One attempt's outcome.
pub type AttemptResult<T> = Result<T, Failure>;

/// The result of [`retry`]: the value or the last error's message, and the attempts made.
#[derive(Debug)]
pub struct Retried<T> {
    /// The value, or the last error's message.
    pub result: Result<T, String>,
    /// Attempts made (1 without retries).
    pub attempts: u32,
}

/// The retry loop (matklad's "Retry Loop"): a bounded loop, no sleep after the last attempt, the
/// last real error returned. Sleeps with `tokio::time::sleep`, so tests can pause time.
pub async fn retry<T, F, Fut>(policy: RetryPolicy, rng: &mut fastrand::Rng, mut f: F) -> Retried<T>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = AttemptResult<T>>,
{
    let mut last = String::new();
    for attempt in 0..=policy.retries {
        match f(attempt).await {
            Ok(v) => {
                return Retried {
                    result: Ok(v),
                    attempts: attempt + 1,
                };
            }
            Err(Failure::Fatal(message)) => {
                return Retried {
                    result: Err(message),
                    attempts: attempt + 1,
                };
            }
            Err(Failure::Retryable {
                message,
                retry_after,
            }) => {
                if attempt == policy.retries {
                    last = message;
                    break;
                }
                if let Some(hint) = retry_after.filter(|h| *h > policy.max_retry_after) {
                    return Retried {
                        result: Err(format!(
                            "{message} (the server asks to retry after {} s, longer than gatekeeper waits; try again later)",
                            hint.as_secs()
                        )),
                        attempts: attempt + 1,
                    };
                }
                last = message;
                tokio::time::sleep(policy.delay(attempt, retry_after, rng)).await;
            }
        }
    }
    let attempts = policy.retries + 1;
    Retried {
        result: Err(format!(
            "{last} (gave up after {attempts} attempt{})",
            if attempts == 1 { "" } else { "s" }
        )),
        attempts,
    }
}

/// Runs a future to completion on a fresh current-thread runtime. When called from inside a
/// runtime (a server running the pipeline), it runs on a scoped thread so it never nests runtimes.
///
/// # Errors
/// When the runtime cannot be built.
pub fn block_on<F>(future: F) -> std::io::Result<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    let run = move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map(|rt| rt.block_on(future))
    };
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| {
            s.spawn(run)
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the provider thread panicked")))
        })
    } else {
        run()
    }
}

/// An HTTP client: rustls with the ring provider, no system proxy lookup; `HTTPS_PROXY`,
/// `ALL_PROXY` and `NO_PROXY` are read from the injected environment.
///
/// # Errors
/// When the client cannot be built (a bad proxy URL).
pub fn client(env: &Env) -> Result<reqwest::Client, String> {
    // Installing twice is harmless: the second call reports the first provider and changes nothing.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(30))
        .user_agent(concat!("gatekeeper/", env!("CARGO_PKG_VERSION")));
    let proxy = ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
        .iter()
        .find_map(|k| env.get(k));
    if let Some(url) = proxy {
        let no_proxy = ["NO_PROXY", "no_proxy"]
            .iter()
            .find_map(|k| env.get(k))
            .and_then(reqwest::NoProxy::from_string);
        let proxy = reqwest::Proxy::all(url)
            .map_err(|e| format!("the proxy URL in HTTPS_PROXY/ALL_PROXY is not usable: {e}"))?
            .no_proxy(no_proxy);
        builder = builder.proxy(proxy);
    }
    builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// A raw HTTP response.
#[derive(Clone, Debug)]
pub struct RawResponse {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// Sends one request and reads the whole body, within `timeout`.
///
/// # Errors
/// Connection errors are retryable; a timeout is fatal (another 300 s wait rarely helps).
pub async fn send(
    client: &reqwest::Client,
    request: &HttpRequest,
    timeout: Duration,
) -> AttemptResult<RawResponse> {
    let mut headers = HeaderMap::new();
    for (name, value) in &request.headers {
        let value = HeaderValue::from_str(value).map_err(|_| {
            Failure::Fatal(format!("header `{name}` has a value HTTP cannot carry"))
        })?;
        headers.insert(HeaderName::from_static(name), value);
    }
    let mut auth = HeaderValue::from_str(request.auth.1.expose()).map_err(|_| {
        Failure::Fatal("the API key holds characters HTTP headers cannot carry".to_owned())
    })?;
    auth.set_sensitive(true);
    headers.insert(HeaderName::from_static(request.auth.0), auth);
    let body = serde_json::to_vec(&request.body)
        .map_err(|e| Failure::Fatal(format!("cannot encode the request: {e}")))?;
    let call = async {
        let response = client
            .post(&request.url)
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|e| connection_failure(&e))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|e| connection_failure(&e))?;
        Ok(RawResponse {
            status,
            headers,
            body: body.to_vec(),
        })
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result,
        Err(_) => Err(Failure::Fatal(format!(
            "no complete answer within the timeout of {} (set `timeout` on the role to wait longer)",
            humantime::format_duration(timeout)
        ))),
    }
}

fn connection_failure(e: &reqwest::Error) -> Failure {
    // reqwest's Display names the URL but never headers; walk the sources for the cause.
    let mut message = if e.is_connect() {
        "connection failed".to_owned()
    } else if e.is_body() || e.is_decode() {
        "the connection broke while reading the answer".to_owned()
    } else {
        "the request failed".to_owned()
    };
    let mut source = std::error::Error::source(e);
    let mut causes = Vec::new();
    while let Some(s) = source {
        causes.push(s.to_string());
        source = s.source();
    }
    if let Some(cause) = causes.last() {
        message.push_str(": ");
        message.push_str(cause);
    }
    Failure::Retryable {
        message,
        retry_after: None,
    }
}

/// One HTTP API's wire format.
pub trait Api: Send + Sync {
    /// The provider name (`anthropic`, `gemini`, `openai`).
    fn name(&self) -> &'static str;
    /// The configured model.
    fn model(&self) -> &str;
    /// The environment variable holding the key (named in hints).
    fn key_var(&self) -> &'static str;
    /// Builds the request for a prompt (pure).
    fn build(&self, prompt: &str, correlation_id: &str) -> HttpRequest;
    /// Parses a response (pure).
    ///
    /// # Errors
    /// A [`Failure`] for an error status or an unusable answer.
    fn parse(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> Result<Parsed, Failure>;
}

/// The common settings of the HTTP providers.
#[derive(Clone, Debug)]
pub struct Common {
    /// Retries.
    pub retries: u32,
    /// Per-attempt timeout.
    pub timeout: Duration,
}

impl Common {
    /// Reads `retries` and `timeout` from a role binding.
    #[must_use]
    pub fn from_role(config: &RoleConfig) -> Self {
        Common {
            retries: config.retries.unwrap_or(DEFAULT_RETRIES),
            timeout: config.timeout.unwrap_or(DEFAULT_TIMEOUT),
        }
    }
}

/// Reads the API key and base URL of a provider from the injected environment.
///
/// # Errors
/// A usage refusal when the key is missing.
pub fn key_and_base(
    role: &str,
    provider: &str,
    env: &Env,
    key_var: &str,
    base_var: &str,
    default_base: &str,
) -> Result<(Secret, String), Refusal> {
    let key = env.get(key_var).map(Secret::new).ok_or_else(|| {
        Refusal::usage(format!(
            "`roles.{role}` uses provider `{provider}`, but {key_var} is not set"
        ))
        .hint(format!(
            "export {key_var}=… (keys come from the environment, never from gatekeeper.yaml)"
        ))
    })?;
    let base = env
        .get(base_var)
        .unwrap_or(default_base)
        .trim_end_matches('/')
        .to_owned();
    Ok((key, base))
}

/// The model of a role binding.
///
/// # Errors
/// A usage refusal when none is set.
pub fn require_model(role: &str, provider: &str, config: &RoleConfig) -> Result<String, Refusal> {
    config
        .model
        .clone()
        .filter(|m| !m.trim().is_empty())
        .ok_or_else(|| {
            Refusal::usage(format!(
                "`roles.{role}` uses provider `{provider}` without `model`"
            ))
            .hint(format!(
                "add `model: …` under `roles.{role}` in gatekeeper.yaml"
            ))
        })
}

/// An HTTP provider: one API plus the shared retry loop, timeout and redaction.
pub struct HttpProvider<A: Api> {
    api: A,
    common: Common,
    env: Env,
}

impl<A: Api> fmt::Debug for HttpProvider<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpProvider")
            .field("api", &self.api.name())
            .field("model", &self.api.model())
            .field("common", &self.common)
            .finish_non_exhaustive()
    }
}

impl<A: Api> HttpProvider<A> {
    /// Wraps an API.
    pub fn new(api: A, common: Common, env: &Env) -> Self {
        HttpProvider {
            api,
            common,
            env: env.clone(),
        }
    }

    /// Removes every configured secret (and known token shapes) from a message.
    fn scrub(&self, message: &str) -> String {
        let known: Vec<(&str, &str)> = SECRET_VARS
            .iter()
            .filter_map(|k| self.env.get(k).map(|v| (*k, v)))
            .collect();
        secrets::redact(message, &known).0
    }

    async fn call(&self, request: &HttpRequest) -> Retried<Parsed> {
        let client = match client(&self.env) {
            Ok(c) => c,
            Err(e) => {
                return Retried {
                    result: Err(e),
                    attempts: 0,
                };
            }
        };
        let mut rng = fastrand::Rng::new();
        retry(RetryPolicy::new(self.common.retries), &mut rng, |_| async {
            let raw = send(&client, request, self.common.timeout).await?;
            self.api.parse(raw.status, &raw.headers, &raw.body)
        })
        .await
    }
}

impl<A: Api> Provider for HttpProvider<A> {
    fn complete(&self, request: &Request<'_>) -> Result<Answer, ProviderError> {
        let started = Instant::now();
        let http = self.api.build(request.prompt, request.correlation_id);
        let fail = |message: String, attempts: u32| ProviderError {
            provider: self.api.name().to_owned(),
            message: self.scrub(&message),
            record: Some(Box::new(CallRecord {
                provider: self.api.name().to_owned(),
                model: Some(self.api.model().to_owned()),
                duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                attempts,
                ..CallRecord::default()
            })),
        };
        let retried = block_on(self.call(&http))
            .map_err(|e| fail(format!("cannot start the HTTP runtime: {e}"), 0))?;
        let parsed = retried.result.map_err(|message| {
            let hint = if message.contains("HTTP 401")
                || message.contains("HTTP 403")
                || message.contains("API_KEY_INVALID")
            {
                format!(" — check {}", self.api.key_var())
            } else {
                String::new()
            };
            fail(format!("{message}{hint}"), retried.attempts)
        })?;
        Ok(Answer {
            text: parsed.text,
            record: CallRecord {
                provider: self.api.name().to_owned(),
                model: Some(parsed.model.unwrap_or_else(|| self.api.model().to_owned())),
                duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                tokens_in: parsed.tokens_in,
                tokens_out: parsed.tokens_out,
                attempts: retried.attempts,
                request_id: parsed.request_id,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("sk-ant-very-secret");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(format!("{s:?}"), "Secret([redacted])");
        assert_eq!(s.expose(), "sk-ant-very-secret");
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(
            retry_after(&headers(&[("retry-after", "2")])),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", "0.5")])),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after-ms", "250"), ("retry-after", "9")])),
            Some(Duration::from_millis(250))
        );
        let past = retry_after(&headers(&[(
            "retry-after",
            "Sun, 06 Nov 1994 08:49:37 GMT",
        )]));
        assert_eq!(past, Some(Duration::ZERO));
        let soon = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(30);
        let http_date = jiff::fmt::rfc2822::DateTimePrinter::new()
            .timestamp_to_rfc9110_string(&soon)
            .unwrap();
        let d = retry_after(&headers(&[("retry-after", &http_date)])).unwrap();
        assert!(
            d > Duration::from_secs(25) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")])), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn statuses() {
        for s in [429, 500, 502, 503, 529] {
            assert!(matches!(
                status_failure(s, &HeaderMap::new(), "x".into()),
                Failure::Retryable { .. }
            ));
        }
        for s in [400, 401, 403, 404, 413, 504] {
            assert!(matches!(
                status_failure(s, &HeaderMap::new(), "x".into()),
                Failure::Fatal(_)
            ));
        }
        assert!(matches!(
            status_failure(429, &headers(&[("x-should-retry", "false")]), "x".into()),
            Failure::Fatal(_)
        ));
    }

    #[test]
    fn bodies() {
        assert!(
            json_body(b"  ")
                .unwrap_err()
                .message()
                .contains("empty body")
        );
        assert!(
            json_body(br#"{"a": [1, 2"#)
                .unwrap_err()
                .message()
                .contains("truncated")
        );
        assert!(
            json_body(b"<html>")
                .unwrap_err()
                .message()
                .contains("not valid JSON")
        );
        assert_eq!(proto_duration("38s"), Some(Duration::from_secs(38)));
        assert_eq!(proto_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(proto_duration("x"), None);
        assert_eq!(excerpt(b"a\n  b"), "a b");
    }

    #[test]
    fn delay_schedule_is_bounded() {
        let p = RetryPolicy::new(10);
        let mut rng = fastrand::Rng::with_seed(7);
        for retry in 0..10 {
            let d = p.delay(retry, None, &mut rng);
            let full = Duration::from_millis(500)
                .saturating_mul(2u32.pow(retry))
                .min(Duration::from_secs(8));
            assert!(d <= full && d >= full.mul_f64(0.75), "{retry}: {d:?}");
        }
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(3)), &mut rng),
            Duration::from_secs(3)
        );
    }
}
