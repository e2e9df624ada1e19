//! Per-phase acceptance (SPEC §9, seed 004): `gatekeeper verify-phase <x>` runs the scenario of
//! module X against a server, measures the seed's metrics and writes
//! `reports/phase_<X>_acceptance.json` and `.md`; the command passes only if the report does.
//!
//! Without `--url` each run starts its own server on `127.0.0.1:0` over a temporary root, with a
//! random admin token, and stops it at the end. With `--url` the server must be on loopback and
//! the admin token comes from `GATEKEEPER_ADMIN_TOKEN`. Load is generated in-process (tokio),
//! bounded in count and time. This module is the one client of the server besides tests; it only
//! ever talks to loopback addresses ([`load::check_loopback`]).

pub mod load;
pub mod phase_a;
pub mod phase_b;
pub mod phase_c;
pub mod phase_d;
pub mod phase_e;
pub mod report;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};
use tokio::sync::oneshot;

use crate::server::{AppState, ServerOptions};
use load::Http;
use report::{AcceptanceReport, ReportBuilder};

/// The phases of seed 004.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Module 1: SSOT + API closed loop.
    A,
    /// Module 2: SSE + dashboard.
    B,
    /// Module 3: webhooks + Telegram ingest.
    C,
    /// Module 4: executor/reviewer protocol.
    D,
    /// Module 5: stability and stress.
    E,
}

impl Phase {
    /// Parses `a`…`e` (either case).
    #[must_use]
    pub fn parse(raw: &str) -> Option<Phase> {
        match raw.to_ascii_lowercase().as_str() {
            "a" => Some(Phase::A),
            "b" => Some(Phase::B),
            "c" => Some(Phase::C),
            "d" => Some(Phase::D),
            "e" => Some(Phase::E),
            _ => None,
        }
    }

    /// The upper-case letter used in report names.
    #[must_use]
    pub fn letter(self) -> &'static str {
        match self {
            Phase::A => "A",
            Phase::B => "B",
            Phase::C => "C",
            Phase::D => "D",
            Phase::E => "E",
        }
    }
}

/// What a run needs.
#[derive(Clone, Debug)]
pub struct Options {
    /// The phase.
    pub phase: Phase,
    /// A running server to test instead of starting one (loopback only).
    pub url: Option<String>,
    /// The admin token for `url` (from `GATEKEEPER_ADMIN_TOKEN`).
    pub admin_token: Option<String>,
    /// The longest any load part of the scenario may run.
    pub duration: Duration,
    /// The workspace root: artifact paths are relative to it.
    pub workspace: PathBuf,
    /// Where the reports go (default `<workspace>/reports`).
    pub reports_dir: PathBuf,
    /// Phase B: SSE clients (seed: at least 3).
    pub clients: usize,
    /// Phase B: status changes to trigger (seed: 20).
    pub changes: usize,
    /// The command line to put in `how_to_run`.
    pub how_to_run: String,
    /// Phase c with `--url`: the server's `WEBHOOK_SECRET`.
    pub webhook_secret: Option<String>,
    /// Phase c with `--url`: the server's `TELEGRAM_SECRET_TOKEN`, when it has one.
    pub telegram_secret: Option<String>,
}

impl Options {
    /// Defaults for a phase over a workspace.
    #[must_use]
    pub fn new(phase: Phase, workspace: &Path) -> Options {
        Options {
            phase,
            url: None,
            admin_token: None,
            duration: Duration::from_secs(10),
            workspace: workspace.to_path_buf(),
            reports_dir: workspace.join("reports"),
            clients: 3,
            changes: 20,
            how_to_run: format!(
                "gatekeeper verify-phase {}",
                phase.letter().to_ascii_lowercase()
            ),
            webhook_secret: None,
            telegram_secret: None,
        }
    }

    /// The folder for this phase's artifacts: `<reports>/phase_<X>/`.
    #[must_use]
    pub fn artifacts_dir(&self) -> PathBuf {
        self.reports_dir
            .join(format!("phase_{}", self.phase.letter()))
    }
}

/// A server started for the run.
pub struct LocalServer {
    /// Its root (`ssot/`, `audit/`), removed when dropped.
    pub root: tempfile::TempDir,
    /// Its state, for checks that look inside (audit log, event hub).
    pub state: AppState,
    /// Its random `WEBHOOK_SECRET` (phase c signs with it).
    pub webhook_secret: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl LocalServer {
    /// Starts a server on `127.0.0.1:0` over a new temporary root with a random admin token;
    /// returns it with its base URL and token.
    ///
    /// # Errors
    /// When the root, the listener or the state cannot be set up.
    pub async fn start() -> Result<(LocalServer, String, String)> {
        let root = tempfile::Builder::new()
            .prefix("gatekeeper-verify-")
            .tempdir()
            .context("failed to create a temporary server root")?;
        let mut secret = [0u8; 24];
        getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let token = hex::encode(secret);
        getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let webhook_secret = hex::encode(secret);
        let mut server_options = ServerOptions::new(root.path()).admin_token(&token);
        server_options.webhook_secret = Some(webhook_secret.clone());
        let (state, _) = AppState::open(&server_options)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("failed to bind 127.0.0.1:0")?;
        let base = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(crate::server::serve(listener, state.clone(), async move {
            let _ = stopped.await;
        }));
        Ok((
            LocalServer {
                root,
                state,
                webhook_secret,
                stop: Some(stop),
                task,
            },
            base,
            token,
        ))
    }

    /// Stops the server and waits for it (at most 10 s).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}

/// The server under test.
pub struct Target {
    /// A client bound to it.
    pub http: Http,
    /// The server, when this run started it.
    pub local: Option<LocalServer>,
}

/// What a run produced.
#[derive(Debug)]
pub struct Outcome {
    /// The report.
    pub report: AcceptanceReport,
    /// Where its JSON was written.
    pub json_path: PathBuf,
    /// Where its markdown was written.
    pub md_path: PathBuf,
}

/// Runs a phase and writes its report.
///
/// # Errors
/// A usage refusal for a phase this build does not verify or a non-loopback URL; I/O errors when
/// the report cannot be written. A failing scenario is not an error: it is a report with
/// `pass: false`.
pub async fn run(options: &Options) -> Result<Outcome> {
    let target = match (options.phase, &options.url) {
        // Phase D drives the pipeline over a temporary workspace; it needs no server.
        (Phase::D, _) => None,
        (_, Some(url)) => Some(Target {
            http: Http::new(&load::check_loopback(url)?, options.admin_token.as_deref())?,
            local: None,
        }),
        (_, None) => {
            let (server, base, token) = LocalServer::start().await?;
            Some(Target {
                http: Http::new(&base, Some(&token))?,
                local: Some(server),
            })
        }
    };
    let mut builder = ReportBuilder::start(options.phase.letter(), &options.how_to_run);
    builder.notes.push(match (options.phase, &options.url) {
        (Phase::D, _) => "target: a temporary git workspace running the pipeline in-process with a fake executor and a fake reviewer (`command` agents); no server is needed".to_owned(),
        (_, Some(url)) => format!("target: {url} (a running server)"),
        (_, None) => {
            "target: a server started by the command on 127.0.0.1:0 over a temporary root"
                .to_owned()
        }
    });
    // Artifacts of an earlier run would be vouched for by no report: start from an empty folder.
    let artifacts_dir = options.artifacts_dir();
    if artifacts_dir.is_dir() {
        fs_err::remove_dir_all(&artifacts_dir)?;
    }
    crate::fsx::create_dir_all(&artifacts_dir)?;
    let artifacts = match (options.phase, &target) {
        (Phase::D, _) => phase_d::run(options, &mut builder)?,
        (Phase::A, Some(t)) => phase_a::run(t, options, &mut builder).await?,
        (Phase::C, Some(t)) => phase_c::run(t, options, &mut builder).await?,
        (Phase::E, Some(t)) => phase_e::run(t, options, &mut builder).await?,
        (_, Some(t)) => phase_b::run(t, options, &mut builder).await?,
        (_, None) => return Err(anyhow::anyhow!("no server to verify against")),
    };
    if let Some(server) = target.and_then(|t| t.local) {
        server.stop().await;
    }
    let checks_path = artifacts_dir.join("checks.json");
    crate::fsx::write_atomic(
        &checks_path,
        crate::canonical::to_canonical_pretty(&builder.checks).as_bytes(),
    )?;
    let mut described = Vec::new();
    for (path, note) in artifacts {
        described.push(report::artifact(&options.workspace, &path, &note)?);
    }
    described.push(report::artifact(
        &options.workspace,
        &checks_path,
        "every check of the scenario with what was seen",
    )?);
    let (report, checks, notes) = builder.finish(described);
    let (json_path, md_path) = report::write(&options.reports_dir, &report, &checks, &notes)?;
    Ok(Outcome {
        report,
        json_path,
        md_path,
    })
}

/// Writes `bytes` to `dir/name` and returns the path, for an artifact.
///
/// # Errors
/// When the file cannot be written.
pub fn write_artifact(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf> {
    let path = dir.join(name);
    crate::fsx::write_atomic(&path, bytes)?;
    Ok(path)
}

/// The audit lines of a local server (after flushing its log).
///
/// # Errors
/// When the log cannot be flushed or read.
pub async fn audit_lines(server: &LocalServer) -> Result<Vec<serde_json::Value>> {
    server.state.audit().flush().await?;
    let text = fs_err::read_to_string(server.state.audit().path())?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}
