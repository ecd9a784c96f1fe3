//! Machines (agents, cscli): registration, JWT login (HS256, claim `id`, 1 h), heartbeat,
//! and the usage-metrics route both bouncers and machines use.

use super::bouncer::{BouncerAuth, peer_of};
use super::{ApiState, REGISTER_BODY_LIMIT, json, message, parse_json, read_body};
use crate::store::auth::{AuthError, LoginError};
use crate::store::now_millis;
use axum::body::Body;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;

/// Token lifetime, as CrowdSec's gin-jwt `Timeout`.
const TOKEN_SECS: i64 = 3600;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    id: String,
    exp: i64,
    orig_iat: i64,
}

/// A JWT error body: `{"code":401,"message":...}` like gin-jwt.
fn unauthorized(text: impl Into<String>) -> Response {
    json(
        StatusCode::UNAUTHORIZED,
        &serde_json::json!({ "code": 401, "message": text.into() }),
    )
}

/// An authenticated machine.
#[derive(Debug, Clone)]
pub struct MachineAuth {
    /// Its id.
    pub machine_id: String,
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        return v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .map(|t| t.trim().to_owned());
    }
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|c| c.split(';'))
        .find_map(|kv| kv.trim().strip_prefix("jwt=").map(str::to_owned))
}

impl MachineAuth {
    fn check(parts: &Parts, state: &ApiState) -> Result<MachineAuth, Response> {
        let peer = peer_of(parts);
        let fail = |why: &str| {
            state.stats.failed_auth.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(peer = %peer, reason = why, "machine authentication failed");
            unauthorized(why)
        };
        let Some(token) = bearer(&parts.headers) else {
            return Err(fail("auth header is empty"));
        };
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        let claims = match jsonwebtoken::decode::<Claims>(
            &token,
            &DecodingKey::from_secret(&state.jwt_secret),
            &validation,
        ) {
            Ok(c) => c.claims,
            Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature) => {
                return Err(fail("Token is expired"));
            }
            Err(_) => return Err(fail("invalid token")),
        };
        match state.auth.machine(&claims.id) {
            Some(m) if m.is_validated => Ok(MachineAuth {
                machine_id: claims.id,
            }),
            _ => Err(fail("machine not found or not validated")),
        }
    }
}

impl FromRequestParts<ApiState> for MachineAuth {
    type Rejection = Response;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        MachineAuth::check(parts, state)
    }
}

/// Which identity a route accepting both got (CrowdSec's `eitherAuthMiddleware`).
pub enum EitherAuth {
    /// A bouncer.
    Bouncer(BouncerAuth),
    /// A machine.
    Machine(MachineAuth),
}

impl FromRequestParts<ApiState> for EitherAuth {
    type Rejection = Response;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        let h = &parts.headers;
        let jwt = !h.contains_key("x-api-key")
            && (h.contains_key(axum::http::header::AUTHORIZATION)
                || h.get(axum::http::header::USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|ua| ua.starts_with("crowdsec/")));
        if jwt {
            MachineAuth::check(parts, state).map(EitherAuth::Machine)
        } else {
            BouncerAuth::from_request_parts(parts, state)
                .await
                .map(EitherAuth::Bouncer)
        }
    }
}

fn new_token(state: &ApiState, id: &str) -> Result<(String, String), Response> {
    let now = jiff::Timestamp::now().as_second();
    let claims = Claims {
        id: id.to_owned(),
        exp: now + TOKEN_SECS,
        orig_iat: now,
    };
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(&state.jwt_secret),
    )
    .map_err(|e| message(StatusCode::INTERNAL_SERVER_ERROR, format!("token: {e}")))?;
    let expire = jiff::Timestamp::from_second(now + TOKEN_SECS)
        .map(|t| t.to_string())
        .unwrap_or_default();
    Ok((token, expire))
}

fn token_response(token: String, expire: String) -> Response {
    json(
        StatusCode::OK,
        &serde_json::json!({ "code": 200, "expire": expire, "token": token }),
    )
}

#[derive(Deserialize)]
struct Register {
    machine_id: String,
    password: String,
}

/// POST /v1/watchers: 201 (to be validated), 202 (auto-validated: the peer is in
/// `auto-register-cidrs`, or the Unix socket), 403 when it exists, 422 on a bad body.
pub async fn register(State(state): State<ApiState>, req: axum::extract::Request) -> Response {
    let (parts, body) = req.into_parts();
    let peer = peer_of(&parts);
    let body = match read_body(body, REGISTER_BODY_LIMIT).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let reg: Register = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return message(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("invalid registration (want {{\"machine_id\",\"password\"}}): {e}"),
            );
        }
    };
    let validated = state.auto_registers(&peer);
    let auth = state.auth.clone();
    let ip = peer.ip();
    let r = tokio::task::spawn_blocking(move || {
        auth.add_machine(&reg.machine_id, &reg.password, &ip, validated)
            .map(|()| reg.machine_id)
    })
    .await;
    match r {
        Ok(Ok(id)) => {
            tracing::info!(machine = %id, peer = %peer, validated, "machine registered");
            if validated {
                StatusCode::ACCEPTED.into_response()
            } else {
                StatusCode::CREATED.into_response()
            }
        }
        Ok(Err(e @ AuthError::Exists { .. })) => message(StatusCode::FORBIDDEN, e.to_string()),
        Ok(Err(e)) => message(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        Err(e) => message(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Deserialize)]
struct Login {
    machine_id: String,
    password: String,
    #[serde(default)]
    scenarios: Option<Vec<String>>,
}

/// POST /v1/watchers/login: `{"code":200,"expire":RFC3339,"token":JWT}`; 401 otherwise.
pub async fn login(State(state): State<ApiState>, req: axum::extract::Request) -> Response {
    let (parts, body) = req.into_parts();
    let peer = peer_of(&parts);
    let body = match read_body(body, REGISTER_BODY_LIMIT).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let ua = parts
        .headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let fail = |why: String| {
        state.stats.failed_auth.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(peer = %peer, reason = %why, "machine login failed");
        unauthorized(why)
    };
    let login: Login = match serde_json::from_slice(&body) {
        Ok(l) => l,
        Err(_) => return fail("missing Username or Password".into()),
    };
    if ua.split('/').count() != 2 {
        return fail(format!("bad user agent '{ua}': want name/version"));
    }
    let auth = state.auth.clone();
    let (id, password) = (login.machine_id.clone(), login.password);
    let checked = tokio::task::spawn_blocking(move || auth.check_login(&id, &password)).await;
    match checked {
        Ok(Ok(_)) => {}
        Ok(Err(LoginError::NotValidated)) => {
            return fail(format!("machine {} not validated", login.machine_id));
        }
        Ok(Err(LoginError::BadCredentials)) => {
            return fail("incorrect Username or Password".into());
        }
        Err(e) => return message(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
    let (_, version) = crate::store::auth::split_user_agent(&ua);
    let ip = peer.ip();
    let _ = state.auth.update_machine(&login.machine_id, |m| {
        m.ip_address = ip;
        m.version = version;
        if let Some(s) = &login.scenarios {
            m.scenarios = s.join(",");
        }
    });
    match new_token(&state, &login.machine_id) {
        Ok((t, e)) => token_response(t, e),
        Err(r) => r,
    }
}

/// GET /v1/refresh_token: a new token for a valid one.
pub async fn refresh(State(state): State<ApiState>, m: MachineAuth) -> Response {
    match new_token(&state, &m.machine_id) {
        Ok((t, e)) => token_response(t, e),
        Err(r) => r,
    }
}

/// GET /v1/heartbeat: 200, empty body.
pub async fn heartbeat(State(state): State<ApiState>, m: MachineAuth) -> Response {
    let now = now_millis();
    let _ = state
        .auth
        .update_machine(&m.machine_id, |x| x.last_heartbeat = Some(now));
    StatusCode::OK.into_response()
}

/// DELETE /v1/watchers/self: 204.
pub async fn delete_self(State(state): State<ApiState>, m: MachineAuth) -> Response {
    let _ = state.auth.delete_machine(&m.machine_id);
    StatusCode::NO_CONTENT.into_response()
}

/// POST /v1/usage-metrics: accepted (201, empty) from bouncers and machines; the payload
/// is checked to be a JSON object and logged at debug level.
pub async fn usage_metrics(who: EitherAuth, body: Body) -> Response {
    let who = match who {
        EitherAuth::Bouncer(b) => b.name,
        EitherAuth::Machine(m) => m.machine_id,
    };
    let body = match read_body(body, super::BODY_LIMIT).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    match parse_json::<serde_json::Value>(&body) {
        Ok(v) if v.is_object() => {
            let has_rc = v
                .get("remediation_components")
                .is_some_and(|x| !x.is_null());
            let has_lp = v.get("log_processors").is_some_and(|x| !x.is_null());
            if has_rc && has_lp {
                return message(
                    StatusCode::BAD_REQUEST,
                    "a payload cannot mix log processors and remediation components",
                );
            }
            tracing::debug!(from = %who, metrics = %v, "usage metrics");
            StatusCode::CREATED.into_response()
        }
        Ok(_) => message(
            StatusCode::BAD_REQUEST,
            "usage metrics must be a JSON object",
        ),
        Err(r) => r,
    }
}
