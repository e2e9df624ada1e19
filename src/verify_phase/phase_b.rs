//! Phase B (seed 004, module 2): Server-Sent Events and the dashboard.
//!
//! a) the server is up; b) N SSE clients (default 3) connect and stay connected; c) N status changes
//! (default 20, approve and reject in turn) are triggered through the API, plus, with its own
//! server, one change written straight to `ssot/` as another process would; d) every client must
//! receive every change; the arrival delay of each event (from the moment the change was
//! requested to its arrival at the client) and the disconnections are counted. Around these:
//! `Last-Event-ID` replay, the dashboard with its CSP, and (with its own server) the audit lines
//! `sse_client_connect`, `sse_client_disconnect` and `sse_broadcast` with `broadcast_count`.
//! Metrics: `sse_connected_clients`, `sse_events_sent`, `sse_events_received`,
//! `sse_latency_p50_ms`, `sse_latency_p95_ms`, `sse_disconnect_count`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{Value, json};

use super::load::{SseClient, percentile, round3};
use super::report::ReportBuilder;
use super::{Options, Target, audit_lines, write_artifact};
use crate::store::{TaskId, TaskRecord, Verdict};

/// The task whose status the scenario changes.
pub const TASK: &str = "phase-b-sse";

/// The delivery p95 this phase accepts, in milliseconds.
pub const P95_BUDGET_MS: f64 = 100.0;

/// How many clients connect at once.
const CONNECT_BATCH: usize = 100;

/// One event as a client saw it.
#[derive(Clone, Debug)]
struct Arrival {
    seq: u64,
    version: u64,
    at: Instant,
}

/// The fields of an event's data this scenario reads.
#[derive(serde::Deserialize)]
struct EventData<'a> {
    #[serde(borrow)]
    task_id: std::borrow::Cow<'a, str>,
    version: u64,
}

/// What one client saw.
#[derive(Debug, Default)]
struct ClientLog {
    arrivals: Vec<Arrival>,
    /// The stream ended or failed before the client had everything.
    disconnected: bool,
}

/// Reads a client's stream until it has `expected` events of the scenario's task, the stream
/// ends, or `deadline`.
async fn read_client(
    mut client: SseClient,
    expected: usize,
    deadline: tokio::time::Instant,
    stop: tokio::sync::watch::Receiver<bool>,
) -> ClientLog {
    let mut log = ClientLog::default();
    let mut stop = stop;
    while log.arrivals.len() < expected {
        let next = tokio::select! {
            next = tokio::time::timeout_at(deadline, client.next()) => next,
            _ = stop.wait_for(|s| *s) => break,
        };
        match next {
            Err(_) => break,
            Ok(Ok(Some(message))) => {
                let at = Instant::now();
                let Ok(data) = serde_json::from_str::<EventData<'_>>(&message.data) else {
                    continue;
                };
                if message.event != crate::server::events::EVENT_NAME || data.task_id != TASK {
                    continue;
                }
                log.arrivals.push(Arrival {
                    seq: message.id.and_then(|i| i.parse().ok()).unwrap_or(0),
                    version: data.version,
                    at,
                });
            }
            Ok(Ok(None) | Err(_)) => {
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
pub async fn run(
    target: &Target,
    options: &Options,
    b: &mut ReportBuilder,
) -> Result<Vec<(PathBuf, String)>> {
    let http = &target.http;
    let dir = options.artifacts_dir();
    let mut artifacts = Vec::new();
    let clients_wanted = options.clients.max(1);
    let changes = options.changes.max(1);
    let zero_metrics = |b: &mut ReportBuilder| {
        for name in [
            "sse_connected_clients",
            "sse_events_sent",
            "sse_events_received",
            "sse_disconnect_count",
        ] {
            b.metric(name, 0);
        }
        b.metric("sse_latency_p50_ms", 0.0);
        b.metric("sse_latency_p95_ms", 0.0);
    };

    // a) The service is up, and the task exists.
    let health = http.get("/healthz").await;
    if !b.check(
        "service_up",
        health.as_ref().is_ok_and(|r| r.status == 200),
        "GET /healthz",
    ) {
        zero_metrics(b);
        return Ok(artifacts);
    }
    let create = http
        .post(
            "/api/tasks",
            Some(&json!({"task_id": TASK, "request_text": "Phase B: status changes streamed to SSE clients."})),
            true,
            &[],
        )
        .await;
    b.check(
        "task_exists",
        create
            .as_ref()
            .is_ok_and(|r| r.status == 201 || r.status == 409),
        format!(
            "POST /api/tasks → {}",
            create
                .as_ref()
                .map_or_else(|e| format!("{e:#}"), |r| r.status.to_string())
        ),
    );

    // b) Clients connect (a 200 answer means subscribed) and stay connected.
    let sse_http = super::load::client(clients_wanted + 8)?;
    let mut connected = Vec::new();
    let mut connect_errors = Vec::new();
    for batch in (0..clients_wanted)
        .collect::<Vec<_>>()
        .chunks(CONNECT_BATCH)
    {
        let mut set = tokio::task::JoinSet::new();
        for _ in batch {
            let client = sse_http.clone();
            let base = http.base().to_owned();
            set.spawn(async move { SseClient::connect(&client, &base, None).await });
        }
        while let Some(result) = set.join_next().await {
            match result {
                Ok(Ok(client)) => connected.push(client),
                Ok(Err(e)) => connect_errors.push(format!("{e:#}")),
                Err(e) => connect_errors.push(e.to_string()),
            }
        }
    }
    let connected_count = connected.len();
    b.metric("sse_connected_clients", connected_count);
    b.check(
        "clients_connected",
        connected_count == clients_wanted && connected_count >= 3,
        format!(
            "{connected_count} of {clients_wanted} clients connected{}",
            connect_errors
                .first()
                .map(|e| format!(" (first error: {e})"))
                .unwrap_or_default()
        ),
    );

    let external = target.local.is_some();
    let expected = changes + usize::from(external);
    let deadline = tokio::time::Instant::now() + options.duration + Duration::from_secs(10);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut readers = tokio::task::JoinSet::new();
    for client in connected {
        readers.spawn(read_client(client, expected, deadline, stop_rx.clone()));
    }

    // c) The changes: approve and reject in turn, one after another, each timed from its request.
    let started: Arc<Mutex<BTreeMap<u64, Instant>>> = Arc::default();
    let mut trigger_errors = 0usize;
    let trigger_deadline = Instant::now() + options.duration;
    let path = format!("/api/tasks/{TASK}");
    for i in 0..changes {
        if Instant::now() >= trigger_deadline {
            trigger_errors += changes - i;
            break;
        }
        let verb = if i % 2 == 0 { "approve" } else { "reject" };
        let at = Instant::now();
        match http
            .post(
                &format!("{path}/{verb}"),
                Some(&json!({"reason": format!("phase B change {}", i + 1)})),
                true,
                &[],
            )
            .await
        {
            Ok(reply) if reply.status == 200 => {
                if let Some(v) = reply.json()["version"].as_u64() {
                    started
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(v, at);
                }
            }
            _ => trigger_errors += 1,
        }
    }
    // With its own server: one change written to `ssot/` directly, as the CLI would.
    let mut external_ok = None;
    if let Some(server) = &target.local {
        let dir = server.root.path().join(crate::server::state::SSOT_DIR);
        let id = TaskId::parse(TASK)?;
        let at = Instant::now();
        let written = tokio::task::spawn_blocking(move || {
            crate::store::files::update_record(
                &dir,
                &id,
                None,
                Box::new(|r: &mut TaskRecord| {
                    r.decision = Some(crate::store::Decision {
                        verdict: Verdict::Approved,
                        by: "cli".to_owned(),
                        reason: Some("phase B: a change made by another process".to_owned()),
                        at: crate::store::now_rfc3339(),
                    });
                    Ok(())
                }),
            )
        })
        .await;
        match written {
            Ok(Ok(record)) => {
                started
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(record.version, at);
                external_ok = Some(record.version);
            }
            _ => trigger_errors += 1,
        }
    }
    b.check(
        "changes_triggered",
        trigger_errors == 0,
        format!(
            "{changes} API changes{}, {trigger_errors} failed",
            if external { " + 1 file change" } else { "" }
        ),
    );

    // d) Every client gets every change.
    let mut logs = Vec::new();
    while let Some(done) = readers.join_next().await {
        match done {
            Ok(log) => logs.push(log),
            Err(_) => logs.push(ClientLog {
                disconnected: true,
                ..ClientLog::default()
            }),
        }
    }
    let started = started
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let sent = started.len() * connected_count;
    let received: usize = logs.iter().map(|l| l.arrivals.len()).sum();
    let disconnects = logs.iter().filter(|l| l.disconnected).count();
    let mut latencies = Vec::new();
    for log in &logs {
        for a in &log.arrivals {
            if let Some(t0) = started.get(&a.version) {
                latencies.push(a.at.saturating_duration_since(*t0).as_secs_f64() * 1e3);
            }
        }
    }
    let p50 = round3(percentile(&latencies, 50.0));
    let p95 = round3(percentile(&latencies, 95.0));
    b.metric("sse_events_sent", sent);
    b.metric("sse_events_received", received);
    b.metric("sse_latency_p50_ms", p50);
    b.metric("sse_latency_p95_ms", p95);
    b.metric("sse_disconnect_count", disconnects);
    b.notes.push(format!(
        "{} changes × {connected_count} clients; delay = arrival at the client − start of the request that made the change",
        started.len()
    ));
    b.check(
        "every_client_got_every_change",
        received == sent && sent > 0,
        format!("{received} received of {sent} sent"),
    );
    b.check(
        "no_disconnects",
        disconnects == 0,
        format!("{disconnects} clients disconnected early"),
    );
    let ordered = logs
        .iter()
        .all(|l| l.arrivals.windows(2).all(|w| w[0].seq < w[1].seq));
    b.check(
        "events_in_order",
        ordered,
        "sequence ids increase for every client",
    );
    b.check(
        "delivery_latency",
        !latencies.is_empty() && p95 <= P95_BUDGET_MS,
        format!("p50 {p50} ms, p95 {p95} ms (budget {P95_BUDGET_MS} ms)"),
    );
    if let Some(version) = external_ok {
        let everyone = logs
            .iter()
            .all(|l| l.arrivals.iter().any(|a| a.version == version));
        b.check(
            "external_change_streamed",
            everyone,
            format!("a change written to ssot/ by another writer (version {version}) reached every client: {everyone}"),
        );
    }
    artifacts.push((
        write_artifact(
            &dir,
            "sse_arrivals.json",
            crate::canonical::to_canonical_pretty(&json!({
                "task_id": TASK,
                "clients": connected_count,
                "changes": started.len(),
                "received": received,
                "disconnects": disconnects,
                "latency_ms": {
                    "p50": p50,
                    "p95": p95,
                    "max": round3(latencies.iter().copied().fold(0.0, f64::max)),
                },
            }))
            .as_bytes(),
        )?,
        "SSE delivery summary: clients, changes, arrivals, delay percentiles".to_owned(),
    ));

    // Replay: a client that resumes after the first change gets the others from the ring.
    let first_seq = logs
        .iter()
        .flat_map(|l| l.arrivals.iter().map(|a| a.seq))
        .min();
    if let Some(first_seq) = first_seq {
        let want = expected.saturating_sub(1);
        let replay = async {
            let client = SseClient::connect(&sse_http, http.base(), Some(first_seq)).await?;
            let (_never, quiet) = tokio::sync::watch::channel(false);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            anyhow::Ok(read_client(client, want, deadline, quiet).await)
        }
        .await;
        let got = replay.as_ref().map_or(0, |l| l.arrivals.len());
        let after = replay
            .as_ref()
            .is_ok_and(|l| l.arrivals.iter().all(|a| a.seq > first_seq));
        b.check(
            "last_event_id_replay",
            got == want && after,
            format!("resuming after id {first_seq}: {got} of {want} events replayed"),
        );
    }

    // The dashboard: served with a strict CSP.
    let page = http.get("/").await;
    let csp_ok = page.as_ref().is_ok_and(|r| {
        r.status == 200
            && r.headers
                .get("content-security-policy")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("default-src 'none'") && !v.contains("unsafe-inline"))
            && !String::from_utf8_lossy(&r.body).contains("<script>")
    });
    let script = http.get("/dashboard/app.js").await;
    let script_ok = script.as_ref().is_ok_and(|r| {
        r.status == 200
            && String::from_utf8_lossy(&r.body).contains("new EventSource(\"/api/events\")")
    });
    b.check(
        "dashboard_served",
        csp_ok && script_ok,
        "GET / with a CSP without unsafe-inline; its script subscribes to /api/events",
    );

    // Close the clients; with its own server, wait until it saw them go, then read the audit.
    let _ = stop_tx.send(true);
    drop(logs);
    if let Some(server) = &target.local {
        let mut gone = server.state.hub().connected();
        let settled = tokio::time::timeout(Duration::from_secs(10), gone.wait_for(|n| *n == 0))
            .await
            .is_ok_and(|r| r.is_ok());
        // The connection count drops before the disconnect's audit event is handed to the
        // writer; give the last events a bounded moment to arrive.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        let mut lines = audit_lines(server).await?;
        loop {
            let of = |name: &str| lines.iter().filter(|l| l["event"] == name).count();
            if of("sse_client_disconnect") >= of("sse_client_connect")
                || tokio::time::Instant::now() >= deadline
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            lines = audit_lines(server).await?;
        }
        let count = |name: &str| lines.iter().filter(|l| l["event"] == name).count();
        let connects = count("sse_client_connect");
        let disconnect_lines = count("sse_client_disconnect");
        let broadcasts: Vec<&Value> = lines
            .iter()
            .filter(|l| l["event"] == "sse_broadcast" && l["task_id"] == TASK)
            .collect();
        let counted = broadcasts
            .iter()
            .filter(|l| {
                l["detail"]["broadcast_count"]
                    .as_u64()
                    .is_some_and(|n| n as usize >= connected_count)
            })
            .count();
        let audited = settled
            && connects > connected_count
            && disconnect_lines == connects
            && counted >= started.len();
        b.check(
            "sse_audited",
            audited,
            format!(
                "{connects} sse_client_connect, {disconnect_lines} sse_client_disconnect, {} sse_broadcast for the task ({counted} reaching every client)",
                broadcasts.len()
            ),
        );
        let excerpt: String = lines
            .iter()
            .filter(|l| l["event"].as_str().is_some_and(|e| e.starts_with("sse_")))
            .take(200)
            .map(|l| crate::canonical::to_canonical_string(l) + "\n")
            .collect();
        artifacts.push((
            write_artifact(&dir, "audit_sse.jsonl", excerpt.as_bytes())?,
            "the first 200 sse_* audit lines (connect, broadcast with broadcast_count, disconnect)"
                .to_owned(),
        ));
    }
    Ok(artifacts)
}
