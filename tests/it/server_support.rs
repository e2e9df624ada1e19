//! Helpers for the server suites: a state over a temporary root with an injected admin token,
//! requests for `Router::oneshot`, a real server on `127.0.0.1:0`, and the audit log.

#![allow(dead_code, unreachable_pub)]

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode};
use gatekeeper::server::{AppState, ServerOptions, router};
use http_body_util::BodyExt as _;
use serde_json::Value;
use tower::ServiceExt as _;

/// The admin token the test servers are given (never read from the environment).
pub const TOKEN: &str = "test-admin-token-7f3a";

/// A server state over a temporary root.
pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub state: AppState,
}

/// An answer: status, headers, body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts the SPEC §8.2 error shape with this status and code.
    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text());
        let v = self.json();
        let err = v["error"].as_object().expect("an `error` object");
        assert_eq!(v.as_object().map(serde_json::Map::len), Some(1));
        assert_eq!(err.len(), 2, "{v}");
        assert_eq!(err["code"], code, "{v}");
        assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert_eq!(
            self.headers["content-type"], "application/json",
            "errors are JSON"
        );
    }
}

impl TestServer {
    pub fn with_options(f: impl FnOnce(ServerOptions) -> ServerOptions) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = f(ServerOptions::new(dir.path()).admin_token(TOKEN));
        let (state, errors) = AppState::open(&options).expect("open state");
        assert!(errors.is_empty(), "{errors:?}");
        TestServer { dir, state }
    }

    pub fn new() -> TestServer {
        TestServer::with_options(|o| o)
    }

    pub fn without_token() -> TestServer {
        TestServer::with_options(|mut o| {
            o.admin_token = None;
            o
        })
    }

    pub fn app(&self) -> Router {
        router(self.state.clone())
    }

    pub async fn send(&self, req: Request<Body>) -> Answer {
        send(self.app(), req).await
    }

    /// Creates a task through the API and returns its record.
    pub async fn create(&self, id: &str, text: &str) -> Value {
        let answer = self
            .send(post_json(
                "/api/tasks",
                &serde_json::json!({"task_id": id, "request_text": text}),
                Some(TOKEN),
            ))
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text());
        answer.json()
    }

    /// Every audit line written so far.
    pub async fn audit(&self) -> Vec<Value> {
        self.state.audit().flush().await.expect("flush audit");
        let text = std::fs::read_to_string(self.state.audit().path()).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("torn line {l:?}: {e}")))
            .collect()
    }
}

pub async fn send(app: Router, req: Request<Body>) -> Answer {
    let response = app.oneshot(req).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Answer {
        status,
        headers,
        body,
    }
}

/// The response with its body not yet read (for streams).
pub async fn send_streaming(app: Router, req: Request<Body>) -> axum::response::Response {
    app.oneshot(req).await.expect("infallible")
}

pub fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).expect("request")
}

pub fn post_json(uri: &str, body: &Value, token: Option<&str>) -> Request<Body> {
    post_raw(
        uri,
        Some("application/json"),
        serde_json::to_vec(body).expect("json"),
        token,
    )
}

pub fn post_raw(
    uri: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
    token: Option<&str>,
) -> Request<Body> {
    let mut builder = Request::post(uri);
    if let Some(ct) = content_type {
        builder = builder.header("content-type", ct);
    }
    if let Some(t) = token {
        builder = builder.header("authorization", format!("Bearer {t}"));
    }
    builder.body(Body::from(body)).expect("request")
}

/// A server on a real socket, stopped when dropped or by [`Running::stop`].
pub struct Running {
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Running {
    pub async fn start(state: AppState) -> Running {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(gatekeeper::server::serve(listener, state, async move {
            let _ = stopped.await;
        }));
        Running {
            base,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops the server and waits for it to finish (bounded).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().expect("running");
        tokio::time::timeout(std::time::Duration::from_secs(10), task)
            .await
            .expect("the server stops within 10 s")
            .expect("join")
            .expect("serve");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Spawns a prepared `gatekeeper serve … --addr 127.0.0.1:0` command with stdout piped, and
/// returns the child and the base URL its first stdout line (`listening on http://ADDR`) gives,
/// so that tests read the address instead of sleeping.
pub fn spawn_serve(mut command: std::process::Command) -> (std::process::Child, String) {
    use std::io::BufRead as _;
    let mut child = command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn gatekeeper serve");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read the listening line");
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (child, base)
}
