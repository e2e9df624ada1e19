//! `gatekeeper verify-phase <x> [--url URL] [--duration SECS]` (SPEC §9): runs the phase's
//! acceptance scenario, writes `reports/phase_<X>_acceptance.json` and `.md`, prints the metrics,
//! and exits 0 only if the report passed (1 otherwise).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Args;

use super::printer;
use crate::config::Env;
use crate::exit::ExitKind;
use crate::verify_phase::{Options, Phase};
use crate::workspace::Workspace;

/// Arguments of `gatekeeper verify-phase`.
#[derive(Debug, Args)]
pub(super) struct VerifyPhaseArgs {
    /// The phase of seed 004: a (SSOT + API), b (SSE + dashboard), c, d or e.
    #[arg(value_parser = ["a", "b", "c", "d", "e"])]
    phase: String,
    /// Verify a running server on loopback instead of starting one (admin token from
    /// GATEKEEPER_ADMIN_TOKEN).
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// The longest any load part may run, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    duration: u64,
    /// Phase b: SSE clients.
    #[arg(long, hide = true, default_value_t = 3)]
    clients: usize,
    /// Phase b: status changes.
    #[arg(long, hide = true, default_value_t = 20)]
    changes: usize,
    /// Write the report into DIR instead of `reports/` (benchmarks).
    #[arg(long, hide = true, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// Runs `gatekeeper verify-phase`.
pub(super) fn run(args: &VerifyPhaseArgs, start: &Path, env: &Env) -> Result<ExitKind> {
    let phase = Phase::parse(&args.phase).expect("clap accepts only a to e");
    let workspace = Workspace::discover(start)
        .map_or_else(|_| start.to_path_buf(), |ws| ws.root().to_path_buf());
    let mut options = Options::new(phase, &workspace);
    options.duration = Duration::from_secs(args.duration);
    options.clients = args.clients.clamp(1, 5000);
    options.changes = args.changes.clamp(1, 10_000);
    if let Some(dir) = &args.out {
        options.reports_dir = start.join(dir);
    }
    if let Some(url) = &args.url {
        options.url = Some(url.clone());
        options.admin_token = env.get("GATEKEEPER_ADMIN_TOKEN").map(str::to_owned);
        options.webhook_secret = env.get("WEBHOOK_SECRET").map(str::to_owned);
        options.telegram_secret = env.get("TELEGRAM_SECRET_TOKEN").map(str::to_owned);
        options.how_to_run = format!("{} --url {url}", options.how_to_run);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    let outcome = runtime.block_on(crate::verify_phase::run(&options))?;
    let report = &outcome.report;
    let mut text = format!(
        "phase {}: {}\n",
        report.phase,
        if report.pass { "PASS" } else { "FAIL" }
    );
    for (name, value) in &report.metrics {
        let _ = writeln!(text, "  {name:<24} {value}");
    }
    for reason in &report.fail_reasons {
        let _ = writeln!(text, "  fail: {reason}");
    }
    let _ = write!(
        text,
        "report: {}\n        {}",
        outcome.json_path.display(),
        outcome.md_path.display()
    );
    printer::out(&text);
    Ok(if report.pass {
        ExitKind::Done
    } else {
        ExitKind::Failed
    })
}
