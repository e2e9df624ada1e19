//! The `command` provider (SPEC §4): runs an installed agent (`claude -p`, `codex exec`, …) with
//! the prompt on stdin and reads its answer from stdout. Never through a shell. The agent gets
//! `GATEKEEPER_TASK`, `GATEKEEPER_STEP`, `GATEKEEPER_ROLE` and `GATEKEEPER_CORRELATION_ID`.

use crate::config::{CommandOutput, Env, RoleConfig};
use crate::exit::Refusal;
use crate::process;

use super::{Answer, CallRecord, DEFAULT_TIMEOUT, Provider, ProviderError, Request};

/// An agent command.
#[derive(Clone, Debug)]
pub struct CommandProvider {
    argv: Vec<String>,
    timeout: std::time::Duration,
    env: Env,
}

impl CommandProvider {
    /// Builds it from a role binding.
    ///
    /// # Errors
    /// A usage refusal when `argv` is missing or the output format is not supported.
    pub fn new(role: &str, config: &RoleConfig, env: &Env) -> Result<Self, Refusal> {
        let argv = config
            .argv
            .clone()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| {
                Refusal::usage(format!(
                    "`roles.{role}` uses provider `command` without `argv`"
                ))
                .hint(format!(
                    "add `argv: [\"your-agent\", \"-\"]` under `roles.{role}`"
                ))
            })?;
        if let Some(fmt) = config.output.filter(|f| *f != CommandOutput::Text) {
            return Err(Refusal::usage(format!(
                "`roles.{role}.output: {}` is not supported by this build yet",
                serde_json::to_value(fmt)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            ))
            .hint("use `output: text`"));
        }
        Ok(CommandProvider {
            argv,
            timeout: config.timeout.unwrap_or(DEFAULT_TIMEOUT),
            env: env.clone(),
        })
    }
}

impl Provider for CommandProvider {
    fn complete(&self, request: &Request<'_>) -> Result<Answer, ProviderError> {
        let fail = |message: String| ProviderError {
            provider: format!("command `{}`", self.argv[0]),
            message,
        };
        let spec = process::Spec {
            argv: self.argv.clone(),
            cwd: request.root,
            stdin: Some(request.prompt.as_bytes()),
            env: &self.env,
            extra_env: vec![
                ("GATEKEEPER_TASK".to_owned(), request.task.to_owned()),
                ("GATEKEEPER_STEP".to_owned(), request.step.to_string()),
                ("GATEKEEPER_ROLE".to_owned(), request.role.to_owned()),
                (
                    "GATEKEEPER_CORRELATION_ID".to_owned(),
                    request.correlation_id.to_owned(),
                ),
                (
                    "GATEKEEPER_TEMPLATE".to_owned(),
                    request.template.to_owned(),
                ),
            ],
            timeout: self.timeout,
        };
        let done = process::run(&spec).map_err(|e| fail(format!("{e:#}")))?;
        if done.timed_out {
            return Err(fail(format!(
                "timed out after {}",
                humantime::format_duration(self.timeout)
            )));
        }
        if !done.success() {
            let stderr = String::from_utf8_lossy(&done.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(fail(format!(
                "exited with {}{}",
                done.code
                    .map_or_else(|| "a signal".to_owned(), |c| format!("code {c}")),
                if tail.is_empty() {
                    String::new()
                } else {
                    format!(": {}", tail.join(" | "))
                }
            )));
        }
        let text = String::from_utf8(done.stdout)
            .map_err(|_| fail("its output is not valid UTF-8".to_owned()))?;
        Ok(Answer {
            text,
            record: CallRecord {
                provider: "command".to_owned(),
                model: Some(self.argv[0].clone()),
                duration_ms: u64::try_from(done.duration.as_millis()).unwrap_or(u64::MAX),
                attempts: 1,
                ..CallRecord::default()
            },
        })
    }

    fn edits_tree(&self) -> bool {
        true
    }
}
