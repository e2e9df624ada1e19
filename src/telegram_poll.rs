//! `gatekeeper telegram poll` (SPEC §8.6): long-polls the Bot API's `getUpdates` and posts each
//! update to the backend's `POST /webhooks/telegram`.
//!
//! Wire format (Bot API): `GET {base}/bot<token>/getUpdates?offset=&timeout=` answers
//! `{"ok":true,"result":[Update]}` or `{"ok":false,"error_code":…,"description":…,
//! "parameters":{"retry_after":…}}`. After each update the backend accepted, the next offset
//! (`update_id + 1`) is written atomically to the offset file, so a restart reprocesses nothing;
//! an update the backend did not take stops the round and is fetched again next time. Errors back
//! off (`retry_after` when Telegram gives one, else doubling from 1 s to 60 s).
//!
//! The bot token is part of every request URL: no message leaving this module contains it
//! ([`scrub`], and transport errors drop their URL).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};
use serde_json::Value;

/// The default Bot API base.
pub const DEFAULT_API_BASE: &str = "https://api.telegram.org";

/// What the poller needs.
#[derive(Clone)]
pub struct PollConfig {
    /// `TELEGRAM_API_BASE` (no trailing slash needed).
    pub api_base: String,
    /// `BOT_TOKEN`.
    pub token: String,
    /// The backend's base URL (`http://127.0.0.1:8787`).
    pub backend: String,
    /// Where the next offset is kept.
    pub offset_file: PathBuf,
    /// The long-poll timeout in seconds (0 for a short poll).
    pub timeout_secs: u64,
    /// `TELEGRAM_SECRET_TOKEN`, sent to the backend as `X-Telegram-Bot-Api-Secret-Token`.
    pub secret_token: Option<String>,
}

impl std::fmt::Debug for PollConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PollConfig")
            .field("api_base", &self.api_base)
            .field("token", &"<redacted>")
            .field("backend", &self.backend)
            .field("offset_file", &self.offset_file)
            .field("timeout_secs", &self.timeout_secs)
            .finish_non_exhaustive()
    }
}

/// A failed round: a message without the token, and how long Telegram asked us to wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollFailure {
    /// What went wrong (token scrubbed).
    pub message: String,
    /// `parameters.retry_after`, in seconds.
    pub retry_after: Option<u64>,
}

impl std::fmt::Display for PollFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PollFailure {}

/// What a successful round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Round {
    /// Updates Telegram returned.
    pub received: usize,
    /// Updates the backend accepted.
    pub forwarded: usize,
    /// The offset after the round.
    pub offset: Option<i64>,
}

/// `text` with every occurrence of `token` replaced by `<BOT_TOKEN>`.
#[must_use]
pub fn scrub(text: &str, token: &str) -> String {
    if token.is_empty() {
        text.to_owned()
    } else {
        text.replace(token, "<BOT_TOKEN>")
    }
}

/// The stored offset, if any.
///
/// # Errors
/// When the file exists but is not `{"offset": N}`.
pub fn read_offset(path: &Path) -> Result<Option<i64>> {
    if !path.exists() {
        return Ok(None);
    }
    let text = fs_err::read_to_string(path)?;
    let value: Value =
        serde_json::from_str(&text).with_context(|| format!("`{}` is not JSON", path.display()))?;
    value
        .get("offset")
        .and_then(Value::as_i64)
        .map(Some)
        .with_context(|| format!("`{}` has no integer `offset`", path.display()))
}

/// Stores the offset atomically.
///
/// # Errors
/// When the file cannot be written.
pub fn write_offset(path: &Path, offset: i64) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        crate::fsx::create_dir_all(parent)?;
    }
    crate::fsx::write_atomic(path, format!("{{\"offset\":{offset}}}\n").as_bytes())
}

/// An HTTP client for the poller (rustls with ring, as the providers use).
///
/// # Errors
/// When the TLS provider cannot be set up.
pub fn client(timeout_secs: u64) -> Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(timeout_secs + 15))
        .connect_timeout(Duration::from_secs(10))
        .build()
        .context("failed to build the HTTP client")
}

fn failure(cfg: &PollConfig, message: impl Into<String>, retry_after: Option<u64>) -> PollFailure {
    PollFailure {
        message: scrub(&message.into(), &cfg.token),
        retry_after,
    }
}

/// One round: fetch updates after the stored offset, forward them in order, store the offset
/// after each one the backend accepted.
///
/// # Errors
/// A [`PollFailure`] when Telegram, the network or the backend fails; the offset then stays at
/// the last update forwarded.
pub async fn poll_once(client: &reqwest::Client, cfg: &PollConfig) -> Result<Round, PollFailure> {
    let mut offset =
        read_offset(&cfg.offset_file).map_err(|e| failure(cfg, format!("{e:#}"), None))?;
    let mut url = format!(
        "{}/bot{}/getUpdates?timeout={}",
        cfg.api_base.trim_end_matches('/'),
        cfg.token,
        cfg.timeout_secs
    );
    if let Some(o) = offset {
        url.push_str(&format!("&offset={o}"));
    }
    let response = client
        .get(&url)
        .send()
        .await
        .map_err(|e| failure(cfg, format!("getUpdates failed: {}", e.without_url()), None))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| {
        failure(
            cfg,
            format!("getUpdates: reading the answer failed: {}", e.without_url()),
            None,
        )
    })?;
    let answer: Value = serde_json::from_slice(&body).map_err(|_| {
        failure(
            cfg,
            format!("getUpdates answered HTTP {status} with a body that is not JSON"),
            None,
        )
    })?;
    if answer.get("ok") != Some(&Value::Bool(true)) {
        let code = answer
            .get("error_code")
            .and_then(Value::as_i64)
            .unwrap_or_else(|| i64::from(status.as_u16()));
        let description = answer
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("no description");
        let retry_after = answer
            .pointer("/parameters/retry_after")
            .and_then(Value::as_u64);
        return Err(failure(
            cfg,
            format!("getUpdates failed: {code} {description}"),
            retry_after,
        ));
    }
    let mut updates: Vec<Value> = answer
        .get("result")
        .and_then(Value::as_array)
        .cloned()
        .ok_or_else(|| failure(cfg, "getUpdates answered ok without a `result` list", None))?;
    updates.sort_by_key(|u| {
        u.get("update_id")
            .and_then(Value::as_i64)
            .unwrap_or(i64::MIN)
    });
    let mut round = Round {
        received: updates.len(),
        forwarded: 0,
        offset,
    };
    let target = format!("{}/webhooks/telegram", cfg.backend.trim_end_matches('/'));
    for update in &updates {
        let Some(update_id) = update.get("update_id").and_then(Value::as_i64) else {
            continue;
        };
        if offset.is_some_and(|o| update_id < o) {
            continue;
        }
        let mut request = client
            .post(&target)
            .header("content-type", "application/json")
            .timeout(Duration::from_secs(30))
            .body(serde_json::to_vec(update).expect("JSON serializes"));
        if let Some(secret) = &cfg.secret_token {
            request = request.header("x-telegram-bot-api-secret-token", secret);
        }
        let sent = request.send().await.map_err(|e| {
            failure(
                cfg,
                format!("posting update {update_id} to the backend failed: {e}"),
                None,
            )
        })?;
        let code = sent.status();
        // 2xx: taken. 400: the backend can never take it; skipping it keeps the queue moving.
        if !(code.is_success() || code == reqwest::StatusCode::BAD_REQUEST) {
            return Err(failure(
                cfg,
                format!("the backend answered HTTP {code} for update {update_id}"),
                None,
            ));
        }
        let next = update_id + 1;
        write_offset(&cfg.offset_file, next).map_err(|e| failure(cfg, format!("{e:#}"), None))?;
        offset = Some(next);
        round.offset = offset;
        if code.is_success() {
            round.forwarded += 1;
        }
    }
    Ok(round)
}

/// The wait before the next round after `failures` failures in a row (1, 2, 4, … 60 s), or
/// Telegram's `retry_after` (at most an hour).
#[must_use]
pub fn backoff(failures: u32, retry_after: Option<u64>) -> Duration {
    if let Some(s) = retry_after {
        return Duration::from_secs(s.clamp(1, 3600));
    }
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(6)).min(Duration::from_secs(60))
}

/// Polls until `stop` resolves, reporting each round through `log` (messages never hold the
/// token).
///
/// # Errors
/// When the HTTP client cannot be built.
pub async fn run(
    cfg: &PollConfig,
    stop: impl std::future::Future<Output = ()>,
    log: &mut dyn FnMut(&str),
) -> Result<()> {
    let client = client(cfg.timeout_secs)?;
    let mut failures = 0u32;
    tokio::pin!(stop);
    loop {
        let wait = match poll_once(&client, cfg).await {
            Ok(round) => {
                failures = 0;
                if round.received > 0 {
                    log(&format!(
                        "forwarded {} of {} updates; next offset {}",
                        round.forwarded,
                        round.received,
                        round
                            .offset
                            .map_or_else(|| "-".to_owned(), |o| o.to_string())
                    ));
                }
                Duration::ZERO
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let wait = backoff(failures, e.retry_after);
                log(&format!("{e}; retrying in {} s", wait.as_secs()));
                wait
            }
        };
        tokio::select! {
            () = &mut stop => return Ok(()),
            () = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_the_token() {
        assert_eq!(
            scrub("GET https://x/bot123:ABC/getUpdates failed", "123:ABC"),
            "GET https://x/bot<BOT_TOKEN>/getUpdates failed"
        );
        assert_eq!(scrub("nothing", ""), "nothing");
    }

    #[test]
    fn backoff_doubles_to_a_minute_and_honours_retry_after() {
        assert_eq!(backoff(1, None), Duration::from_secs(1));
        assert_eq!(backoff(2, None), Duration::from_secs(2));
        assert_eq!(backoff(4, None), Duration::from_secs(8));
        assert_eq!(backoff(30, None), Duration::from_secs(60));
        assert_eq!(backoff(1, Some(7)), Duration::from_secs(7));
        assert_eq!(backoff(1, Some(99_999)), Duration::from_secs(3600));
    }

    #[test]
    fn the_debug_form_hides_the_token() {
        let cfg = PollConfig {
            api_base: DEFAULT_API_BASE.to_owned(),
            token: "123:SECRET".to_owned(),
            backend: "http://127.0.0.1:1".to_owned(),
            offset_file: PathBuf::from("o.json"),
            timeout_secs: 0,
            secret_token: None,
        };
        assert!(!format!("{cfg:?}").contains("SECRET"));
    }
}
