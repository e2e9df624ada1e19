//! Providers (SPEC §4): the pure request builders and response parsers on fixtures taken from the
//! APIs' documented wire formats, the retry schedule under paused time, and the binary against
//! local mock servers speaking each API's wire format (nine-step runs, retries, timeouts,
//! malformed answers, wrong keys, secrets, correlation ids, cassettes, agent commands).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gatekeeper::config::{CommandOutput, Env, RoleConfig};
use gatekeeper::providers::command::parse_output;
use gatekeeper::providers::http::{
    self, Failure, Parsed, RetryPolicy, Secret, retry, retry_after, status_failure,
};
use gatekeeper::providers::{anthropic, gemini, openai};
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

use crate::support::Ws;

// ----- fixtures ----------------------------------------------------------------------------------

macro_rules! fixture {
    ($path:literal) => {
        include_bytes!(concat!("fixtures/providers/", $path)).as_slice()
    };
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, HeaderValue::from_str(v).expect("a valid header value"));
    }
    h
}

fn fatal(r: Result<Parsed, Failure>) -> String {
    match r {
        Err(Failure::Fatal(m)) => m,
        other => panic!("expected a fatal failure, got {other:?}"),
    }
}

fn retryable(r: Result<Parsed, Failure>) -> (String, Option<Duration>) {
    match r {
        Err(Failure::Retryable {
            message,
            retry_after,
        }) => (message, retry_after),
        other => panic!("expected a retryable failure, got {other:?}"),
    }
}

const KEY: &str = "test-key-7f3a9c2e51d04b8b";

fn anthropic_settings() -> anthropic::Settings {
    anthropic::Settings {
        base: "http://127.0.0.1:9".to_owned(),
        key: Secret::new(KEY),
        model: "claude-sonnet-4-5".to_owned(),
        max_tokens: 8192,
    }
}

#[test]
fn anthropic_builds_a_messages_request() {
    let r = anthropic::build_request(&anthropic_settings(), "Say hi", "corr-1");
    assert_eq!(r.url, "http://127.0.0.1:9/v1/messages");
    assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-correlation-id"), Some("corr-1"));
    assert_eq!(r.auth.0, "x-api-key");
    assert_eq!(r.auth.1.expose(), KEY);
    assert_eq!(
        r.body,
        json!({"model": "claude-sonnet-4-5", "max_tokens": 8192,
               "messages": [{"role": "user", "content": "Say hi"}]})
    );
    assert!(
        !format!("{r:?}").contains(KEY),
        "Debug must not show the key"
    );
}

#[test]
fn anthropic_parses_messages() {
    let h = headers(&[("request-id", "req_abc")]);
    let p = anthropic::parse_response(200, &h, fixture!("anthropic/message.json")).unwrap();
    assert!(p.text.starts_with("Hello! Nice to meet you."));
    assert_eq!((p.tokens_in, p.tokens_out), (10, 25));
    assert_eq!(p.request_id.as_deref(), Some("req_abc"));
    assert_eq!(p.model.as_deref(), Some("claude-sonnet-4-20250514"));

    let p = anthropic::parse_response(
        200,
        &HeaderMap::new(),
        fixture!("anthropic/thinking_and_cache.json"),
    )
    .unwrap();
    assert_eq!(p.text, "# Decisions\nCLAUDE_DECISIONS_OK: YES\n");
    assert_eq!((p.tokens_in, p.tokens_out), (420, 50));
    assert_eq!(p.request_id.as_deref(), Some("msg_01ThinkingExample"));
}

#[test]
fn anthropic_refuses_truncated_malformed_and_empty_answers() {
    let h = HeaderMap::new();
    let m = fatal(anthropic::parse_response(
        200,
        &h,
        fixture!("anthropic/max_tokens.json"),
    ));
    assert!(m.contains("max_tokens"), "{m}");
    let full = fixture!("anthropic/message.json");
    let m = fatal(anthropic::parse_response(200, &h, &full[..full.len() / 2]));
    assert!(m.contains("truncated"), "{m}");
    let m = fatal(anthropic::parse_response(200, &h, b""));
    assert!(m.contains("empty"), "{m}");
    let empty = json!({"type": "message", "content": [], "stop_reason": "end_turn",
                       "usage": {"input_tokens": 1, "output_tokens": 0}});
    let m = fatal(anthropic::parse_response(
        200,
        &h,
        empty.to_string().as_bytes(),
    ));
    assert!(m.contains("no text"), "{m}");
    let m = fatal(anthropic::parse_response(200, &h, b"{\"hello\": 1}"));
    assert!(m.contains("not a message"), "{m}");
}

#[test]
fn anthropic_classifies_errors() {
    let m = fatal(anthropic::parse_response(
        400,
        &headers(&[("request-id", "req_1")]),
        fixture!("anthropic/error_invalid_request.json"),
    ));
    assert!(
        m.starts_with("HTTP 400 invalid_request_error: messages: roles must alternate"),
        "{m}"
    );
    assert!(m.contains("req_1"), "{m}");
    let (m, after) = retryable(anthropic::parse_response(
        529,
        &headers(&[("retry-after", "3")]),
        fixture!("anthropic/error_overloaded.json"),
    ));
    assert_eq!(m, "HTTP 529 overloaded_error: Overloaded");
    assert_eq!(after, Some(Duration::from_secs(3)));
    let m = fatal(anthropic::parse_response(
        429,
        &HeaderMap::new(),
        fixture!("anthropic/error_spend_limit.json"),
    ));
    assert!(m.contains("rate_limit_error"), "{m}");
    let (m, _) = retryable(anthropic::parse_response(
        502,
        &HeaderMap::new(),
        b"<html>Bad gateway</html>",
    ));
    assert_eq!(m, "HTTP 502 error: <html>Bad gateway</html>");
}

fn gemini_settings() -> gemini::Settings {
    gemini::Settings {
        base: "http://127.0.0.1:9".to_owned(),
        key: Secret::new(KEY),
        model: "models/gemini-2.5-pro".to_owned(),
        max_tokens: Some(4096),
    }
}

#[test]
fn gemini_builds_a_generate_content_request() {
    let r = gemini::build_request(&gemini_settings(), "Audit this", "corr-2");
    assert_eq!(
        r.url,
        "http://127.0.0.1:9/v1beta/models/gemini-2.5-pro:generateContent"
    );
    assert_eq!(r.auth.0, "x-goog-api-key");
    assert_eq!(r.header("x-correlation-id"), Some("corr-2"));
    assert_eq!(
        r.body,
        json!({"contents": [{"role": "user", "parts": [{"text": "Audit this"}]}],
               "generationConfig": {"maxOutputTokens": 4096}})
    );
    assert!(
        !r.url.contains(KEY),
        "the key goes in a header, not the URL"
    );
}

#[test]
fn gemini_parses_responses() {
    let h = HeaderMap::new();
    let p = gemini::parse_response(200, &h, fixture!("gemini/response.json")).unwrap();
    assert_eq!(p.text, "# Audit\n\nThe repository holds a greeting.");
    assert_eq!((p.tokens_in, p.tokens_out), (102, 160 + 278));
    assert_eq!(p.request_id.as_deref(), Some("L7JLavbaFMP5xN8P2-fwwAE"));
    assert_eq!(p.model.as_deref(), Some("gemini-2.5-flash"));
    let p = gemini::parse_response(200, &h, fixture!("gemini/thought_parts.json")).unwrap();
    assert_eq!(p.text, "# Final verification\n## Consistency\nAll good.\n");
    assert_eq!(p.request_id, None);
}

#[test]
fn gemini_refuses_blocked_truncated_and_bad_answers() {
    let h = HeaderMap::new();
    let m = fatal(gemini::parse_response(
        200,
        &h,
        fixture!("gemini/blocked.json"),
    ));
    assert!(m.contains("blocked (SAFETY)"), "{m}");
    let m = fatal(gemini::parse_response(
        200,
        &h,
        fixture!("gemini/max_tokens.json"),
    ));
    assert!(m.contains("MAX_TOKENS"), "{m}");
    let full = fixture!("gemini/response.json");
    let m = fatal(gemini::parse_response(200, &h, &full[..100]));
    assert!(m.contains("truncated"), "{m}");
    let m = fatal(gemini::parse_response(
        400,
        &h,
        fixture!("gemini/error_invalid_key.json"),
    ));
    assert_eq!(
        m,
        "HTTP 400 INVALID_ARGUMENT: API key not valid. Please pass a valid API key. (API_KEY_INVALID)"
    );
    let (m, after) = retryable(gemini::parse_response(
        429,
        &h,
        fixture!("gemini/error_quota.json"),
    ));
    assert!(m.starts_with("HTTP 429 RESOURCE_EXHAUSTED"), "{m}");
    assert_eq!(after, Some(Duration::from_secs(38)), "RetryInfo.retryDelay");
    let (m, after) = retryable(gemini::parse_response(
        503,
        &headers(&[("retry-after", "2")]),
        fixture!("gemini/error_overloaded.json"),
    ));
    assert_eq!(
        m,
        "HTTP 503 UNAVAILABLE: The model is overloaded. Please try again later."
    );
    assert_eq!(after, Some(Duration::from_secs(2)));
}

fn openai_settings() -> openai::Settings {
    openai::Settings {
        base: "http://127.0.0.1:9/v1".to_owned(),
        key: Secret::new(KEY),
        model: "gpt-5.4".to_owned(),
        max_tokens: None,
    }
}

#[test]
fn openai_builds_a_responses_request() {
    let r = openai::build_request(&openai_settings(), "Plan it", "corr-3");
    assert_eq!(r.url, "http://127.0.0.1:9/v1/responses");
    assert_eq!(r.auth.0, "authorization");
    assert_eq!(r.auth.1.expose(), format!("Bearer {KEY}"));
    assert_eq!(r.header("x-correlation-id"), Some("corr-3"));
    assert_eq!(
        r.body,
        json!({"model": "gpt-5.4", "input": "Plan it", "store": false})
    );
    assert!(!format!("{r:?}").contains(KEY));
}

#[test]
fn openai_parses_responses() {
    let h = headers(&[("x-request-id", "req_openai_1")]);
    let p = openai::parse_response(200, &h, fixture!("openai/response.json")).unwrap();
    assert!(p.text.starts_with("In a peaceful grove"));
    assert_eq!((p.tokens_in, p.tokens_out), (36, 87));
    assert_eq!(p.request_id.as_deref(), Some("req_openai_1"));
    let p =
        openai::parse_response(200, &HeaderMap::new(), fixture!("openai/reasoning.json")).unwrap();
    assert_eq!(p.text, "# Plan\n## Files to modify\n- `src/greeting.txt`\n");
    assert_eq!((p.tokens_in, p.tokens_out), (500, 120));
    assert_eq!(p.request_id.as_deref(), Some("resp_reasoning_1"));
}

#[test]
fn openai_refuses_incomplete_refused_and_bad_answers() {
    let h = HeaderMap::new();
    let m = fatal(openai::parse_response(
        200,
        &h,
        fixture!("openai/incomplete.json"),
    ));
    assert!(m.contains("incomplete (max_output_tokens)"), "{m}");
    let m = fatal(openai::parse_response(
        200,
        &h,
        fixture!("openai/refusal.json"),
    ));
    assert!(m.contains("refused: I can't help with that."), "{m}");
    let m = fatal(openai::parse_response(
        401,
        &headers(&[("x-request-id", "req_9")]),
        fixture!("openai/error_invalid_key.json"),
    ));
    assert!(
        m.starts_with("HTTP 401 invalid_api_key: Incorrect API key provided"),
        "{m}"
    );
    assert!(m.ends_with("(request id req_9)"), "{m}");
    let (m, after) = retryable(openai::parse_response(
        429,
        &headers(&[("retry-after", "1")]),
        fixture!("openai/error_rate_limit.json"),
    ));
    assert!(m.starts_with("HTTP 429 rate_limit_exceeded"), "{m}");
    assert_eq!(after, Some(Duration::from_secs(1)));
    let m = fatal(openai::parse_response(
        429,
        &h,
        fixture!("openai/error_quota.json"),
    ));
    assert!(m.contains("insufficient_quota"), "{m}");
}

#[test]
fn settings_come_from_the_role_and_the_injected_env() {
    let role = RoleConfig {
        model: Some("claude-opus-4-1".to_owned()),
        ..RoleConfig::standin()
    };
    let env = Env::from_pairs([
        ("ANTHROPIC_API_KEY", KEY),
        ("ANTHROPIC_BASE_URL", "http://127.0.0.1:1234/"),
    ]);
    let s = anthropic::Settings::from_role("claude", &role, &env).unwrap();
    assert_eq!(s.base, "http://127.0.0.1:1234");
    assert_eq!(s.max_tokens, anthropic::DEFAULT_MAX_TOKENS);
    assert!(!format!("{s:?}").contains(KEY));
    let s =
        openai::Settings::from_role("codex", &role, &Env::from_pairs([("OPENAI_API_KEY", KEY)]))
            .unwrap();
    assert_eq!(s.base, "https://api.openai.com/v1");
    let s =
        gemini::Settings::from_role("gemini", &role, &Env::from_pairs([("GEMINI_API_KEY", KEY)]))
            .unwrap();
    assert_eq!(s.base, "https://generativelanguage.googleapis.com");
    let e = gemini::Settings::from_role("gemini", &role, &Env::default()).unwrap_err();
    assert!(e.what.contains("GEMINI_API_KEY is not set"), "{}", e.what);
    let e = anthropic::Settings::from_role("claude", &RoleConfig::standin(), &env).unwrap_err();
    assert!(e.what.contains("without `model`"), "{}", e.what);
    let common = http::Common::from_role(&role);
    assert_eq!(common.retries, 3);
    assert_eq!(common.timeout, Duration::from_secs(300));
}

#[test]
fn agent_outputs_are_parsed() {
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
    let p = parse_output(
        CommandOutput::ClaudeJson,
        &text(fixture!("command/claude.json")),
    )
    .unwrap();
    assert_eq!(p.text, "# Plan\n## Files to modify\n- `src/greeting.txt`\n");
    assert_eq!((p.tokens_in, p.tokens_out), (1055, 12));
    assert_eq!(
        p.request_id.as_deref(),
        Some("7f0c2b1e-5d1c-4c47-9a7e-0f1e2d3c4b5a")
    );
    assert_eq!(p.model.as_deref(), Some("claude-sonnet-4-5"));
    let e = parse_output(
        CommandOutput::ClaudeJson,
        &text(fixture!("command/claude_error.json")),
    )
    .unwrap_err();
    assert!(e.contains("API status 529"), "{e}");

    let p = parse_output(
        CommandOutput::CodexJsonl,
        &text(fixture!("command/codex.jsonl")),
    )
    .unwrap();
    assert_eq!(
        p.text,
        "Yep — there’s a `README.md` in the repository root."
    );
    assert_eq!((p.tokens_in, p.tokens_out), (24763, 122));
    assert_eq!(
        p.request_id.as_deref(),
        Some("0199a213-81c0-7800-8aa1-bbab2a035a53")
    );
    let e = parse_output(
        CommandOutput::CodexJsonl,
        &text(fixture!("command/codex_failed.jsonl")),
    )
    .unwrap_err();
    assert!(e.contains("stream disconnected"), "{e}");
    let cut = text(fixture!("command/codex.jsonl"));
    let e = parse_output(CommandOutput::CodexJsonl, &cut[..cut.len() - 20]).unwrap_err();
    assert!(e.contains("not JSON"), "{e}");

    let p = parse_output(
        CommandOutput::GeminiJson,
        &text(fixture!("command/gemini_cli.json")),
    )
    .unwrap();
    assert!(p.text.starts_with("# Final verification"));
    assert_eq!((p.tokens_in, p.tokens_out), (4000, 500));
    assert_eq!(p.model.as_deref(), Some("gemini-2.5-pro"));
    let e = parse_output(
        CommandOutput::GeminiJson,
        &text(fixture!("command/gemini_cli_error.json")),
    )
    .unwrap_err();
    assert!(e.contains("Please set an Auth method"), "{e}");
    let e = parse_output(CommandOutput::GeminiJson, "").unwrap_err();
    assert!(e.contains("printed nothing"), "{e}");
    assert_eq!(
        parse_output(CommandOutput::Text, "as is\n").unwrap().text,
        "as is\n"
    );
}

// ----- the retry loop under paused time ----------------------------------------------------------

fn retry_err(m: &str, after: Option<Duration>) -> Failure {
    Failure::Retryable {
        message: m.to_owned(),
        retry_after: after,
    }
}

#[tokio::test(start_paused = true)]
async fn backoff_doubles_with_jitter_and_stops_after_the_last_attempt() {
    let start = tokio::time::Instant::now();
    let times = Arc::new(Mutex::new(Vec::new()));
    let mut rng = fastrand::Rng::with_seed(42);
    let t = Arc::clone(&times);
    let out = retry(RetryPolicy::new(3), &mut rng, move |_| {
        let t = Arc::clone(&t);
        async move {
            t.lock().unwrap().push(start.elapsed());
            Err::<(), _>(retry_err("HTTP 503 UNAVAILABLE: overloaded", None))
        }
    })
    .await;
    assert_eq!(out.attempts, 4);
    let err = out.result.unwrap_err();
    assert_eq!(
        err,
        "HTTP 503 UNAVAILABLE: overloaded (gave up after 4 attempts)"
    );
    let times = times.lock().unwrap().clone();
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    for (gap, full_ms) in gaps.iter().zip([500u64, 1000, 2000]) {
        let full = Duration::from_millis(full_ms);
        assert!(
            *gap <= full && *gap >= full.mul_f64(0.75),
            "gap {gap:?} for {full:?}"
        );
    }
    // No sleep after the last attempt.
    assert_eq!(start.elapsed(), *times.last().unwrap());
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_and_fatal_errors_stop_at_once() {
    let start = tokio::time::Instant::now();
    let mut rng = fastrand::Rng::with_seed(1);
    let mut calls = 0;
    let out = retry(RetryPolicy::new(3), &mut rng, |n| {
        calls += 1;
        async move {
            if n == 0 {
                Err(retry_err("HTTP 429", Some(Duration::from_secs(7))))
            } else {
                Ok(n)
            }
        }
    })
    .await;
    assert_eq!((out.result.unwrap(), out.attempts, calls), (1, 2, 2));
    assert_eq!(start.elapsed(), Duration::from_secs(7));

    let out = retry(RetryPolicy::new(3), &mut rng, |_| async {
        Err::<(), _>(Failure::Fatal(
            "HTTP 401 authentication_error: bad key".into(),
        ))
    })
    .await;
    assert_eq!(out.attempts, 1);
    assert_eq!(
        out.result.unwrap_err(),
        "HTTP 401 authentication_error: bad key"
    );

    // A hint longer than gatekeeper waits ends the call instead of stalling it.
    let before = tokio::time::Instant::now();
    let out = retry(RetryPolicy::new(3), &mut rng, |_| async {
        Err::<(), _>(retry_err("HTTP 429", Some(Duration::from_secs(2282))))
    })
    .await;
    assert_eq!(out.attempts, 1);
    assert!(out.result.unwrap_err().contains("retry after 2282 s"));
    assert_eq!(before.elapsed(), Duration::ZERO);

    // retries: 0 means one attempt.
    let out = retry(RetryPolicy::new(0), &mut rng, |_| async {
        Err::<(), _>(retry_err("HTTP 500 api_error: boom", None))
    })
    .await;
    assert_eq!(out.attempts, 1);
    assert_eq!(
        out.result.unwrap_err(),
        "HTTP 500 api_error: boom (gave up after 1 attempt)"
    );
}

#[test]
fn retryable_statuses_follow_the_spec() {
    let h = HeaderMap::new();
    for s in [429u16, 500, 502, 503, 529] {
        assert!(matches!(
            status_failure(s, &h, String::new()),
            Failure::Retryable { .. }
        ));
    }
    assert!(matches!(
        status_failure(401, &h, String::new()),
        Failure::Fatal(_)
    ));
    assert_eq!(
        retry_after(&headers(&[("retry-after", "1")])),
        Some(Duration::from_secs(1))
    );
}

// ----- a mock server -----------------------------------------------------------------------------

mod mock {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use axum::body::Body;
    use axum::extract::{Request, State};
    use axum::http::{HeaderName, HeaderValue, StatusCode};
    use axum::response::Response;
    use serde_json::Value;

    /// One request the mock received.
    #[derive(Clone, Debug)]
    pub(super) struct Seen {
        pub(super) path: String,
        pub(super) headers: Vec<(String, String)>,
        pub(super) body: Vec<u8>,
        pub(super) at: Instant,
    }

    impl Seen {
        pub(super) fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
        pub(super) fn json(&self) -> Value {
            serde_json::from_slice(&self.body).expect("the request body is JSON")
        }
    }

    /// What the mock answers.
    #[derive(Clone, Debug)]
    pub(super) struct Reply {
        pub(super) status: u16,
        pub(super) headers: Vec<(String, String)>,
        pub(super) body: Vec<u8>,
        pub(super) delay: Duration,
    }

    impl Reply {
        pub(super) fn json(status: u16, body: &Value) -> Reply {
            Reply {
                status,
                headers: vec![("content-type".into(), "application/json".into())],
                body: body.to_string().into_bytes(),
                delay: Duration::ZERO,
            }
        }
        pub(super) fn raw(status: u16, body: &[u8]) -> Reply {
            Reply {
                status,
                headers: vec![("content-type".into(), "application/json".into())],
                body: body.to_vec(),
                delay: Duration::ZERO,
            }
        }
        pub(super) fn header(mut self, name: &str, value: &str) -> Reply {
            self.headers.push((name.to_owned(), value.to_owned()));
            self
        }
        pub(super) fn delayed(mut self, d: Duration) -> Reply {
            self.delay = d;
            self
        }
    }

    type Handler = dyn Fn(&Seen, usize) -> Reply + Send + Sync;

    struct Inner {
        seen: Mutex<Vec<Seen>>,
        handler: Box<Handler>,
    }

    /// A mock HTTP server on 127.0.0.1 (a random port), answering from `handler(request, n)`.
    pub(super) struct Mock {
        pub(super) url: String,
        inner: Arc<Inner>,
    }

    impl Mock {
        pub(super) fn start(
            handler: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static,
        ) -> Mock {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
            listener.set_nonblocking(true).expect("nonblocking");
            let url = format!("http://{}", listener.local_addr().expect("addr"));
            let inner = Arc::new(Inner {
                seen: Mutex::new(Vec::new()),
                handler: Box::new(handler),
            });
            let state = Arc::clone(&inner);
            // The listener is bound before the thread starts: connections wait in its backlog
            // until `serve` accepts them, so nothing sleeps to wait for the server.
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    let app = axum::Router::new().fallback(handle).with_state(state);
                    axum::serve(listener, app).await.expect("serve");
                });
            });
            Mock { url, inner }
        }

        pub(super) fn seen(&self) -> Vec<Seen> {
            self.inner.seen.lock().expect("lock").clone()
        }
    }

    async fn handle(State(inner): State<Arc<Inner>>, req: Request) -> Response {
        let path = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default();
        let headers = req
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        let body = axum::body::to_bytes(req.into_body(), usize::MAX)
            .await
            .map(|b| b.to_vec())
            .unwrap_or_default();
        let seen = Seen {
            path,
            headers,
            body,
            at: Instant::now(),
        };
        let reply = {
            let mut all = inner.seen.lock().expect("lock");
            let n = all.len();
            all.push(seen.clone());
            drop(all);
            (inner.handler)(&seen, n)
        };
        if !reply.delay.is_zero() {
            tokio::time::sleep(reply.delay).await;
        }
        let mut response = Response::new(Body::from(reply.body));
        *response.status_mut() = StatusCode::from_u16(reply.status).expect("status");
        for (k, v) in reply.headers {
            response.headers_mut().insert(
                HeaderName::from_bytes(k.as_bytes()).expect("header name"),
                HeaderValue::from_str(&v).expect("header value"),
            );
        }
        response
    }
}

use mock::{Mock, Reply, Seen};

// ----- the three APIs as mocks -------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Api {
    Anthropic,
    Gemini,
    Openai,
}

impl Api {
    fn provider(self) -> &'static str {
        match self {
            Api::Anthropic => "anthropic",
            Api::Gemini => "gemini",
            Api::Openai => "openai",
        }
    }
    fn model(self) -> &'static str {
        match self {
            Api::Anthropic => "claude-sonnet-4-5",
            Api::Gemini => "gemini-2.5-pro",
            Api::Openai => "gpt-5.4",
        }
    }
    fn key_var(self) -> &'static str {
        match self {
            Api::Anthropic => "ANTHROPIC_API_KEY",
            Api::Gemini => "GEMINI_API_KEY",
            Api::Openai => "OPENAI_API_KEY",
        }
    }
    fn base_var(self) -> &'static str {
        match self {
            Api::Anthropic => "ANTHROPIC_BASE_URL",
            Api::Gemini => "GEMINI_BASE_URL",
            Api::Openai => "OPENAI_BASE_URL",
        }
    }
    /// The base URL to export: OpenAI's includes `/v1`.
    fn base(self, mock: &Mock) -> String {
        match self {
            Api::Openai => format!("{}/v1", mock.url),
            _ => mock.url.clone(),
        }
    }
    fn path(self) -> String {
        match self {
            Api::Anthropic => "/v1/messages".to_owned(),
            Api::Gemini => format!("/v1beta/models/{}:generateContent", self.model()),
            Api::Openai => "/v1/responses".to_owned(),
        }
    }

    /// The prompt a request carries, checking the API's request shape on the way.
    fn prompt(self, seen: &Seen) -> String {
        let body = seen.json();
        assert_eq!(seen.path, self.path(), "request path");
        assert_eq!(seen.header("content-type"), Some("application/json"));
        match self {
            Api::Anthropic => {
                assert_eq!(seen.header("anthropic-version"), Some("2023-06-01"));
                assert_eq!(body["model"], self.model());
                assert!(body["max_tokens"].as_u64().is_some());
                assert_eq!(body["messages"][0]["role"], "user");
                body["messages"][0]["content"]
                    .as_str()
                    .expect("content")
                    .to_owned()
            }
            Api::Gemini => {
                assert_eq!(body["contents"][0]["role"], "user");
                body["contents"][0]["parts"][0]["text"]
                    .as_str()
                    .expect("text")
                    .to_owned()
            }
            Api::Openai => {
                assert_eq!(body["model"], self.model());
                body["input"].as_str().expect("input").to_owned()
            }
        }
    }

    /// True when the request carries `key` in the API's auth header.
    fn authorised(self, seen: &Seen, key: &str) -> bool {
        match self {
            Api::Anthropic => seen.header("x-api-key") == Some(key),
            Api::Gemini => seen.header("x-goog-api-key") == Some(key),
            Api::Openai => seen.header("authorization") == Some(&format!("Bearer {key}")),
        }
    }

    /// A successful answer in the API's wire format.
    fn ok(self, text: &str, n: usize) -> Reply {
        match self {
            Api::Anthropic => Reply::json(
                200,
                &json!({
                    "id": format!("msg_{n:04}"), "type": "message", "role": "assistant",
                    "model": "claude-sonnet-4-5-20250929",
                    "content": [{"type": "text", "text": text}],
                    "stop_reason": "end_turn", "stop_sequence": null,
                    "usage": {"input_tokens": 100 + n, "cache_creation_input_tokens": 0,
                              "cache_read_input_tokens": 0, "output_tokens": 10 + n}
                }),
            )
            .header("request-id", &format!("req_{n:04}")),
            Api::Gemini => Reply::json(
                200,
                &json!({
                    "candidates": [{"content": {"role": "model", "parts": [{"text": text}]},
                                    "finishReason": "STOP", "index": 0}],
                    "usageMetadata": {"promptTokenCount": 100 + n, "candidatesTokenCount": 10 + n,
                                      "totalTokenCount": 110 + 2 * n},
                    "modelVersion": "gemini-2.5-pro",
                    "responseId": format!("resp-{n:04}")
                }),
            ),
            Api::Openai => Reply::json(
                200,
                &json!({
                    "id": format!("resp_{n:04}"), "object": "response", "status": "completed",
                    "model": "gpt-5.4",
                    "output": [{"type": "reasoning", "id": "rs_1", "summary": []},
                               {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                                "content": [{"type": "output_text", "text": text, "annotations": []}]}],
                    "usage": {"input_tokens": 100 + n, "output_tokens": 10 + n, "total_tokens": 110 + 2 * n}
                }),
            )
            .header("x-request-id", &format!("req_{n:04}")),
        }
    }

    /// The API's answer to a wrong key; its message echoes the key, as careless servers do.
    fn wrong_key(self, key: &str) -> Reply {
        match self {
            Api::Anthropic => Reply::json(
                401,
                &json!({"type": "error", "error": {"type": "authentication_error",
                        "message": format!("invalid x-api-key {key}")}, "request_id": "req_bad"}),
            )
            .header("request-id", "req_bad"),
            Api::Gemini => Reply::json(
                400,
                &json!({"error": {"code": 400, "message": format!("API key not valid: {key}"),
                        "status": "INVALID_ARGUMENT",
                        "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                     "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]}}),
            ),
            Api::Openai => Reply::json(
                401,
                &json!({"error": {"message": format!("Incorrect API key provided: {key}."),
                        "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}),
            ),
        }
    }

    /// An overloaded/server error in the API's format.
    fn overloaded(self, status: u16) -> Reply {
        match self {
            Api::Anthropic => Reply::json(
                status,
                &json!({"type": "error", "error": {"type": if status == 529 {"overloaded_error"} else {"api_error"},
                        "message": "Overloaded"}}),
            ),
            Api::Gemini => Reply::json(
                status,
                &json!({"error": {"code": status, "message": "The model is overloaded. Please try again later.",
                        "status": "UNAVAILABLE"}}),
            ),
            Api::Openai => Reply::json(
                status,
                &json!({"error": {"message": "The server had an error while processing your request.",
                        "type": "server_error", "param": null, "code": null}}),
            ),
        }
    }

    /// A rate-limit answer in the API's format, with `retry-after`.
    fn rate_limited(self, seconds: &str) -> Reply {
        let r = match self {
            Api::Anthropic => Reply::json(
                429,
                &json!({"type": "error", "error": {"type": "rate_limit_error", "message": "Number of request tokens has exceeded your per-minute rate limit"}}),
            ),
            Api::Gemini => Reply::json(
                429,
                &json!({"error": {"code": 429, "message": "Resource has been exhausted (e.g. check quota).", "status": "RESOURCE_EXHAUSTED"}}),
            ),
            Api::Openai => Reply::json(
                429,
                &json!({"error": {"message": "Rate limit reached for requests", "type": "requests", "param": null, "code": "rate_limit_exceeded"}}),
            ),
        };
        r.header("retry-after", seconds)
    }

    /// An answer with no text.
    fn empty(self) -> Reply {
        match self {
            Api::Anthropic => Reply::json(
                200,
                &json!({"id": "msg_e", "type": "message", "role": "assistant", "model": "m",
                        "content": [], "stop_reason": "end_turn", "usage": {"input_tokens": 5, "output_tokens": 0}}),
            ),
            Api::Gemini => Reply::json(
                200,
                &json!({"candidates": [{"content": {"role": "model", "parts": [{"text": ""}]}, "finishReason": "STOP"}],
                        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 0}}),
            ),
            Api::Openai => Reply::json(
                200,
                &json!({"id": "resp_e", "object": "response", "status": "completed", "model": "gpt-5.4",
                        "output": [], "usage": {"input_tokens": 5, "output_tokens": 0}}),
            ),
        }
    }
}

// ----- the answers of a nine-step run ------------------------------------------------------------

const TASK_PROMPT: &str = "# Greet gatekeeper

Change the greeting in `src/greeting.txt`.

## Acceptance criteria

- AC-1: `src/greeting.txt` says `Hello, gatekeeper!`

## Allowed paths

- `src/greeting.txt`

## Forbidden

- `README.md`
";

const CHECKS: &str =
    "checks:\n  - { name: greeting, run: \"grep -q 'Hello, gatekeeper!' src/greeting.txt\" }\n";

/// A unique line in the audit, to find its bytes in the prompt of step 2.
const AUDIT_MARKER: &str = "audit-marker: 4c1d9e7a";

fn step_of(prompt: &str) -> u32 {
    let first = prompt.lines().next().unwrap_or_default();
    let at = first.find(", step ").expect("the prompt names its step") + ", step ".len();
    first[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|d| d.parse().ok())
        .expect("a step number")
}

/// What a good model would answer at each step of the default pipeline.
fn answer(prompt: &str) -> String {
    match step_of(prompt) {
        1 => format!(
            "# Audit\n\n## System behaviour\n\nThe repository prints a greeting from `src/greeting.txt`.\n\n## Findings\n\n- `src/greeting.txt` greets the world.\n- {AUDIT_MARKER}\n\n## Files named by the prompt\n\n- `src/greeting.txt`: exists\n"
        ),
        2 => "# Decisions\n\n## What should change\n\nThe greeting.\n\n## What must not change\n\nEverything else.\n\n## Allowed paths\n\n- `src/greeting.txt`\n\n## Forbidden changes\n\n- `README.md`\n\nSchema changes required: NO\n\n## Target Flow Summary\n\nEdit one line, run the check, review.\n\nCLAUDE_DECISIONS_OK: YES\n".to_owned(),
        3 => "# Plan\n\n## Files to modify\n\n- `src/greeting.txt`\n\n## Changes\n\nReplace the greeting.\n\n## Verification\n\n- the greeting check passes\n".to_owned(),
        4 => "## ACK\n\n- AC-1: `src/greeting.txt` says `Hello, gatekeeper!`\n- scope: `src/greeting.txt`\n\n## Work log\n\n- W-1: replaced the greeting in `src/greeting.txt`\n\n# Apply\n\n```diff\n--- a/src/greeting.txt\n+++ b/src/greeting.txt\n@@ -1 +1 @@\n-Hello, world!\n+Hello, gatekeeper!\n```\n".to_owned(),
        6 => "# Post-implementation audit\n\nOnly `src/greeting.txt` changed, as approved.\n\n## Issues\n\n- none\n\nCLAUDE_FINAL_OK: YES\n".to_owned(),
        7 => "# Final verification\n\n## Consistency\n\nThe change matches the decisions and the check passed.\n\n## Remaining risks\n\n- none\n".to_owned(),
        n => format!("# Step {n}\n\nNothing to do.\n"),
    }
}

/// A mock of `api` that checks the key and the request shape and answers each step.
fn pipeline_mock(api: Api) -> Mock {
    pipeline_mock_with(api, answer)
}

/// [`pipeline_mock`] with another answer function.
fn pipeline_mock_with(api: Api, answer: fn(&str) -> String) -> Mock {
    Mock::start(move |seen, n| {
        if !api.authorised(seen, KEY) {
            return api.wrong_key("(missing)");
        }
        let prompt = api.prompt(seen);
        api.ok(&answer(&prompt), n)
    })
}

fn api_config(api: Api, extra: &str) -> String {
    let p = api.provider();
    let m = api.model();
    format!(
        "version: 1\nroles:\n  gemini: {{ provider: {p}, model: {m}{extra} }}\n  claude: {{ provider: {p}, model: {m}{extra} }}\n  codex: {{ provider: {p}, model: {m}{extra} }}\n{CHECKS}"
    )
}

/// A workspace whose roles all use `api` (with `extra` settings), and task `t`.
fn api_ws(api: Api, extra: &str) -> Ws {
    let ws = Ws::new();
    ws.config(&api_config(api, extra));
    ws.commit("config");
    ws.prompt("t", TASK_PROMPT);
    ws
}

fn gk_api(ws: &Ws, api: Api, mock: &Mock, key: &str, args: &[&str]) -> crate::support::Run {
    let out = ws
        .cmd(args)
        .env(api.key_var(), key)
        .env(api.base_var(), api.base(mock))
        .output()
        .expect("run gatekeeper");
    crate::support::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn journal(ws: &Ws) -> Vec<Value> {
    ws.read(".ai-stack-trace/t/ledger.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a journal line"))
        .collect()
}

fn provider_calls(ws: &Ws) -> Vec<Value> {
    journal(ws)
        .into_iter()
        .filter(|e| e["event"] == "provider_call")
        .collect()
}

/// Fails if `needle` occurs in any file under the ledger.
fn assert_nowhere_in_ledger(ws: &Ws, needle: &str) {
    for (path, bytes) in ws.snapshot_tree(".ai-stack-trace") {
        assert!(
            !String::from_utf8_lossy(&bytes).contains(needle),
            "`{needle}` found in {path}"
        );
    }
}

fn nine_step_run(api: Api) {
    let mock = pipeline_mock(api);
    let ws = api_ws(api, "");
    let run = gk_api(&ws, api, &mock, KEY, &["run", "t"]).expect(0);
    assert!(run.stdout.contains("step 8 `commit`"), "{}", run.stdout);
    assert_eq!(ws.read("src/greeting.txt"), "Hello, gatekeeper!\n");
    assert_eq!(
        ws.read(".ai-stack-trace/t/contract/CLAUDE_FINAL_OK"),
        "CLAUDE_FINAL_OK:t\n"
    );
    ws.gk(&["verify", "t"]).expect(0);

    // One request per model step (1, 2, 3, 4, 6, 7), each in the API's wire format.
    let seen = mock.seen();
    let steps: Vec<u32> = seen.iter().map(|s| step_of(&api.prompt(s))).collect();
    assert_eq!(steps, vec![1, 2, 3, 4, 6, 7]);

    // The prompt of step 2 carries the bytes of audit.md.
    let audit = ws.read(".ai-stack-trace/t/gemini/audit.md");
    assert!(audit.contains(AUDIT_MARKER));
    assert!(
        api.prompt(&seen[1]).contains(&audit),
        "step 2 prompt lacks audit.md"
    );

    // One correlation id on every request and journal line of the task.
    let lines = journal(&ws);
    let corr = lines[0]["correlation_id"]
        .as_str()
        .expect("a correlation id")
        .to_owned();
    assert!(!corr.is_empty());
    assert!(lines.iter().all(|l| l["correlation_id"] == corr.as_str()));
    for s in &seen {
        assert_eq!(s.header("x-correlation-id"), Some(corr.as_str()));
    }

    // Every call is journalled with provider, model, tokens, attempts, request id.
    let calls = provider_calls(&ws);
    assert_eq!(calls.len(), 6);
    let mut tokens_in = 0;
    let mut tokens_out = 0;
    for (n, c) in calls.iter().enumerate() {
        let d = &c["data"];
        assert_eq!(d["ok"], true);
        assert_eq!(d["provider"], api.provider());
        assert!(d["model"].as_str().is_some_and(|m| !m.is_empty()));
        assert_eq!(d["attempts"], 1);
        assert_eq!(d["tokens_in"], 100 + n as u64);
        assert_eq!(d["tokens_out"], 10 + n as u64);
        assert!(d["duration_ms"].as_u64().is_some());
        let id = d["request_id"].as_str().expect("a request id");
        assert!(id.ends_with(&format!("{n:04}")), "{id}");
        tokens_in += 100 + n as u64;
        tokens_out += 10 + n as u64;
    }
    let status: Value = serde_json::from_str(&ws.gk(&["status", "t", "--json"]).expect(0).stdout)
        .expect("status --json is JSON");
    assert_eq!(status["tokens_in"], tokens_in);
    assert_eq!(status["tokens_out"], tokens_out);

    // No key anywhere: ledger, output, the commit.
    assert_nowhere_in_ledger(&ws, KEY);
    assert!(!run.stdout.contains(KEY) && !run.stderr.contains(KEY));
}

#[test]
fn anthropic_runs_all_nine_steps() {
    nine_step_run(Api::Anthropic);
}

#[test]
fn gemini_runs_all_nine_steps() {
    nine_step_run(Api::Gemini);
}

#[test]
fn openai_runs_all_nine_steps() {
    nine_step_run(Api::Openai);
}

#[test]
fn an_http_answer_whose_diffs_do_not_all_apply_changes_nothing() {
    fn two_blocks(prompt: &str) -> String {
        if step_of(prompt) == 4 {
            let good = answer(prompt);
            format!(
                "{good}\n```diff\n--- a/README.md\n+++ b/README.md\n@@ -1 +1 @@\n-# not what is there\n+# sample\n```\n"
            )
        } else {
            answer(prompt)
        }
    }
    let api = Api::Openai;
    let mock = pipeline_mock_with(api, two_blocks);
    let ws = api_ws(api, "");
    let run = gk_api(&ws, api, &mock, KEY, &["run", "t"]).expect(1);
    assert!(run.stderr.contains("nothing was applied"), "{}", run.stderr);
    assert_eq!(ws.read("src/greeting.txt"), "Hello, world!\n");
    assert_eq!(ws.read("README.md"), "# sample\n");
    assert!(!ws.exists(".ai-stack-trace/t/codex/apply.md"));
}

/// Runs step 0 and then step 1 against a mock answering `reply(n)`; returns the step-1 run.
fn step1(
    api: Api,
    extra: &str,
    reply: impl Fn(usize) -> Reply + Send + Sync + 'static,
) -> (Ws, Mock, crate::support::Run) {
    let mock = Mock::start(move |seen, n| {
        let _ = api.prompt(seen);
        reply(n)
    });
    let ws = api_ws(api, extra);
    ws.gk(&["step", "0", "t"]).expect(0);
    let run = gk_api(&ws, api, &mock, KEY, &["step", "1", "t"]);
    (ws, mock, run)
}

fn assert_audit_not_written(ws: &Ws) {
    assert!(
        !ws.exists(".ai-stack-trace/t/gemini/audit.md"),
        "a failed step must write no output"
    );
    let calls = provider_calls(ws);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["data"]["ok"], false);
}

#[test]
fn rate_limit_with_retry_after_then_success() {
    for api in [Api::Anthropic, Api::Openai] {
        let (ws, mock, run) = step1(api, "", move |n| {
            if n == 0 {
                api.rate_limited("1")
            } else {
                api.ok(&answer("You are Gemini, step 1 (AUDIT)"), n)
            }
        });
        run.expect(0);
        let seen = mock.seen();
        assert_eq!(seen.len(), 2);
        let waited = seen[1].at - seen[0].at;
        assert!(
            waited >= Duration::from_secs(1),
            "{api:?} waited {waited:?}"
        );
        let calls = provider_calls(&ws);
        assert_eq!(calls[0]["data"]["attempts"], 2);
        assert!(
            ws.read(".ai-stack-trace/t/gemini/audit.md")
                .contains(AUDIT_MARKER)
        );
    }
}

#[test]
fn overloaded_until_retries_run_out_fails_and_writes_nothing() {
    for (api, status) in [
        (Api::Anthropic, 529),
        (Api::Gemini, 503),
        (Api::Openai, 500),
    ] {
        let (ws, mock, run) = step1(api, ", retries: 1", move |_| api.overloaded(status));
        let run = run.expect(1);
        assert_eq!(
            mock.seen().len(),
            2,
            "{api:?}: retries: 1 means two attempts"
        );
        assert!(run.stderr.contains(api.provider()), "{}", run.stderr);
        assert!(
            run.stderr.contains(&format!("HTTP {status}")),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr.contains("gave up after 2 attempts"),
            "{}",
            run.stderr
        );
        assert_audit_not_written(&ws);
        let failed = &provider_calls(&ws)[0]["data"];
        assert_eq!(failed["provider"], api.provider());
        assert_eq!(failed["model"], api.model());
        assert_eq!(failed["attempts"], 2);
        assert_eq!(failed["tokens_in"], 0);
        assert!(
            failed["error"]
                .as_str()
                .unwrap()
                .contains(&format!("HTTP {status}"))
        );
    }
    // 502 is retried as well, and the default is three retries.
    let (_, mock, run) = step1(Api::Anthropic, "", |n| {
        if n < 3 {
            Api::Anthropic.overloaded(502).header("retry-after", "0")
        } else {
            Api::Anthropic.ok(&answer("You are Gemini, step 1 (AUDIT)"), n)
        }
    });
    run.expect(0);
    assert_eq!(mock.seen().len(), 4);
}

#[test]
fn a_timeout_fails_the_step() {
    let started = Instant::now();
    let (ws, mock, run) = step1(Api::Gemini, ", timeout: 1s", |n| {
        Api::Gemini
            .ok("# Audit\nlate\n", n)
            .delayed(Duration::from_secs(20))
    });
    let run = run.expect(1);
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(run.stderr.contains("timeout of 1s"), "{}", run.stderr);
    assert_eq!(mock.seen().len(), 1, "a timeout is not retried");
    assert_audit_not_written(&ws);
}

#[test]
fn an_empty_answer_fails_the_step() {
    for api in [Api::Anthropic, Api::Gemini, Api::Openai] {
        let (ws, _, run) = step1(api, "", move |_| api.empty());
        let run = run.expect(1);
        assert!(run.stderr.contains("no text"), "{api:?}: {}", run.stderr);
        assert_audit_not_written(&ws);
    }
}

#[test]
fn a_truncated_json_body_fails_the_step() {
    for api in [Api::Anthropic, Api::Gemini, Api::Openai] {
        let (ws, mock, run) = step1(api, "", move |n| {
            let full = api.ok("# Audit\n\nfine\n", n);
            let cut = full.body.len() / 2;
            Reply::raw(200, &full.body[..cut])
        });
        let run = run.expect(1);
        assert!(
            run.stderr.contains("truncated JSON body"),
            "{api:?}: {}",
            run.stderr
        );
        assert_eq!(mock.seen().len(), 1, "a malformed answer is not retried");
        assert_audit_not_written(&ws);
    }
}

#[test]
fn a_wrong_key_fails_clearly_and_never_leaks() {
    const WRONG: &str = "wrong-key-0c9d8e7f6a5b";
    for api in [Api::Anthropic, Api::Gemini, Api::Openai] {
        let mock = Mock::start(move |seen, _| {
            if api.authorised(seen, KEY) {
                api.ok("# Audit\n", 0)
            } else {
                api.wrong_key(WRONG)
            }
        });
        let ws = api_ws(api, "");
        ws.gk(&["step", "0", "t"]).expect(0);
        let run = gk_api(&ws, api, &mock, WRONG, &["step", "1", "t"]).expect(1);
        let status = if api == Api::Gemini {
            "HTTP 400"
        } else {
            "HTTP 401"
        };
        assert!(run.stderr.contains(status), "{}", run.stderr);
        assert!(
            run.stderr.contains(&format!("check {}", api.key_var())),
            "{}",
            run.stderr
        );
        assert!(!run.stderr.contains(WRONG), "{}", run.stderr);
        assert!(!run.stdout.contains(WRONG));
        assert_eq!(mock.seen().len(), 1, "a wrong key is not retried");
        assert_audit_not_written(&ws);
        assert_nowhere_in_ledger(&ws, WRONG);
    }
}

#[test]
fn a_missing_key_is_a_configuration_error() {
    let ws = api_ws(Api::Anthropic, "");
    ws.gk(&["step", "0", "t"]).expect(0);
    let run = ws.gk(&["step", "1", "t"]).expect(2);
    assert!(
        run.stderr.contains("ANTHROPIC_API_KEY is not set"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_connection_error_is_retried_then_fails() {
    // A port with nothing listening: bind, note the port, close.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let ws = api_ws(Api::Anthropic, ", retries: 1");
    ws.gk(&["step", "0", "t"]).expect(0);
    let run = ws
        .cmd(&["step", "1", "t"])
        .env("ANTHROPIC_API_KEY", KEY)
        .env("ANTHROPIC_BASE_URL", format!("http://127.0.0.1:{port}"))
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("connection failed"), "{stderr}");
    assert!(stderr.contains("gave up after 2 attempts"), "{stderr}");
    assert_audit_not_written(&ws);
}

// ----- cassettes ---------------------------------------------------------------------------------

#[test]
fn record_then_replay_a_nine_step_run() {
    let api = Api::Anthropic;
    let mock = pipeline_mock(api);
    let ws = api_ws(api, "");
    let cassettes = tempfile::tempdir().unwrap();
    let dir = cassettes.path().to_str().unwrap().to_owned();
    gk_api(&ws, api, &mock, KEY, &["run", "t", "--record", &dir]).expect(0);
    let files: Vec<_> = std::fs::read_dir(cassettes.path()).unwrap().collect();
    assert_eq!(files.len(), 6, "one cassette per model step");
    for f in files {
        let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
        assert!(!text.contains(KEY));
        let c: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(c["record"]["provider"], "anthropic");
        assert!(c["answer"].as_str().is_some_and(|a| !a.is_empty()));
    }

    // The same task in a fresh workspace, every role on `replay`: no request, same outcome.
    let replay = Ws::new();
    replay.config(&format!(
        "version: 1\nroles:\n  gemini: {{ provider: replay, dir: \"{dir}\" }}\n  claude: {{ provider: replay, dir: \"{dir}\" }}\n  codex: {{ provider: replay, dir: \"{dir}\" }}\n{CHECKS}"
    ));
    replay.commit("config");
    replay.prompt("t", TASK_PROMPT);
    let before = mock.seen().len();
    replay.gk(&["run", "t"]).expect(0);
    assert_eq!(mock.seen().len(), before);
    assert_eq!(replay.read("src/greeting.txt"), "Hello, gatekeeper!\n");
    for f in ["gemini/audit.md", "claude/decisions.md", "codex/plan.md"] {
        assert_eq!(
            replay.read(&format!(".ai-stack-trace/t/{f}")),
            ws.read(&format!(".ai-stack-trace/t/{f}"))
        );
    }
    let calls = provider_calls(&replay);
    assert!(calls.iter().all(|c| c["data"]["provider"] == "replay"));

    // A prompt it has not recorded fails clearly.
    let other = Ws::new();
    other.config(&format!(
        "version: 1\nroles:\n  gemini: {{ provider: replay, dir: \"{dir}\" }}\n"
    ));
    other.commit("config");
    other.prompt("t", "# Something else\n\n## Allowed paths\n\n- `src/x`\n");
    other.gk(&["step", "0", "t"]).expect(0);
    let run = other.gk(&["step", "1", "t"]).expect(1);
    assert!(run.stderr.contains("no cassette"), "{}", run.stderr);
    assert!(run.stderr.contains("--record"), "{}", run.stderr);
    assert!(!other.exists(".ai-stack-trace/t/gemini/audit.md"));
}

#[test]
fn replay_without_dir_is_a_configuration_error() {
    let ws = Ws::new();
    ws.config("version: 1\nroles:\n  gemini: { provider: replay }\n");
    ws.commit("config");
    ws.prompt("t", TASK_PROMPT);
    ws.gk(&["step", "0", "t"]).expect(0);
    let run = ws.gk(&["step", "1", "t"]).expect(2);
    assert!(run.stderr.contains("without `dir`"), "{}", run.stderr);
}

// ----- the command provider ----------------------------------------------------------------------

/// An agent script: at step 4 it edits the tree itself; at other steps it answers like a model.
const AGENT: &str = r#"#!/bin/sh
prompt=$(cat)
case "$GATEKEEPER_STEP" in
  3) printf '# Plan\n\n## Files to modify\n\n- `src/greeting.txt`\n' ;;
  4) printf 'Hello, gatekeeper!\n' > src/greeting.txt
     printf '## ACK\n\n- AC-1: `src/greeting.txt` says `Hello, gatekeeper!`\n- scope: `src/greeting.txt`\n\n## Work log\n\n- W-1: edited `src/greeting.txt` (task %s, role %s)\n\n# Apply\n' "$GATEKEEPER_TASK" "$GATEKEEPER_ROLE" ;;
  *) printf '# Step %s\n\nnothing to do\n' "$GATEKEEPER_STEP" ;;
esac
"#;

/// The same agent speaking `codex exec --json`.
const CODEX_AGENT: &str = r###"#!/bin/sh
cat > /dev/null
if [ "$GATEKEEPER_STEP" = 4 ]; then printf 'Hello, gatekeeper!\n' > src/greeting.txt; fi
printf '%s\n' '{"type":"thread.started","thread_id":"thread-'"$GATEKEEPER_STEP"'"}'
printf '%s\n' '{"type":"turn.started"}'
printf '%s\n' '{"type":"item.completed","item":{"id":"item_1","type":"agent_message","text":"## ACK\n\n- AC-1: `src/greeting.txt` says `Hello, gatekeeper!`\n- scope: `src/greeting.txt`\n\n## Work log\n\n- W-1: done\n\n# Step '"$GATEKEEPER_STEP"'\n"}}'
printf '%s\n' '{"type":"turn.completed","usage":{"input_tokens":1200,"cached_input_tokens":0,"output_tokens":34}}'
"###;

fn agent_ws(script: &str, output: &str) -> Ws {
    let ws = Ws::new();
    let agent = ws.root().parent().expect("the temp dir").join("agent.sh");
    std::fs::write(&agent, script).expect("write the agent script");
    ws.config(&format!(
        "version: 1\nroles:\n  codex: {{ provider: command, argv: [\"sh\", \"{}\"], timeout: 30s{output} }}\n{CHECKS}",
        agent.display()
    ));
    ws.commit("config");
    ws.prompt("t", TASK_PROMPT);
    ws
}

#[test]
fn a_command_agent_edits_the_tree_itself() {
    let ws = agent_ws(AGENT, "");
    ws.gk(&["run", "t"]).expect(0);
    assert_eq!(ws.read("src/greeting.txt"), "Hello, gatekeeper!\n");
    let apply = ws.read(".ai-stack-trace/t/codex/apply.md");
    assert!(apply.contains("(task t, role codex)"), "{apply}");
    ws.gk(&["verify", "t"]).expect(0);
    let calls = provider_calls(&ws);
    let command: Vec<&Value> = calls
        .iter()
        .filter(|c| c["data"]["provider"] == "command")
        .collect();
    assert_eq!(command.len(), 2, "steps 3 and 4");
}

#[test]
fn a_codex_jsonl_agent_reports_tokens() {
    let ws = agent_ws(CODEX_AGENT, ", output: codex-jsonl");
    ws.gk(&["run", "t"]).expect(0);
    assert_eq!(ws.read("src/greeting.txt"), "Hello, gatekeeper!\n");
    assert!(
        ws.read(".ai-stack-trace/t/codex/plan.md")
            .ends_with("\n# Step 3\n")
    );
    let calls = provider_calls(&ws);
    let step4 = calls.iter().find(|c| c["step"] == 4).unwrap();
    assert_eq!(step4["data"]["tokens_in"], 1200);
    assert_eq!(step4["data"]["tokens_out"], 34);
    assert_eq!(step4["data"]["request_id"], "thread-4");
}

#[test]
fn a_failing_command_agent_fails_the_step() {
    let ws = agent_ws(
        "#!/bin/sh\ncat > /dev/null\necho \"boom: OPENAI_API_KEY=$OPENAI_API_KEY\" >&2\nexit 3\n",
        "",
    );
    for s in ["0", "1", "2"] {
        ws.gk(&["step", s, "t"]).expect(0);
    }
    let out = ws
        .cmd(&["step", "3", "t"])
        .env("OPENAI_API_KEY", KEY)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("exited with code 3"), "{stderr}");
    assert!(stderr.contains("boom"), "{stderr}");
    assert!(!stderr.contains(KEY), "{stderr}");
    assert!(!ws.exists(".ai-stack-trace/t/codex/plan.md"));
    assert_nowhere_in_ledger(&ws, KEY);
}

#[test]
fn journal_keeps_the_status_field_names() {
    // `gatekeeper status` sums `tokens_in`/`tokens_out` of provider_call data: keep those names.
    let record = serde_json::to_value(gatekeeper::providers::CallRecord::default()).unwrap();
    let keys: BTreeMap<String, Value> = serde_json::from_value(record).unwrap();
    for k in [
        "provider",
        "model",
        "duration_ms",
        "tokens_in",
        "tokens_out",
        "attempts",
        "request_id",
    ] {
        assert!(keys.contains_key(k), "{k}");
    }
}
