//! Phase D (seed 004 module 4, SPEC §10): the protocolized executor / reviewer with fake agents.
//!
//! Scenario, over a temporary git workspace (no server is needed):
//! a) a sample task whose prompt has acceptance criteria and an allowed path;
//! b) a fake executor (a `command` agent) answers step 4 with the ACK and work log;
//!    `codex/ack.json` must say `echo_match_rate == 1.0`;
//! c) a fake reviewer says NO once with issues that all name a criterion and a work-log entry,
//!    then YES; `issues_with_criterion_ref_rate == 1.0` over the rejecting verdict;
//! d) traceability: every issue's criterion is one of the task's and its work-log entry is in
//!    `codex/task_result.json`;
//! e) fidelity: the fix round received the rejecting verdict's issues byte-for-byte, the journal's
//!    hashes on both sides match, and `gatekeeper verify` finds nothing.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde_json::Value;

use super::report::ReportBuilder;
use super::{Options, write_artifact};
use crate::config::{Config, Env};
use crate::hash::sha256_hex;
use crate::pipeline::Pipeline;
use crate::pipeline::engine::{Engine, Quiet};
use crate::pipeline::protocol;
use crate::workspace::{TaskName, Workspace};

const TASK: &str = "phase-d-sample";

const PROMPT: &str = "# Greet the protocol\n\nChange the greeting in `src/greeting.txt`.\n\n## Acceptance criteria\n\n- AC-1: `src/greeting.txt` says `Hello, protocol!`\n- AC-2: no other file changes\n\n## Allowed paths\n\n- `src/greeting.txt`\n";

const ACK: &str = "## ACK\n\n- AC-1: `src/greeting.txt` says `Hello, protocol!`\n- AC-2: no other file changes\n- scope: `src/greeting.txt`\n\n## Work log\n\n- W-1: rewrote `src/greeting.txt` to say `Hello, protocol!`\n- W-2: checked that nothing else changed\n\n# Apply\n\nEdited the greeting.\n";

const DECISIONS: &str = "# Decisions\n\n## Allowed paths\n\n- `src/greeting.txt`\n\n## Forbidden changes\n\n- anything outside the allowed paths\n\nSchema changes required: NO\n\nCLAUDE_DECISIONS_OK: YES\n";

const REJECT: &str = "# Post-implementation audit\n\n## Issues\n\n- AC-1 W-1: the greeting lacks its trailing newline check\n- AC-2 W-2: the check that nothing else changed is not recorded\n\nCLAUDE_FINAL_OK: NO\n";

const APPROVE: &str =
    "# Post-implementation audit\n\n## Issues\n\n- none\n\nCLAUDE_FINAL_OK: YES\n";

fn heredoc(text: &str) -> String {
    format!("cat <<'GK_FAKE_EOF'\n{text}GK_FAKE_EOF\n")
}

fn q(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

/// Builds the workspace and the fake agents; returns the repository root.
fn setup(dir: &Path) -> Result<PathBuf> {
    let repo_dir = dir.join("repo");
    let scratch = dir.join("scratch");
    crate::fsx::create_dir_all(&repo_dir)?;
    crate::fsx::create_dir_all(&scratch)?;
    let repo = git2::Repository::init(&repo_dir)?;
    let mut cfg = repo.config()?;
    cfg.set_str("user.name", "verify-phase d")?;
    cfg.set_str("user.email", "verify-phase@localhost")?;
    let verdict = repo_dir.join(format!(".ai-stack-trace/{TASK}/claude/verdict.json"));
    let executor = scratch.join("fake_executor.sh");
    let reviewer = scratch.join("fake_reviewer.sh");
    let reviewed = scratch.join("reviewed-once");
    fs_err::write(
        &executor,
        format!(
            "case \"$GATEKEEPER_TEMPLATE\" in\nimplement)\nprintf 'Hello, protocol!\\n' > src/greeting.txt\n{}\n;;\nfix)\ncat > {}\ncp {} {}\n{}\n;;\n*)\necho \"# $GATEKEEPER_TEMPLATE\"\necho\necho 'fake executor answer'\n;;\nesac\n",
            heredoc(ACK),
            q(&scratch.join("fix-stdin.txt")),
            q(&verdict),
            q(&scratch.join("verdict-round-1.json")),
            heredoc("# Fix\n\nAddressed every issue.\n"),
        ),
    )?;
    fs_err::write(
        &reviewer,
        format!(
            "case \"$GATEKEEPER_TEMPLATE\" in\ndecisions)\n{}\n;;\nreview)\nif [ -f {r} ]; then\n{}else\ntouch {r}\n{}fi\n;;\n*)\necho \"# $GATEKEEPER_TEMPLATE\"\n;;\nesac\n",
            heredoc(DECISIONS),
            heredoc(APPROVE),
            heredoc(REJECT),
            r = q(&reviewed),
        ),
    )?;
    let file = |rel: &str, text: &str| -> Result<()> {
        let p = repo_dir.join(rel);
        if let Some(parent) = p.parent() {
            crate::fsx::create_dir_all(parent)?;
        }
        fs_err::write(p, text)?;
        Ok(())
    };
    file("README.md", "# phase d sample\n")?;
    file("src/greeting.txt", "Hello, world!\n")?;
    file(
        "gatekeeper.yaml",
        &format!(
            "version: 1\nreview_rounds: 2\nchecks:\n  - {{ name: greeting, run: \"grep -q 'Hello, protocol!' src/greeting.txt\" }}\nroles:\n  codex: {{ provider: command, argv: [\"sh\", \"{}\"] }}\n  claude: {{ provider: command, argv: [\"sh\", \"{}\"] }}\n",
            executor.display(),
            reviewer.display()
        ),
    )?;
    let mut index = repo.index()?;
    index.add_all(["*"], git2::IndexAddOption::DEFAULT, None)?;
    index.write()?;
    let tree = repo.find_tree(index.write_tree()?)?;
    let sig = repo.signature()?;
    repo.commit(Some("HEAD"), &sig, &sig, "initial", &tree, &[])?;
    file(&format!("docs/ai-gated/prompt/{TASK}.md"), PROMPT)?;
    Ok(repo_dir)
}

fn read_json(path: &Path) -> Value {
    fs_err::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

/// Runs the scenario; returns the artifacts.
///
/// # Errors
/// When the workspace cannot be built or artifacts cannot be written.
pub fn run(options: &Options, b: &mut ReportBuilder) -> Result<Vec<(PathBuf, String)>> {
    let dir = tempfile::Builder::new()
        .prefix("gatekeeper-phase-d-")
        .tempdir()
        .context("failed to create a temporary workspace")?;
    let root = setup(dir.path())?;
    let scratch = dir.path().join("scratch");
    let ws = Workspace::discover(&root)?;
    let config = Config::load(&ws.config_path())?;
    let pipeline = Pipeline::load(&config.pipeline, ws.root())?;
    let env = Env::from_pairs(
        ["PATH", "HOME", "TMPDIR"]
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| (*k, v))),
    );
    let engine = Engine {
        ws: &ws,
        config: &config,
        pipeline: &pipeline,
        env: &env,
        progress: &Quiet,
        command_line: "gatekeeper verify-phase d".to_owned(),
    };
    let task = TaskName::parse(TASK)?;
    let outcomes = engine.run(&task, None)?;
    let last = outcomes
        .last()
        .map(|o| (o.step, o.exit.code(), o.summary.clone()));
    b.check(
        "pipeline_completes",
        last.as_ref().is_some_and(|(s, c, _)| *s == 8 && *c == 0),
        format!("last outcome: {last:?}"),
    );
    let ledger = root.join(format!(".ai-stack-trace/{TASK}"));

    // b) ACK.
    let ack = read_json(&ledger.join("codex/ack.json"));
    let rate = ack
        .get("echo_match_rate")
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    b.metric("ack_echo_match_rate", rate);
    b.check(
        "ack_echo_match_rate",
        (rate - 1.0).abs() < f64::EPSILON,
        format!(
            "{} of {} criteria and scope items echoed verbatim",
            ack.get("matched").unwrap_or(&Value::Null),
            ack.get("expected").unwrap_or(&Value::Null)
        ),
    );

    // c) issues of the rejecting verdict.
    let round1 = read_json(&scratch.join("verdict-round-1.json"));
    let issues: Vec<Value> = round1
        .get("issues")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let with_ref = issues
        .iter()
        .filter(|i| i.get("criterion_ref").is_some_and(Value::is_string))
        .count();
    #[allow(clippy::cast_precision_loss)]
    let ref_rate = if issues.is_empty() {
        0.0
    } else {
        with_ref as f64 / issues.len() as f64
    };
    b.metric("issues_with_criterion_ref_rate", ref_rate);
    b.check(
        "issues_with_criterion_ref_rate",
        !issues.is_empty() && with_ref == issues.len(),
        format!(
            "{with_ref} of {} issue(s) of the rejecting verdict name a criterion (decision {})",
            issues.len(),
            round1.get("decision").unwrap_or(&Value::Null)
        ),
    );

    // d) traceability.
    let result = read_json(&ledger.join("codex/task_result.json"));
    let work_ids: Vec<&str> = result
        .get("work_log")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|w| w.get("id").and_then(Value::as_str))
        .collect();
    let criteria: Vec<String> = crate::selfaudit::acceptance_criteria(PROMPT)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let untraced: Vec<String> = issues
        .iter()
        .filter(|i| {
            let c = i.get("criterion_ref").and_then(Value::as_str);
            let w = i.get("work_log_ref").and_then(Value::as_str);
            !(c.is_some_and(|c| criteria.iter().any(|x| x == c))
                && w.is_some_and(|w| work_ids.contains(&w)))
        })
        .map(|i| {
            i.get("id")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_owned()
        })
        .collect();
    let traceability = !issues.is_empty() && untraced.is_empty();
    b.metric("traceability_pass", traceability);
    b.check(
        "traceability_pass",
        traceability,
        format!(
            "work log {work_ids:?}; issues without a matching criterion and work-log entry: {untraced:?}"
        ),
    );

    // e) fidelity.
    let sent = fs_err::read_to_string(scratch.join("fix-stdin.txt")).unwrap_or_default();
    let bytes = protocol::issues_bytes(&Value::Array(issues.clone()));
    let journal: Vec<Value> = fs_err::read_to_string(ledger.join("ledger.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let hash_of = |event: &str| -> Vec<String> {
        journal
            .iter()
            .filter(|e| e.get("event").and_then(Value::as_str) == Some(event))
            .filter_map(|e| {
                e.get("data")
                    .and_then(|d| d.get("issues_sha256"))
                    .or_else(|| e.get("issues_sha256"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .collect()
    };
    let review = hash_of(crate::ledger::journal::events::REVIEW_ISSUES);
    let fixes = hash_of(crate::ledger::journal::events::FIX_REQUESTED);
    let own = sha256_hex(bytes.as_bytes());
    let report = engine.verify(&task)?;
    let fidelity = !issues.is_empty()
        && sent.contains(&bytes)
        && review.first() == Some(&own)
        && fixes.first() == Some(&own)
        && report.findings.is_empty();
    b.metric("fidelity_pass", fidelity);
    b.check(
        "fidelity_pass",
        fidelity,
        format!(
            "issues bytes sha256 {own}; in the fix prompt: {}; review_issues {review:?}; fix_requested {fixes:?}; verify findings: {}",
            sent.contains(&bytes),
            report.findings.len()
        ),
    );

    // Artifacts.
    let out = options.artifacts_dir();
    let mut artifacts = Vec::new();
    for (name, path, note) in [
        (
            "ack.json",
            ledger.join("codex/ack.json"),
            "codex/ack.json of the sample task",
        ),
        (
            "task_result.json",
            ledger.join("codex/task_result.json"),
            "codex/task_result.json: work log and diff snapshot",
        ),
        (
            "verdict_round_1.json",
            scratch.join("verdict-round-1.json"),
            "claude/verdict.json of the rejecting review",
        ),
        (
            "verdict_final.json",
            ledger.join("claude/verdict.json"),
            "claude/verdict.json of the approving review",
        ),
        (
            "fix_prompt.txt",
            scratch.join("fix-stdin.txt"),
            "the prompt the fix round sent to the executor (holds the issues byte-for-byte)",
        ),
        (
            "ledger.jsonl",
            ledger.join("ledger.jsonl"),
            "the task's journal",
        ),
        (
            "ssot_task.json",
            root.join(format!("ssot/{TASK}.json")),
            "the task's SSOT mirror",
        ),
    ] {
        if let Ok(bytes) = fs_err::read(&path) {
            artifacts.push((write_artifact(&out, name, &bytes)?, note.to_owned()));
        }
    }
    Ok(artifacts)
}
