//! The task API server (SPEC §8): routes, admin auth, canonical JSON answers, Server-Sent Events,
//! the dashboard, health and metrics, over the SSOT store, with every call audited.
//!
//! [`router`] builds the whole application from an [`AppState`], so tests drive it with
//! `Router::oneshot`; [`serve`] runs it on a listener the caller bound, until `shutdown` resolves.
//! This module accepts inbound HTTP and never makes outbound calls (ARCHITECTURE invariant 6).

pub mod auth;
pub mod dashboard;
pub mod error;
pub mod events;
pub mod github;
pub mod metrics;
pub mod state;
pub mod tasks;
pub mod telegram;

use std::future::Future;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

pub use error::ApiError;
pub use events::EventHub;
pub use state::{AppState, ServerOptions};

use crate::audit::AuditEvent;
use crate::store::TaskId;

/// The largest request body accepted (SPEC §8.2); larger ones get 413.
pub const BODY_LIMIT: usize = 1 << 20;

/// How long reading a request body may take (a slow sender gets 408). Only the handlers that
/// read a body pay for a timer; reads answer from memory and need none.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// The whole application.
///
/// Route table (SPEC §8.2). Webhooks (§8.5 `POST /webhooks/github`, §8.6 `POST
/// /webhooks/telegram`) mount beside these as their own routes, authenticated by their own
/// signatures rather than by the admin token.
pub fn router(state: AppState) -> Router {
    let admin = Router::new()
        .route("/api/tasks", post(tasks::create))
        .route("/api/tasks/{id}/approve", post(tasks::approve))
        .route("/api/tasks/{id}/reject", post(tasks::reject))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_admin,
        ));
    let public = Router::new()
        .route("/api/tasks", get(tasks::list))
        .route("/api/tasks/{id}", get(tasks::get_one))
        .route("/api/events", get(events::handler))
        .route("/webhooks/github", post(github::handler))
        .route("/webhooks/telegram", post(telegram::handler))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics::handler));
    let routes = public
        .merge(admin)
        .merge(dashboard::routes())
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(state.clone());
    // The layers wrap the router as a whole rather than each route (`Router::layer`), so a request
    // pays for one boxed route instead of one per layer: this is the hot path of every read.
    let service = ServiceBuilder::new()
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::custom(|_panic| {
            ApiError::Internal(anyhow::anyhow!("a handler panicked")).into_response()
        }))
        .layer(middleware::from_fn_with_state(state, observe))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .service(routes);
    Router::new().fallback_service(service)
}

/// `GET /healthz`.
async fn healthz() -> Response {
    error::json_response(
        StatusCode::OK,
        axum::body::Bytes::from_static(br#"{"status":"ok"}"#),
    )
}

/// The id in `/api/tasks/{id}` or `/api/tasks/{id}/…`, when it is a valid one.
fn task_id_in_path(path: &str) -> Option<TaskId> {
    let rest = path.strip_prefix("/api/tasks/")?;
    TaskId::parse(rest.split('/').next()?).ok()
}

/// Counts every request and audits every error answer: `auth_failed` for 401, `api_error` for the
/// rest, with the task's correlation id when the path names a known task.
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let uri = req.uri().clone();
    let request_correlation = req
        .headers()
        .get("x-correlation-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let response = next.run(req).await;
    state.metrics().observe(response.status(), start.elapsed());
    if let Some(info) = response.extensions().get::<error::ErrorInfo>() {
        let task = match task_id_in_path(uri.path()) {
            Some(id) => state.store().get(&id).await.ok().flatten(),
            None => None,
        };
        let correlation_id = task.as_ref().map_or_else(
            || tasks::correlation_id_or_new(request_correlation.as_deref()),
            |t| t.record.correlation_id.clone(),
        );
        let event = if info.status == StatusCode::UNAUTHORIZED {
            "auth_failed"
        } else {
            "api_error"
        };
        let actor = if info.status == StatusCode::UNAUTHORIZED {
            "unauthenticated"
        } else {
            "anonymous"
        };
        let mut audit = AuditEvent::new(event, correlation_id, actor).detail(json!({
            "status": info.status.as_u16(),
            "code": info.code,
            "message": info.message,
            "method": method.as_str(),
            "path": uri.path(),
        }));
        if let Some(t) = task {
            audit = audit.task(t.record.task_id.clone());
        }
        state.audit().record(audit);
    }
    response
}

/// Serves `state` on `listener` until `shutdown` resolves; then ends every SSE stream and waits
/// for requests in flight.
///
/// # Errors
/// When accepting connections fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt as _;
    let hub = state.hub().clone();
    let audit = state.audit().clone();
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let result = axum::serve(listener, router(state))
        .with_graceful_shutdown(async move {
            shutdown.await;
            hub.close();
        })
        .await;
    let _ = audit.flush().await;
    result
}
