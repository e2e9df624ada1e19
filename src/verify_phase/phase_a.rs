//! Phase A (seed 004, module 1): the SSOT + API closed loop.
//!
//! a) the server is up; b) a sample task exists (created when missing); c) ten reads of it hash
//! the same after canonicalisation; d) an approve, then a reject, is visible in the very next read;
//! e) API latency under a bounded load. Around these, the API's contract is checked: 401 without
//! the token, 404, 400 for a traversal id, 412 for a stale `If-Match`, the list, and (with its own
//! server) the audit lines carrying the task's correlation id.
//! Metrics: `api_p50_ms`, `api_p95_ms`, `hash_stability_pass`, `tests_passed`, `tests_failed`.

use std::path::PathBuf;

use anyhow::Result;
use serde_json::{Value, json};

use super::load::{get_load, percentile, round3};
use super::report::ReportBuilder;
use super::{Options, Target, audit_lines, write_artifact};

/// The sample task's id.
pub const SAMPLE_TASK: &str = "phase-a-sample";

/// The API p95 this phase accepts, in milliseconds (loopback, in-process load).
pub const P95_BUDGET_MS: f64 = 100.0;

fn canonical_hash(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    Some(crate::hash::sha256_hex(
        crate::canonical::to_canonical_string(&value).as_bytes(),
    ))
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
    let detail_path = format!("/api/tasks/{SAMPLE_TASK}");

    // a) The service is up.
    let health = http.get("/healthz").await;
    let up = health.as_ref().is_ok_and(|r| r.status == 200);
    b.check(
        "service_up",
        up,
        format!("GET /healthz → {}", status_of(&health)),
    );
    if !up {
        b.metric("api_p50_ms", 0.0);
        b.metric("api_p95_ms", 0.0);
        b.metric("hash_stability_pass", false);
        let (passed, failed) = b.counts();
        b.metric("tests_passed", passed);
        b.metric("tests_failed", failed);
        return Ok(artifacts);
    }

    // b) A sample task exists (created if it does not).
    let create = http
        .post(
            "/api/tasks",
            Some(&json!({
                "task_id": SAMPLE_TASK,
                "request_text": "Phase A sample task: approve or reject it through the API.",
                "acceptance_criteria": [
                    {"id": "AC-1", "text": "The verdict is visible in the next GET."},
                    {"id": "AC-2", "text": "Ten reads hash the same."}
                ],
                "declared_scope": ["ssot/**"]
            })),
            true,
            &[],
        )
        .await;
    let created = create
        .as_ref()
        .is_ok_and(|r| r.status == 201 || r.status == 409);
    b.check(
        "sample_task_exists",
        created,
        format!(
            "POST /api/tasks → {} (201 created, 409 already there)",
            status_of(&create)
        ),
    );
    let again = http
        .post(
            "/api/tasks",
            Some(&json!({"task_id": SAMPLE_TASK, "request_text": "again"})),
            true,
            &[],
        )
        .await;
    b.check(
        "create_twice_conflicts",
        again.as_ref().is_ok_and(|r| r.status == 409),
        format!("second POST /api/tasks → {}", status_of(&again)),
    );

    // c) Ten reads, one hash.
    let mut hashes = Vec::new();
    let mut first_body = None;
    for _ in 0..10 {
        match http.get(&detail_path).await {
            Ok(r) if r.status == 200 => {
                hashes.push(canonical_hash(&r.body).unwrap_or_default());
                first_body.get_or_insert(r.body);
            }
            Ok(r) => hashes.push(format!("status {}", r.status)),
            Err(e) => hashes.push(format!("error {e:#}")),
        }
    }
    let stable = hashes.len() == 10 && hashes.iter().all(|h| h.len() == 64 && *h == hashes[0]);
    b.check(
        "hash_stability",
        stable,
        format!(
            "10 reads of {detail_path}: {} distinct sha256",
            hashes
                .iter()
                .collect::<std::collections::BTreeSet<_>>()
                .len()
        ),
    );
    b.metric("hash_stability_pass", stable);
    artifacts.push((
        write_artifact(
            &dir,
            "response_hashes.json",
            crate::canonical::to_canonical_pretty(&json!({
                "task_id": SAMPLE_TASK,
                "request": format!("GET {detail_path}"),
                "reads": hashes.len(),
                "canonicalisation": "JSON parsed, keys sorted, no insignificant whitespace (SPEC §8.2)",
                "sha256": hashes,
                "stable": stable,
            }))
            .as_bytes(),
        )?,
        "sha256 of the canonical body of 10 consecutive reads".to_owned(),
    ));
    let version_before = first_body
        .as_ref()
        .and_then(|body| serde_json::from_slice::<Value>(body).ok())
        .and_then(|v| v["version"].as_u64())
        .unwrap_or(0);

    // d) Approve, then reject: each visible in the very next GET.
    for (verb, status) in [("approve", "approved"), ("reject", "rejected")] {
        let decided = http
            .post(
                &format!("{detail_path}/{verb}"),
                Some(&json!({"reason": format!("phase A: {verb}")})),
                true,
                &[],
            )
            .await;
        b.check(
            &format!("{verb}_ok"),
            decided.as_ref().is_ok_and(|r| r.status == 200),
            format!("POST {detail_path}/{verb} → {}", status_of(&decided)),
        );
        let next = http.get(&detail_path).await;
        let seen = next.as_ref().ok().map(super::load::Reply::json);
        let visible = seen
            .as_ref()
            .is_some_and(|v| v["status"] == status && v["decision"]["verdict"] == status);
        b.check(
            &format!("{verb}_visible_in_next_get"),
            visible,
            format!(
                "next GET: status {}, decision {}",
                seen.as_ref().map_or(Value::Null, |v| v["status"].clone()),
                seen.as_ref()
                    .map_or(Value::Null, |v| v["decision"]["verdict"].clone())
            ),
        );
    }
    let after = http.get(&detail_path).await;
    let after_json = after.as_ref().ok().map(super::load::Reply::json);
    let version_after = after_json
        .as_ref()
        .and_then(|v| v["version"].as_u64())
        .unwrap_or(0);
    b.check(
        "version_incremented_per_write",
        version_after == version_before + 2,
        format!("version {version_before} → {version_after} after 2 writes"),
    );
    if let Ok(reply) = &after {
        artifacts.push((
            write_artifact(&dir, "sample_task.json", &reply.body)?,
            "the sample task as served after approve and reject (canonical JSON)".to_owned(),
        ));
    }

    // The API's contract around the loop.
    let stale = http
        .post(
            &format!("{detail_path}/approve"),
            None,
            true,
            &[("if-match", &version_before.to_string())],
        )
        .await;
    b.check(
        "stale_if_match_412",
        stale.as_ref().is_ok_and(|r| r.status == 412),
        format!(
            "approve with If-Match: {version_before} → {}",
            status_of(&stale)
        ),
    );
    let anonymous = http
        .post(&format!("{detail_path}/approve"), None, false, &[])
        .await;
    b.check(
        "approve_without_token_401",
        anonymous.as_ref().is_ok_and(|r| r.status == 401),
        format!("approve without a token → {}", status_of(&anonymous)),
    );
    let missing = http.get("/api/tasks/phase-a-no-such-task").await;
    b.check(
        "unknown_task_404",
        missing.as_ref().is_ok_and(|r| r.status == 404),
        format!("GET an unknown task → {}", status_of(&missing)),
    );
    let traversal = http.get("/api/tasks/..%2F..%2Fetc%2Fpasswd").await;
    b.check(
        "traversal_id_400",
        traversal.as_ref().is_ok_and(|r| r.status == 400),
        format!(
            "GET /api/tasks/..%2F..%2Fetc%2Fpasswd → {}",
            status_of(&traversal)
        ),
    );
    let listed = http.get("/api/tasks?status=rejected&limit=100").await;
    let in_list = listed
        .as_ref()
        .ok()
        .map(super::load::Reply::json)
        .is_some_and(|v| {
            v["tasks"]
                .as_array()
                .is_some_and(|ts| ts.iter().any(|t| t["task_id"] == SAMPLE_TASK))
        });
    b.check(
        "list_filters_by_status",
        in_list,
        format!(
            "GET /api/tasks?status=rejected → {}, sample listed: {in_list}",
            status_of(&listed)
        ),
    );

    // Audit: reads, writes and decisions carry the task's correlation id.
    if let Some(server) = &target.local {
        let correlation = after_json
            .as_ref()
            .and_then(|v| v["correlation_id"].as_str())
            .unwrap_or_default()
            .to_owned();
        let lines = audit_lines(server).await?;
        let mine: Vec<&Value> = lines
            .iter()
            .filter(|l| l["task_id"] == SAMPLE_TASK)
            .collect();
        let events: std::collections::BTreeSet<&str> =
            mine.iter().filter_map(|l| l["event"].as_str()).collect();
        let all_correlated = !mine.is_empty()
            && mine
                .iter()
                .all(|l| l["correlation_id"] == correlation.as_str());
        let needed = [
            "task_created",
            "task_read",
            "task_approved",
            "task_rejected",
            "api_error",
            "auth_failed",
        ];
        let has_all = needed.iter().all(|e| events.contains(e));
        b.check(
            "audit_correlated",
            all_correlated && has_all,
            format!(
                "{} audit lines for the sample task, events {:?}, all with its correlation id: {all_correlated}",
                mine.len(),
                events
            ),
        );
        let excerpt: String = mine
            .iter()
            .map(|l| crate::canonical::to_canonical_string(l) + "\n")
            .collect();
        artifacts.push((
            write_artifact(&dir, "audit_sample_task.jsonl", excerpt.as_bytes())?,
            "the audit lines of the sample task (correlation id on each)".to_owned(),
        ));
        let ssot = server
            .root
            .path()
            .join("ssot")
            .join(format!("{SAMPLE_TASK}.json"));
        if let Ok(bytes) = fs_err::read(&ssot) {
            artifacts.push((
                write_artifact(&dir, "ssot_sample_task.json", &bytes)?,
                "the sample task's SSOT file as written by the server".to_owned(),
            ));
        }
    }

    // e) Latency under a bounded load: detail reads and list pages, 8 at a time.
    let paths = vec![detail_path.clone(), "/api/tasks?limit=100".to_owned()];
    let load = get_load(http, &paths, 8, 2000, options.duration).await;
    let p50 = round3(percentile(&load.latencies_ms, 50.0));
    let p95 = round3(percentile(&load.latencies_ms, 95.0));
    b.metric("api_p50_ms", p50);
    b.metric("api_p95_ms", p95);
    b.notes.push(format!(
        "latency load: {} requests ({} errors) in {:.2} s, GET {detail_path} and GET /api/tasks?limit=100, 8 concurrent",
        load.latencies_ms.len() + load.errors,
        load.errors,
        load.elapsed.as_secs_f64()
    ));
    b.check(
        "latency_load",
        load.errors == 0 && !load.latencies_ms.is_empty() && p95 <= P95_BUDGET_MS,
        format!(
            "{} ok, {} errors, p50 {p50} ms, p95 {p95} ms (budget {P95_BUDGET_MS} ms)",
            load.latencies_ms.len(),
            load.errors
        ),
    );

    let (passed, failed) = b.counts();
    b.metric("tests_passed", passed);
    b.metric("tests_failed", failed);
    Ok(artifacts)
}

fn status_of(reply: &Result<super::load::Reply>) -> String {
    match reply {
        Ok(r) => r.status.as_u16().to_string(),
        Err(e) => format!("error: {e:#}"),
    }
}
