//! Prometheus text metrics (`GET /metrics`): request counts by status, a request-duration
//! histogram, tasks held, SSE clients and deliveries, audit lines. Counters are plain atomics
//! updated on the request path; rendering reads them.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::state::AppState;

/// The statuses counted one by one; others are counted as `other`.
const STATUSES: [u16; 14] = [
    200, 201, 304, 400, 401, 404, 405, 408, 409, 412, 413, 415, 500, 503,
];

/// Upper bounds of the duration histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
];

/// The server's counters; cheap to clone.
#[derive(Clone, Default)]
pub struct Metrics(Arc<Counters>);

#[derive(Default)]
struct Counters {
    requests: [AtomicU64; STATUSES.len() + 1],
    buckets: [AtomicU64; BUCKETS.len()],
    duration_micros: AtomicU64,
    duration_count: AtomicU64,
    sse_clients: AtomicI64,
    sse_connects: AtomicU64,
    sse_disconnects: AtomicU64,
    sse_lagged: AtomicU64,
    sse_broadcasts: AtomicU64,
    sse_deliveries: AtomicU64,
    external_changes: AtomicU64,
}

impl Metrics {
    /// Counts one finished request.
    pub fn observe(&self, status: StatusCode, elapsed: Duration) {
        let c = &self.0;
        let slot = STATUSES
            .iter()
            .position(|s| *s == status.as_u16())
            .unwrap_or(STATUSES.len());
        c.requests[slot].fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        if let Some(bucket) = BUCKETS.iter().position(|b| secs <= *b) {
            c.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        }
        c.duration_micros.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        c.duration_count.fetch_add(1, Ordering::Relaxed);
    }

    /// An SSE client connected.
    pub fn sse_connected(&self) {
        self.0.sse_clients.fetch_add(1, Ordering::Relaxed);
        self.0.sse_connects.fetch_add(1, Ordering::Relaxed);
    }

    /// An SSE client went away; `lagged` when it was dropped for being slow.
    pub fn sse_disconnected(&self, lagged: bool) {
        self.0.sse_clients.fetch_sub(1, Ordering::Relaxed);
        self.0.sse_disconnects.fetch_add(1, Ordering::Relaxed);
        if lagged {
            self.0.sse_lagged.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One change was broadcast to `receivers` clients.
    pub fn sse_broadcast(&self, receivers: usize) {
        self.0.sse_broadcasts.fetch_add(1, Ordering::Relaxed);
        self.0
            .sse_deliveries
            .fetch_add(receivers as u64, Ordering::Relaxed);
    }

    /// A change made by another process was noticed.
    pub fn external_change(&self) {
        self.0.external_changes.fetch_add(1, Ordering::Relaxed);
    }

    /// SSE clients connected now.
    #[must_use]
    pub fn sse_clients(&self) -> i64 {
        self.0.sse_clients.load(Ordering::Relaxed)
    }

    /// Clients dropped for being slow so far.
    #[must_use]
    pub fn sse_lagged(&self) -> u64 {
        self.0.sse_lagged.load(Ordering::Relaxed)
    }

    /// Renders the Prometheus text exposition format.
    #[must_use]
    pub fn render(&self, tasks: usize, audit_written: u64, audit_failed: u64) -> String {
        let c = &self.0;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::with_capacity(4096);
        let _ = writeln!(
            out,
            "# HELP gatekeeper_http_requests_total HTTP requests answered, by status.\n# TYPE gatekeeper_http_requests_total counter"
        );
        for (i, status) in STATUSES.iter().enumerate() {
            let _ = writeln!(
                out,
                "gatekeeper_http_requests_total{{status=\"{status}\"}} {}",
                load(&c.requests[i])
            );
        }
        let _ = writeln!(
            out,
            "gatekeeper_http_requests_total{{status=\"other\"}} {}",
            load(&c.requests[STATUSES.len()])
        );
        let _ = writeln!(
            out,
            "# HELP gatekeeper_http_request_duration_seconds Time to the response head.\n# TYPE gatekeeper_http_request_duration_seconds histogram"
        );
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += load(&c.buckets[i]);
            let _ = writeln!(
                out,
                "gatekeeper_http_request_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = load(&c.duration_count);
        let _ = writeln!(
            out,
            "gatekeeper_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        #[expect(
            clippy::cast_precision_loss,
            reason = "a sum of microseconds stays far below 2^52"
        )]
        let sum = load(&c.duration_micros) as f64 / 1e6;
        let _ = writeln!(out, "gatekeeper_http_request_duration_seconds_sum {sum}");
        let _ = writeln!(
            out,
            "gatekeeper_http_request_duration_seconds_count {count}"
        );
        let gauges: [(&str, &str, &str, i128); 9] = [
            (
                "gatekeeper_tasks",
                "gauge",
                "Tasks held by the store.",
                tasks as i128,
            ),
            (
                "gatekeeper_sse_clients",
                "gauge",
                "SSE clients connected now.",
                i128::from(c.sse_clients.load(Ordering::Relaxed)),
            ),
            (
                "gatekeeper_sse_connects_total",
                "counter",
                "SSE clients that connected.",
                i128::from(load(&c.sse_connects)),
            ),
            (
                "gatekeeper_sse_disconnects_total",
                "counter",
                "SSE clients that went away.",
                i128::from(load(&c.sse_disconnects)),
            ),
            (
                "gatekeeper_sse_lagged_total",
                "counter",
                "SSE clients dropped for being too slow.",
                i128::from(load(&c.sse_lagged)),
            ),
            (
                "gatekeeper_sse_broadcasts_total",
                "counter",
                "Task changes broadcast.",
                i128::from(load(&c.sse_broadcasts)),
            ),
            (
                "gatekeeper_sse_deliveries_total",
                "counter",
                "Task changes handed to connected clients.",
                i128::from(load(&c.sse_deliveries)),
            ),
            (
                "gatekeeper_audit_events_written_total",
                "counter",
                "Audit lines written by this process.",
                i128::from(audit_written),
            ),
            (
                "gatekeeper_audit_events_failed_total",
                "counter",
                "Audit lines that could not be written.",
                i128::from(audit_failed),
            ),
        ];
        for (name, kind, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        let external = load(&c.external_changes);
        let _ = writeln!(
            out,
            "# HELP gatekeeper_external_changes_total SSOT changes made by other processes.\n# TYPE gatekeeper_external_changes_total counter\ngatekeeper_external_changes_total {external}"
        );
        out
    }
}

/// `GET /metrics`.
pub async fn handler(State(state): State<AppState>) -> Response {
    let text = state.metrics().render(
        state.store().len(),
        state.audit().written(),
        state.audit().failed(),
    );
    let mut response = (StatusCode::OK, text).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
