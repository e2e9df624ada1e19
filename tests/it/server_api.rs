//! L3: the task API through `Router::oneshot` (SPEC §8.1, §8.2, §8.4, §13): every route and status
//! code, admin auth, canonical answers, bad input, and no lost updates under concurrency.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use crate::server_support::{TOKEN, TestServer, get, post_json, post_raw, send};

/// Replaces the values that change from run to run.
fn redact(mut v: Value) -> Value {
    for key in ["correlation_id", "created_at", "updated_at"] {
        if v.get(key).is_some() {
            v[key] = json!(format!("[{key}]"));
        }
    }
    if let Some(history) = v.get_mut("history").and_then(Value::as_array_mut) {
        for h in history {
            h["at"] = json!("[at]");
        }
    }
    if v.get("decision").is_some_and(Value::is_object) {
        v["decision"]["at"] = json!("[at]");
    }
    v
}

#[tokio::test]
async fn create_read_list_decide() {
    let s = TestServer::new();
    let empty = s.send(get("/api/tasks")).await;
    assert_eq!(empty.status, StatusCode::OK);
    assert_eq!(empty.text(), r#"{"next_cursor":null,"tasks":[]}"#);

    let created = s
        .send(post_json(
            "/api/tasks",
            &json!({
                "task_id": "T-1",
                "request_text": "Add a login page",
                "acceptance_criteria": [{"id": "AC-1", "text": "it logs in"}],
                "declared_scope": ["src/login/**"]
            }),
            Some(TOKEN),
        ))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    assert_eq!(created.headers["location"], "/api/tasks/T-1");
    assert_eq!(created.headers["etag"], "\"1\"");
    assert_eq!(
        redact(created.json()),
        json!({
            "acceptance_criteria": [{"id": "AC-1", "text": "it logs in"}],
            "ci_status": null,
            "correlation_id": "[correlation_id]",
            "created_at": "[created_at]",
            "decision": null,
            "declared_scope": ["src/login/**"],
            "history": [{"at": "[at]", "by": "admin", "event": "created", "version": 1}],
            "pipeline": null,
            "request_text": "Add a login page",
            "source": "api",
            "status": "pending",
            "task_id": "T-1",
            "updated_at": "[updated_at]",
            "version": 1
        })
    );
    s.send(post_json(
        "/api/tasks",
        &json!({"task_id": "T-1", "request_text": "again"}),
        Some(TOKEN),
    ))
    .await
    .expect_error(409, "conflict");

    // Canonical: sorted keys, no insignificant whitespace, same bytes as the create answer.
    let read = s.send(get("/api/tasks/T-1")).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body, created.body);
    assert_eq!(
        read.text(),
        gatekeeper::canonical::to_canonical_string(&read.json())
    );

    // Approve with a reason: 200 with the record, visible in the very next GET.
    let approved = s
        .send(post_json(
            "/api/tasks/T-1/approve",
            &json!({"reason": "looks right"}),
            Some(TOKEN),
        ))
        .await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.text());
    let next = s.send(get("/api/tasks/T-1")).await.json();
    assert_eq!(next["status"], "approved");
    assert_eq!(next["version"], 2);
    assert_eq!(
        redact(next.clone())["decision"],
        json!({"at": "[at]", "by": "admin", "reason": "looks right", "verdict": "approved"})
    );
    assert_eq!(next, approved.json());

    // Reject without a body.
    let rejected = s
        .send(post_raw("/api/tasks/T-1/reject", None, vec![], Some(TOKEN)))
        .await;
    assert_eq!(rejected.status, StatusCode::OK, "{}", rejected.text());
    let next = s.send(get("/api/tasks/T-1")).await.json();
    assert_eq!(
        (next["status"].clone(), next["version"].clone()),
        (json!("rejected"), json!(3))
    );
    let events: Vec<&str> = next["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["created", "approved", "rejected"]);

    // The list shows it, filtered by status.
    let listed = s.send(get("/api/tasks?status=rejected")).await.json();
    assert_eq!(listed["tasks"][0]["task_id"], "T-1");
    let none = s.send(get("/api/tasks?status=approved")).await.json();
    assert_eq!(none, json!({"next_cursor": null, "tasks": []}));
}

#[tokio::test]
async fn a_list_page_never_outlives_a_change() {
    let s = TestServer::new();
    s.create("l1", "x").await;
    for _ in 0..2 {
        let page = s.send(get("/api/tasks")).await.json();
        assert_eq!(page["tasks"][0]["status"], "pending");
    }
    s.send(post_raw("/api/tasks/l1/approve", None, vec![], Some(TOKEN)))
        .await;
    let page = s.send(get("/api/tasks")).await.json();
    assert_eq!(page["tasks"][0]["status"], "approved");
    s.create("l2", "y").await;
    let page = s.send(get("/api/tasks?limit=100")).await.json();
    assert_eq!(page["tasks"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn ten_reads_hash_the_same() {
    let s = TestServer::new();
    s.create("stable", "hash me").await;
    let hashes: BTreeSet<String> = futures_util::future::join_all((0..10).map(|_| async {
        gatekeeper::hash::sha256_hex(&s.send(get("/api/tasks/stable")).await.body)
    }))
    .await
    .into_iter()
    .collect();
    assert_eq!(hashes.len(), 1);
}

#[tokio::test]
async fn pagination_walks_every_task_once_newest_first() {
    let s = TestServer::new();
    for i in 0..7 {
        s.create(&format!("p{i}"), "page me").await;
    }
    let mut seen = Vec::new();
    let mut uri = "/api/tasks?limit=3".to_owned();
    for _ in 0..10 {
        let page = s.send(get(&uri)).await.json();
        let tasks = page["tasks"].as_array().unwrap();
        assert!(tasks.len() <= 3);
        seen.extend(
            tasks
                .iter()
                .map(|t| t["task_id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => uri = format!("/api/tasks?limit=3&cursor={c}"),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 7, "{seen:?}");
    // Created one after another: newest first means p6 before p0 when the clock moved on.
    let mut created = Vec::new();
    for id in &seen {
        let t = s.send(get(&format!("/api/tasks/{id}"))).await.json();
        created.push(t["created_at"].as_str().unwrap().to_owned());
    }
    let mut newest_first = created.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(created, newest_first);
}

#[tokio::test]
async fn bad_queries_are_400() {
    let s = TestServer::new();
    for uri in [
        "/api/tasks?status=done",
        "/api/tasks?limit=0",
        "/api/tasks?limit=1001",
        "/api/tasks?limit=ten",
        "/api/tasks?cursor=not-a-cursor",
        "/api/tasks?cursor=zz",
    ] {
        s.send(get(uri)).await.expect_error(400, "bad_request");
    }
    assert_eq!(
        s.send(get("/api/tasks?limit=1000")).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn ids_are_validated_before_anything_is_touched() {
    let s = TestServer::new();
    s.create("ok", "x").await;
    for id in [
        "..%2F..%2Fetc%2Fpasswd",
        "..",
        "%2e%2e",
        "a..b",
        ".hidden",
        "-x",
        "a%20b",
        "a%2Fb",
        "%C3%A9",
        "%00",
        &"a".repeat(129),
    ] {
        s.send(get(&format!("/api/tasks/{id}")))
            .await
            .expect_error(400, "invalid_task_id");
        s.send(post_raw(
            &format!("/api/tasks/{id}/approve"),
            None,
            vec![],
            Some(TOKEN),
        ))
        .await
        .expect_error(400, "invalid_task_id");
    }
    // Invalid UTF-8 in the path is a bad request too.
    s.send(get("/api/tasks/%FF"))
        .await
        .expect_error(400, "bad_request");
    for id in ["../x", ".x", "a/b"] {
        s.send(post_json(
            "/api/tasks",
            &json!({"task_id": id, "request_text": "x"}),
            Some(TOKEN),
        ))
        .await
        .expect_error(400, "invalid_task_id");
    }
    // Nothing outside `ssot/` was written, and only the one record inside it.
    let names: BTreeSet<String> = std::fs::read_dir(s.dir.path().join("ssot"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from([".lock".to_owned(), "ok.json".to_owned()])
    );
    let top: BTreeSet<String> = std::fs::read_dir(s.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(top, BTreeSet::from(["audit".to_owned(), "ssot".to_owned()]));
    s.send(get("/api/tasks/missing"))
        .await
        .expect_error(404, "not_found");
    s.send(post_raw(
        "/api/tasks/missing/approve",
        None,
        vec![],
        Some(TOKEN),
    ))
    .await
    .expect_error(404, "not_found");
}

#[tokio::test]
async fn admin_auth_fails_closed() {
    let s = TestServer::new();
    s.create("a1", "x").await;
    let body = json!({"task_id": "a2", "request_text": "x"});
    for uri in ["/api/tasks/a1/approve", "/api/tasks/a1/reject"] {
        s.send(post_raw(uri, None, vec![], None))
            .await
            .expect_error(401, "unauthorized");
        s.send(post_raw(uri, None, vec![], Some("wrong")))
            .await
            .expect_error(401, "unauthorized");
        s.send(post_raw(uri, None, vec![], Some(&format!("{TOKEN}x"))))
            .await
            .expect_error(401, "unauthorized");
    }
    let unauthorized = s.send(post_json("/api/tasks", &body, None)).await;
    unauthorized.expect_error(401, "unauthorized");
    assert_eq!(
        unauthorized.headers["www-authenticate"],
        "Bearer realm=\"gatekeeper\""
    );
    // Another scheme, or the token without a scheme, is not a bearer token.
    for value in [
        format!("Basic {TOKEN}"),
        TOKEN.to_owned(),
        "Bearer ".to_owned(),
    ] {
        let req = Request::post("/api/tasks/a1/approve")
            .header("authorization", value)
            .body(Body::empty())
            .unwrap();
        s.send(req).await.expect_error(401, "unauthorized");
    }
    // The scheme is case-insensitive.
    let req = Request::post("/api/tasks/a1/approve")
        .header("authorization", format!("bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(s.send(req).await.status, StatusCode::OK);
    // Refused calls changed nothing: version 1 + the one accepted approve.
    assert_eq!(s.send(get("/api/tasks/a1")).await.json()["version"], 2);
    assert_eq!(
        s.send(get("/api/tasks/a2")).await.status,
        StatusCode::NOT_FOUND
    );
    // Auth failures are audited, with the task's correlation id, and never show the token.
    let audit = s.audit().await;
    let failures = audit.iter().filter(|l| l["event"] == "auth_failed").count();
    assert_eq!(failures, 10);
    let correlation = s.send(get("/api/tasks/a1")).await.json()["correlation_id"].clone();
    assert!(
        audit
            .iter()
            .filter(|l| l["event"] == "auth_failed" && l["task_id"] == "a1")
            .all(|l| l["correlation_id"] == correlation)
    );
    let raw = std::fs::read_to_string(s.state.audit().path()).unwrap();
    assert!(
        !raw.contains(TOKEN),
        "the admin token leaked into the audit log"
    );
}

#[tokio::test]
async fn no_token_configured_is_503_on_admin_routes_only() {
    let s = TestServer::without_token();
    for uri in ["/api/tasks", "/api/tasks/x/approve", "/api/tasks/x/reject"] {
        s.send(post_json(uri, &json!({"request_text": "x"}), Some(TOKEN)))
            .await
            .expect_error(503, "admin_disabled");
        s.send(post_raw(uri, None, vec![], None))
            .await
            .expect_error(503, "admin_disabled");
    }
    assert_eq!(s.send(get("/api/tasks")).await.status, StatusCode::OK);
    assert_eq!(s.send(get("/healthz")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn bodies_are_checked() {
    let s = TestServer::new();
    s.create("b1", "x").await;
    let over = vec![b' '; (1 << 20) + 1];
    s.send(post_raw(
        "/api/tasks",
        Some("application/json"),
        over.clone(),
        Some(TOKEN),
    ))
    .await
    .expect_error(413, "payload_too_large");
    s.send(post_raw(
        "/api/tasks/b1/approve",
        Some("application/json"),
        over,
        Some(TOKEN),
    ))
    .await
    .expect_error(413, "payload_too_large");
    // Exactly 1 MiB is accepted (and then judged as JSON).
    let mut exact = br#"{"task_id":"big","request_text":""#.to_vec();
    exact.resize((1 << 20) - 2, b'a');
    exact.extend_from_slice(br#""}"#);
    assert_eq!(exact.len(), 1 << 20);
    let big = s
        .send(post_raw(
            "/api/tasks",
            Some("application/json"),
            exact,
            Some(TOKEN),
        ))
        .await;
    assert_eq!(big.status, StatusCode::CREATED);

    for (ct, body) in [
        (None, br#"{"request_text":"x"}"#.to_vec()),
        (Some("text/plain"), br#"{"request_text":"x"}"#.to_vec()),
        (
            Some("application/x-www-form-urlencoded"),
            b"request_text=x".to_vec(),
        ),
    ] {
        s.send(post_raw("/api/tasks", ct, body.clone(), Some(TOKEN)))
            .await
            .expect_error(415, "unsupported_media_type");
        s.send(post_raw("/api/tasks/b1/approve", ct, body, Some(TOKEN)))
            .await
            .expect_error(415, "unsupported_media_type");
    }
    assert_eq!(
        s.send(post_raw(
            "/api/tasks",
            Some("application/json; charset=utf-8"),
            br#"{"task_id":"ct","request_text":"x"}"#.to_vec(),
            Some(TOKEN)
        ))
        .await
        .status,
        StatusCode::CREATED
    );
    for body in [
        b"{".to_vec(),
        b"not json".to_vec(),
        b"[]".to_vec(),
        br#"{"task_id":"x"}"#.to_vec(),
        br#"{"request_text":5}"#.to_vec(),
        br#"{"request_text":"x","surprise":1}"#.to_vec(),
        br#"{"request_text":"x"} trailing"#.to_vec(),
        b"{\"request_text\":\"\xff\xfe\"}".to_vec(),
    ] {
        s.send(post_raw(
            "/api/tasks",
            Some("application/json"),
            body.clone(),
            Some(TOKEN),
        ))
        .await
        .expect_error(400, "invalid_json");
    }
    for body in [
        b"{".to_vec(),
        br#"{"reason":1}"#.to_vec(),
        br#"{"verdict":"x"}"#.to_vec(),
    ] {
        s.send(post_raw(
            "/api/tasks/b1/reject",
            Some("application/json"),
            body,
            Some(TOKEN),
        ))
        .await
        .expect_error(400, "invalid_json");
    }
    // None of the refused bodies changed the task.
    assert_eq!(s.send(get("/api/tasks/b1")).await.json()["version"], 1);
}

#[tokio::test]
async fn if_match_guards_writes() {
    let s = TestServer::new();
    s.create("m1", "x").await;
    let with = |v: &str, verb: &str| {
        Request::post(format!("/api/tasks/m1/{verb}"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("if-match", v)
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(s.send(with("1", "approve")).await.status, StatusCode::OK);
    s.send(with("1", "reject"))
        .await
        .expect_error(412, "precondition_failed");
    assert_eq!(s.send(with("\"2\"", "reject")).await.status, StatusCode::OK);
    assert_eq!(
        s.send(with("W/\"3\"", "approve")).await.status,
        StatusCode::OK
    );
    assert_eq!(s.send(with("*", "reject")).await.status, StatusCode::OK);
    s.send(with("three", "approve"))
        .await
        .expect_error(400, "bad_request");
    let now = s.send(get("/api/tasks/m1")).await;
    assert_eq!(now.headers["etag"], "\"5\"");
    assert_eq!(now.json()["status"], "rejected");
}

#[tokio::test]
async fn every_route_and_fallback_answers_json() {
    let s = TestServer::new();
    let health = s.send(get("/healthz")).await;
    assert_eq!(
        (health.status, health.text()),
        (StatusCode::OK, r#"{"status":"ok"}"#.to_owned())
    );
    let metrics = s.send(get("/metrics")).await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(
        metrics.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert!(
        metrics
            .text()
            .contains("# TYPE gatekeeper_tasks gauge\ngatekeeper_tasks 0\n")
    );
    s.send(get("/no/such/route"))
        .await
        .expect_error(404, "not_found");
    for (method, uri) in [
        ("DELETE", "/api/tasks"),
        ("PUT", "/api/tasks/x"),
        ("POST", "/api/tasks/x"),
        ("GET", "/api/tasks/x/approve"),
        ("GET", "/api/tasks/x/reject"),
        ("POST", "/api/events"),
        ("POST", "/healthz"),
        ("POST", "/"),
    ] {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        s.send(req).await.expect_error(405, "method_not_allowed");
    }
    // The metrics count what was answered.
    let text = s.send(get("/metrics")).await.text();
    assert!(
        text.contains("gatekeeper_http_requests_total{status=\"405\"} 8"),
        "{text}"
    );
    assert!(
        text.contains("gatekeeper_http_requests_total{status=\"404\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn reads_writes_and_errors_are_audited_with_the_task_correlation_id() {
    let s = TestServer::new();
    let created = s
        .send(post_json(
            "/api/tasks",
            &json!({"task_id": "c1", "request_text": "x", "correlation_id": "corr-from-telegram"}),
            Some(TOKEN),
        ))
        .await
        .json();
    assert_eq!(created["correlation_id"], "corr-from-telegram");
    s.send(get("/api/tasks/c1")).await;
    s.send(post_raw("/api/tasks/c1/approve", None, vec![], Some(TOKEN)))
        .await;
    s.send(post_raw(
        "/api/tasks/c1/approve",
        Some("text/plain"),
        b"x".to_vec(),
        Some(TOKEN),
    ))
    .await;
    s.send(get("/api/tasks")).await;
    let audit = s.audit().await;
    for line in &audit {
        let keys: Vec<&str> = line
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "actor",
                "correlation_id",
                "detail",
                "event",
                "task_id",
                "ts"
            ]
        );
    }
    let mine: Vec<(&str, &str)> = audit
        .iter()
        .filter(|l| l["task_id"] == "c1")
        .map(|l| {
            (
                l["event"].as_str().unwrap(),
                l["correlation_id"].as_str().unwrap(),
            )
        })
        .collect();
    for event in [
        "task_created",
        "task_read",
        "task_approved",
        "api_error",
        "sse_broadcast",
    ] {
        assert!(
            mine.contains(&(event, "corr-from-telegram")),
            "{event} missing from {mine:?}"
        );
    }
    assert!(mine.iter().all(|(_, c)| *c == "corr-from-telegram"));
    assert!(
        audit
            .iter()
            .any(|l| l["event"] == "task_list" && l["task_id"].is_null())
    );
}

/// SPEC §13: N concurrent approve/reject calls on one task give N new versions and N audit lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_decisions_lose_no_update() {
    let s = TestServer::new();
    s.create("hot", "decide me 200 times").await;
    let app = s.app();
    let calls: Vec<_> = (0..200)
        .map(|i| {
            let app = app.clone();
            let verb = if i % 2 == 0 { "approve" } else { "reject" };
            tokio::spawn(async move {
                send(
                    app,
                    post_json(
                        &format!("/api/tasks/hot/{verb}"),
                        &json!({"reason": format!("call {i}")}),
                        Some(TOKEN),
                    ),
                )
                .await
                .status
            })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), StatusCode::OK);
    }
    let record = s.send(get("/api/tasks/hot")).await.json();
    assert_eq!(record["version"], 201, "200 writes after the creation");
    let history = record["history"].as_array().unwrap();
    assert_eq!(history.len(), 201);
    let versions: Vec<u64> = history
        .iter()
        .map(|h| h["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, (1..=201).collect::<Vec<_>>());
    let reasons: BTreeSet<&str> = history[1..]
        .iter()
        .map(|h| h["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons.len(), 200, "every call's change is in the history");
    let audit = s.audit().await;
    let decisions = audit
        .iter()
        .filter(|l| l["event"] == "task_approved" || l["event"] == "task_rejected")
        .count();
    assert_eq!(decisions, 200);
    // The file on disk is a valid record equal to what is served.
    let on_disk: Value =
        serde_json::from_slice(&std::fs::read(s.dir.path().join("ssot/hot.json")).unwrap())
            .unwrap();
    assert_eq!(on_disk["version"], 201);
    let mut served = record;
    served.as_object_mut().unwrap().remove("status");
    assert_eq!(on_disk, served);
}

#[tokio::test]
async fn dashboard_is_served_with_a_strict_csp() {
    let s = TestServer::new();
    let page = s.send(get("/")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.headers["content-type"], "text/html; charset=utf-8");
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(page.headers["x-content-type-options"], "nosniff");
    assert_eq!(page.headers["x-frame-options"], "DENY");
    assert!(!page.text().contains("<script>"), "no inline script");
    assert!(!page.text().contains("style="), "no inline style");
    for (uri, ct) in [
        ("/dashboard/app.js", "text/javascript; charset=utf-8"),
        ("/dashboard/app.css", "text/css; charset=utf-8"),
    ] {
        let asset = s.send(get(uri)).await;
        assert_eq!(asset.status, StatusCode::OK);
        assert_eq!(asset.headers["content-type"], ct);
        assert!(asset.headers.contains_key("content-security-policy"));
    }
    let js = s.send(get("/dashboard/app.js")).await.text();
    assert!(
        !js.contains("innerHTML"),
        "user text goes through textContent only"
    );
    assert!(
        !js.contains("localStorage")
            && !js.contains("sessionStorage")
            && !js.contains("document.cookie")
    );
}
