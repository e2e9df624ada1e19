//! Phase E (seed 004 module 5): stability under load. Shortened soak: for `--duration` (default
//! 10 s instead of the seed's 10 minutes) 50 SSE clients stay subscribed while 100 concurrent
//! workers GET `/api/tasks` and 10 writers approve/reject tasks; then a failure path (a flood of
//! webhooks with invalid signatures) must be written to the audit log.
//!
//! Metrics: `api_p50_ms`, `api_p95_ms`, `api_p99_ms` (the GET load), `sse_soak_disconnect_count`,
//! `sse_latency_p95_ms` (write request start → arrival at each client), `error_events_written`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{Value, json};

use super::load::{SseClient, get_load, percentile, round3};
use super::report::ReportBuilder;
use super::{Options, Target, audit_lines, write_artifact};

const SSE_CLIENTS: usize = 50;
const GET_CONCURRENCY: usize = 100;
const WRITERS: usize = 10;
const TASKS: usize = 10;
const BAD_WEBHOOKS: usize = 20;

type Started = Arc<Mutex<BTreeMap<(String, u64), Instant>>>;

#[derive(Default)]
struct ClientLog {
    arrivals: Vec<(String, u64, Instant)>,
    disconnected: bool,
}

async fn read_client(
    mut client: SseClient,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> ClientLog {
    let mut log = ClientLog::default();
    loop {
        let next = tokio::select! {
            next = client.next() => next,
            _ = stop.wait_for(|s| *s) => break,
        };
        match next {
            Ok(Some(message)) => {
                let at = Instant::now();
                if let Ok(v) = serde_json::from_str::<Value>(&message.data)
                    && let (Some(id), Some(version)) =
                        (v["task_id"].as_str(), v["version"].as_u64())
                {
                    log.arrivals.push((id.to_owned(), version, at));
                }
            }
            Ok(None) | Err(_) => {
                log.disconnected = true;
                break;
            }
        }
    }
    log
}

/// Runs the scenario; returns the artifacts written.
///
/// # Errors
/// When an artifact cannot be written. Failed requests are failed checks, not errors.
#[expect(clippy::too_many_lines, reason = "one linear scenario")]
pub async fn run(
    target: &Target,
    options: &Options,
    b: &mut ReportBuilder,
) -> Result<Vec<(PathBuf, String)>> {
    let http = &target.http;
    let run_id = crate::store::now_rfc3339()
        .chars()
        .filter(char::is_ascii_digit)
        .collect::<String>();
    let ids: Vec<String> = (0..TASKS)
        .map(|i| format!("phase-e-{run_id}-{i}"))
        .collect();
    let mut created = 0;
    for id in &ids {
        if let Ok(r) = http
            .post(
                "/api/tasks",
                Some(&json!({"task_id": id, "request_text": "Phase E: soak target."})),
                true,
                &[],
            )
            .await
            && (r.status == 201 || r.status == 409)
        {
            created += 1;
        }
    }
    b.check(
        "tasks_created",
        created == TASKS,
        format!("{created} of {TASKS} tasks created"),
    );

    // SSE soak clients.
    let sse_http = super::load::client(SSE_CLIENTS + 8)?;
    let mut connected = Vec::new();
    for chunk in (0..SSE_CLIENTS).collect::<Vec<_>>().chunks(10) {
        let mut set = tokio::task::JoinSet::new();
        for _ in chunk {
            let client = sse_http.clone();
            let base = http.base().to_owned();
            set.spawn(async move { SseClient::connect(&client, &base, None).await });
        }
        while let Some(r) = set.join_next().await {
            if let Ok(Ok(c)) = r {
                connected.push(c);
            }
        }
    }
    let connected_count = connected.len();
    b.check(
        "sse_clients_connected",
        connected_count == SSE_CLIENTS,
        format!("{connected_count} of {SSE_CLIENTS} SSE clients connected"),
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut readers = tokio::task::JoinSet::new();
    for c in connected {
        readers.spawn(read_client(c, stop_rx.clone()));
    }

    // Concurrent load: GETs and writes for the duration.
    let duration = options.duration;
    let started: Started = Arc::default();
    let write_errors = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        let http = http.clone();
        let id = ids[w % ids.len()].clone();
        let started = Arc::clone(&started);
        let errors = Arc::clone(&write_errors);
        writers.spawn(async move {
            let deadline = Instant::now() + duration;
            let mut i = 0usize;
            while Instant::now() < deadline {
                let verb = if i.is_multiple_of(2) {
                    "approve"
                } else {
                    "reject"
                };
                let at = Instant::now();
                match http
                    .post(
                        &format!("/api/tasks/{id}/{verb}"),
                        Some(&json!({"reason": format!("phase E write {i}")})),
                        true,
                        &[],
                    )
                    .await
                {
                    Ok(r) if r.status == 200 => {
                        if let Some(v) = r.json()["version"].as_u64() {
                            started
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .insert((id.clone(), v), at);
                        }
                    }
                    _ => {
                        errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }
    let paths = vec!["/api/tasks".to_owned()];
    let load = get_load(http, &paths, GET_CONCURRENCY, 1_000_000, duration).await;
    while writers.join_next().await.is_some() {}
    // Let the last events arrive, then stop the clients.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = stop_tx.send(true);
    let mut logs = Vec::new();
    while let Some(done) = readers.join_next().await {
        logs.push(done.unwrap_or(ClientLog {
            arrivals: Vec::new(),
            disconnected: true,
        }));
    }

    let p50 = round3(percentile(&load.latencies_ms, 50.0));
    let p95 = round3(percentile(&load.latencies_ms, 95.0));
    let p99 = round3(percentile(&load.latencies_ms, 99.0));
    b.metric("api_p50_ms", p50);
    b.metric("api_p95_ms", p95);
    b.metric("api_p99_ms", p99);
    b.check(
        "get_load_ok",
        load.errors == 0 && !load.latencies_ms.is_empty(),
        format!(
            "{} GETs with {GET_CONCURRENCY} workers in {:.1} s, {} errors",
            load.latencies_ms.len(),
            load.elapsed.as_secs_f64(),
            load.errors
        ),
    );
    let write_errors = write_errors.load(std::sync::atomic::Ordering::Relaxed);
    let started = started
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    b.check(
        "writes_ok",
        write_errors == 0 && !started.is_empty(),
        format!(
            "{} writes by {WRITERS} writers, {write_errors} failed",
            started.len()
        ),
    );
    let disconnects = logs.iter().filter(|l| l.disconnected).count();
    b.metric("sse_soak_disconnect_count", disconnects);
    b.check(
        "no_sse_disconnects",
        disconnects == 0,
        format!("{disconnects} of {connected_count} clients disconnected during the soak"),
    );
    let mut latencies = Vec::new();
    for log in &logs {
        for (id, v, at) in &log.arrivals {
            if let Some(t0) = started.get(&(id.clone(), *v)) {
                latencies.push(at.saturating_duration_since(*t0).as_secs_f64() * 1e3);
            }
        }
    }
    let sse_p95 = round3(percentile(&latencies, 95.0));
    b.metric("sse_latency_p95_ms", sse_p95);
    let expected = started.len() * connected_count;
    b.check(
        "sse_events_delivered",
        latencies.len() == expected && expected > 0,
        format!(
            "{} of {expected} write events reached the clients",
            latencies.len()
        ),
    );

    // Failure path: webhooks with invalid signatures must be rejected and audited.
    let body = json!({"action": "completed", "phase": "E"});
    let mut rejected = 0usize;
    for i in 0..BAD_WEBHOOKS {
        let delivery = format!("phase-e-{run_id}-{i}");
        if let Ok(r) = http
            .post(
                "/webhooks/github",
                Some(&body),
                false,
                &[
                    ("x-github-event", "check_suite"),
                    ("x-github-delivery", &delivery),
                    ("x-hub-signature-256", "sha256=0000"),
                ],
            )
            .await
            && r.status == 401
        {
            rejected += 1;
        }
    }
    let mut artifacts = Vec::new();
    let errors_written = if let Some(server) = &target.local {
        let lines = audit_lines(server).await?;
        let errors: Vec<&Value> = lines
            .iter()
            .filter(|l| l["event"] == "webhook_received" && l["detail"]["signature_valid"] == false)
            .collect();
        let mut text = String::new();
        for l in &errors {
            text.push_str(&crate::canonical::to_canonical_string(l));
            text.push('\n');
        }
        artifacts.push((
            write_artifact(
                &options.artifacts_dir(),
                "audit_errors.jsonl",
                text.as_bytes(),
            )?,
            "the audit lines of the failure path (invalid webhook signatures)".to_owned(),
        ));
        errors.len()
    } else {
        b.notes.push(
            "with --url the audit log is not readable here: error_events_written counts the 401 answers"
                .to_owned(),
        );
        rejected
    };
    b.metric("error_events_written", errors_written);
    b.check(
        "failure_path_audited",
        rejected == BAD_WEBHOOKS && errors_written >= BAD_WEBHOOKS,
        format!("{rejected} of {BAD_WEBHOOKS} bad webhooks answered 401; {errors_written} error events in the audit log"),
    );
    b.notes.push(format!(
        "soak shortened to {:.0} s (seed: 10 minutes); {SSE_CLIENTS} SSE clients, {GET_CONCURRENCY} concurrent GET workers, {WRITERS} writers",
        duration.as_secs_f64()
    ));
    Ok(artifacts)
}
