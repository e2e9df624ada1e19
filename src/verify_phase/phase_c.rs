//! Phase C (seed 004, module 3): webhook input and Telegram ingest.
//!
//! a) 50 requests with bad signatures (wrong secret, none, malformed, legacy `sha1=`, a body
//! changed after signing) must all be refused; b) one correctly signed `check_suite` event sets
//! `ci_status` of its task, and ten replays of it change nothing; c) a flood of bad signatures at
//! 50 requests a second runs while `GET /api/tasks` is measured (1.5 × `--duration`, at most the
//! seed's 15 s, which the default 10 s gives); d) one Telegram message replayed ten times creates
//! one task; e) the latency from the ingest call to the SSOT file (to the record being readable
//! with `--url`) over distinct messages. With its own server the audit log is counted too.
//! Metrics: `signature_reject_rate`, `idempotency_pass`, `flood_api_p95_ms`,
//! `audit_events_written`, `telegram_dedup_pass`, `telegram_ingest_p95_ms`,
//! `telegram_tasks_created`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{Value, json};

use super::load::{Reply, get_load, percentile, round3};
use super::report::ReportBuilder;
use super::{Options, Target, audit_lines, write_artifact};
use crate::server::github::signature;
use crate::server::telegram::task_id_of;

/// The task whose `ci_status` the signed event sets.
pub const CI_TASK: &str = "phase-c-ci";
/// Bad-signature requests of part a (seed: 50).
pub const BAD_SIGNATURES: usize = 50;
/// Replays of the good event (seed: 10).
pub const REPLAYS: usize = 10;
/// The flood rate (seed: 50 requests a second).
pub const FLOOD_RPS: u64 = 50;
/// The longest flood (seed: 15 s).
pub const FLOOD_MAX: Duration = Duration::from_secs(15);
/// Distinct messages timed for the ingest latency.
pub const INGEST_MESSAGES: usize = 50;
/// The chat the scenario's messages come from (a made-up group id).
pub const CHAT_ID: i64 = -1_009_000_000_004;
/// The `GET /api/tasks` p95 accepted during the flood, in milliseconds.
pub const FLOOD_P95_BUDGET_MS: f64 = 250.0;
/// The ingest p95 accepted, in milliseconds.
pub const INGEST_P95_BUDGET_MS: f64 = 250.0;

fn check_suite(conclusion: &str) -> Value {
    json!({
        "action": "completed",
        "check_suite": {
            "id": 118_578_147,
            "head_branch": format!("feature/{CI_TASK}"),
            "head_sha": "ec26c3e57ca3a959ca5aad62de7213c562f8c821",
            "status": "completed",
            "conclusion": conclusion,
            "pull_requests": [],
            "app": {"id": 29310, "name": "gatekeeper-verify-phase-c"}
        },
        "repository": {"full_name": "gatekeeper/verify-phase-c"}
    })
}

fn telegram_update(update_id: i64, message_id: i64, text: &str) -> Value {
    json!({
        "update_id": update_id,
        "message": {
            "message_id": message_id,
            "from": {"id": 4_242, "is_bot": false, "first_name": "Phase C"},
            "chat": {"id": CHAT_ID, "type": "group", "title": "verify-phase c"},
            "date": jiff::Timestamp::now().as_second(),
            "text": text
        }
    })
}

async fn post_raw(
    target: &Target,
    path: &str,
    body: Vec<u8>,
    headers: &[(&str, String)],
) -> Result<Reply> {
    let http = &target.http;
    let mut request = http
        .client()
        .post(format!("{}{path}", http.base()))
        .header("content-type", "application/json")
        .timeout(Duration::from_secs(10))
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let start = Instant::now();
    let response = request.send().await?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await?;
    Ok(Reply {
        status,
        headers,
        body,
        elapsed: start.elapsed(),
    })
}

fn github_headers(event: &str, delivery: &str, sig: Option<String>) -> Vec<(&'static str, String)> {
    let mut h = vec![
        ("x-github-event", event.to_owned()),
        ("x-github-delivery", delivery.to_owned()),
        ("user-agent", "GitHub-Hookshot/verify-phase-c".to_owned()),
    ];
    if let Some(s) = sig {
        h.push(("x-hub-signature-256", s));
    }
    h
}

/// The `i`-th bad signature of part a: five kinds in turn.
fn bad_signature(i: usize, body: &[u8], secret: &[u8]) -> (Vec<u8>, Option<String>) {
    match i % 5 {
        0 => (body.to_vec(), Some(signature(b"not-the-secret", body))),
        1 => (body.to_vec(), None),
        2 => (body.to_vec(), Some("sha256=not-hex-at-all".to_owned())),
        3 => (
            body.to_vec(),
            Some(format!("sha1={}", &signature(secret, body)[7..47])),
        ),
        _ => {
            let mut changed = body.to_vec();
            changed.extend_from_slice(b" ");
            (changed, Some(signature(secret, body)))
        }
    }
}

fn telegram_headers(options: &Options) -> Vec<(&'static str, String)> {
    options
        .telegram_secret
        .as_ref()
        .map(|s| vec![("x-telegram-bot-api-secret-token", s.clone())])
        .unwrap_or_default()
}

/// Runs the scenario; returns the artifacts written.
///
/// # Errors
/// When an artifact cannot be written. Failed requests are failed checks, not errors.
#[expect(
    clippy::too_many_lines,
    reason = "one scenario, read top to bottom in the seed's order"
)]
pub async fn run(
    target: &Target,
    options: &Options,
    b: &mut ReportBuilder,
) -> Result<Vec<(PathBuf, String)>> {
    let http = &target.http;
    let dir = options.artifacts_dir();
    let mut artifacts = Vec::new();
    let secret = match (&target.local, &options.webhook_secret) {
        (Some(server), _) => Some(server.webhook_secret.clone()),
        (None, Some(s)) => Some(s.clone()),
        (None, None) => None,
    };
    let run_id = crate::server::tasks::new_correlation_id();
    let mut key_events = 0usize;

    // The task the CI event is about.
    let created = http
        .post(
            "/api/tasks",
            Some(&json!({
                "task_id": CI_TASK,
                "request_text": "Phase C: a signed check_suite event sets this task's ci_status.",
            })),
            true,
            &[],
        )
        .await;
    let task_ready = created
        .as_ref()
        .is_ok_and(|r| r.status == 201 || r.status == 409);
    b.check(
        "ci_task_exists",
        task_ready,
        format!(
            "POST /api/tasks {CI_TASK} → {}",
            created
                .as_ref()
                .map_or_else(|e| e.to_string(), |r| r.status.to_string())
        ),
    );

    // a) 50 bad signatures.
    let payload = serde_json::to_vec(&check_suite("success"))?;
    let secret_bytes = secret.clone().unwrap_or_default().into_bytes();
    let mut rejected = 0usize;
    for i in 0..BAD_SIGNATURES {
        let (body, sig) = bad_signature(i, &payload, &secret_bytes);
        let headers = github_headers("check_suite", &format!("{run_id}-bad-{i}"), sig);
        if let Ok(r) = post_raw(target, "/webhooks/github", body, &headers).await
            && r.status == 401
        {
            rejected += 1;
        }
    }
    key_events += BAD_SIGNATURES;
    #[expect(clippy::cast_precision_loss, reason = "counts of 50")]
    let reject_rate = rejected as f64 / BAD_SIGNATURES as f64;
    b.metric("signature_reject_rate", reject_rate);
    b.check(
        "bad_signatures_rejected",
        rejected == BAD_SIGNATURES,
        format!(
            "{rejected} of {BAD_SIGNATURES} answered 401 (wrong secret, none, malformed, sha1=, body changed after signing)"
        ),
    );

    // b) One good event, then ten replays.
    let delivery = format!("{run_id}-good");
    let good = |body: &[u8]| {
        github_headers(
            "check_suite",
            &delivery,
            secret.as_ref().map(|s| signature(s.as_bytes(), body)),
        )
    };
    let first = post_raw(target, "/webhooks/github", payload.clone(), &good(&payload)).await;
    key_events += 1;
    let first_ok = first.as_ref().is_ok_and(|r| {
        r.status == 200
            && r.json()["dedup_hit"] == false
            && r.json()["outcome"] == "ci_status_updated"
    });
    let after_first = http.get(&format!("/api/tasks/{CI_TASK}")).await;
    let mut replays_deduped = 0usize;
    for _ in 0..REPLAYS {
        if let Ok(r) = post_raw(target, "/webhooks/github", payload.clone(), &good(&payload)).await
            && r.status == 200
            && r.json()["dedup_hit"] == true
        {
            replays_deduped += 1;
        }
    }
    key_events += REPLAYS;
    let after_replays = http.get(&format!("/api/tasks/{CI_TASK}")).await;
    let (state_first, state_last) = match (&after_first, &after_replays) {
        (Ok(a), Ok(z)) => (a.json(), z.json()),
        _ => (Value::Null, Value::Null),
    };
    let unchanged = state_first.is_object()
        && after_first.as_ref().map(|r| &r.body).ok()
            == after_replays.as_ref().map(|r| &r.body).ok();
    let ci_set = state_first["ci_status"]["conclusion"] == "success"
        && state_first["ci_status"]["delivery"] == delivery.as_str();
    let idempotent = first_ok && ci_set && replays_deduped == REPLAYS && unchanged;
    b.metric("idempotency_pass", idempotent);
    b.check(
        "good_event_applied_once",
        first_ok && ci_set,
        format!(
            "first delivery → {}; ci_status {}",
            first.as_ref().map_or_else(
                |e| e.to_string(),
                |r| String::from_utf8_lossy(&r.body).into_owned()
            ),
            state_first["ci_status"]
        ),
    );
    b.check(
        "replays_change_nothing",
        replays_deduped == REPLAYS && unchanged,
        format!(
            "{replays_deduped} of {REPLAYS} replays were dedup hits; record version {} → {}, bytes {}",
            state_first["version"],
            state_last["version"],
            if unchanged { "identical" } else { "changed" }
        ),
    );
    artifacts.push((
        write_artifact(
            &dir,
            "ci_task_after_replays.json",
            crate::canonical::to_canonical_pretty(&state_last).as_bytes(),
        )?,
        "the CI task after the event and its ten replays".to_owned(),
    ));

    // c) The flood: bad signatures at 50 rps while GET /api/tasks is measured.
    let flood_time = options.duration.mul_f64(1.5).min(FLOOD_MAX);
    let sent = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let flood = {
        let client = http.client().clone();
        let url = format!("{}/webhooks/github", http.base());
        let payload = payload.clone();
        let sent = Arc::clone(&sent);
        let refused = Arc::clone(&refused);
        let run_id = run_id.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(1000 / FLOOD_RPS));
            let end = Instant::now() + flood_time;
            let mut requests = tokio::task::JoinSet::new();
            let mut i = 0usize;
            while Instant::now() < end {
                tick.tick().await;
                let request = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-github-event", "check_suite")
                    .header("x-github-delivery", format!("{run_id}-flood-{i}"))
                    .header("x-hub-signature-256", signature(b"flood", &payload))
                    .timeout(Duration::from_secs(10))
                    .body(payload.clone());
                let refused = Arc::clone(&refused);
                sent.fetch_add(1, Ordering::Relaxed);
                requests.spawn(async move {
                    if let Ok(r) = request.send().await
                        && r.status() == 401
                    {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                });
                i += 1;
            }
            while requests.join_next().await.is_some() {}
        })
    };
    let load = get_load(http, &["/api/tasks".to_owned()], 4, usize::MAX, flood_time).await;
    let _ = flood.await;
    let flood_sent = sent.load(Ordering::Relaxed);
    let flood_refused = refused.load(Ordering::Relaxed);
    key_events += flood_sent;
    let flood_p95 = round3(percentile(&load.latencies_ms, 95.0));
    b.metric("flood_api_p95_ms", flood_p95);
    b.check(
        "flood_refused",
        flood_sent > 0 && flood_refused == flood_sent,
        format!(
            "{flood_refused} of {flood_sent} flood requests answered 401 over {:.1} s",
            flood_time.as_secs_f64()
        ),
    );
    b.check(
        "api_during_flood",
        load.errors == 0 && !load.latencies_ms.is_empty() && flood_p95 <= FLOOD_P95_BUDGET_MS,
        format!(
            "{} GET /api/tasks during the flood, {} errors, p50 {} ms, p95 {flood_p95} ms (budget {FLOOD_P95_BUDGET_MS} ms)",
            load.latencies_ms.len(),
            load.errors,
            round3(percentile(&load.latencies_ms, 50.0)),
        ),
    );

    // d) One Telegram message replayed ten times.
    let tg_headers = telegram_headers(options);
    // Message ids new to any server this is run against.
    let base_message = fastrand::i64(1..1 << 40) * 1000;
    let replayed = telegram_update(1, base_message, "Phase C: the same message, ten times.");
    let replay_id = task_id_of(CHAT_ID, base_message);
    let mut created_answers = 0usize;
    let mut dedup_answers = 0usize;
    for _ in 0..REPLAYS {
        if let Ok(r) = post_raw(
            target,
            "/webhooks/telegram",
            serde_json::to_vec(&replayed)?,
            &tg_headers,
        )
        .await
            && r.status == 200
        {
            if r.json()["created"] == true {
                created_answers += 1;
            } else if r.json()["dedup_hit"] == true {
                dedup_answers += 1;
            }
        }
    }
    key_events += REPLAYS;
    let replay_record = http
        .get(&format!("/api/tasks/{replay_id}"))
        .await
        .map(|r| r.json())
        .unwrap_or(Value::Null);
    let record_ok = replay_record["source"] == "telegram"
        && replay_record["correlation_id"] == replay_id.as_str()
        && replay_record["status"] == "pending"
        && replay_record["version"] == 1
        && replay_record["chat_id"] == CHAT_ID
        && replay_record["message_id"] == base_message;
    let dedup_pass = created_answers == 1 && dedup_answers == REPLAYS - 1 && record_ok;
    b.metric("telegram_dedup_pass", dedup_pass);
    b.check(
        "telegram_one_task_per_message",
        dedup_pass,
        format!(
            "{REPLAYS} posts of one message: {created_answers} created, {dedup_answers} dedup hits; task {replay_id} source {}, status {}, version {}",
            replay_record["source"], replay_record["status"], replay_record["version"]
        ),
    );
    artifacts.push((
        write_artifact(
            &dir,
            "telegram_task.json",
            crate::canonical::to_canonical_pretty(&replay_record).as_bytes(),
        )?,
        "the SSOT task made from the replayed Telegram message".to_owned(),
    ));

    // e) Ingest latency: from the call to the SSOT file (the readable record with --url).
    let mut latencies = Vec::with_capacity(INGEST_MESSAGES);
    let mut ingested = 0usize;
    let ssot_dir = target
        .local
        .as_ref()
        .map(|s| s.root.path().join(crate::server::state::SSOT_DIR));
    for i in 0..INGEST_MESSAGES {
        let message_id = base_message + 1 + i64::try_from(i).unwrap_or(0);
        let update = telegram_update(
            2 + i64::try_from(i).unwrap_or(0),
            message_id,
            &format!("Phase C ingest message {}", i + 1),
        );
        let id = task_id_of(CHAT_ID, message_id);
        let start = Instant::now();
        let answered = post_raw(
            target,
            "/webhooks/telegram",
            serde_json::to_vec(&update)?,
            &tg_headers,
        )
        .await
        .is_ok_and(|r| r.status == 200 && r.json()["created"] == true);
        if !answered {
            continue;
        }
        // Bounded: at most 2,000 looks, yielding between them.
        let mut seen = false;
        for _ in 0..2000 {
            seen = match &ssot_dir {
                Some(d) => d.join(format!("{id}.json")).is_file(),
                None => http
                    .get(&format!("/api/tasks/{id}"))
                    .await
                    .is_ok_and(|r| r.status == 200),
            };
            if seen {
                break;
            }
            tokio::task::yield_now().await;
        }
        if seen {
            latencies.push(start.elapsed().as_secs_f64() * 1e3);
            ingested += 1;
        }
    }
    key_events += INGEST_MESSAGES;
    let ingest_p95 = round3(percentile(&latencies, 95.0));
    b.metric("telegram_ingest_p95_ms", ingest_p95);
    b.check(
        "telegram_ingest_latency",
        ingested == INGEST_MESSAGES && ingest_p95 <= INGEST_P95_BUDGET_MS,
        format!(
            "{ingested} of {INGEST_MESSAGES} messages reached {}: p50 {} ms, p95 {ingest_p95} ms (budget {INGEST_P95_BUDGET_MS} ms)",
            if ssot_dir.is_some() { "ssot/<id>.json" } else { "GET /api/tasks/<id>" },
            round3(percentile(&latencies, 50.0)),
        ),
    );
    // Telegram tasks created by this run: the replayed message and the timed ones.
    let tasks_created = created_answers + ingested;
    b.metric("telegram_tasks_created", tasks_created);
    b.check(
        "telegram_tasks_created",
        tasks_created == 1 + INGEST_MESSAGES,
        format!(
            "{tasks_created} tasks created from {} distinct messages",
            1 + INGEST_MESSAGES
        ),
    );

    // The audit log (own server only): every key event written.
    if let Some(server) = &target.local {
        let lines = audit_lines(server).await?;
        let count = |name: &str| lines.iter().filter(|l| l["event"] == name).count();
        let webhook_lines: Vec<&Value> = lines
            .iter()
            .filter(|l| l["event"] == "webhook_received")
            .collect();
        let invalid = webhook_lines
            .iter()
            .filter(|l| l["detail"]["signature_valid"] == false)
            .count();
        let dedup = webhook_lines
            .iter()
            .filter(|l| l["detail"]["dedup_hit"] == true)
            .count();
        let tg_created = count("telegram_task_created");
        let tg_dedup = count("telegram_dedup_hit");
        let written = webhook_lines.len() + tg_created + tg_dedup;
        b.metric("audit_events_written", written);
        let with_ids = webhook_lines
            .iter()
            .all(|l| l["detail"]["event_id"].is_string() && l["correlation_id"].is_string());
        b.check(
            "audit_events_written",
            written >= key_events
                && invalid == BAD_SIGNATURES + flood_sent
                && dedup == REPLAYS
                && tg_created == tasks_created
                && tg_dedup == REPLAYS - 1
                && with_ids,
            format!(
                "{written} key audit lines for {key_events} key events: {} webhook_received ({invalid} signature_valid=false, {dedup} dedup_hit), {tg_created} telegram_task_created, {tg_dedup} telegram_dedup_hit",
                webhook_lines.len()
            ),
        );
        let secret_leaked = secret
            .as_ref()
            .is_some_and(|s| lines.iter().any(|l| l.to_string().contains(s.as_str())));
        b.check(
            "secret_not_logged",
            !secret_leaked,
            "the webhook secret appears in no audit line",
        );
        let excerpt: String = lines
            .iter()
            .filter(|l| {
                l["event"] == "webhook_received" && l["detail"]["signature_valid"] == true
                    || l["event"]
                        .as_str()
                        .is_some_and(|e| e.starts_with("telegram_"))
            })
            .take(40)
            .chain(
                lines
                    .iter()
                    .filter(|l| l["detail"]["signature_valid"] == false)
                    .take(5),
            )
            .map(|l| crate::canonical::to_canonical_string(l) + "\n")
            .collect();
        artifacts.push((
            write_artifact(&dir, "audit_webhooks.jsonl", excerpt.as_bytes())?,
            "audit excerpt: signed deliveries and replays, Telegram creations and dedup hits, five refused signatures"
                .to_owned(),
        ));
    } else {
        b.metric("audit_events_written", Value::Null);
        b.notes.push(
            "audit_events_written is counted only with the command's own server (the log of a --url server is not read)"
                .to_owned(),
        );
    }
    b.notes.push(format!(
        "flood: {flood_sent} bad-signature requests at {FLOOD_RPS} rps for {:.1} s; ingest timed over {INGEST_MESSAGES} distinct messages",
        flood_time.as_secs_f64()
    ));
    Ok(artifacts)
}
