//! `gatekeeper telegram poll --once` against a mock Bot API on 127.0.0.1 speaking the real
//! `getUpdates` wire format, forwarding to a real task server: offsets persisted so a restart
//! reprocesses nothing, Telegram errors (429 with retry_after, 401, not JSON), a backend that is
//! down, and the bot token never printed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use gatekeeper::server::telegram::task_id_of;
use serde_json::{Value, json};

use crate::server_support::{Running, TestServer};

const TOKEN: &str = "123456:AAE-test-token-never-printed";

#[derive(Default)]
struct Mock {
    updates: Vec<Value>,
    /// Answers to give before the queue, first first: (status, body).
    errors: Vec<(u16, String)>,
    /// The `offset` of every getUpdates call (None when absent), and the path's token.
    calls: Vec<(Option<i64>, String)>,
}

type Shared = Arc<Mutex<Mock>>;

async fn get_updates(
    State(mock): State<Shared>,
    UrlPath(bot): UrlPath<String>,
    Query(query): Query<HashMap<String, String>>,
) -> impl IntoResponse {
    let mut mock = mock.lock().expect("lock");
    let offset = query.get("offset").and_then(|o| o.parse::<i64>().ok());
    mock.calls.push((offset, bot.clone()));
    if bot != format!("bot{TOKEN}") {
        return (
            StatusCode::UNAUTHORIZED,
            json!({"ok": false, "error_code": 401, "description": "Unauthorized"}).to_string(),
        );
    }
    if !mock.errors.is_empty() {
        let (status, body) = mock.errors.remove(0);
        return (StatusCode::from_u16(status).expect("status"), body);
    }
    let result: Vec<Value> = mock
        .updates
        .iter()
        .filter(|u| offset.is_none_or(|o| u["update_id"].as_i64().unwrap_or(0) >= o))
        .cloned()
        .collect();
    (
        StatusCode::OK,
        json!({"ok": true, "result": result}).to_string(),
    )
}

async fn start_mock(mock: Shared) -> (String, tokio::task::JoinHandle<()>) {
    let app = Router::new()
        .route("/{bot}/getUpdates", get(get_updates))
        .with_state(mock);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (base, task)
}

fn message(update_id: i64, chat: i64, message_id: i64, text: &str) -> Value {
    json!({"update_id": update_id, "message": {"message_id": message_id,
        "from": {"id": 987_654_321, "is_bot": false, "first_name": "User"},
        "chat": {"id": chat, "type": "private"}, "date": 1_700_000_000, "text": text}})
}

struct PollRun {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn poll(api: &str, backend: &str, offset_file: &Path) -> PollRun {
    let (api, backend, offset_file) = (
        api.to_owned(),
        backend.to_owned(),
        offset_file.to_path_buf(),
    );
    tokio::task::spawn_blocking(move || {
        let output = std::process::Command::new(assert_cmd::cargo::cargo_bin!("gatekeeper"))
            .args([
                "telegram",
                "poll",
                "--once",
                "--backend",
                &backend,
                "--offset-file",
            ])
            .arg(&offset_file)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("BOT_TOKEN", TOKEN)
            .env("TELEGRAM_API_BASE", &api)
            .output()
            .expect("run the poller");
        PollRun {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    })
    .await
    .expect("join")
}

fn stored_offset(path: &Path) -> Option<i64> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str::<Value>(&text).ok()?["offset"].as_i64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_are_forwarded_once_and_the_offset_survives_a_restart() {
    let server = TestServer::new();
    let backend = Running::start(server.state.clone()).await;
    let mock: Shared = Arc::default();
    mock.lock().expect("lock").updates = vec![
        message(100, 5, 1, "first request"),
        json!({"update_id": 101, "callback_query": {"id": "cb", "data": "x"}}),
        message(102, 5, 2, "second request"),
    ];
    let (api, _mock_task) = start_mock(Arc::clone(&mock)).await;
    let state_dir = tempfile::tempdir().expect("tempdir");
    let offset_file = state_dir.path().join("telegram/poll_offset.json");

    let first = poll(&api, &backend.base, &offset_file).await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(
        first.stdout.contains("forwarded 3 of 3"),
        "{}",
        first.stdout
    );
    assert_eq!(stored_offset(&offset_file), Some(103));
    assert_eq!(server.state.store().len(), 2);
    for (m, text) in [(1, "first request"), (2, "second request")] {
        let id = gatekeeper::store::TaskId::parse(&task_id_of(5, m)).expect("id");
        let task = server
            .state
            .store()
            .get(&id)
            .await
            .expect("get")
            .expect("task");
        assert_eq!(task.record.request_text, text);
    }

    // A restart of the poller: it asks from the stored offset and reprocesses nothing.
    let second = poll(&api, &backend.base, &offset_file).await;
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(
        second.stdout.contains("forwarded 0 of 0"),
        "{}",
        second.stdout
    );
    // A new message arrives; only it is forwarded.
    mock.lock()
        .expect("lock")
        .updates
        .push(message(103, 5, 3, "third request"));
    let third = poll(&api, &backend.base, &offset_file).await;
    assert!(
        third.stdout.contains("forwarded 1 of 1"),
        "{}",
        third.stdout
    );
    assert_eq!(stored_offset(&offset_file), Some(104));
    assert_eq!(server.state.store().len(), 3);

    let calls: Vec<Option<i64>> = mock
        .lock()
        .expect("lock")
        .calls
        .iter()
        .map(|c| c.0)
        .collect();
    assert_eq!(calls, vec![None, Some(103), Some(103)]);
    let audit = server.audit().await;
    assert_eq!(
        audit
            .iter()
            .filter(|l| l["event"] == "telegram_dedup_hit")
            .count(),
        0,
        "nothing was posted twice"
    );
    assert_eq!(
        audit
            .iter()
            .filter(|l| l["event"] == "telegram_task_created")
            .count(),
        3
    );
    for run in [&first, &second, &third] {
        assert!(!run.stdout.contains(TOKEN) && !run.stderr.contains(TOKEN));
    }
    backend.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_errors_fail_the_round_keep_the_offset_and_never_print_the_token() {
    let server = TestServer::new();
    let backend = Running::start(server.state.clone()).await;
    let mock: Shared = Arc::default();
    {
        let mut m = mock.lock().expect("lock");
        m.updates = vec![message(7, 9, 70, "after the errors")];
        m.errors = vec![
            (
                429,
                json!({"ok": false, "error_code": 429,
                    "description": "Too Many Requests: retry after 2282",
                    "parameters": {"retry_after": 2282}})
                .to_string(),
            ),
            (
                409,
                json!({"ok": false, "error_code": 409,
                    "description": "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"})
                .to_string(),
            ),
            (502, "<html>Bad Gateway</html>".to_owned()),
        ];
    }
    let (api, _mock_task) = start_mock(Arc::clone(&mock)).await;
    let state_dir = tempfile::tempdir().expect("tempdir");
    let offset_file = state_dir.path().join("offset.json");
    let expected = [
        "429 Too Many Requests: retry after 2282",
        "409 Conflict: terminated by other getUpdates request",
        "HTTP 502 Bad Gateway with a body that is not JSON",
    ];
    for want in expected {
        let run = poll(&api, &backend.base, &offset_file).await;
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert!(run.stderr.contains(want), "{want}: {}", run.stderr);
        assert!(!run.stderr.contains(TOKEN) && !run.stdout.contains(TOKEN));
        assert_eq!(stored_offset(&offset_file), None);
    }
    assert_eq!(server.state.store().len(), 0);
    let ok = poll(&api, &backend.base, &offset_file).await;
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert_eq!(stored_offset(&offset_file), Some(8));
    assert_eq!(server.state.store().len(), 1);

    // An unreachable Bot API: the transport error carries no URL, hence no token.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", l.local_addr().expect("addr"))
    };
    let down = poll(&closed, &backend.base, &offset_file).await;
    assert_eq!(down.code, 1);
    assert!(down.stderr.contains("getUpdates failed"), "{}", down.stderr);
    assert!(!down.stderr.contains(TOKEN), "{}", down.stderr);
    backend.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_is_down_keeps_the_update_for_the_next_round() {
    let mock: Shared = Arc::default();
    mock.lock().expect("lock").updates = vec![message(50, 3, 30, "kept until delivered")];
    let (api, _mock_task) = start_mock(Arc::clone(&mock)).await;
    let state_dir = tempfile::tempdir().expect("tempdir");
    let offset_file = state_dir.path().join("offset.json");
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", l.local_addr().expect("addr"))
    };
    let down = poll(&api, &closed, &offset_file).await;
    assert_eq!(down.code, 1);
    assert!(
        down.stderr
            .contains("posting update 50 to the backend failed"),
        "{}",
        down.stderr
    );
    assert_eq!(stored_offset(&offset_file), None);

    let server = TestServer::new();
    let backend = Running::start(server.state.clone()).await;
    let up = poll(&api, &backend.base, &offset_file).await;
    assert_eq!(up.code, 0, "{}", up.stderr);
    assert_eq!(stored_offset(&offset_file), Some(51));
    assert_eq!(server.state.store().len(), 1);
    backend.stop().await;
}

#[test]
fn without_bot_token_the_poller_refuses() {
    let output = std::process::Command::new(assert_cmd::cargo::cargo_bin!("gatekeeper"))
        .args(["telegram", "poll", "--once"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("BOT_TOKEN is not set"));
}
