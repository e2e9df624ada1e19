//! The one place that knows HTTP statuses (ARCHITECTURE invariant 3): [`ApiError`] and its
//! `{"error":{"code","message"}}` body, the JSON body extractors, and the JSON 404/405 fallbacks.
//!
//! An error response carries an [`ErrorInfo`] extension; the observing middleware audits it. An
//! internal error answers a generic message and its real cause is logged, never sent.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::store::{InvalidTaskId, StoreError};

/// An API failure, mapped to a status and a stable code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: a malformed request (query, header, path).
    #[error("{0}")]
    BadRequest(String),
    /// 400: the task id breaks the SPEC §8.1 rule.
    #[error(transparent)]
    InvalidTaskId(#[from] InvalidTaskId),
    /// 400: the body is not valid JSON of the expected shape.
    #[error("{0}")]
    InvalidJson(String),
    /// 401: no bearer token, or the wrong one.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 404: no such task or route.
    #[error("{0}")]
    NotFound(String),
    /// 405: the route exists, the method does not.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 408: the body did not arrive in time.
    #[error("the request body did not arrive within 30 s")]
    RequestTimeout,
    /// 409: the task exists already.
    #[error("{0}")]
    Conflict(String),
    /// 412: `If-Match` names another version.
    #[error("{0}")]
    PreconditionFailed(String),
    /// 413: the body is over 1 MiB.
    #[error("the request body is larger than 1 MiB")]
    PayloadTooLarge,
    /// 415: the body is not `application/json`.
    #[error("the request body must be JSON (`Content-Type: application/json`)")]
    UnsupportedMediaType,
    /// 503: admin routes with no admin token configured (fail closed).
    #[error("admin routes are disabled: the server has no GATEKEEPER_ADMIN_TOKEN")]
    AdminDisabled,
    /// 500: anything else; the cause is logged, not sent.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// The HTTP status.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::InvalidTaskId(_) | ApiError::InvalidJson(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::AdminDisabled => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::InvalidTaskId(_) => "invalid_task_id",
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::RequestTimeout => "request_timeout",
            ApiError::Conflict(_) => "conflict",
            ApiError::PreconditionFailed(_) => "precondition_failed",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::AdminDisabled => "admin_disabled",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(_) => ApiError::NotFound(e.to_string()),
            StoreError::Exists(_) => ApiError::Conflict(e.to_string()),
            StoreError::VersionMismatch { .. } => ApiError::PreconditionFailed(e.to_string()),
            StoreError::Invalid(m) => ApiError::BadRequest(m),
            StoreError::Io(e) => ApiError::Internal(e),
        }
    }
}

/// What an error response carries for the audit log.
#[derive(Clone, Debug)]
pub struct ErrorInfo {
    /// The status.
    pub status: StatusCode,
    /// The error code.
    pub code: &'static str,
    /// The message sent (generic for internal errors).
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let code = self.code();
        let message = self.to_string();
        if let ApiError::Internal(cause) = &self {
            tracing::error!("internal error: {cause:#}");
        }
        let body = crate::canonical::to_canonical_string(&serde_json::json!({
            "error": { "code": code, "message": message }
        }));
        let mut response = json_response(status, Bytes::from(body));
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"gatekeeper\""),
            );
        }
        response.extensions_mut().insert(ErrorInfo {
            status,
            code,
            message,
        });
        response
    }
}

/// A response with a JSON body that is already canonical.
#[must_use]
pub fn json_response(status: StatusCode, body: Bytes) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The JSON 404 for unknown routes.
pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".to_owned())
}

/// The JSON 405 for known routes called with another method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

fn is_json(content_type: Option<&HeaderValue>) -> bool {
    let Some(value) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        || essence.rsplit_once('+').is_some_and(|(kind, suffix)| {
            kind.starts_with("application/") && suffix.eq_ignore_ascii_case("json")
        })
}

async fn body_bytes(req: Request) -> Result<(bool, Bytes), ApiError> {
    let json = is_json(req.headers().get(header::CONTENT_TYPE));
    let read = tokio::time::timeout(super::BODY_TIMEOUT, Bytes::from_request(req, &()));
    let bytes = read
        .await
        .map_err(|_| ApiError::RequestTimeout)?
        .map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::BadRequest(format!("the request body could not be read: {rejection}"))
            }
        })?;
    Ok((json, bytes))
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path == "?" {
            ApiError::InvalidJson(format!("invalid JSON body: {inner}"))
        } else {
            ApiError::InvalidJson(format!("invalid JSON body at `{path}`: {inner}"))
        }
    })?;
    de.end()
        .map_err(|e| ApiError::InvalidJson(format!("invalid JSON body: {e}")))?;
    Ok(value)
}

/// A required JSON body: 415 without a JSON content type, 413 over the limit, 400 when it does
/// not parse or has the wrong shape (never axum's plain-text 422).
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let (json, bytes) = body_bytes(req).await?;
        if !json {
            return Err(ApiError::UnsupportedMediaType);
        }
        parse_json(&bytes).map(ApiJson)
    }
}

/// An optional JSON body: an empty body is `None`; anything else is checked like [`ApiJson`].
#[derive(Debug)]
pub struct OptionalJson<T>(pub Option<T>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let (json, bytes) = body_bytes(req).await?;
        if bytes.is_empty() {
            return Ok(OptionalJson(None));
        }
        if !json {
            return Err(ApiError::UnsupportedMediaType);
        }
        parse_json(&bytes).map(|v| OptionalJson(Some(v)))
    }
}
