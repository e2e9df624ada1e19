//! L5: the store survives `kill -9` under writes (SPEC §13). The real binary serves on
//! `127.0.0.1:0` and prints the bound address, which the test reads instead of sleeping; writers
//! hammer it; it is killed with SIGKILL mid-stream. Every SSOT file must still be a valid record,
//! holding at least every write that was acknowledged, and a restarted server must load them all.

use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use gatekeeper::verify_phase::load::Http;

const TOKEN: &str = "crash-test-token";
const TASKS: usize = 4;

/// Starts `gatekeeper serve` over `root`; returns the child and its base URL, read from stdout.
fn spawn_server(root: &Path) -> (Child, String) {
    let mut command = Command::new(assert_cmd::cargo::cargo_bin!("gatekeeper"));
    command
        .args(["serve", "--addr", "127.0.0.1:0", "--root"])
        .arg(root)
        .current_dir(root)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GATEKEEPER_ADMIN_TOKEN", TOKEN);
    crate::server_support::spawn_serve(command)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_writes_leaves_every_record_whole() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (mut child, base) = spawn_server(root);
    let http = Http::new(&base, Some(TOKEN)).unwrap();
    for t in 0..TASKS {
        let r = http
            .post(
                "/api/tasks",
                Some(&json!({"task_id": format!("k{t}"), "request_text": "x".repeat(2000)})),
                true,
                &[],
            )
            .await
            .unwrap();
        assert_eq!(r.status, 201);
    }
    // One writer per task; each remembers the highest version the server acknowledged.
    let acknowledged: Arc<Vec<AtomicU64>> =
        Arc::new((0..TASKS).map(|_| AtomicU64::new(1)).collect());
    let total = Arc::new(AtomicU64::new(0));
    let (enough_tx, enough_rx) = tokio::sync::oneshot::channel::<()>();
    let enough_tx = Arc::new(std::sync::Mutex::new(Some(enough_tx)));
    let mut writers = tokio::task::JoinSet::new();
    for t in 0..TASKS {
        let http = http.clone();
        let acknowledged = Arc::clone(&acknowledged);
        let total = Arc::clone(&total);
        let enough_tx = Arc::clone(&enough_tx);
        writers.spawn(async move {
            for i in 0..400u32 {
                let verb = if i % 2 == 0 { "approve" } else { "reject" };
                let Ok(r) = http
                    .post(
                        &format!("/api/tasks/k{t}/{verb}"),
                        Some(&json!({"reason": "r".repeat(500)})),
                        true,
                        &[],
                    )
                    .await
                else {
                    return; // the server is gone
                };
                if r.status != 200 {
                    return;
                }
                if let Some(v) = r.json()["version"].as_u64() {
                    acknowledged[t].fetch_max(v, Ordering::SeqCst);
                }
                if total.fetch_add(1, Ordering::SeqCst) + 1 == 120
                    && let Some(tx) = enough_tx.lock().unwrap().take()
                {
                    let _ = tx.send(());
                }
            }
        });
    }
    // Kill it in the middle of the writes (after 120 acknowledged ones, with more in flight).
    tokio::time::timeout(std::time::Duration::from_secs(60), enough_rx)
        .await
        .expect("120 writes within 60 s")
        .unwrap();
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    while writers.join_next().await.is_some() {}

    let ssot = root.join("ssot");
    let mut records = 0;
    for entry in std::fs::read_dir(&ssot).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".json") || name.starts_with('.') {
            continue; // the lock file, and temp files a kill may leave behind (never read)
        }
        let bytes = std::fs::read(&path).unwrap();
        let record: gatekeeper::store::TaskRecord =
            serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{name} is torn: {e}"));
        let t: usize = record.task_id[1..].parse().unwrap();
        let acked = acknowledged[t].load(Ordering::SeqCst);
        assert!(
            record.version >= acked,
            "{name}: version {} on disk, {acked} acknowledged",
            record.version
        );
        assert_eq!(record.history.len() as u64, record.version);
        records += 1;
    }
    assert_eq!(records, TASKS);
    // Every complete audit line is whole JSON (the last one may be cut by the kill).
    let audit = std::fs::read_to_string(root.join("audit/events.jsonl")).unwrap();
    let complete = audit.rsplit_once('\n').map_or("", |(whole, _)| whole);
    for line in complete.lines() {
        serde_json::from_str::<Value>(line)
            .unwrap_or_else(|e| panic!("torn audit line {line:?}: {e}"));
    }

    // A restarted server loads every record and goes on from there.
    let (mut again, base) = spawn_server(root);
    let http = Http::new(&base, Some(TOKEN)).unwrap();
    let list = http.get("/api/tasks").await.unwrap().json();
    assert_eq!(list["tasks"].as_array().unwrap().len(), TASKS);
    let r = http
        .post("/api/tasks/k0/approve", None, true, &[])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    again.kill().unwrap();
    again.wait().unwrap();
}
