//! Running child processes with a timeout: the configured checks, deploy commands and `command`
//! providers. Never through a shell unless the caller asks for `sh -c` (configured command lines
//! from gatekeeper.yaml, which the workspace owner wrote).

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::config::Env;

/// What a finished (or killed) process gave.
#[derive(Clone, Debug)]
pub struct Finished {
    /// The exit code; `None` when killed by a signal or the timeout.
    pub code: Option<i32>,
    /// stdout bytes.
    pub stdout: Vec<u8>,
    /// stderr bytes.
    pub stderr: Vec<u8>,
    /// Wall time.
    pub duration: Duration,
    /// True when the timeout killed it.
    pub timed_out: bool,
}

impl Finished {
    /// True when it exited with 0.
    #[must_use]
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// A process to run.
#[derive(Clone, Debug)]
pub struct Spec<'a> {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Working directory.
    pub cwd: &'a Path,
    /// Bytes for stdin (closed after writing).
    pub stdin: Option<&'a [u8]>,
    /// The environment (replaces the inherited one).
    pub env: &'a Env,
    /// Extra variables.
    pub extra_env: Vec<(String, String)>,
    /// Kill after this long.
    pub timeout: Duration,
}

/// `sh -c <line>`.
#[must_use]
pub fn shell(line: &str) -> Vec<String> {
    vec!["sh".to_owned(), "-c".to_owned(), line.to_owned()]
}

/// Runs a process to completion or timeout.
///
/// # Errors
/// When the program cannot be started.
pub fn run(spec: &Spec<'_>) -> Result<Finished> {
    let (program, args) = spec.argv.split_first().context("an empty command line")?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(spec.cwd)
        .env_clear()
        .envs(spec.env.iter())
        .envs(spec.extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(if spec.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("failed to start `{program}`"))?;
    let writer = spec.stdin.map(|bytes| {
        let mut stdin = child.stdin.take().expect("stdin was piped");
        let bytes = bytes.to_vec();
        std::thread::spawn(move || {
            // A child that exits without reading its stdin closes the pipe; that is not an error.
            let _ = stdin.write_all(&bytes);
        })
    });
    let mut out = child.stdout.take().expect("stdout was piped");
    let mut err = child.stderr.take().expect("stderr was piped");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf);
        buf
    });
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if start.elapsed() >= spec.timeout {
            let _ = child.kill();
            let _ = child.wait();
            timed_out = true;
            break None;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    if let Some(w) = writer {
        let _ = w.join();
    }
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    Ok(Finished {
        code: status.and_then(|s| s.code()),
        stdout,
        stderr,
        duration: start.elapsed(),
        timed_out,
    })
}
