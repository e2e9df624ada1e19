//! `gatekeeper telegram poll [--once] [--backend URL] [--offset-file FILE] [--timeout SECS]`
//! (SPEC §8.6): forwards Telegram updates from `getUpdates` to the backend's
//! `POST /webhooks/telegram`. `BOT_TOKEN` is required; `TELEGRAM_API_BASE` overrides the Bot API
//! base; `TELEGRAM_SECRET_TOKEN` is sent to the backend when set. The token is never printed.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};

use super::printer;
use crate::config::Env;
use crate::exit::{ExitKind, Refusal};
use crate::telegram_poll::{DEFAULT_API_BASE, PollConfig};

/// Arguments of `gatekeeper telegram`.
#[derive(Debug, Args)]
pub(super) struct TelegramArgs {
    #[command(subcommand)]
    command: TelegramCommand,
}

#[derive(Debug, Subcommand)]
enum TelegramCommand {
    /// Long-poll getUpdates (BOT_TOKEN) and post each update to the backend's /webhooks/telegram.
    Poll {
        /// Poll once without waiting for updates and exit (for cron and tests).
        #[arg(long)]
        once: bool,
        /// The backend's base URL.
        #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8787")]
        backend: String,
        /// Where the next update offset is kept.
        #[arg(long, value_name = "FILE", default_value = "telegram/poll_offset.json")]
        offset_file: PathBuf,
        /// The long-poll timeout in seconds (ignored with --once, which polls without waiting).
        #[arg(long, value_name = "SECS", default_value_t = 30,
              value_parser = clap::value_parser!(u64).range(0..=600))]
        timeout: u64,
    },
}

/// Runs `gatekeeper telegram`.
pub(super) fn run(args: &TelegramArgs, start: &Path, env: &Env) -> Result<ExitKind> {
    let TelegramCommand::Poll {
        once,
        backend,
        offset_file,
        timeout,
    } = &args.command;
    let token = env
        .get("BOT_TOKEN")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            Refusal::usage("BOT_TOKEN is not set")
                .hint("export BOT_TOKEN=<the token BotFather gave you>")
        })?
        .to_owned();
    let cfg = PollConfig {
        api_base: env
            .get("TELEGRAM_API_BASE")
            .filter(|b| !b.is_empty())
            .unwrap_or(DEFAULT_API_BASE)
            .to_owned(),
        token,
        backend: backend.clone(),
        offset_file: start.join(offset_file),
        timeout_secs: if *once { 0 } else { *timeout },
        secret_token: env
            .get("TELEGRAM_SECRET_TOKEN")
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    runtime.block_on(async {
        if *once {
            let client = crate::telegram_poll::client(cfg.timeout_secs)?;
            return match crate::telegram_poll::poll_once(&client, &cfg).await {
                Ok(round) => {
                    printer::out(&format!(
                        "forwarded {} of {} updates; next offset {}",
                        round.forwarded,
                        round.received,
                        round
                            .offset
                            .map_or_else(|| "-".to_owned(), |o| o.to_string())
                    ));
                    Ok(ExitKind::Done)
                }
                Err(e) => {
                    printer::note(&format!("error: {e}"));
                    Ok(ExitKind::Failed)
                }
            };
        }
        printer::note(&format!(
            "polling {} for updates; forwarding to {}",
            cfg.api_base, cfg.backend
        ));
        crate::telegram_poll::run(
            &cfg,
            async {
                let _ = tokio::signal::ctrl_c().await;
            },
            &mut |line| printer::note(line),
        )
        .await?;
        Ok(ExitKind::Done)
    })
}

/// `gatekeeper new <TASK> --from-ssot ID`: writes the prompt of TASK from the `request_text` of
/// `ssot/<ID>.json` (with its criteria and scope when it has them) and keeps the record's
/// correlation id: when TASK is not ID, `ssot/<TASK>.json` is created with the same correlation id,
/// which step 0 then journals instead of minting a new one (SPEC §2, §8.6).
pub(super) fn new_from_ssot(
    ws: &crate::workspace::Workspace,
    task: &crate::workspace::TaskName,
    raw_id: &str,
) -> Result<ExitKind> {
    use crate::store::files::{create_record, read_record};
    use crate::store::{HistoryEntry, Source, StoreError, TaskId, TaskRecord, now_rfc3339};
    use crate::workspace::Workspace;

    let id = TaskId::parse(raw_id).map_err(|e| Refusal::usage(e.to_string()))?;
    let path = ws.prompt_path(task);
    if path.exists() {
        return Err(Refusal::usage(format!(
            "the prompt `{}` already exists",
            Workspace::prompt_rel(task)
        ))
        .hint("edit it, or pick another task name")
        .into());
    }
    let dir = ws.root().join(crate::server::state::SSOT_DIR);
    let source = read_record(&dir, &id)?.ok_or_else(|| {
        Refusal::usage(format!(
            "there is no SSOT task `{id}` (no `ssot/{id}.json`)"
        ))
        .hint("list the ingested tasks with `GET /api/tasks`, or check the id")
    })?;
    if source.request_text.trim().is_empty() {
        return Err(
            Refusal::usage(format!("the SSOT task `{id}` has no request_text"))
                .hint("write the prompt with `gatekeeper new <TASK> -m …` instead")
                .into(),
        );
    }
    let mut text = format!("# {task}\n\n{}\n", source.request_text.trim_end());
    if !source.acceptance_criteria.is_empty() {
        text.push_str("\n## Acceptance criteria\n\n");
        for c in &source.acceptance_criteria {
            text.push_str(&format!("- {}: {}\n", c.id, c.text));
        }
    }
    if !source.declared_scope.is_empty() {
        text.push_str("\n## Allowed paths\n\n");
        for p in &source.declared_scope {
            text.push_str(&format!("- `{p}`\n"));
        }
    }
    if id.as_str() != task.as_str() {
        let now = now_rfc3339();
        let mut extra = std::collections::BTreeMap::new();
        extra.insert("from_ssot".to_owned(), serde_json::json!(id.as_str()));
        let record = TaskRecord {
            task_id: task.to_string(),
            source: Source::Cli,
            correlation_id: source.correlation_id.clone(),
            created_at: now.clone(),
            updated_at: now.clone(),
            version: 1,
            request_text: source.request_text.clone(),
            acceptance_criteria: source.acceptance_criteria.clone(),
            declared_scope: source.declared_scope.clone(),
            decision: None,
            history: vec![HistoryEntry {
                at: now,
                event: "created".to_owned(),
                by: Some("cli".to_owned()),
                version: None,
                reason: None,
                extra: std::collections::BTreeMap::new(),
            }],
            ci_status: serde_json::Value::Null,
            pipeline: None,
            extra,
        };
        match create_record(&dir, record) {
            Ok(_) => {}
            Err(StoreError::Exists(_)) => {
                let tid =
                    TaskId::parse(task.as_str()).map_err(|e| Refusal::usage(e.to_string()))?;
                let existing = read_record(&dir, &tid)?;
                if existing.as_ref().map(|r| r.correlation_id.as_str())
                    != Some(source.correlation_id.as_str())
                {
                    return Err(Refusal::usage(format!(
                        "`ssot/{task}.json` exists with another correlation id"
                    ))
                    .hint("pick another task name")
                    .into());
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    crate::fsx::write_atomic(&path, text.as_bytes())?;
    printer::out(&format!(
        "wrote {} from SSOT task {id} (correlation id {})",
        Workspace::prompt_rel(task),
        source.correlation_id
    ));
    printer::hint(&format!("run `gatekeeper run {task}`"));
    Ok(ExitKind::Done)
}
