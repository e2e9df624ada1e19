//! Providers (SPEC §4): what answers a role's prompt. A provider gets the rendered prompt and the
//! structured facts of the step, and returns the answer text with a [`CallRecord`] for the journal.

pub mod command;
pub mod standin;

use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::config::{Env, ProviderKind, RoleConfig};
use crate::exit::Refusal;

/// One call's facts, journalled as `provider_call`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
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

/// Builds the provider bound to a role.
///
/// # Errors
/// A usage refusal when the binding cannot be used.
pub fn build(role: &str, config: &RoleConfig, env: &Env) -> Result<Box<dyn Provider>, Refusal> {
    match config.provider {
        ProviderKind::Standin => Ok(Box::new(standin::Standin)),
        ProviderKind::Command => Ok(Box::new(command::CommandProvider::new(role, config, env)?)),
        other => Err(Refusal::usage(format!(
            "role `{role}` is bound to provider `{}`, which this build of gatekeeper does not include yet",
            serde_json::to_value(other).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
        ))
        .hint(format!("bind `roles.{role}` to `standin` or `command` in gatekeeper.yaml"))),
    }
}
