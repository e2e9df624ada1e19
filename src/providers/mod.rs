//! Providers (SPEC §4): what answers a role's prompt. A provider gets the rendered prompt and the
//! structured facts of the step, and returns the answer text with a [`CallRecord`] for the journal.

pub mod anthropic;
pub mod command;
pub mod gemini;
pub mod http;
pub mod openai;
pub mod replay;
pub mod standin;

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{Env, ProviderKind, RoleConfig};
use crate::exit::Refusal;

/// One call's facts, journalled as `provider_call`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRecord {
    /// Provider name.
    pub provider: String,
    /// Model, where there is one.
    pub model: Option<String>,
    /// Wall time of the call including retries.
    pub duration_ms: u64,
    /// Input tokens, when reported.
    pub tokens_in: u64,
    /// Output tokens, when reported.
    pub tokens_out: u64,
    /// Attempts made (1 without retries).
    pub attempts: u32,
    /// The provider's request id, when reported.
    pub request_id: Option<String>,
}

/// What a provider is asked.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    /// The task name.
    pub task: &'a str,
    /// The step id.
    pub step: u32,
    /// The role.
    pub role: &'a str,
    /// The template name (what the step asks for: `audit`, `decisions`, …).
    pub template: &'a str,
    /// The rendered prompt.
    pub prompt: &'a str,
    /// The task's correlation id.
    pub correlation_id: &'a str,
    /// The template context (the stand-in reads its facts from here).
    pub context: &'a Value,
    /// The workspace root.
    pub root: &'a Path,
}

/// An answer.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The answer text.
    pub text: String,
    /// The call's record.
    pub record: CallRecord,
}

/// A provider failure: the step fails (exit 1) with this message and writes nothing.
#[derive(Debug, thiserror::Error)]
#[error("{provider}: {message}")]
pub struct ProviderError {
    /// Provider name.
    pub provider: String,
    /// What went wrong (status and message for HTTP providers); never contains a secret.
    pub message: String,
    /// The failed call's facts (model, duration, attempts), journalled with the failure.
    pub record: Option<Box<CallRecord>>,
}

/// A provider.
pub trait Provider {
    /// Answers one prompt.
    ///
    /// # Errors
    /// [`ProviderError`] when no usable answer was obtained.
    fn complete(&self, request: &Request<'_>) -> Result<Answer, ProviderError>;

    /// True when the provider edits the working tree itself (agents), so step 4 must not apply
    /// ```diff blocks from its answer.
    fn edits_tree(&self) -> bool {
        false
    }
}

/// The default per-call timeout (SPEC §4).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// Builds the provider bound to a role. When the environment carries [`replay::RECORD_VAR`]
/// (`--record DIR`), the provider's answers are recorded as cassettes into that folder.
///
/// # Errors
/// A usage refusal when the binding cannot be used (a missing key, model, `argv` or `dir`).
pub fn build(role: &str, config: &RoleConfig, env: &Env) -> Result<Box<dyn Provider>, Refusal> {
    let common = http::Common::from_role(config);
    let provider: Box<dyn Provider> = match config.provider {
        ProviderKind::Standin => Box::new(standin::Standin),
        ProviderKind::Command => Box::new(command::CommandProvider::new(role, config, env)?),
        ProviderKind::Anthropic => Box::new(http::HttpProvider::new(
            anthropic::Settings::from_role(role, config, env)?,
            common,
            env,
        )),
        ProviderKind::Gemini => Box::new(http::HttpProvider::new(
            gemini::Settings::from_role(role, config, env)?,
            common,
            env,
        )),
        ProviderKind::Openai => Box::new(http::HttpProvider::new(
            openai::Settings::from_role(role, config, env)?,
            common,
            env,
        )),
        ProviderKind::Replay => Box::new(replay::Replay::new(role, config)?),
    };
    Ok(match env.get(replay::RECORD_VAR) {
        Some(dir) if config.provider != ProviderKind::Replay => Box::new(replay::Recorder::new(
            provider,
            std::path::PathBuf::from(dir),
            env,
        )),
        _ => provider,
    })
}
