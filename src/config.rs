//! `gatekeeper.yaml` (SPEC §11) and the injected environment.
//!
//! [`RawConfig`] is the file as written (every struct denies unknown keys); [`Config`] is the
//! resolved value with defaults applied. Errors name the file, line, column and key path and are
//! usage refusals (exit 2). Secrets never live in the file: they come from [`Env`], a snapshot of
//! the process environment taken once in `main` and passed down, so tests never mutate the real one.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::exit::Refusal;

/// A snapshot of environment variables, injected (ARCHITECTURE invariant 8).
#[derive(Clone, Debug, Default)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    /// The real process environment (called once, in `main`).
    #[must_use]
    pub fn from_process() -> Self {
        Env {
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }

    /// An environment built from pairs (tests).
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Env {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// A variable's value, `None` when unset or empty.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// Every variable, for passing on to child processes.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// The names of the environment variables that hold secrets; their values are redacted from any
/// provider output (SPEC §2 "Secrets").
pub const SECRET_VARS: &[&str] = &[
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "OPENAI_API_KEY",
    "GATEKEEPER_ADMIN_TOKEN",
    "GATEKEEPER_SIGNING_KEY",
    "WEBHOOK_SECRET",
    "TELEGRAM_SECRET_TOKEN",
    "BOT_TOKEN",
];

/// A role's provider binding (SPEC §4, §11).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RoleConfig {
    /// `standin`, `anthropic`, `gemini`, `openai`, `command` or `replay`.
    pub provider: ProviderKind,
    /// Model name for HTTP providers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// `max_tokens` for the Anthropic Messages API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Program and arguments of a `command` provider (never run through a shell).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<String>>,
    /// Per-call timeout (`30m`, `300s`); default 300 s.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// How a `command` provider's stdout is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<CommandOutput>,
    /// Cassette folder of a `replay` provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// Retries on retryable errors (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
}

impl RoleConfig {
    /// The default binding: the offline stand-in.
    #[must_use]
    pub fn standin() -> Self {
        RoleConfig {
            provider: ProviderKind::Standin,
            model: None,
            max_tokens: None,
            argv: None,
            timeout: None,
            output: None,
            dir: None,
            retries: None,
        }
    }
}

/// Provider kinds (SPEC §4).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Deterministic offline stand-in.
    Standin,
    /// Anthropic Messages API.
    Anthropic,
    /// Gemini generateContent.
    Gemini,
    /// OpenAI Responses API.
    Openai,
    /// An installed agent command.
    Command,
    /// Cassette replay.
    Replay,
}

/// How a `command` provider's output is read.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum CommandOutput {
    /// stdout is the answer.
    Text,
    /// `claude -p --output-format json`.
    ClaudeJson,
    /// `codex exec --json`.
    CodexJsonl,
    /// `gemini -p --output-format json`.
    GeminiJson,
}

/// One configured check of step 5.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CheckConfig {
    /// A short name shown in `tests/run.log`.
    pub name: String,
    /// The command line, run by `sh -c` in the workspace root.
    pub run: String,
    /// An acceptance report the check produces (SPEC §9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
    /// Per-check timeout; default 30 minutes.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
}

/// Scope options.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScopeConfig {
    /// Globs every task may change in addition to its approved paths.
    #[serde(default)]
    pub always_allowed: Vec<String>,
}

/// The deploy command of step 8.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeployConfig {
    /// The command line, run by `sh -c` in the workspace root.
    pub run: String,
    /// How its stdout is read: `netlify-json` (`deploy_url`, `deploy_id`) or `text` (last URL).
    #[serde(default = "default_deploy_format")]
    pub format: DeployFormat,
    /// The `context` written to `final/status.json` (default `production`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
}

fn default_deploy_format() -> DeployFormat {
    DeployFormat::Text
}

/// Deploy output formats.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum DeployFormat {
    /// `netlify deploy --json`.
    NetlifyJson,
    /// Plain text; the last URL printed is the deploy URL.
    Text,
}

/// CI gate options (SPEC §6).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CiConfig {
    /// Globs that need no task.
    #[serde(default)]
    pub exempt: Vec<String>,
    /// Require signed ledgers.
    #[serde(default)]
    pub require_signed: bool,
}

/// Trusted signing keys (SPEC §2 "Signing").
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrustConfig {
    /// Ed25519 public keys (hex) that `verify` and `ci` accept.
    #[serde(default)]
    pub keys: Vec<String>,
}

/// Server options (SPEC §8).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Listen address.
    #[serde(default = "default_addr")]
    pub addr: String,
    /// Root folder of `ssot/` and `audit/`.
    #[serde(default = "default_root")]
    pub root: String,
}

fn default_addr() -> String {
    "127.0.0.1:8787".to_owned()
}
fn default_root() -> String {
    ".".to_owned()
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            addr: default_addr(),
            root: default_root(),
        }
    }
}

/// `gatekeeper.yaml` as written.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Schema version; must be 1.
    pub version: u32,
    /// `ai-stack-trace`, `dev-process`, or a path to a pipeline file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<String>,
    /// Role → provider bindings.
    #[serde(default)]
    pub roles: BTreeMap<String, RoleConfig>,
    /// Step 5 checks, in order.
    #[serde(default)]
    pub checks: Vec<CheckConfig>,
    /// Fix attempts of step 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix_attempts: Option<u32>,
    /// Review rounds under `gatekeeper run`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_rounds: Option<u32>,
    /// Step 8 needs an `approved` SSOT decision.
    #[serde(default)]
    pub require_human_approval: bool,
    /// Scope options.
    #[serde(default)]
    pub scope: ScopeConfig,
    /// Step 8 deploy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<DeployConfig>,
    /// CI gate options.
    #[serde(default)]
    pub ci: CiConfig,
    /// Self-audit rows (SPEC §7).
    #[serde(default)]
    pub audit: crate::selfaudit::AuditConfig,
    /// Trusted keys.
    #[serde(default)]
    pub trust: TrustConfig,
    /// Server options.
    #[serde(default)]
    pub server: ServerConfig,
    /// Reports every task of this workspace requires (SPEC §9).
    #[serde(default)]
    pub requires_reports: Vec<String>,
}

/// The resolved configuration.
#[derive(Clone, Debug, Serialize)]
pub struct Config {
    /// Pipeline name or path.
    pub pipeline: String,
    /// Role → provider bindings, with `standin` for roles not named.
    pub roles: BTreeMap<String, RoleConfig>,
    /// Step 5 checks.
    pub checks: Vec<CheckConfig>,
    /// Fix attempts (default 3).
    pub fix_attempts: u32,
    /// Review rounds (default 2).
    pub review_rounds: u32,
    /// See [`RawConfig::require_human_approval`].
    pub require_human_approval: bool,
    /// Scope options.
    pub scope: ScopeConfig,
    /// Deploy.
    pub deploy: Option<DeployConfig>,
    /// CI.
    pub ci: CiConfig,
    /// Self-audit rows.
    pub audit: crate::selfaudit::AuditConfig,
    /// Trust.
    pub trust: TrustConfig,
    /// Server.
    pub server: ServerConfig,
    /// Required reports.
    pub requires_reports: Vec<String>,
    /// sha256 of the configuration file's bytes (empty file hash when absent).
    pub source_sha256: String,
}

impl Default for Config {
    fn default() -> Self {
        Config::resolve(
            RawConfig {
                version: 1,
                pipeline: None,
                roles: BTreeMap::new(),
                checks: Vec::new(),
                fix_attempts: None,
                review_rounds: None,
                require_human_approval: false,
                scope: ScopeConfig::default(),
                deploy: None,
                ci: CiConfig::default(),
                audit: crate::selfaudit::AuditConfig::default(),
                trust: TrustConfig::default(),
                server: ServerConfig::default(),
                requires_reports: Vec::new(),
            },
            crate::hash::sha256_hex(b""),
        )
    }
}

/// The roles a pipeline may bind.
pub const ROLES: &[&str] = &["gemini", "claude", "codex"];

impl Config {
    fn resolve(raw: RawConfig, source_sha256: String) -> Config {
        let mut roles = raw.roles;
        for role in ROLES {
            roles
                .entry((*role).to_owned())
                .or_insert_with(RoleConfig::standin);
        }
        Config {
            pipeline: raw.pipeline.unwrap_or_else(|| "ai-stack-trace".to_owned()),
            roles,
            checks: raw.checks,
            fix_attempts: raw.fix_attempts.unwrap_or(3),
            review_rounds: raw.review_rounds.unwrap_or(2),
            require_human_approval: raw.require_human_approval,
            scope: raw.scope,
            deploy: raw.deploy,
            ci: raw.ci,
            audit: raw.audit,
            trust: raw.trust,
            server: raw.server,
            requires_reports: raw.requires_reports,
            source_sha256,
        }
    }

    /// Loads `gatekeeper.yaml` from a file, or the defaults when it does not exist.
    ///
    /// # Errors
    /// A usage refusal (exit 2) naming file, line and key for any error in the file.
    pub fn load(path: &Path) -> Result<Config> {
        match std::fs::read(path) {
            Ok(bytes) => Ok(Config::parse(&bytes, &path.display().to_string())?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => {
                Err(anyhow::Error::new(e).context(format!("failed to read `{}`", path.display())))
            }
        }
    }

    /// Parses configuration bytes; `origin` names the file in errors.
    ///
    /// # Errors
    /// A usage refusal naming file, line, column and key path.
    pub fn parse(bytes: &[u8], origin: &str) -> Result<Config, Refusal> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            Refusal::usage(format!("{origin}: not valid UTF-8 ({e})"))
                .hint("save the file as UTF-8")
        })?;
        let sha = crate::hash::sha256_hex(bytes);
        if text.trim().is_empty() {
            return Err(Refusal::usage(format!("{origin}: the file is empty"))
                .hint("write `version: 1` at least, or run `gatekeeper init`"));
        }
        let de = serde_norway::Deserializer::from_str(text);
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|err| {
            let path = err.path().to_string();
            let inner = err.into_inner();
            let location = inner
                .location()
                .map(|l| format!("{}:{}", l.line(), l.column()))
                .unwrap_or_else(|| "1:1".to_owned());
            let key = if path.is_empty() || path == "." {
                String::new()
            } else {
                format!(" at `{path}`")
            };
            // The YAML error repeats the location; the prefix already says it.
            let message = inner.to_string();
            let message = match message.rfind(" at line ") {
                Some(i) if message[i..].contains(" column ") => message[..i].to_owned(),
                _ => message,
            };
            Refusal::usage(format!("{origin}:{location}: {message}{key}"))
                .hint("fix the key or value; `gatekeeper init` writes a commented example")
        })?;
        if raw.version != 1 {
            return Err(Refusal::usage(format!(
                "{origin}: unsupported `version: {}` (this gatekeeper reads version 1)",
                raw.version
            ))
            .hint("set `version: 1`"));
        }
        for role in raw.roles.keys() {
            if !ROLES.contains(&role.as_str()) {
                return Err(Refusal::usage(format!(
                    "{origin}: unknown role `{role}` at `roles.{role}` (roles are gemini, claude, codex)"
                ))
                .hint("rename the role to one of gemini, claude, codex"));
            }
        }
        for (role, rc) in &raw.roles {
            if rc.provider == ProviderKind::Command && rc.argv.as_ref().is_none_or(Vec::is_empty) {
                return Err(Refusal::usage(format!(
                    "{origin}: `roles.{role}` uses provider `command` without `argv`"
                ))
                .hint(format!(
                    "add `argv: [\"your-agent\", \"-\"]` under `roles.{role}`"
                )));
            }
        }
        for (i, path) in raw.requires_reports.iter().enumerate() {
            crate::pipeline::requires::normalize(path).map_err(|e| {
                Refusal::usage(format!("{origin}: {e} at `requires_reports[{i}]`"))
                    .hint("name each report relative to the workspace root, e.g. `reports/phase_A_acceptance.json`")
            })?;
        }
        Ok(Config::resolve(raw, sha))
    }

    /// The binding of a role (stand-in when unbound).
    #[must_use]
    pub fn role(&self, role: &str) -> RoleConfig {
        self.roles
            .get(role)
            .cloned()
            .unwrap_or_else(RoleConfig::standin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(yaml: &str) -> String {
        Config::parse(yaml.as_bytes(), "gatekeeper.yaml")
            .unwrap_err()
            .what
    }

    #[test]
    fn full_example_parses() {
        let yaml = r#"
version: 1
pipeline: ai-stack-trace
roles:
  gemini: { provider: standin }
  claude: { provider: anthropic, model: claude-sonnet-4-5, max_tokens: 8192 }
  codex:  { provider: command, argv: ["codex", "exec", "--full-auto", "-"], timeout: 30m }
checks:
  - { name: test, run: "cargo test" }
  - { name: lint, run: "cargo clippy -- -D warnings" }
fix_attempts: 3
review_rounds: 2
require_human_approval: false
scope: { always_allowed: [] }
deploy: { run: "netlify deploy --prod --json", format: netlify-json }
ci: { exempt: ["docs/**"] }
server: { addr: "127.0.0.1:8787", root: "." }
"#;
        let c = Config::parse(yaml.as_bytes(), "gatekeeper.yaml").unwrap();
        assert_eq!(c.role("codex").timeout, Some(Duration::from_secs(1800)));
        assert_eq!(c.checks.len(), 2);
        assert_eq!(c.role("gemini").provider, ProviderKind::Standin);
    }

    #[test]
    fn unknown_key_names_line_and_path() {
        let e = err("version: 1\nroles:\n  claude: { provider: anthropic, modle: x }\n");
        assert!(e.starts_with("gatekeeper.yaml:3:"), "{e}");
        assert!(e.contains("modle"), "{e}");
        assert!(e.contains("roles.claude"), "{e}");
    }

    #[test]
    fn wrong_type_and_version() {
        assert!(err("version: 1\nfix_attempts: many\n").contains("fix_attempts"));
        assert!(err("version: 2\n").contains("version: 2"));
        assert!(
            err("version: 1\nroles:\n  bard: { provider: standin }\n").contains("unknown role")
        );
        assert!(err("version: 1\nroles:\n  codex: { provider: command }\n").contains("argv"));
    }
}
