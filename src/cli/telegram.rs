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
