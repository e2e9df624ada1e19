//! Admin authentication (SPEC §8.2): `Authorization: Bearer <GATEKEEPER_ADMIN_TOKEN>`, compared in
//! constant time; missing or wrong answers 401; a server without a token answers 503 on every
//! admin route (fail closed). The token itself never reaches a log, an audit line or `Debug`.

use std::fmt;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::state::AppState;

/// The configured admin token, kept only as its sha256 so that comparing digests in constant time
/// does not even reveal the token's length.
#[derive(Clone)]
pub struct AdminToken {
    digest: [u8; 32],
}

impl AdminToken {
    /// Wraps a token; `None` for an empty one (an empty token would let anyone in).
    #[must_use]
    pub fn new(token: &str) -> Option<AdminToken> {
        (!token.is_empty()).then(|| AdminToken {
            digest: Sha256::digest(token.as_bytes()).into(),
        })
    }

    /// Whether `presented` is the token, in constant time.
    #[must_use]
    pub fn matches(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        digest.ct_eq(&self.digest).into()
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// The bearer credentials of a request, if it has any (the scheme is case-insensitive).
fn bearer(req: &Request) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Middleware for the admin routes.
///
/// # Errors
/// 503 without a configured token, 401 without the right one.
pub async fn require_admin(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(token) = state.admin_token() else {
        return Err(ApiError::AdminDisabled);
    };
    match bearer(&req) {
        None => Err(ApiError::Unauthorized("missing bearer token")),
        Some(presented) if token.matches(presented) => Ok(next.run(req).await),
        Some(_) => Err(ApiError::Unauthorized("invalid bearer token")),
    }
}
