//! The dashboard in real headless Chromium (SPEC §8.7), driven over the DevTools protocol: the
//! page loads under its strict CSP, lists the tasks, updates live when a task is approved through
//! the API, approves/rejects with a token typed into the page, and renders a task text carrying
//! `<script>` as text.
//!
//! Needs Debian's `chromium` (`apt-get install -y chromium`; `.ci/run` installs it). Without it
//! the test fails and says so: it never skips silently.

use std::io::{BufRead as _, BufReader};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

use crate::server_support::{Running, TOKEN, TestServer};

const XSS_TEXT: &str = "<script>window.__xss = 1</script><img src=x onerror=\"window.__xss = 2\">Ship it & <b>bold</b>";

fn chromium_path() -> PathBuf {
    let candidates = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .flat_map(|dir| [dir.join("chromium"), dir.join("chromium-browser")])
        .chain([PathBuf::from("/usr/bin/chromium")]);
    for candidate in candidates {
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "chromium is not installed, and the dashboard test needs it: run `apt-get update && apt-get install -y chromium` (CI's .ci/run installs it)"
    );
}

/// A headless Chromium, killed when dropped.
struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    ws: WebSocket<TcpStream>,
    next_id: u64,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    fn launch() -> Browser {
        let profile = tempfile::tempdir().expect("profile folder");
        let mut child = Command::new(chromium_path())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--no-default-browser-check",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        // Chromium prints the DevTools address on stderr once it listens; read it (bounded).
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.split_whitespace().find(|w| w.starts_with("ws://")) {
                    let _ = tx.send(url.to_owned());
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("chromium prints its DevTools address within 60 s");
        let host = url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .expect("a host")
            .to_owned();
        let stream = TcpStream::connect(&host).expect("connect to DevTools");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("read timeout");
        let (ws, _) =
            tungstenite::client::client(url.as_str(), stream).expect("DevTools websocket");
        Browser {
            child,
            _profile: profile,
            ws,
            next_id: 1,
        }
    }

    /// Sends a DevTools command and returns its result (events in between are skipped).
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        let answer = self.call_raw(session, method, &params);
        assert!(answer.get("error").is_none(), "{method}: {answer}");
        answer["result"].clone()
    }

    /// Sends a DevTools command and returns the whole answer, error or result.
    fn call_raw(&mut self, session: Option<&str>, method: &str, params: &Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            message["sessionId"] = json!(s);
        }
        self.ws
            .send(Message::text(message.to_string()))
            .expect("send to DevTools");
        for _ in 0..10_000 {
            let Message::Text(text) = self.ws.read().expect("DevTools answer within 30 s") else {
                continue;
            };
            let v: Value = serde_json::from_str(text.as_str()).expect("DevTools speaks JSON");
            if v["id"] == id {
                return v;
            }
        }
        panic!("no answer to {method}");
    }

    /// Evaluates an expression in the page (awaiting a promise) and returns its value.
    fn eval(&mut self, session: &str, expression: &str) -> Value {
        let params = json!({"expression": expression, "awaitPromise": true, "returnByValue": true});
        for _ in 0..20 {
            let answer = self.call_raw(Some(session), "Runtime.evaluate", &params);
            // The first page load replaces the context an early evaluation started in: retry.
            if answer["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("context"))
            {
                continue;
            }
            let r = &answer["result"];
            assert!(answer.get("error").is_none(), "{expression}: {answer}");
            assert!(r.get("exceptionDetails").is_none(), "{expression}: {r}");
            return r["result"]["value"].clone();
        }
        panic!("the page kept reloading while evaluating {expression}");
    }

    /// Waits in the page (bounded, 10 s) until `condition` holds; returns whether it did.
    fn wait_for(&mut self, session: &str, condition: &str) -> bool {
        let expression = format!(
            "new Promise((resolve) => {{ const end = Date.now() + 10000; const tick = () => {{ let ok = false; try {{ ok = !!({condition}); }} catch (_) {{}} if (ok) resolve(true); else if (Date.now() > end) resolve(false); else setTimeout(tick, 25); }}; tick(); }})"
        );
        self.eval(session, &expression) == json!(true)
    }
}

fn row_status(id: &str) -> String {
    format!(
        "(document.querySelector('#task-rows tr[data-task-id=\"{id}\"] .status') || {{}}).textContent"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_lists_updates_decides_and_escapes() {
    let chromium = chromium_path();
    assert!(chromium.is_file());
    let s = TestServer::new();
    s.create("plain-task", "An ordinary task").await;
    s.create("xss-task", XSS_TEXT).await;
    let server = Running::start(s.state.clone()).await;
    let base = server.base.clone();
    let state = s.state.clone();

    let started = Instant::now();
    let browser = tokio::task::spawn_blocking(move || {
        let mut b = Browser::launch();
        let target = b.call(None, "Target.createTarget", json!({"url": base}));
        let target_id = target["targetId"].as_str().unwrap().to_owned();
        let attached = b.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        );
        let session = attached["sessionId"].as_str().unwrap().to_owned();
        // Loaded, listed, and subscribed to the event stream.
        assert!(
            b.wait_for(
                &session,
                "document.body.dataset.ready === '1' && document.body.dataset.live === '1'"
            ),
            "the dashboard loads and connects its EventSource"
        );
        let rows = b.eval(
            &session,
            "Array.from(document.querySelectorAll('#task-rows tr')).map(tr => [tr.dataset.taskId, tr.querySelector('.status').textContent])",
        );
        assert_eq!(rows, json!([["xss-task", "pending"], ["plain-task", "pending"]]));
        // The task text carrying markup is text: no script ran, no element was made from it.
        let escaped = b.eval(
            &session,
            "[document.querySelector('#task-rows tr[data-task-id=\"xss-task\"] .request').textContent, typeof window.__xss, document.querySelectorAll('#task-rows script, #task-rows img, #task-rows b').length, document.querySelectorAll('script:not([src])').length]",
        );
        assert_eq!(escaped, json!([XSS_TEXT, "undefined", 0, 0]));
        b.eval(&session, "document.querySelector('#task-rows tr[data-task-id=\"xss-task\"]').click(); true");
        assert!(b.wait_for(&session, "document.getElementById('d-request').textContent.length > 0"));
        let details = b.eval(
            &session,
            "[document.getElementById('d-id').textContent, document.getElementById('d-request').textContent, document.querySelectorAll('#details script, #details img, #details b').length, typeof window.__xss]",
        );
        assert_eq!(details, json!(["xss-task", XSS_TEXT, 0, "undefined"]));
        (b, session)
    })
    .await
    .unwrap();
    let (mut browser, session) = browser;

    // Approved through the API: the page shows it without a reload.
    let http = gatekeeper::verify_phase::load::Http::new(&server.base, Some(TOKEN)).unwrap();
    let approved = http
        .post("/api/tasks/plain-task/approve", None, true, &[])
        .await
        .unwrap();
    assert_eq!(approved.status, 200);
    let (mut browser, session) = tokio::task::spawn_blocking(move || {
        assert!(
            browser.wait_for(&session, &format!("{} === 'approved'", row_status("plain-task"))),
            "the row turns approved through the event stream"
        );
        // A decision typed in the page: a wrong token is refused and shown as text.
        browser.eval(&session, "document.getElementById('token').value = 'not-the-token'; document.getElementById('reject').click(); true");
        assert!(browser.wait_for(&session, "document.getElementById('decide-result').textContent.startsWith('Refused')"));
        (browser, session)
    })
    .await
    .unwrap();
    assert_eq!(
        s.send(crate::server_support::get("/api/tasks/xss-task"))
            .await
            .json()["status"],
        "pending"
    );
    let (browser, _session) = tokio::task::spawn_blocking(move || {
        browser.eval(
            &session,
            &format!("document.getElementById('token').value = '{TOKEN}'; document.getElementById('reason').value = 'not <b>safe</b>'; document.getElementById('reject').click(); true"),
        );
        assert!(browser.wait_for(&session, &format!("{} === 'rejected'", row_status("xss-task"))));
        assert!(browser.wait_for(&session, "document.getElementById('d-decision').textContent.includes('not <b>safe</b>')"));
        assert_eq!(
            browser.eval(&session, "document.querySelectorAll('#details b').length"),
            json!(0)
        );
        // The token is in no storage of the page.
        assert_eq!(
            browser.eval(&session, "[localStorage.length, sessionStorage.length, document.cookie]"),
            json!([0, 0, ""])
        );
        (browser, session)
    })
    .await
    .unwrap();
    drop(browser);
    let record = s
        .send(crate::server_support::get("/api/tasks/xss-task"))
        .await
        .json();
    assert_eq!(
        (
            record["status"].clone(),
            record["decision"]["reason"].clone()
        ),
        (json!("rejected"), json!("not <b>safe</b>"))
    );
    assert!(started.elapsed() < Duration::from_secs(120));
    drop(state);
    server.stop().await;
}
