//! L3': Server-Sent Events over a real socket (SPEC §8.3): order and shape of events, changes made
//! by another process, `Last-Event-ID` replay, slow clients dropped and audited, shutdown.

use std::time::Duration;

use axum::http::StatusCode;
use http_body_util::BodyExt as _;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use gatekeeper::store::files::update_record;
use gatekeeper::store::{Decision, TaskId, TaskRecord, Verdict};
use gatekeeper::verify_phase::load::{Http, SseClient, SseMessage, client};

use crate::server_support::{Running, TOKEN, TestServer, get};

const WAIT: Duration = Duration::from_secs(10);

async fn next(client: &mut SseClient) -> SseMessage {
    tokio::time::timeout(WAIT, client.next())
        .await
        .expect("an event within 10 s")
        .expect("stream ok")
        .expect("stream open")
}

fn data(m: &SseMessage) -> Value {
    serde_json::from_str(&m.data).expect("data is JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_reaches_every_client_in_order() {
    let s = TestServer::new();
    let server = Running::start(s.state.clone()).await;
    let http = Http::new(&server.base, Some(TOKEN)).unwrap();
    let sse = client(8).unwrap();
    let mut a = SseClient::connect(&sse, &server.base, None).await.unwrap();
    let mut b = SseClient::connect(&sse, &server.base, None).await.unwrap();

    let created = http
        .post(
            "/api/tasks",
            Some(&json!({"task_id": "s1", "request_text": "x"})),
            true,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(created.status, StatusCode::CREATED);
    let correlation = created.json()["correlation_id"].clone();
    for verb in ["approve", "reject", "approve"] {
        let r = http
            .post(&format!("/api/tasks/s1/{verb}"), None, true, &[])
            .await
            .unwrap();
        assert_eq!(r.status, StatusCode::OK);
    }
    for client in [&mut a, &mut b] {
        let mut seen = Vec::new();
        for _ in 0..4 {
            let m = next(client).await;
            assert_eq!(m.event, "task_updated");
            let d = data(&m);
            let keys: Vec<&str> = d.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(
                keys,
                [
                    "correlation_id",
                    "sent_at_ms",
                    "status",
                    "task_id",
                    "version"
                ]
            );
            assert_eq!(d["correlation_id"], correlation);
            assert!(d["sent_at_ms"].as_u64().unwrap() > 1_700_000_000_000);
            seen.push((
                m.id.unwrap().parse::<u64>().unwrap(),
                d["status"].as_str().unwrap().to_owned(),
                d["version"].as_u64().unwrap(),
            ));
        }
        assert_eq!(
            seen,
            [
                (1, "pending".to_owned(), 1),
                (2, "approved".to_owned(), 2),
                (3, "rejected".to_owned(), 3),
                (4, "approved".to_owned(), 4)
            ]
        );
    }
    drop((a, b));
    let mut connected = s.state.hub().connected();
    tokio::time::timeout(WAIT, connected.wait_for(|n| *n == 0))
        .await
        .expect("the server notices the clients left")
        .unwrap();
    let audit = s.audit().await;
    let count = |e: &str| audit.iter().filter(|l| l["event"] == e).count();
    assert_eq!(count("sse_client_connect"), 2);
    assert_eq!(count("sse_client_disconnect"), 2);
    let broadcasts: Vec<u64> = audit
        .iter()
        .filter(|l| l["event"] == "sse_broadcast")
        .map(|l| l["detail"]["broadcast_count"].as_u64().unwrap())
        .collect();
    assert_eq!(broadcasts, [2, 2, 2, 2]);
    assert!(
        audit
            .iter()
            .filter(|l| l["event"] == "sse_client_disconnect")
            .all(|l| l["detail"]["reason"] == "closed" && l["detail"]["events_sent"] == 4)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_by_another_process_are_streamed() {
    let s = TestServer::new();
    s.create("ext", "changed behind the server's back").await;
    let server = Running::start(s.state.clone()).await;
    let sse = client(2).unwrap();
    let mut c = SseClient::connect(&sse, &server.base, None).await.unwrap();
    // The CLI's write path: lock, read, change, version + 1, atomic write.
    let dir = s.dir.path().join("ssot");
    tokio::task::spawn_blocking(move || {
        update_record(
            &dir,
            &TaskId::parse("ext").unwrap(),
            Some(1),
            Box::new(|r: &mut TaskRecord| {
                r.decision = Some(Decision {
                    verdict: Verdict::Rejected,
                    by: "cli".into(),
                    reason: None,
                    at: "2026-01-01T00:00:00Z".into(),
                });
                Ok(())
            }),
        )
    })
    .await
    .unwrap()
    .unwrap();
    let m = next(&mut c).await;
    let d = data(&m);
    assert_eq!(
        (
            d["task_id"].clone(),
            d["status"].clone(),
            d["version"].clone()
        ),
        (json!("ext"), json!("rejected"), json!(2))
    );
    // The API serves the new state at once, and audits the external change.
    let read = s.send(get("/api/tasks/ext")).await.json();
    assert_eq!(
        (read["status"].clone(), read["decision"]["by"].clone()),
        (json!("rejected"), json!("cli"))
    );
    let audit = s.audit().await;
    assert!(audit.iter().any(|l| l["event"] == "task_updated"
        && l["actor"] == "watcher"
        && l["task_id"] == "ext"
        && l["detail"]["version"] == 2));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_event_id_replays_what_was_missed() {
    let s = TestServer::new();
    let server = Running::start(s.state.clone()).await;
    let http = Http::new(&server.base, Some(TOKEN)).unwrap();
    http.post(
        "/api/tasks",
        Some(&json!({"task_id": "r1", "request_text": "x"})),
        true,
        &[],
    )
    .await
    .unwrap();
    for verb in ["approve", "reject"] {
        http.post(&format!("/api/tasks/r1/{verb}"), None, true, &[])
            .await
            .unwrap();
    }
    assert_eq!(s.state.hub().last_seq(), 3);
    let sse = client(2).unwrap();
    let mut resumed = SseClient::connect(&sse, &server.base, Some(1))
        .await
        .unwrap();
    let replayed: Vec<String> = vec![next(&mut resumed).await, next(&mut resumed).await]
        .into_iter()
        .map(|m| m.id.unwrap())
        .collect();
    assert_eq!(replayed, ["2", "3"]);
    // Then it goes on live, without a gap or a duplicate.
    http.post("/api/tasks/r1/approve", None, true, &[])
        .await
        .unwrap();
    assert_eq!(next(&mut resumed).await.id.as_deref(), Some("4"));
    // A Last-Event-ID at the head replays nothing.
    let mut at_head = SseClient::connect(&sse, &server.base, Some(4))
        .await
        .unwrap();
    http.post("/api/tasks/r1/reject", None, true, &[])
        .await
        .unwrap();
    assert_eq!(next(&mut at_head).await.id.as_deref(), Some("5"));
    server.stop().await;
}

/// A slow client is dropped (its stream ends) instead of slowing the others, and that is audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_client_is_dropped_and_audited() {
    let s = TestServer::with_options(|mut o| {
        o.sse_client_buffer = 4;
        o
    });
    s.create("slow", "x").await;
    let app = s.app();
    // The slow client: subscribed, then not read while 10 changes go out.
    let response = crate::server_support::send_streaming(app.clone(), get("/api/events")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let server = Running::start(s.state.clone()).await;
    let sse = client(2).unwrap();
    let mut fast = SseClient::connect(&sse, &server.base, None).await.unwrap();
    let http = Http::new(&server.base, Some(TOKEN)).unwrap();
    for i in 0..10 {
        let verb = if i % 2 == 0 { "approve" } else { "reject" };
        http.post(&format!("/api/tasks/slow/{verb}"), None, true, &[])
            .await
            .unwrap();
        // The fast client keeps up, so it is never dropped.
        let m = next(&mut fast).await;
        assert_eq!(data(&m)["version"], i + 2);
    }
    // Now the slow one reads: what fits in its buffer is gone past; its stream ends.
    let mut body = response.into_body();
    let mut frames = 0;
    let ended = tokio::time::timeout(WAIT, async {
        while let Some(frame) = body.frame().await {
            frame.expect("frame");
            frames += 1;
            assert!(frames < 100, "the stream must end");
        }
    })
    .await;
    assert!(ended.is_ok(), "the lagging stream ends");
    drop(body);
    assert_eq!(s.state.metrics().sse_lagged(), 1);
    let audit = s.audit().await;
    let dropped: Vec<&Value> = audit
        .iter()
        .filter(|l| l["event"] == "sse_client_disconnect" && l["detail"]["reason"] == "lagged")
        .collect();
    assert_eq!(dropped.len(), 1, "{audit:#?}");
    assert!(dropped[0]["detail"]["events_missed"].as_u64().unwrap() >= 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_streams_and_the_server() {
    let s = TestServer::new();
    let server = Running::start(s.state.clone()).await;
    let sse = client(2).unwrap();
    let mut c = SseClient::connect(&sse, &server.base, None).await.unwrap();
    server.stop().await;
    let end = tokio::time::timeout(WAIT, c.next())
        .await
        .expect("ends within 10 s");
    assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");
    let audit = s.audit().await;
    assert!(
        audit
            .iter()
            .any(|l| l["event"] == "sse_client_disconnect" && l["detail"]["reason"] == "shutdown")
    );
}

/// Keep-alive comments go out every 15 s on an idle stream (virtual time, no waiting).
#[tokio::test(start_paused = true)]
async fn idle_streams_get_a_keep_alive_every_15_s() {
    let s = TestServer::new();
    let response = crate::server_support::send_streaming(s.app(), get("/api/events")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["cache-control"], "no-cache");
    let mut body = response.into_body();
    let start = tokio::time::Instant::now();
    for n in 1..=2u32 {
        let frame = body.frame().await.expect("a frame").expect("ok");
        assert_eq!(frame.into_data().expect("data").as_ref(), b":\n\n");
        assert_eq!(start.elapsed(), Duration::from_secs(15) * n);
    }
}
