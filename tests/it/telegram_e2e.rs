//! The correlation id end to end (seed 004: Telegram(message_id) → SSOT(task.correlation_id) →
//! tool_call.correlation_id → audit.correlation_id): a Telegram message ingested by the server
//! becomes `ssot/<id>.json`; `gatekeeper new --from-ssot` starts a pipeline task from it; step 0
//! journals the SSOT record's correlation id and the provider of step 1 receives it as
//! `GATEKEEPER_CORRELATION_ID`.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use gatekeeper::server::telegram::task_id_of;
use gatekeeper::server::{AppState, ServerOptions};
use serde_json::{Value, json};

use crate::server_support::send;
use crate::support::{PATCH_CONFIG, Ws};

/// Ingests one Telegram message into the workspace's `ssot/` through the real route; returns the
/// task id.
async fn ingest(ws: &Ws, chat: i64, message_id: i64, text: &str) -> String {
    let mut options = ServerOptions::new(ws.root());
    options.watch = false;
    let (state, errors) = AppState::open(&options).expect("open");
    assert!(errors.is_empty(), "{errors:?}");
    let update = json!({"update_id": 1, "message": {"message_id": message_id,
        "chat": {"id": chat, "type": "private"}, "date": 1_700_000_000, "text": text}});
    let answer = send(
        gatekeeper::server::router(state.clone()),
        Request::post("/webhooks/telegram")
            .header("content-type", "application/json")
            .body(Body::from(update.to_string()))
            .expect("request"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    state.audit().flush().await.expect("flush");
    answer.json()["task_id"]
        .as_str()
        .expect("task id")
        .to_owned()
}

fn workspace_with_recording_agent() -> (Ws, std::path::PathBuf) {
    let ws = Ws::new();
    let seen = ws.scratch("env.txt");
    let script = ws.agent(
        "gemini.sh",
        &[(
            "audit",
            format!(
                "echo \"$GATEKEEPER_TASK $GATEKEEPER_CORRELATION_ID\" > '{}'\necho '# Audit'",
                seen.display()
            ),
        )],
    );
    ws.config(&format!(
        "{PATCH_CONFIG}roles:\n  gemini: {{ provider: command, argv: [\"sh\", \"{script}\"] }}\n"
    ));
    ws.file(".gitignore", "ssot/\naudit/\n");
    ws.commit("config");
    (ws, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_telegram_message_carries_its_correlation_id_into_the_pipeline() {
    let (ws, seen) = workspace_with_recording_agent();
    let id = ingest(&ws, 777, 31, "Change the greeting to `Hello, gatekeeper!`").await;
    assert_eq!(id, task_id_of(777, 31));

    let run = ws.gk(&["new", &id, "--from-ssot", &id]).expect(0);
    assert!(
        run.stdout.contains(&format!("correlation id {id}")),
        "{}",
        run.stdout
    );
    let prompt = ws.read(&format!("docs/ai-gated/prompt/{id}.md"));
    assert!(
        prompt.contains("Change the greeting to `Hello, gatekeeper!`"),
        "{prompt}"
    );

    ws.steps_to(&id, 1);
    assert_eq!(ws.status_json(&id)["correlation_id"], id.as_str());
    let journal = ws.journal(&id);
    assert!(!journal.is_empty());
    assert!(
        journal.iter().all(|l| l["correlation_id"] == id.as_str()),
        "{journal:#?}"
    );
    assert_eq!(
        std::fs::read_to_string(seen).expect("the agent ran"),
        format!("{id} {id}\n")
    );
    // The server's audit line for the creation carries the same id.
    let audit = ws.read("audit/events.jsonl");
    let created: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .filter(|l: &Value| l["event"] == "telegram_task_created")
        .collect();
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["correlation_id"], id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_task_name_keeps_the_ssot_correlation_id() {
    let (ws, seen) = workspace_with_recording_agent();
    let id = ingest(&ws, -100, 5, "Greet gatekeeper").await;
    ws.gk(&["new", "greet-tg", "--from-ssot", &id]).expect(0);
    let mirror: Value = serde_json::from_str(&ws.read("ssot/greet-tg.json")).expect("json");
    assert_eq!(mirror["correlation_id"], id.as_str());
    assert_eq!(mirror["from_ssot"], id.as_str());
    assert_eq!(mirror["source"], "cli");
    ws.steps_to("greet-tg", 1);
    assert_eq!(ws.status_json("greet-tg")["correlation_id"], id.as_str());
    assert_eq!(
        std::fs::read_to_string(seen).expect("the agent ran"),
        format!("greet-tg {id}\n")
    );
}

#[test]
fn from_ssot_refuses_unknown_and_invalid_ids() {
    let (ws, _) = workspace_with_recording_agent();
    let run = ws
        .gk(&["new", "t1", "--from-ssot", "abcdef012345"])
        .expect(2);
    assert!(run.stderr.contains("no SSOT task"), "{}", run.stderr);
    let run = ws.gk(&["new", "t1", "--from-ssot", "../etc"]).expect(2);
    assert!(run.stderr.contains("invalid task id"), "{}", run.stderr);
    let run = ws
        .gk(&["new", "t1", "--from-ssot", "x", "-m", "text"])
        .expect(2);
    assert!(run.stderr.contains("cannot be used with"), "{}", run.stderr);
    assert!(!ws.exists("docs/ai-gated/prompt/t1.md"));
}
