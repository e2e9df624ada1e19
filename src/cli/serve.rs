//! `gatekeeper serve [--addr HOST:PORT] [--root DIR]` (SPEC §8): binds, prints the bound address
//! on stdout (so that scripts and tests read it instead of waiting), and serves until SIGINT or
//! SIGTERM. The admin token comes from `GATEKEEPER_ADMIN_TOKEN`; without it admin routes answer
//! 503. A hidden `--bare-bench FILE` serves FILE's bytes from a bare axum handler, the baseline of
//! the SPEC §12 throughput ratio.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use clap::Args;

use super::printer;
use crate::config::{Config, Env};
use crate::exit::{ExitKind, Refusal};
use crate::server::{AppState, ServerOptions};
use crate::workspace::Workspace;

/// Arguments of `gatekeeper serve`.
#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    /// Listen address [default: `server.addr` of gatekeeper.yaml, else 127.0.0.1:8787].
    #[arg(long, value_name = "HOST:PORT")]
    addr: Option<String>,
    /// Folder holding `ssot/` and `audit/` [default: `server.root` of gatekeeper.yaml, relative
    /// to the workspace root; outside a workspace, the current folder].
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Benchmark baseline: serve FILE's bytes at `GET /api/tasks/{id}` from a bare handler.
    #[arg(long, hide = true, value_name = "FILE")]
    bare_bench: Option<PathBuf>,
}

/// The listen address and root, from the arguments, then gatekeeper.yaml, then defaults.
fn resolve(args: &ServeArgs, start: &Path) -> Result<(String, PathBuf)> {
    let (config, base) = match Workspace::discover(start) {
        Ok(ws) => (Config::load(&ws.config_path())?, ws.root().to_path_buf()),
        Err(_) => (Config::default(), start.to_path_buf()),
    };
    let addr = args.addr.clone().unwrap_or(config.server.addr);
    let root = match &args.root {
        Some(dir) => start.join(dir),
        None => base.join(&config.server.root),
    };
    Ok((addr, root))
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

/// Runs `gatekeeper serve`.
pub(super) fn run(args: &ServeArgs, start: &Path, env: &Env) -> Result<ExitKind> {
    let (addr, root) = resolve(args, start)?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            env.get("GATEKEEPER_LOG").unwrap_or("warn"),
        ))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&addr).await.map_err(|e| {
            Refusal::usage(format!("cannot listen on `{addr}`: {e}"))
                .hint("pick a free address with `--addr 127.0.0.1:0`")
        })?;
        let bound = listener.local_addr()?;
        if let Some(file) = &args.bare_bench {
            let body = fs_err::read(file)?;
            printer::out(&format!(
                "listening on http://{bound} (bare benchmark handler)"
            ));
            bare_bench(listener, body).await?;
            return Ok(ExitKind::Done);
        }
        let mut options = ServerOptions::new(&root);
        options.admin_token = env.get("GATEKEEPER_ADMIN_TOKEN").map(str::to_owned);
        options.webhook_secret = env.get("WEBHOOK_SECRET").map(str::to_owned);
        options.telegram_secret = env.get("TELEGRAM_SECRET_TOKEN").map(str::to_owned);
        let (state, load_errors) = AppState::open(&options)?;
        for message in &load_errors {
            printer::note(&format!("warning: skipped an SSOT file: {message}"));
        }
        if state.admin_token().is_none() {
            printer::note(
                "warning: GATEKEEPER_ADMIN_TOKEN is not set: create, approve and reject answer 503",
            );
        }
        if options.webhook_secret.as_deref().is_none_or(str::is_empty) {
            printer::note("warning: WEBHOOK_SECRET is not set: POST /webhooks/github answers 503");
        }
        printer::out(&format!("listening on http://{bound}"));
        printer::note(&format!(
            "serving {} tasks from `{}`; dashboard at http://{bound}/",
            state.store().len(),
            root.display()
        ));
        crate::server::serve(listener, state, shutdown_signal()).await?;
        Ok(ExitKind::Done)
    })
}

/// The SPEC §12 baseline: the same bytes from a handler that does nothing else.
async fn bare_bench(listener: tokio::net::TcpListener, body: Vec<u8>) -> std::io::Result<()> {
    use axum::routing::get;
    let body = axum::body::Bytes::from(body);
    let app = axum::Router::new().route(
        "/api/tasks/{id}",
        get(move || {
            let body = body.clone();
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    body,
                )
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
}
