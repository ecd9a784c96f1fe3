//! Bouncer authentication: the `X-Api-Key` header, as CrowdSec's `api_key.go`.

use super::{ApiState, Peer, message};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use std::sync::atomic::Ordering;

/// An authenticated bouncer.
#[derive(Debug, Clone)]
pub struct BouncerAuth {
    /// Its name.
    pub name: String,
}

/// The peer of a request (the Unix socket when no connection info was recorded).
pub(crate) fn peer_of(parts: &Parts) -> Peer {
    parts
        .extensions
        .get::<ConnectInfo<Peer>>()
        .map_or(Peer::Unix, |c| c.0)
}

pub(crate) fn forbidden() -> Response {
    message(StatusCode::FORBIDDEN, "access forbidden")
}

impl FromRequestParts<ApiState> for BouncerAuth {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        let peer = peer_of(parts);
        let Some(key) = parts.headers.get("x-api-key").and_then(|v| v.to_str().ok()) else {
            state.stats.failed_auth.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(peer = %peer, "bouncer request without an X-Api-Key header");
            return Err(forbidden());
        };
        let ua = parts
            .headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok());
        // HEAD only checks the key: no address binding, no User-Agent update.
        let bind = parts.method != Method::HEAD;
        match state
            .auth
            .authenticate_bouncer(key.trim(), &peer.ip(), ua, bind)
        {
            Some(name) => Ok(BouncerAuth { name }),
            None => {
                state.stats.failed_auth.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(peer = %peer, "bouncer authentication failed: unknown API key");
                Err(forbidden())
            }
        }
    }
}
