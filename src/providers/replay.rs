//! Cassettes: `gatekeeper step|run … --record DIR` wraps each role's provider in a [`Recorder`]
//! that writes one cassette per answered prompt, `DIR/<sha256 of the prompt>.json`; the `replay`
//! provider ([`Replay`], setting `dir`) answers from them deterministically and fails clearly on
//! a prompt it has not recorded.
//!
//! A cassette holds the prompt's key (never the prompt), the answer text and the original call's
//! record. The key is the sha256 of the prompt with the check durations of `tests/run.log`
//! (`duration_ms: N` lines) masked, since they differ on every run; any other difference in a
//! prompt means a different question, which replay refuses to answer. Answers are redacted before they are written, like everything gatekeeper writes, so no
//! configured key reaches a cassette.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Instant;

use regex::Regex;

use serde::{Deserialize, Serialize};

use super::{Answer, CallRecord, Provider, ProviderError, Request};
use crate::config::{Env, RoleConfig, SECRET_VARS};
use crate::exit::Refusal;
use crate::hash::sha256_hex;
use crate::secrets;

/// The environment variable that carries `--record DIR` to the providers (the CLI sets it; it can
/// also be set by hand).
pub const RECORD_VAR: &str = "GATEKEEPER_RECORD_DIR";

/// The cassette format version.
pub const CASSETTE_VERSION: u32 = 1;

/// One recorded answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cassette {
    /// Format version (1).
    pub version: u32,
    /// The prompt's key ([`prompt_key`]).
    pub prompt_sha256: String,
    /// The task it was recorded for.
    pub task: String,
    /// The step.
    pub step: u32,
    /// The role.
    pub role: String,
    /// The template.
    pub template: String,
    /// The answer text (redacted).
    pub answer: String,
    /// The original call's record.
    pub record: CallRecord,
}

static VOLATILE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?m)^duration_ms: [0-9]+$").expect("the volatile-line pattern compiles")
});

/// A prompt's cassette key: the sha256 of the prompt with its volatile lines (check durations)
/// masked.
#[must_use]
pub fn prompt_key(prompt: &str) -> String {
    sha256_hex(VOLATILE.replace_all(prompt, "duration_ms: *").as_bytes())
}

/// The cassette file of a prompt.
#[must_use]
pub fn cassette_path(dir: &Path, prompt: &str) -> PathBuf {
    dir.join(format!("{}.json", prompt_key(prompt)))
}

fn known_secrets(env: &Env) -> Vec<(&str, &str)> {
    SECRET_VARS
        .iter()
        .filter_map(|k| env.get(k).map(|v| (*k, v)))
        .collect()
}

/// Wraps a provider and records each answer it gives.
pub struct Recorder {
    inner: Box<dyn Provider>,
    dir: PathBuf,
    env: Env,
}

impl Recorder {
    /// Records the answers of `inner` into `dir` (created when missing).
    #[must_use]
    pub fn new(inner: Box<dyn Provider>, dir: PathBuf, env: &Env) -> Self {
        Recorder {
            inner,
            dir,
            env: env.clone(),
        }
    }
}

impl Provider for Recorder {
    fn complete(&self, request: &Request<'_>) -> Result<Answer, ProviderError> {
        let answer = self.inner.complete(request)?;
        let (text, _) = secrets::redact(&answer.text, &known_secrets(&self.env));
        let cassette = Cassette {
            version: CASSETTE_VERSION,
            prompt_sha256: prompt_key(request.prompt),
            task: request.task.to_owned(),
            step: request.step,
            role: request.role.to_owned(),
            template: request.template.to_owned(),
            answer: text,
            record: answer.record.clone(),
        };
        let fail = |e: &dyn std::fmt::Display| ProviderError {
            provider: "record".to_owned(),
            message: format!(
                "cannot write the cassette into `{}`: {e}",
                self.dir.display()
            ),
            record: Some(Box::new(answer.record.clone())),
        };
        let mut json = serde_json::to_string_pretty(&cassette).map_err(|e| fail(&e))?;
        json.push('\n');
        crate::fsx::create_dir_all(&self.dir).map_err(|e| fail(&e))?;
        crate::fsx::write_atomic(&cassette_path(&self.dir, request.prompt), json.as_bytes())
            .map_err(|e| fail(&format!("{e:#}")))?;
        Ok(answer)
    }

    fn edits_tree(&self) -> bool {
        self.inner.edits_tree()
    }
}

/// The `replay` provider.
#[derive(Clone, Debug)]
pub struct Replay {
    dir: String,
}

impl Replay {
    /// Builds it from a role binding.
    ///
    /// # Errors
    /// A usage refusal when `dir` is missing.
    pub fn new(role: &str, config: &RoleConfig) -> Result<Self, Refusal> {
        let dir = config
            .dir
            .clone()
            .filter(|d| !d.trim().is_empty())
            .ok_or_else(|| {
                Refusal::usage(format!(
                    "`roles.{role}` uses provider `replay` without `dir`"
                ))
                .hint(format!(
                    "add `dir: cassettes/` under `roles.{role}`, a folder written by `gatekeeper run <TASK> --record cassettes/`"
                ))
            })?;
        Ok(Replay { dir })
    }
}

impl Provider for Replay {
    fn complete(&self, request: &Request<'_>) -> Result<Answer, ProviderError> {
        let started = Instant::now();
        let dir = request.root.join(&self.dir);
        let path = cassette_path(&dir, request.prompt);
        let sha = prompt_key(request.prompt);
        let fail = |message: String| ProviderError {
            provider: "replay".to_owned(),
            message,
            record: None,
        };
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(fail(format!(
                    "no cassette in `{}` for this prompt of step {} (key {}): the prompt differs from every recorded one; record it with `gatekeeper step {} {} --record {}`",
                    self.dir, request.step, sha, request.step, request.task, self.dir
                )));
            }
            Err(e) => return Err(fail(format!("cannot read `{}`: {e}", path.display()))),
        };
        let cassette: Cassette = serde_json::from_slice(&bytes).map_err(|e| {
            fail(format!(
                "the cassette `{}` is malformed: {e}",
                path.display()
            ))
        })?;
        if cassette.version != CASSETTE_VERSION || cassette.prompt_sha256 != sha {
            return Err(fail(format!(
                "the cassette `{}` does not belong to this prompt (version {}, prompt sha256 {})",
                path.display(),
                cassette.version,
                cassette.prompt_sha256
            )));
        }
        Ok(Answer {
            text: cassette.answer,
            record: CallRecord {
                provider: "replay".to_owned(),
                model: cassette.record.model,
                duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                tokens_in: 0,
                tokens_out: 0,
                attempts: 1,
                request_id: Some(format!("cassette:{sha}")),
            },
        })
    }
}
