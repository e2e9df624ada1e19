//! The pipeline and the task API as one system (SPEC §8.1): `gatekeeper serve` runs in the
//! workspace while `gatekeeper step` runs the nine steps in other processes; every step reaches an
//! SSE client as a `task_updated` event and the API shows the step; with
//! `require_human_approval: true`, step 8 is refused until an approval is given through the API.

use std::process::Child;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use gatekeeper::verify_phase::load::{Http, SseClient, client};

use crate::support::{PATCH_CONFIG, PATCH_PROMPT, Ws};

const TOKEN: &str = "live-admin-token-42";
const WAIT: Duration = Duration::from_secs(15);

/// `gatekeeper serve` in the workspace, killed when dropped.
struct Serve {
    child: Child,
    base: String,
}

impl Serve {
    fn start(ws: &Ws) -> Serve {
        let mut command = ws.cmd(&["serve", "--addr", "127.0.0.1:0"]);
        command.env("GATEKEEPER_ADMIN_TOKEN", TOKEN);
        let (child, base) = crate::server_support::spawn_serve(command);
        Serve { child, base }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads events until one for task `t` shows `want` (checked through `GET /api/tasks/t`, as the
/// dashboard does), and returns the task then.
async fn until(
    events: &mut SseClient,
    http: &Http,
    what: &str,
    want: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let message = tokio::time::timeout_at(deadline, events.next())
            .await
            .unwrap_or_else(|_| panic!("no event showing {what} within {WAIT:?}"))
            .expect("stream ok")
            .expect("stream open");
        assert_eq!(message.event, "task_updated");
        let data: Value = serde_json::from_str(&message.data).expect("JSON data");
        if data["task_id"] != "t" {
            continue;
        }
        let task = http.get("/api/tasks/t").await.expect("GET").json();
        if want(&task) {
            return task;
        }
    }
}

/// Runs a `gatekeeper` command without blocking the runtime's other worker.
fn gk(ws: &Ws, args: &[&str]) -> crate::support::Run {
    tokio::task::block_in_place(|| ws.gk(args))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_is_watched_over_sse_from_step_0_to_8_and_waits_for_an_api_approval() {
    let ws = Ws::with_task(
        &format!("{PATCH_CONFIG}require_human_approval: true\n"),
        PATCH_PROMPT,
    );
    let serve = Serve::start(&ws);
    let http = Http::new(&serve.base, Some(TOKEN)).unwrap();
    let sse = client(2).unwrap();
    let mut events = SseClient::connect(&sse, &serve.base, None).await.unwrap();

    let mut seen = Vec::new();
    for step in 0..=7u64 {
        gk(&ws, &["step", &step.to_string(), "t"]).expect(0);
        let task = until(&mut events, &http, &format!("step {step}"), |t| {
            t["pipeline"]["step"] == step
        })
        .await;
        seen.push((step, task["pipeline"]["state"].clone()));
        // SPEC §8.1's status view: a task_result (step 4 on) makes the task `needs_review`.
        let status = if step >= 4 { "needs_review" } else { "pending" };
        assert_eq!(task["status"], status, "after step {step}");
        if step == 0 {
            assert_eq!(task["request_text"], PATCH_PROMPT);
            assert_eq!(task["source"], "cli");
        }
        if step == 2 {
            assert_eq!(
                task["declared_scope"],
                serde_json::json!(["src/greeting.txt"])
            );
        }
    }
    assert!(seen.iter().all(|(_, state)| state == "done"), "{seen:?}");

    // Step 8 waits for a human; a refusal writes nothing, so no event and no new journal line.
    let before = ws.journal_lines("t");
    let run = gk(&ws, &["step", "8", "t"]).expect(3);
    assert!(
        run.stderr.contains("needs a human approval"),
        "{}",
        run.stderr
    );
    assert_eq!(ws.journal_lines("t"), before);

    // The approval arrives through the API, and the stream shows it.
    let approved = http
        .post(
            "/api/tasks/t/approve",
            Some(&serde_json::json!({"by": "alice", "reason": "diff read"})),
            true,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.json());
    let task = until(&mut events, &http, "the approval", |t| {
        t["status"] == "approved"
    })
    .await;
    assert_eq!(task["decision"]["by"], "alice");

    gk(&ws, &["step", "8", "t"]).expect(0);
    let task = until(&mut events, &http, "step 8", |t| t["pipeline"]["step"] == 8).await;
    assert_eq!(task["pipeline"]["state"], "done");
    let contracts = task["pipeline"]["contracts"].as_array().unwrap().len();
    assert!(contracts >= 2, "{task}");
    // Every step is in the task's history, in order.
    let steps: Vec<u64> = task["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["event"] == "step_finished")
        .map(|h| h["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, (0..=8).collect::<Vec<_>>());
    // The server's own files never made the tree dirty for the pipeline.
    assert!(ws.exists("audit/events.jsonl"));
    drop(serve);
}
