//! One process at a time per task (SPEC §2 "Locking"), and a step killed in the middle (SPEC
//! §13): `status` shows it interrupted, `verify` still passes, and the task resumes.
//!
//! A `gemini` agent script holds step 1 open: it creates a marker file, then waits for a
//! release file. The tests poll for the marker; nothing sleeps for a fixed time.

use std::path::PathBuf;
use std::process::{Child, Stdio};

use crate::support::{PATCH_CONFIG, PATCH_PROMPT, Ws, wait_for};

struct Held {
    ws: Ws,
    marker: PathBuf,
    release: PathBuf,
}

/// A task whose step 1 blocks in its agent until released. `extra` goes into the
/// configuration.
fn held_task(extra: &str) -> Held {
    let ws = Ws::new();
    let marker = ws.scratch("agent-started");
    let release = ws.scratch("agent-release");
    let script = ws.script(
        "gemini.sh",
        &format!(
            "touch '{}'\nwhile [ ! -f '{}' ]; do sleep 0.02; done\nprintf '# Audit\\n\\nReleased.\\n'\n",
            marker.display(),
            release.display()
        ),
    );
    ws.config(&format!(
        "{PATCH_CONFIG}{extra}roles:\n  gemini: {{ provider: command, argv: [\"sh\", \"{script}\"] }}\n"
    ));
    ws.commit("config");
    ws.prompt("t", PATCH_PROMPT);
    ws.steps_to("t", 0);
    Held {
        ws,
        marker,
        release,
    }
}

impl Held {
    /// Starts `gatekeeper step 1 t` in the background and waits until its agent runs.
    fn start_step_1(&self) -> Child {
        let child = self
            .ws
            .cmd(&["step", "1", "t"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn gatekeeper");
        wait_for(&self.marker);
        child
    }

    fn release(&self) {
        std::fs::write(&self.release, "go\n").expect("release");
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // Never leave an agent script waiting, whatever the test did.
        let _ = std::fs::write(&self.release, "go\n");
    }
}

#[test]
fn a_second_process_on_the_same_task_is_refused_naming_the_holder() {
    let held = held_task("");
    let child = held.start_step_1();
    let before = held.ws.snapshot_tree(".ai-stack-trace");
    let second = held.ws.gk(&["step", "1", "t"]).expect(3);
    assert!(second.stderr.contains("locked by"), "{}", second.stderr);
    assert!(second.stderr.contains("pid "), "{}", second.stderr);
    assert!(second.stderr.contains("step 1 t"), "{}", second.stderr);
    assert!(second.stderr.contains("hint:"), "{}", second.stderr);
    assert!(
        before == held.ws.snapshot_tree(".ai-stack-trace"),
        "the refused process wrote to the ledger"
    );
    held.ws.gk(&["run", "t"]).expect(3);
    held.release();
    let first = child.wait_with_output().expect("wait");
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(
        held.ws.read(".ai-stack-trace/t/gemini/audit.md"),
        "# Audit\n\nReleased.\n"
    );
    // The lock is gone with its holder.
    held.ws.gk(&["step", "2", "t"]).expect(0);
}

#[test]
fn readers_are_not_blocked_by_a_running_step() {
    let held = held_task("");
    let child = held.start_step_1();
    held.ws.gk(&["status", "t"]).expect(0);
    held.ws.gk(&["verify", "t"]).expect(0);
    held.release();
    let first = child.wait_with_output().expect("wait");
    assert_eq!(first.status.code(), Some(0));
}

#[test]
fn another_task_is_not_locked_by_a_running_step() {
    let held = held_task("");
    held.ws.prompt("u", PATCH_PROMPT);
    // Step 0 of `u` needs a clean tree apart from its own prompt.
    held.ws.commit("prompts");
    held.ws
        .prompt("u", &format!("{PATCH_PROMPT}\nFor task u.\n"));
    let child = held.start_step_1();
    held.ws.gk(&["step", "0", "u"]).expect(0);
    held.release();
    let first = child.wait_with_output().expect("wait");
    assert_eq!(first.status.code(), Some(0));
}

#[test]
fn a_step_killed_mid_way_shows_interrupted_and_the_task_resumes() {
    // `gatekeeper.yaml` itself changes below (back to the stand-ins), so the task may change it.
    let held = held_task("scope: { always_allowed: [gatekeeper.yaml] }\n");
    let mut child = held.start_step_1();
    child.kill().expect("kill -9");
    let _ = child.wait().expect("reap");
    held.release();

    let ws = &held.ws;
    assert_eq!(ws.state("t", 1), "interrupted");
    let status = ws.gk(&["status", "t"]).expect(0);
    assert!(
        status
            .stdout
            .lines()
            .any(|l| l.starts_with("1 ") && l.contains("interrupted")),
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.contains("next: gatekeeper step 1 t"),
        "{}",
        status.stdout
    );
    ws.gk(&["verify", "t"]).expect(0);
    // Nothing holds the lock after a kill -9.
    ws.config(&format!(
        "{PATCH_CONFIG}scope: {{ always_allowed: [gatekeeper.yaml] }}\n"
    ));
    let run = ws.gk(&["run", "t"]).expect(0);
    assert!(run.stdout.contains("step 8 `commit`"), "{}", run.stdout);
    ws.gk(&["verify", "t"]).expect(0);
    assert!(
        ws.read(".ai-stack-trace/t/gemini/audit.md")
            .starts_with("# Audit")
    );
}
