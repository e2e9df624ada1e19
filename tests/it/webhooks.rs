//! `POST /webhooks/github` (SPEC §8.5) and `POST /webhooks/telegram` (SPEC §8.6): signatures
//! computed here, replays across a restart, concurrent duplicates with one effect, and audits.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use gatekeeper::server::github::{signature, signature_valid, task_of_branch};
use gatekeeper::server::telegram::task_id_of;
use gatekeeper::server::{AppState, ServerOptions};
use serde_json::{Value, json};

use crate::server_support::{Answer, TestServer, send};

const SECRET: &str = "webhook-secret-for-tests";

fn server() -> TestServer {
    TestServer::with_options(|mut o| {
        o.webhook_secret = Some(SECRET.to_owned());
        o
    })
}

fn github(event: &str, delivery: &str, body: &[u8], sig: Option<&str>) -> Request<Body> {
    let mut b = Request::post("/webhooks/github")
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", delivery)
        .header("user-agent", "GitHub-Hookshot/044aadd");
    if let Some(s) = sig {
        b = b.header("x-hub-signature-256", s);
    }
    b.body(Body::from(body.to_vec())).expect("request")
}

fn signed(event: &str, delivery: &str, payload: &Value) -> Request<Body> {
    let body = serde_json::to_vec(payload).expect("json");
    let sig = signature(SECRET.as_bytes(), &body);
    github(event, delivery, &body, Some(&sig))
}

fn check_suite(branch: &str, conclusion: &str) -> Value {
    json!({
        "action": "completed",
        "check_suite": {"id": 118_578_147, "head_branch": branch,
            "head_sha": "ec26c3e57ca3a959ca5aad62de7213c562f8c821",
            "status": "completed", "conclusion": conclusion,
            "pull_requests": [], "app": {"id": 29310, "name": "octocoders-linter"}},
        "repository": {"full_name": "Codertocat/Hello-World"}
    })
}

fn webhook_audits(audit: &[Value]) -> Vec<&Value> {
    audit
        .iter()
        .filter(|l| l["event"] == "webhook_received")
        .collect()
}

#[test]
fn githubs_documented_example_signature() {
    let secret = b"It's a Secret to Everybody";
    let expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    assert_eq!(signature(secret, b"Hello, World!"), expected);
    assert!(signature_valid(secret, b"Hello, World!", Some(expected)));
    assert!(!signature_valid(secret, b"Hello, World?", Some(expected)));
    assert!(!signature_valid(
        b"another secret",
        b"Hello, World!",
        Some(expected)
    ));
    let upper = format!("sha256={}", expected[7..].to_ascii_uppercase());
    assert!(signature_valid(secret, b"Hello, World!", Some(&upper)));
    for malformed in [
        "",
        "sha256=",
        "sha256=zz",
        "sha1=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e",
    ] {
        assert!(
            !signature_valid(secret, b"Hello, World!", Some(malformed)),
            "{malformed:?}"
        );
    }
    assert!(!signature_valid(secret, b"Hello, World!", None));
}

#[tokio::test]
async fn the_documented_example_is_accepted_over_http() {
    let server = TestServer::with_options(|mut o| {
        o.webhook_secret = Some("It's a Secret to Everybody".to_owned());
        o
    });
    let answer = server
        .send(github(
            "ping",
            "72d3162e-cc78-11e3-81ab-4c9367dc0958",
            b"Hello, World!",
            Some("sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"),
        ))
        .await;
    // A valid signature over a body that is not JSON: authenticated, then refused as JSON.
    answer.expect_error(400, "invalid_json");
    let audit = server.audit().await;
    let hooks = webhook_audits(&audit);
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0]["detail"]["signature_valid"], true);
}

#[tokio::test]
async fn wrong_missing_and_malformed_signatures_get_401_and_change_nothing() {
    let server = server();
    server.create("feature-x", "do x").await;
    let payload = serde_json::to_vec(&check_suite("feature-x", "success")).expect("json");
    let wrong = signature(b"not the secret", &payload);
    let cases: Vec<Option<String>> = vec![
        None,
        Some(wrong),
        Some("sha256=nothex".to_owned()),
        Some("sha256=".to_owned()),
        Some(format!(
            "sha1={}",
            &signature(SECRET.as_bytes(), &payload)[7..]
        )),
    ];
    for (i, sig) in cases.iter().enumerate() {
        let answer = server
            .send(github(
                "check_suite",
                &format!("bad-{i}"),
                &payload,
                sig.as_deref(),
            ))
            .await;
        answer.expect_error(401, "unauthorized");
    }
    // A body changed after signing.
    let sig = signature(SECRET.as_bytes(), &payload);
    let mut tampered = payload.clone();
    tampered.push(b' ');
    server
        .send(github("check_suite", "bad-tampered", &tampered, Some(&sig)))
        .await
        .expect_error(401, "unauthorized");
    let task = server
        .send(crate::server_support::get("/api/tasks/feature-x"))
        .await;
    assert_eq!(task.json()["ci_status"], Value::Null);
    assert_eq!(task.json()["version"], 1);
    let audit = server.audit().await;
    let hooks = webhook_audits(&audit);
    assert_eq!(hooks.len(), 6);
    for h in &hooks {
        assert_eq!(h["detail"]["signature_valid"], false, "{h}");
        assert_eq!(h["detail"]["dedup_hit"], false, "{h}");
        assert!(
            h["detail"]["event_id"]
                .as_str()
                .is_some_and(|e| e.starts_with("bad-"))
        );
    }
    assert!(
        !audit.iter().any(|l| l.to_string().contains(SECRET)),
        "the secret is never audited"
    );
}

#[tokio::test]
async fn no_secret_fails_closed_with_503() {
    let server = TestServer::new();
    let body = serde_json::to_vec(&check_suite("x", "success")).expect("json");
    let sig = signature(b"anything", &body);
    let answer = server
        .send(github("check_suite", "d-1", &body, Some(&sig)))
        .await;
    answer.expect_error(503, "webhook_disabled");
    let audit = server.audit().await;
    assert_eq!(webhook_audits(&audit).len(), 1);
}

#[tokio::test]
async fn ci_events_set_ci_status_of_the_branch_task_once() {
    let server = server();
    server.create("feature-x", "do x").await;
    let answer = server
        .send(signed(
            "check_suite",
            "delivery-1",
            &check_suite("users/alice/feature-x", "failure"),
        ))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.json()["outcome"], "ci_status_updated");
    let after = server
        .send(crate::server_support::get("/api/tasks/feature-x"))
        .await;
    let record = after.json();
    assert_eq!(record["version"], 2);
    assert_eq!(record["ci_status"]["conclusion"], "failure");
    assert_eq!(record["ci_status"]["event"], "check_suite");
    assert_eq!(record["ci_status"]["delivery"], "delivery-1");

    // Ten replays: 200, dedup hits, byte-identical record.
    for _ in 0..10 {
        let replay = server
            .send(signed(
                "check_suite",
                "delivery-1",
                &check_suite("users/alice/feature-x", "failure"),
            ))
            .await;
        assert_eq!(replay.status, StatusCode::OK);
        assert_eq!(replay.json()["dedup_hit"], true);
    }
    let again = server
        .send(crate::server_support::get("/api/tasks/feature-x"))
        .await;
    assert_eq!(again.body, after.body);

    // check_run and workflow_run too.
    let check_run = json!({"action": "completed", "check_run": {"id": 4, "name": "test",
        "head_sha": "abc", "status": "completed", "conclusion": "success",
        "check_suite": {"id": 5, "head_branch": "feature-x", "head_sha": "abc"}}});
    let a = server
        .send(signed("check_run", "delivery-2", &check_run))
        .await;
    assert_eq!(a.json()["outcome"], "ci_status_updated");
    let run = json!({"action": "in_progress", "workflow_run": {"id": 289_782_451, "name": "ci",
        "status": "in_progress", "conclusion": null, "head_branch": "feature-x", "head_sha": "abc"}});
    let a = server
        .send(signed("workflow_run", "delivery-3", &run))
        .await;
    assert_eq!(a.json()["outcome"], "ci_status_updated");
    let record = server
        .send(crate::server_support::get("/api/tasks/feature-x"))
        .await
        .json();
    assert_eq!(record["version"], 4);
    assert_eq!(record["ci_status"]["event"], "workflow_run");
    assert_eq!(record["ci_status"]["status"], "in_progress");

    let audit = server.audit().await;
    let hooks = webhook_audits(&audit);
    assert_eq!(hooks.len(), 13);
    assert_eq!(
        hooks
            .iter()
            .filter(|h| h["detail"]["dedup_hit"] == true)
            .count(),
        10
    );
    assert!(hooks.iter().all(|h| h["detail"]["signature_valid"] == true));
    let created = &server
        .send(crate::server_support::get("/api/tasks/feature-x"))
        .await
        .json()["correlation_id"];
    assert!(
        hooks
            .iter()
            .filter(|h| h["detail"]["outcome"] == "ci_status_updated")
            .all(|h| &h["correlation_id"] == created && h["task_id"] == "feature-x")
    );
}

#[tokio::test]
async fn branch_names_that_are_not_task_ids_touch_nothing() {
    assert_eq!(task_of_branch("feat/a;rm -rf ~"), None);
    // Only the last segment counts, and it is only ever a store key.
    assert_eq!(
        task_of_branch("../../etc/passwd").map(|t| t.to_string()),
        Some("passwd".to_owned())
    );
    assert_eq!(
        task_of_branch("refs/heads/ok-1").map(|t| t.to_string()),
        Some("ok-1".to_owned())
    );
    let server = server();
    for (i, branch) in ["$(touch pwned)", "a/..", "..", "x/`id`"]
        .iter()
        .enumerate()
    {
        let answer = server
            .send(signed(
                "check_suite",
                &format!("evil-{i}"),
                &check_suite(branch, "success"),
            ))
            .await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.json()["outcome"], "invalid_task_id", "{branch}");
    }
    let unknown = server
        .send(signed(
            "check_suite",
            "u-1",
            &check_suite("nope", "success"),
        ))
        .await;
    assert_eq!(unknown.json()["outcome"], "unknown_task");
    assert_eq!(server.state.store().len(), 0);
}

#[tokio::test]
async fn a_replay_after_a_restart_is_still_a_dedup_hit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = ServerOptions {
        webhook_secret: Some(SECRET.to_owned()),
        ..ServerOptions::new(dir.path()).admin_token(crate::server_support::TOKEN)
    };
    let (first, _) = AppState::open(&options).expect("open");
    let app = gatekeeper::server::router(first.clone());
    let created = send(
        app.clone(),
        crate::server_support::post_json(
            "/api/tasks",
            &json!({"task_id": "feature-y", "request_text": "y"}),
            Some(crate::server_support::TOKEN),
        ),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let a = send(
        app.clone(),
        signed(
            "check_suite",
            "d-restart",
            &check_suite("feature-y", "success"),
        ),
    )
    .await;
    assert_eq!(a.json()["dedup_hit"], false);
    first.audit().flush().await.expect("flush");
    drop(app);
    drop(first);

    let (second, _) = AppState::open(&options).expect("reopen");
    assert_eq!(second.webhooks().deliveries().len().await, 1);
    let app = gatekeeper::server::router(second.clone());
    let b = send(
        app.clone(),
        signed(
            "check_suite",
            "d-restart",
            &check_suite("feature-y", "failure"),
        ),
    )
    .await;
    assert_eq!(b.status, StatusCode::OK);
    assert_eq!(b.json()["dedup_hit"], true);
    let record = send(app, crate::server_support::get("/api/tasks/feature-y"))
        .await
        .json();
    assert_eq!(record["version"], 2);
    assert_eq!(record["ci_status"]["conclusion"], "success");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_duplicate_deliveries_have_one_effect() {
    let server = server();
    server.create("feature-z", "z").await;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let app = server.app();
        set.spawn(async move {
            send(
                app,
                signed(
                    "check_suite",
                    "same-delivery",
                    &check_suite("feature-z", "success"),
                ),
            )
            .await
        });
    }
    let mut answers: Vec<Answer> = Vec::new();
    while let Some(a) = set.join_next().await {
        answers.push(a.expect("join"));
    }
    assert!(answers.iter().all(|a| a.status == StatusCode::OK));
    assert_eq!(
        answers
            .iter()
            .filter(|a| a.json()["dedup_hit"] == false)
            .count(),
        1
    );
    let record = server
        .send(crate::server_support::get("/api/tasks/feature-z"))
        .await
        .json();
    assert_eq!(record["version"], 2);
}

fn telegram_update(update_id: i64, chat_id: i64, message_id: i64, text: Option<&str>) -> Value {
    let mut message = json!({
        "message_id": message_id,
        "from": {"id": 987_654_321, "is_bot": false, "first_name": "User"},
        "chat": {"id": chat_id, "type": "private"},
        "date": 1_700_000_000,
    });
    if let Some(t) = text {
        message["text"] = json!(t);
    }
    json!({"update_id": update_id, "message": message})
}

fn telegram(body: &Value, secret: Option<&str>) -> Request<Body> {
    let mut b = Request::post("/webhooks/telegram").header("content-type", "application/json");
    if let Some(s) = secret {
        b = b.header("x-telegram-bot-api-secret-token", s);
    }
    b.body(Body::from(serde_json::to_vec(body).expect("json")))
        .expect("request")
}

#[tokio::test]
async fn a_telegram_message_becomes_one_pending_ssot_task() {
    let server = TestServer::new();
    let update = telegram_update(
        100_000_001,
        -1_001_234_567_890,
        42,
        Some("Fix the login bug"),
    );
    let first = server.send(telegram(&update, None)).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    let id = task_id_of(-1_001_234_567_890, 42);
    assert_eq!(id.len(), 12);
    assert_eq!(first.json()["task_id"], id);
    assert_eq!(first.json()["created"], true);
    for _ in 0..5 {
        let again = server.send(telegram(&update, None)).await;
        assert_eq!(again.json()["dedup_hit"], true);
    }
    let record = server
        .send(crate::server_support::get(&format!("/api/tasks/{id}")))
        .await
        .json();
    assert_eq!(record["source"], "telegram");
    assert_eq!(record["chat_id"], -1_001_234_567_890_i64);
    assert_eq!(record["message_id"], 42);
    assert_eq!(record["request_text"], "Fix the login bug");
    assert_eq!(record["correlation_id"], id);
    assert_eq!(record["status"], "pending");
    assert_eq!(record["version"], 1);
    assert!(record["created_at"].as_str().is_some());
    // The file on disk is the same record.
    let file: Value = serde_json::from_slice(
        &std::fs::read(server.dir.path().join(format!("ssot/{id}.json"))).expect("ssot file"),
    )
    .expect("json");
    assert_eq!(file["task_id"], id);
    assert_eq!(server.state.store().len(), 1);
    let audit = server.audit().await;
    let created: Vec<_> = audit
        .iter()
        .filter(|l| l["event"] == "telegram_task_created")
        .collect();
    let dedup = audit
        .iter()
        .filter(|l| l["event"] == "telegram_dedup_hit")
        .count();
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["correlation_id"], id);
    assert_eq!(dedup, 5);
}

#[tokio::test]
async fn updates_without_a_text_message_get_200_and_no_task() {
    let server = TestServer::new();
    let cases = [
        json!({"update_id": 1, "callback_query": {"id": "x", "data": "y"}}),
        telegram_update(2, 5, 6, None),
        json!({"update_id": 3, "edited_message": {"message_id": 1, "chat": {"id": 1}, "date": 1, "text": "edit"}}),
        json!({"update_id": 4, "message": {"chat": {"id": 1}, "text": "no id"}}),
    ];
    for update in &cases {
        let answer = server.send(telegram(update, None)).await;
        assert_eq!(answer.status, StatusCode::OK, "{update}");
        assert_eq!(answer.json()["task_id"], Value::Null);
    }
    assert_eq!(server.state.store().len(), 0);
    let audit = server.audit().await;
    assert_eq!(
        audit
            .iter()
            .filter(|l| l["event"] == "telegram_update_ignored")
            .count(),
        4
    );
    // Not JSON at all is a 400.
    let bad = server
        .send(
            Request::post("/webhooks/telegram")
                .header("content-type", "application/json")
                .body(Body::from("{not json"))
                .expect("request"),
        )
        .await;
    bad.expect_error(400, "invalid_json");
}

#[tokio::test]
async fn the_telegram_secret_token_must_match_when_set() {
    let server = TestServer::with_options(|mut o| {
        o.telegram_secret = Some("tg-secret_1".to_owned());
        o
    });
    let update = telegram_update(1, 7, 8, Some("hello"));
    server
        .send(telegram(&update, None))
        .await
        .expect_error(401, "unauthorized");
    server
        .send(telegram(&update, Some("tg-secret_2")))
        .await
        .expect_error(401, "unauthorized");
    assert_eq!(server.state.store().len(), 0);
    let ok = server.send(telegram(&update, Some("tg-secret_1"))).await;
    assert_eq!(ok.json()["created"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_duplicate_telegram_messages_make_one_task() {
    let server = TestServer::new();
    let update = telegram_update(9, 11, 12, Some("once"));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let app = server.app();
        let update = update.clone();
        set.spawn(async move { send(app, telegram(&update, None)).await });
    }
    let mut created = 0;
    while let Some(a) = set.join_next().await {
        let a = a.expect("join");
        assert_eq!(a.status, StatusCode::OK);
        if a.json()["created"] == true {
            created += 1;
        }
    }
    assert_eq!(created, 1);
    assert_eq!(server.state.store().len(), 1);
    let audit = server.audit().await;
    assert_eq!(
        audit
            .iter()
            .filter(|l| l["event"] == "telegram_dedup_hit")
            .count(),
        15
    );
}

#[tokio::test]
async fn oversized_bodies_get_a_json_413_on_both_routes() {
    let server = server();
    let big = vec![b' '; (1 << 20) + 1];
    let sig = signature(SECRET.as_bytes(), &big);
    server
        .send(github("check_suite", "big-1", &big, Some(&sig)))
        .await
        .expect_error(413, "payload_too_large");
    let answer = server
        .send(
            Request::post("/webhooks/telegram")
                .header("content-type", "application/json")
                .body(Body::from(big))
                .expect("request"),
        )
        .await;
    answer.expect_error(413, "payload_too_large");
    assert_eq!(server.state.store().len(), 0);
}

mod properties {
    use gatekeeper::server::github::{signature, signature_valid, task_of_branch};
    use gatekeeper::server::telegram::text_message;
    use gatekeeper::store::is_valid_task_id;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn only_the_exact_signature_verifies(
            secret in proptest::collection::vec(any::<u8>(), 1..64),
            body in proptest::collection::vec(any::<u8>(), 0..512),
            header in ".{0,80}",
        ) {
            let good = signature(&secret, &body);
            prop_assert!(signature_valid(&secret, &body, Some(&good)));
            prop_assert_eq!(
                signature_valid(&secret, &body, Some(&header)),
                header.trim().eq_ignore_ascii_case(&good)
                    && header.trim().starts_with("sha256=")
            );
        }

        #[test]
        fn branch_ids_are_valid_task_ids_or_nothing(branch in ".{0,200}") {
            if let Some(id) = task_of_branch(&branch) {
                prop_assert!(is_valid_task_id(id.as_str()));
            }
        }

        #[test]
        fn any_json_update_is_answered_without_panicking(raw in ".{0,300}") {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&raw) {
                let _ = text_message(&v);
            }
            let wrapped = serde_json::json!({"update_id": 1, "message": {
                "message_id": 1, "chat": {"id": 2}, "text": raw}});
            let m = text_message(&wrapped);
            prop_assert_eq!(m.is_ok(), !raw.trim().is_empty());
        }
    }
}
