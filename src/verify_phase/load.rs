//! Bounded in-process load for the acceptance scenarios (SPEC §9): an HTTP client for loopback
//! only, a request loop bounded in count and in time, a Server-Sent Events client and parser, and
//! percentiles. Nothing here talks to anything but the server under test.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use axum::body::Bytes;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use crate::exit::Refusal;

/// Refuses any base URL whose host is not on the loopback interface (workplace rule: load goes
/// only to this machine).
///
/// # Errors
/// A usage refusal for a malformed or non-loopback URL.
pub fn check_loopback(base: &str) -> Result<String> {
    let url = reqwest::Url::parse(base)
        .map_err(|e| Refusal::usage(format!("`{base}` is not a URL: {e}")))?;
    if url.scheme() != "http" {
        return Err(Refusal::usage(format!(
            "`{base}`: only plain `http://` on loopback is supported"
        ))
        .into());
    }
    let host = url
        .host_str()
        .unwrap_or("")
        .trim_start_matches('[')
        .trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        return Err(Refusal::usage(format!(
            "`{base}` is not a loopback address; verify-phase only loads servers on this machine"
        ))
        .hint(
            "start `gatekeeper serve --addr 127.0.0.1:8787` and pass `--url http://127.0.0.1:8787`",
        )
        .into());
    }
    Ok(base.trim_end_matches('/').to_owned())
}

/// A response: status, body and how long it took.
#[derive(Debug)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
    /// Time from sending to the whole body.
    pub elapsed: Duration,
}

impl Reply {
    /// The body as JSON (`Null` when it is not JSON).
    #[must_use]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// A loopback HTTP client bound to one server.
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    base: Arc<str>,
    token: Option<Arc<str>>,
}

/// A client that never consults proxy settings, with short timeouts.
///
/// # Errors
/// When the client cannot be built.
pub fn client(max_idle_per_host: usize) -> Result<reqwest::Client> {
    // reqwest is built without a default TLS provider (see Cargo.toml); plain HTTP needs none,
    // but building a client does.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(max_idle_per_host)
        .tcp_nodelay(true)
        .build()
        .context("cannot build the HTTP client")
}

impl Http {
    /// A client for `base` (already checked to be loopback), sending `token` on admin calls.
    ///
    /// # Errors
    /// When the client cannot be built.
    pub fn new(base: &str, token: Option<&str>) -> Result<Http> {
        Ok(Http {
            client: client(256)?,
            base: Arc::from(base),
            token: token.map(Arc::from),
        })
    }

    /// The base URL.
    #[must_use]
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The underlying client.
    #[must_use]
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// `GET base + path`.
    ///
    /// # Errors
    /// On connection errors and timeouts (10 s).
    pub async fn get(&self, path: &str) -> Result<Reply> {
        self.send(self.client.get(format!("{}{path}", self.base)))
            .await
    }

    /// `POST base + path` with an optional JSON body, the admin token when `admin`, and extra
    /// headers.
    ///
    /// # Errors
    /// On connection errors and timeouts (10 s).
    pub async fn post(
        &self,
        path: &str,
        body: Option<&Value>,
        admin: bool,
        headers: &[(&str, &str)],
    ) -> Result<Reply> {
        let mut request = self.client.post(format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(serde_json::to_vec(body)?);
        }
        if admin && let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(
                HeaderName::from_bytes(name.as_bytes())?,
                HeaderValue::from_str(value)?,
            );
        }
        self.send(request).await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Reply> {
        let start = Instant::now();
        let response = request
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .context("request failed")?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.context("reading the body failed")?;
        Ok(Reply {
            status,
            headers,
            body,
            elapsed: start.elapsed(),
        })
    }
}

/// What a bounded request loop measured.
#[derive(Debug, Default)]
pub struct LoadResult {
    /// Latency of each successful (2xx) request, in milliseconds.
    pub latencies_ms: Vec<f64>,
    /// Requests that failed or answered non-2xx.
    pub errors: usize,
    /// Wall time of the loop.
    pub elapsed: Duration,
}

/// GETs `paths` round-robin with `concurrency` workers until `max_requests` were sent or
/// `max_time` passed, whichever comes first.
pub async fn get_load(
    http: &Http,
    paths: &[String],
    concurrency: usize,
    max_requests: usize,
    max_time: Duration,
) -> LoadResult {
    let start = Instant::now();
    let deadline = start + max_time;
    let next = Arc::new(AtomicUsize::new(0));
    let paths: Arc<[String]> = Arc::from(paths);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let http = http.clone();
        let next = Arc::clone(&next);
        let paths = Arc::clone(&paths);
        workers.spawn(async move {
            let mut result = LoadResult::default();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= max_requests || Instant::now() >= deadline || paths.is_empty() {
                    break;
                }
                match http.get(&paths[n % paths.len()]).await {
                    Ok(reply) if reply.status.is_success() => {
                        result.latencies_ms.push(reply.elapsed.as_secs_f64() * 1e3);
                    }
                    _ => result.errors += 1,
                }
            }
            result
        });
    }
    let mut total = LoadResult::default();
    while let Some(done) = workers.join_next().await {
        match done {
            Ok(r) => {
                total.latencies_ms.extend(r.latencies_ms);
                total.errors += r.errors;
            }
            Err(_) => total.errors += 1,
        }
    }
    total.elapsed = start.elapsed();
    total
}

/// The `p`-th percentile (0–100) by nearest rank; 0 for no samples.
#[must_use]
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "a rank within a vector's length"
    )]
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Rounds to three decimals for reports.
#[must_use]
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// One Server-Sent Event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseMessage {
    /// `event:` (empty means `message`).
    pub event: String,
    /// `id:`, when given.
    pub id: Option<String>,
    /// The `data:` lines joined with newlines.
    pub data: String,
}

/// An incremental parser of the `text/event-stream` format (comments and `retry:` ignored).
#[derive(Debug, Default)]
pub struct SseParser {
    buffer: Vec<u8>,
    current: SseMessage,
    has_data: bool,
}

impl SseParser {
    /// Feeds bytes; returns the events they completed.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseMessage> {
        self.buffer.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(len) = self.buffer[start..].iter().position(|b| *b == b'\n') {
            let end = start + len;
            let mut line = &self.buffer[start..end];
            start = end + 1;
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            if line.is_empty() {
                if self.has_data {
                    out.push(std::mem::take(&mut self.current));
                } else {
                    self.current = SseMessage::default();
                }
                self.has_data = false;
                continue;
            }
            if line[0] == b':' {
                continue;
            }
            let line = String::from_utf8_lossy(line);
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (&*line, ""),
            };
            match field {
                "event" => value.clone_into(&mut self.current.event),
                "id" => self.current.id = Some(value.to_owned()),
                "data" => {
                    if self.has_data {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(value);
                    self.has_data = true;
                }
                _ => {}
            }
        }
        self.buffer.drain(..start);
        out
    }
}

/// An open event stream.
pub struct SseClient {
    response: reqwest::Response,
    parser: SseParser,
    pending: std::collections::VecDeque<SseMessage>,
}

impl SseClient {
    /// Connects to `base/api/events`, optionally resuming after `last_event_id`. Returns once the
    /// server answered 200 (the client is subscribed from then on).
    ///
    /// # Errors
    /// On connection errors or a non-200 answer.
    pub async fn connect(
        client: &reqwest::Client,
        base: &str,
        last_event_id: Option<u64>,
    ) -> Result<SseClient> {
        let mut request = client
            .get(format!("{base}/api/events"))
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = request.send().await.context("SSE connect failed")?;
        if response.status() != StatusCode::OK {
            bail!("SSE connect answered {}", response.status());
        }
        Ok(SseClient {
            response,
            parser: SseParser::default(),
            pending: std::collections::VecDeque::new(),
        })
    }

    /// The next event; `Ok(None)` when the server ended the stream.
    ///
    /// # Errors
    /// When the connection fails.
    pub async fn next(&mut self) -> Result<Option<SseMessage>> {
        loop {
            if let Some(message) = self.pending.pop_front() {
                return Ok(Some(message));
            }
            match self.response.chunk().await.context("SSE stream failed")? {
                Some(chunk) => self.pending.extend(self.parser.push(&chunk)),
                None => return Ok(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_handles_split_chunks_comments_and_multiline_data() {
        let mut p = SseParser::default();
        let mut all = p.push(b": keep-alive\n\nevent: task_updated\nid: 7\nda");
        assert!(all.is_empty());
        all.extend(p.push(b"ta: {\"a\":1}\r\n\r\ndata: x\ndata: y\n\n"));
        assert_eq!(
            all,
            vec![
                SseMessage {
                    event: "task_updated".into(),
                    id: Some("7".into()),
                    data: "{\"a\":1}".into()
                },
                SseMessage {
                    event: String::new(),
                    id: None,
                    data: "x\ny".into()
                },
            ]
        );
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let xs: Vec<f64> = (1..=100).map(f64::from).collect();
        assert!((percentile(&xs, 50.0) - 50.0).abs() < f64::EPSILON);
        assert!((percentile(&xs, 95.0) - 95.0).abs() < f64::EPSILON);
        assert!((percentile(&[], 95.0)).abs() < f64::EPSILON);
    }

    #[test]
    fn only_loopback_targets() {
        assert!(check_loopback("http://127.0.0.1:8787/").is_ok());
        assert!(check_loopback("http://localhost:1").is_ok());
        assert!(check_loopback("http://[::1]:1").is_ok());
        assert!(check_loopback("http://10.0.0.1:80").is_err());
        assert!(check_loopback("https://127.0.0.1:80").is_err());
        assert!(check_loopback("http://example.com").is_err());
    }
}
