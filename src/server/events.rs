//! Server-Sent Events (SPEC §8.3): `GET /api/events` streams `event: task_updated`, `id: <seq>`,
//! data `{task_id, status, version, correlation_id, sent_at_ms}` for every SSOT change, whoever
//! made it.
//!
//! Each change is serialised once, as the bytes of its whole SSE frame, and every client's stream
//! hands out a reference-counted copy of those bytes (axum's `Sse` would rebuild the frame per
//! client: with 1,000 clients that is most of the fan-out's cost). The [`EventHub`] numbers changes, keeps the last ones in a bounded ring for `Last-Event-ID`
//! replay, and fans them out through one `tokio::sync::broadcast` channel. A client is subscribed
//! under the ring's lock, so its replay and its live stream neither overlap nor leave a gap. A
//! client that falls further behind than the channel holds gets `Lagged`: its stream ends (the
//! others are never slowed) and that is audited. Keep-alive comments go out every 15 s.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde_json::json;
use tokio::sync::{broadcast, watch};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::metrics::Metrics;
use super::state::AppState;
use crate::audit::{AuditEvent, AuditLog};
use crate::store::{Origin, TaskChange};

/// The SSE event name.
pub const EVENT_NAME: &str = "task_updated";

/// One numbered change, as sent.
#[derive(Debug)]
pub struct SseEvent {
    /// The sequence number (the SSE `id`), from 1.
    pub seq: u64,
    /// The whole frame: `event: task_updated`, `id: <seq>`, `data: <canonical JSON>`, blank line.
    pub frame: Bytes,
}

/// How often an idle stream gets a keep-alive comment.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The keep-alive comment.
const KEEP_ALIVE_FRAME: &[u8] = b":\n\n";

#[derive(Clone, Debug)]
enum Item {
    Event(Arc<SseEvent>),
    /// The server is shutting down: every stream ends.
    Close,
}

struct Ring {
    next_seq: u64,
    events: VecDeque<Arc<SseEvent>>,
}

struct HubInner {
    ring: Mutex<Ring>,
    ring_capacity: usize,
    sender: broadcast::Sender<Item>,
    connected: watch::Sender<usize>,
    audit: AuditLog,
    metrics: Metrics,
}

/// Numbers, remembers and fans out task changes; cheap to clone.
#[derive(Clone)]
pub struct EventHub(Arc<HubInner>);

/// Milliseconds since the Unix epoch.
#[must_use]
pub fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl EventHub {
    /// A hub whose clients may fall `client_buffer` events behind, replaying up to
    /// `ring_capacity` past events.
    #[must_use]
    pub fn new(
        client_buffer: usize,
        ring_capacity: usize,
        audit: AuditLog,
        metrics: Metrics,
    ) -> EventHub {
        let (sender, _) = broadcast::channel(client_buffer.max(1));
        EventHub(Arc::new(HubInner {
            ring: Mutex::new(Ring {
                next_seq: 1,
                events: VecDeque::with_capacity(ring_capacity.min(65_536)),
            }),
            ring_capacity: ring_capacity.max(1),
            sender,
            connected: watch::Sender::new(0),
            audit,
            metrics,
        }))
    }

    /// Numbers a change, keeps it for replay, sends it to every client and audits the broadcast.
    /// Returns its sequence number.
    pub fn publish(&self, change: &TaskChange) -> u64 {
        let hub = &self.0;
        let (seq, receivers) = {
            let mut ring = hub.ring.lock().unwrap_or_else(PoisonError::into_inner);
            let seq = ring.next_seq;
            ring.next_seq += 1;
            let data = crate::canonical::to_canonical_string(&json!({
                "task_id": change.task_id,
                "status": change.status.as_str(),
                "version": change.version,
                "correlation_id": change.correlation_id,
                "sent_at_ms": epoch_ms(),
            }));
            let frame = Bytes::from(format!("event: {EVENT_NAME}\nid: {seq}\ndata: {data}\n\n"));
            let event = Arc::new(SseEvent { seq, frame });
            ring.events.push_back(Arc::clone(&event));
            while ring.events.len() > hub.ring_capacity {
                ring.events.pop_front();
            }
            // Sent under the lock, so that a subscriber sees each event either in its replay or
            // live, never both and never neither.
            let receivers = hub.sender.send(Item::Event(event)).unwrap_or(0);
            (seq, receivers)
        };
        hub.metrics.sse_broadcast(receivers);
        hub.audit.record(
            AuditEvent::new("sse_broadcast", change.correlation_id.as_str(), "server")
                .task(change.task_id.as_str())
                .detail(json!({
                    "broadcast_count": receivers,
                    "seq": seq,
                    "status": change.status.as_str(),
                    "version": change.version,
                    "origin": match change.origin {
                        Origin::Store => "api",
                        Origin::External => "external",
                    },
                })),
        );
        seq
    }

    /// Subscribes a client: the kept events after `last_event_id`, and the live receiver.
    fn subscribe(
        &self,
        last_event_id: Option<u64>,
    ) -> (Vec<Arc<SseEvent>>, broadcast::Receiver<Item>) {
        let ring = self.0.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let receiver = self.0.sender.subscribe();
        let replay = match last_event_id {
            Some(last) => ring
                .events
                .iter()
                .filter(|e| e.seq > last)
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        (replay, receiver)
    }

    /// Ends every client stream (server shutdown).
    pub fn close(&self) {
        let _ = self.0.sender.send(Item::Close);
    }

    /// The number of connected clients, observable without polling (tests, `verify-phase`).
    #[must_use]
    pub fn connected(&self) -> watch::Receiver<usize> {
        self.0.connected.subscribe()
    }

    /// The last sequence number given out (0 before the first change).
    #[must_use]
    pub fn last_seq(&self) -> u64 {
        self.0
            .ring
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .next_seq
            - 1
    }
}

/// Why a client's stream ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EndReason {
    Closed,
    Lagged,
    Shutdown,
}

/// Audits the end of a client's stream when it is dropped, whatever ended it.
struct ClientGuard {
    hub: EventHub,
    client_id: String,
    reason: EndReason,
    sent: u64,
    missed: u64,
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        let hub = &self.hub.0;
        let lagged = self.reason == EndReason::Lagged;
        hub.metrics.sse_disconnected(lagged);
        hub.connected.send_modify(|n| *n = n.saturating_sub(1));
        hub.audit.record(
            AuditEvent::new(
                "sse_client_disconnect",
                self.client_id.as_str(),
                "anonymous",
            )
            .detail(json!({
                "client_id": self.client_id,
                "reason": match self.reason {
                    EndReason::Closed => "closed",
                    EndReason::Lagged => "lagged",
                    EndReason::Shutdown => "shutdown",
                },
                "events_sent": self.sent,
                "events_missed": self.missed,
            })),
        );
    }
}

/// One client's events: its replay, then the live channel, until it lags or the server stops;
/// a keep-alive comment whenever it has been quiet for [`KEEP_ALIVE`].
struct ClientStream {
    replay: std::vec::IntoIter<Arc<SseEvent>>,
    live: BroadcastStream<Item>,
    keep_alive: Pin<Box<tokio::time::Sleep>>,
    guard: ClientGuard,
    done: bool,
}

impl ClientStream {
    fn sent(&mut self, event: &SseEvent) -> Poll<Option<Result<Bytes, Infallible>>> {
        self.guard.sent += 1;
        self.keep_alive
            .as_mut()
            .reset(tokio::time::Instant::now() + KEEP_ALIVE);
        Poll::Ready(Some(Ok(event.frame.clone())))
    }
}

impl Stream for ClientStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(event) = this.replay.next() {
            return this.sent(&event);
        }
        match Pin::new(&mut this.live).poll_next(cx) {
            Poll::Pending => {
                if this.keep_alive.as_mut().poll(cx).is_ready() {
                    this.keep_alive
                        .as_mut()
                        .reset(tokio::time::Instant::now() + KEEP_ALIVE);
                    return Poll::Ready(Some(Ok(Bytes::from_static(KEEP_ALIVE_FRAME))));
                }
                Poll::Pending
            }
            Poll::Ready(Some(Ok(Item::Event(event)))) => this.sent(&event),
            Poll::Ready(Some(Ok(Item::Close)) | None) => {
                this.guard.reason = EndReason::Shutdown;
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(BroadcastStreamRecvError::Lagged(missed)))) => {
                // SPEC §8.3: a slow client is dropped rather than slowing the others.
                this.guard.reason = EndReason::Lagged;
                this.guard.missed = missed;
                this.done = true;
                Poll::Ready(None)
            }
        }
    }
}

/// `GET /api/events`.
pub async fn handler(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let hub = state.hub().clone();
    let (replay, receiver) = hub.subscribe(last_event_id);
    let client_id = super::tasks::new_correlation_id();
    hub.0.metrics.sse_connected();
    hub.0.connected.send_modify(|n| *n += 1);
    hub.0.audit.record(
        AuditEvent::new("sse_client_connect", client_id.as_str(), "anonymous").detail(json!({
            "client_id": client_id,
            "last_event_id": last_event_id,
            "replayed": replay.len(),
        })),
    );
    let stream = ClientStream {
        replay: replay.into_iter(),
        live: BroadcastStream::new(receiver),
        keep_alive: Box::pin(tokio::time::sleep(KEEP_ALIVE)),
        guard: ClientGuard {
            hub,
            client_id,
            reason: EndReason::Closed,
            sent: 0,
            missed: 0,
        },
        done: false,
    };
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}
