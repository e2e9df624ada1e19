//! The `command` provider (SPEC §4): runs an installed agent (`claude -p`, `codex exec`, …) with
//! the prompt on stdin and reads its answer from stdout. Never through a shell. The agent gets
//! `GATEKEEPER_TASK`, `GATEKEEPER_STEP`, `GATEKEEPER_ROLE` and `GATEKEEPER_CORRELATION_ID`.
//!
//! `output` says how stdout is read (wire-formats.md §4): `text` (stdout is the answer),
//! `claude-json` (`claude -p --output-format json`: one `type: result` object), `codex-jsonl`
//! (`codex exec --json`: JSONL events, the answer is the last `agent_message`) or `gemini-json`
//! (`gemini -p --output-format json`: `response` and `stats.models.*.tokens`). The structured
//! forms also give token usage and a session id for the journal, and report the agent's own
//! errors even when it exits 0.

use serde_json::Value;

use crate::config::{CommandOutput, Env, RoleConfig, SECRET_VARS};
use crate::exit::Refusal;
use crate::process;
use crate::secrets;

use super::http::{str_at, u64_at};
use super::{Answer, CallRecord, DEFAULT_TIMEOUT, Provider, ProviderError, Request};

/// An agent command.
#[derive(Clone, Debug)]
pub struct CommandProvider {
    argv: Vec<String>,
    timeout: std::time::Duration,
    output: CommandOutput,
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
        Ok(CommandProvider {
            argv,
            timeout: config.timeout.unwrap_or(DEFAULT_TIMEOUT),
            output: config.output.unwrap_or(CommandOutput::Text),
            env: env.clone(),
        })
    }
}

impl Provider for CommandProvider {
    fn complete(&self, request: &Request<'_>) -> Result<Answer, ProviderError> {
        let known: Vec<(&str, &str)> = SECRET_VARS
            .iter()
            .filter_map(|k| self.env.get(k).map(|v| (*k, v)))
            .collect();
        let started = std::time::Instant::now();
        let fail = |message: String| ProviderError {
            provider: format!("command `{}`", self.argv[0]),
            message: secrets::redact(&message, &known).0,
            record: Some(Box::new(CallRecord {
                provider: "command".to_owned(),
                model: Some(self.argv[0].clone()),
                duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                attempts: 1,
                ..CallRecord::default()
            })),
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
        let stdout = String::from_utf8(done.stdout)
            .map_err(|_| fail("its output is not valid UTF-8".to_owned()))?;
        let parsed = parse_output(self.output, &stdout).map_err(fail)?;
        Ok(Answer {
            text: parsed.text,
            record: CallRecord {
                provider: "command".to_owned(),
                model: Some(parsed.model.unwrap_or_else(|| self.argv[0].clone())),
                duration_ms: u64::try_from(done.duration.as_millis()).unwrap_or(u64::MAX),
                tokens_in: parsed.tokens_in,
                tokens_out: parsed.tokens_out,
                attempts: 1,
                request_id: parsed.request_id,
            },
        })
    }

    fn edits_tree(&self) -> bool {
        true
    }
}

/// What an agent's stdout gave.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentOutput {
    /// The answer text.
    pub text: String,
    /// Input tokens, when reported.
    pub tokens_in: u64,
    /// Output tokens, when reported.
    pub tokens_out: u64,
    /// The agent's session or thread id.
    pub request_id: Option<String>,
    /// The model, when reported.
    pub model: Option<String>,
}

/// Reads an agent's stdout in the configured format (pure).
///
/// # Errors
/// A message when the output is not in that format, reports an error, or holds no answer.
pub fn parse_output(format: CommandOutput, stdout: &str) -> Result<AgentOutput, String> {
    match format {
        CommandOutput::Text => Ok(AgentOutput {
            text: stdout.to_owned(),
            ..AgentOutput::default()
        }),
        CommandOutput::ClaudeJson => parse_claude_json(stdout),
        CommandOutput::CodexJsonl => parse_codex_jsonl(stdout),
        CommandOutput::GeminiJson => parse_gemini_json(stdout),
    }
}

/// The JSON object of a `--output-format json` run: the whole stdout, else its last line that is
/// a JSON object (some versions print notices first).
fn json_object(stdout: &str, what: &str) -> Result<Value, String> {
    if stdout.trim().is_empty() {
        return Err(format!("printed nothing; expected {what}"));
    }
    if let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(stdout.trim()) {
        return Ok(v);
    }
    stdout
        .lines()
        .rev()
        .find_map(|l| match serde_json::from_str::<Value>(l.trim()) {
            Ok(v @ Value::Object(_)) => Some(v),
            _ => None,
        })
        .ok_or_else(|| format!("its output is not {what} (truncated or not JSON)"))
}

/// `claude -p --output-format json` (or the last `type: result` line of `stream-json`).
fn parse_claude_json(stdout: &str) -> Result<AgentOutput, String> {
    let whole = json_object(stdout, "Claude Code JSON (`--output-format json`)")?;
    let v = if str_at(&whole, "/type") == Some("result") {
        whole
    } else {
        stdout
            .lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
            .find(|v| str_at(v, "/type") == Some("result"))
            .ok_or_else(|| "its JSON has no `type: result` object".to_owned())?
    };
    let is_error = v.get("is_error").and_then(Value::as_bool).unwrap_or(false);
    let subtype = str_at(&v, "/subtype").unwrap_or("success");
    if is_error || subtype != "success" {
        let errors: Vec<String> = v
            .get("errors")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|e| e.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let detail = if errors.is_empty() {
            str_at(&v, "/result").unwrap_or("no message").to_owned()
        } else {
            errors.join("; ")
        };
        let status = v
            .get("api_error_status")
            .and_then(Value::as_u64)
            .map(|s| format!(" (API status {s})"))
            .unwrap_or_default();
        return Err(format!(
            "the agent reported an error ({subtype}){status}: {detail}"
        ));
    }
    let text = str_at(&v, "/result").unwrap_or_default().to_owned();
    if text.trim().is_empty() {
        return Err("the agent's `result` is empty".to_owned());
    }
    let model = v
        .get("modelUsage")
        .and_then(Value::as_object)
        .and_then(|m| m.keys().next().cloned());
    Ok(AgentOutput {
        text,
        tokens_in: u64_at(&v, "/usage/input_tokens")
            + u64_at(&v, "/usage/cache_creation_input_tokens")
            + u64_at(&v, "/usage/cache_read_input_tokens"),
        tokens_out: u64_at(&v, "/usage/output_tokens"),
        request_id: str_at(&v, "/session_id").map(str::to_owned),
        model,
    })
}

/// `codex exec --json`: JSONL events; the answer is the text of the last completed
/// `agent_message`; usage is summed over `turn.completed` events.
fn parse_codex_jsonl(stdout: &str) -> Result<AgentOutput, String> {
    let mut out = AgentOutput::default();
    let mut answer: Option<String> = None;
    let mut events = 0usize;
    for (n, line) in stdout.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line).map_err(|e| {
            format!(
                "line {} of its JSONL output is not JSON ({e}); truncated output?",
                n + 1
            )
        })?;
        events += 1;
        match str_at(&v, "/type") {
            Some("thread.started") => out.request_id = str_at(&v, "/thread_id").map(str::to_owned),
            Some("turn.completed") => {
                out.tokens_in += u64_at(&v, "/usage/input_tokens");
                out.tokens_out += u64_at(&v, "/usage/output_tokens");
            }
            Some("turn.failed") => {
                return Err(format!(
                    "the agent's turn failed: {}",
                    str_at(&v, "/error/message").unwrap_or("no message")
                ));
            }
            Some("error") => {
                return Err(format!(
                    "the agent reported an error: {}",
                    str_at(&v, "/message").unwrap_or("no message")
                ));
            }
            Some("item.completed") if str_at(&v, "/item/type") == Some("agent_message") => {
                answer = str_at(&v, "/item/text").map(str::to_owned);
            }
            _ => {}
        }
    }
    if events == 0 {
        return Err("printed no JSONL events; expected `codex exec --json` output".to_owned());
    }
    out.text = answer
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| "its JSONL output holds no `agent_message`".to_owned())?;
    Ok(out)
}

/// `gemini -p --output-format json`: `response`, `stats.models.<name>.tokens`, `error`.
fn parse_gemini_json(stdout: &str) -> Result<AgentOutput, String> {
    let v = json_object(stdout, "Gemini CLI JSON (`--output-format json`)")?;
    if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
        return Err(format!(
            "the agent reported an error ({}): {}",
            str_at(err, "/type").unwrap_or("error"),
            str_at(err, "/message").unwrap_or("no message")
        ));
    }
    let text = str_at(&v, "/response").unwrap_or_default().to_owned();
    if text.trim().is_empty() {
        return Err("the agent's `response` is empty".to_owned());
    }
    let mut out = AgentOutput {
        text,
        request_id: str_at(&v, "/session_id").map(str::to_owned),
        ..AgentOutput::default()
    };
    if let Some(models) = v.pointer("/stats/models").and_then(Value::as_object) {
        out.model = models.keys().next().cloned();
        for m in models.values() {
            out.tokens_in += u64_at(m, "/tokens/prompt");
            out.tokens_out += u64_at(m, "/tokens/candidates") + u64_at(m, "/tokens/thoughts");
        }
    }
    Ok(out)
}
