//! garrison's admin routes, on the Unix socket only (its file permissions are the
//! authentication): what `garrison decisions|alerts|bouncers|machines|lapi` call. Every
//! change still goes through the store, so the daemon stays the database's only writer.

use super::alerts::{AlertQuery, Incoming, parse_alert, query_alerts, store_alerts};
use super::decisions::{Filter, Where};
use super::wire::{go_duration, rfc3339};
use super::{ApiState, BODY_LIMIT, Params, json, message, parse_json, read_body};
use crate::store::auth::AuthError;
use crate::store::{Millis, now_millis};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;

/// The admin routes, under `/v1/garrison/`.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/garrison/health", get(status))
        .route("/v1/garrison/lapi/status", get(status))
        .route(
            "/v1/garrison/decisions",
            get(list_decisions)
                .post(add_decision)
                .delete(delete_decisions),
        )
        .route("/v1/garrison/decisions/import", post(import_decisions))
        .route("/v1/garrison/alerts", get(list_alerts))
        .route("/v1/garrison/alerts/{id}", get(get_alert))
        .route(
            "/v1/garrison/bouncers",
            get(list_bouncers).post(add_bouncer),
        )
        .route("/v1/garrison/bouncers/{name}", delete(delete_bouncer))
        .route(
            "/v1/garrison/machines",
            get(list_machines).post(add_machine),
        )
        .route(
            "/v1/garrison/machines/{id}/validate",
            post(validate_machine),
        )
        .route("/v1/garrison/machines/{id}", delete(delete_machine))
        .route("/v1/garrison/blocklists", get(list_blocklists))
        .route("/v1/garrison/blocklists/refresh", post(refresh_blocklists))
}

/// GET /v1/garrison/blocklists: every list's status (size, last refresh, last error), and
/// the Central API's (`central`, null when disabled).
async fn list_blocklists(State(state): State<ApiState>) -> Response {
    let lists = state.blocklists().map(|h| h.status()).unwrap_or_default();
    let central = state.central().map(|h| h.status());
    json(
        StatusCode::OK,
        &json!({ "blocklists": lists, "central": central }),
    )
}

/// POST /v1/garrison/blocklists/refresh[?name=NAME]: refreshes now and answers once done.
async fn refresh_blocklists(State(state): State<ApiState>, params: Params) -> Response {
    let Some(handle) = state.blocklists() else {
        return message(StatusCode::NOT_FOUND, "no blocklist is configured");
    };
    let name = params.get("name").map(str::to_owned);
    let done = tokio::task::spawn_blocking(move || handle.refresh(name.as_deref())).await;
    match done {
        Ok(Ok(lists)) => json(StatusCode::OK, &json!({ "blocklists": lists })),
        Ok(Err(e)) if e.starts_with("no blocklist named") => message(StatusCode::NOT_FOUND, e),
        Ok(Err(e)) => message(StatusCode::SERVICE_UNAVAILABLE, e),
        Err(e) => message(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("refresh failed: {e}"),
        ),
    }
}

/// The machine id recorded on alerts made from the CLI.
pub const CLI_MACHINE: &str = "cscli";

fn auth_error(e: AuthError) -> Response {
    let status = match e {
        AuthError::Exists { .. } => StatusCode::CONFLICT,
        AuthError::NotFound { .. } => StatusCode::NOT_FOUND,
        AuthError::Invalid(_) => StatusCode::BAD_REQUEST,
    };
    message(status, e.to_string())
}

fn time_or_null(ms: Option<Millis>) -> Value {
    ms.map_or(Value::Null, |m| rfc3339(m).into())
}

async fn status(State(state): State<ApiState>) -> Response {
    let now = now_millis();
    let (active, retained, last_id) = {
        let index = state.store.read();
        (index.active(now).count(), index.len(), index.last_id())
    };
    let listen = state
        .listen
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    json(
        StatusCode::OK,
        &json!({
            "status": "up",
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": state.started.elapsed().as_secs(),
            "listen": listen,
            "database": state.store.path().display().to_string(),
            "decisions_active": active,
            "decisions_retained": retained,
            "last_decision_id": last_id,
            "bouncers": state.auth.bouncers().len(),
            "machines": state.auth.machines().len(),
            "requests": state.stats.requests.load(Ordering::Relaxed),
            "failed_authentications": state.stats.failed_auth.load(Ordering::Relaxed),
        }),
    )
}

/// GET /v1/garrison/decisions: decisions with their provenance (origin, scenario, alert,
/// machine). `all=true` includes expired ones still retained; `limit` (0: all).
async fn list_decisions(State(state): State<ApiState>, params: Params) -> Response {
    let mut filter = Filter::from_params(&params);
    filter.no_simulated = false;
    let place = match Where::from_params(&params) {
        Ok(w) => w,
        Err(e) => return message(StatusCode::BAD_REQUEST, e),
    };
    let all = params.get("all").is_some_and(|v| v == "true");
    let limit = params
        .get("limit")
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let id = params.get("id").and_then(|v| v.parse::<i64>().ok());
    let now = now_millis();
    let mut rows: Vec<Value> = Vec::new();
    let mut total = 0usize;
    let mut alert_ids = Vec::new();
    {
        let index = state.store.read();
        let mut pick: Vec<&crate::store::Decision> = match (id, place, &filter.value) {
            (Some(i), _, _) => index.get(i).into_iter().collect(),
            (None, Some(w), _) => w.candidates(&index),
            (None, None, Some(v)) => index.with_value(v),
            (None, None, None) if all => index.iter().collect(),
            (None, None, None) => index.active(now).collect(),
        };
        pick.retain(|d| (all || d.is_active(now)) && filter.matches(d, &index.strings));
        pick.sort_unstable_by_key(|d| std::cmp::Reverse(d.id));
        pick.dedup_by_key(|d| d.id);
        total = total.max(pick.len());
        for d in pick.into_iter().take(limit) {
            alert_ids.push(d.alert_id);
            rows.push(json!({
                "id": d.id,
                "origin": &**index.strings.get(d.origin),
                "scenario": &**index.strings.get(d.scenario),
                "scope": d.target.scope(),
                "value": d.target.value(),
                "type": &**index.strings.get(d.decision_type),
                "duration": go_duration(d.until - now),
                "until": rfc3339(d.until),
                "created_at": rfc3339(d.created_at),
                "alert_id": d.alert_id,
                "simulated": d.simulated,
                "active": d.is_active(now),
            }));
        }
    }
    // The machine that raised each decision's alert.
    let st = state.clone();
    let machines = tokio::task::spawn_blocking(move || machines_of(&st, alert_ids))
        .await
        .unwrap_or_default();
    for r in &mut rows {
        let a = r.get("alert_id").and_then(Value::as_i64).unwrap_or(0);
        if let Some(m) = machines.get(&a)
            && let Value::Object(o) = r
        {
            o.insert("machine_id".into(), m.clone().into());
        }
    }
    json(
        StatusCode::OK,
        &json!({ "total": total, "decisions": rows }),
    )
}

fn machines_of(state: &ApiState, mut ids: Vec<i64>) -> std::collections::HashMap<i64, String> {
    ids.sort_unstable();
    ids.dedup();
    let mut out = std::collections::HashMap::new();
    state.store.flush();
    let Ok(conn) = state.store.reader() else {
        return out;
    };
    let Ok(mut stmt) = conn.prepare_cached("SELECT machine_id FROM alerts WHERE id = ?1") else {
        return out;
    };
    for id in ids.into_iter().filter(|i| *i > 0) {
        if let Ok(m) = stmt.query_row([id], |r| r.get::<_, String>(0)) {
            out.insert(id, m);
        }
    }
    out
}

/// A decision to add by hand (`garrison decisions add`).
#[derive(Debug, Deserialize)]
pub struct ManualDecision {
    /// `Ip`, `Range` or another scope.
    pub scope: String,
    /// Address, CIDR or value.
    pub value: String,
    /// Go duration (`4h`, `7d`).
    #[serde(default)]
    pub duration: Option<String>,
    /// Reason (the decision's scenario).
    #[serde(default)]
    pub reason: Option<String>,
    /// `ban` by default.
    #[serde(default, rename = "type")]
    pub decision_type: Option<String>,
}

fn manual_alert(
    decisions: &[ManualDecision],
    origin: &str,
    default_duration: &str,
    scenario: &str,
    source: Value,
) -> Result<Incoming, String> {
    let now = rfc3339(now_millis());
    let ds: Vec<Value> = decisions
        .iter()
        .map(|d| {
            let t = d.decision_type.clone().unwrap_or_else(|| "ban".into());
            json!({
                "duration": d.duration.clone().unwrap_or_else(|| default_duration.into()),
                "origin": origin,
                "scenario": d.reason.clone().unwrap_or_else(|| format!("manual '{t}' from '{CLI_MACHINE}'")),
                "scope": d.scope,
                "type": t,
                "value": d.value,
            })
        })
        .collect();
    let alert = json!({
        "scenario": scenario,
        "scenario_hash": "",
        "scenario_version": "",
        "message": scenario,
        "events_count": 1,
        "start_at": now,
        "stop_at": now,
        "capacity": 0,
        "leakspeed": "0",
        "simulated": false,
        "remediation": true,
        "kind": origin,
        "events": [],
        "source": source,
        "decisions": ds,
    });
    parse_alert(&alert, CLI_MACHINE)
}

fn added_response(state: &ApiState, inc: Incoming) -> Response {
    let wanted = inc.decisions.as_ref().map_or(0, Vec::len);
    let (ids, refused) = store_alerts(state, vec![inc]);
    if wanted > 0 && refused.len() == wanted {
        let why: Vec<String> = refused
            .iter()
            .map(|(v, r)| format!("{v} is protected by {r}"))
            .collect();
        return message(
            StatusCode::FORBIDDEN,
            format!("refused: {}", why.join("; ")),
        );
    }
    json(
        StatusCode::CREATED,
        &json!({
            "alert_id": ids.first().copied().unwrap_or(0),
            "added": wanted - refused.len(),
            "refused": refused.iter().map(|(v, r)| json!({"value": v, "reason": r})).collect::<Vec<_>>(),
        }),
    )
}

/// POST /v1/garrison/decisions: a decision made by hand, origin `cscli`, with an alert like
/// cscli's.
async fn add_decision(State(state): State<ApiState>, body: axum::body::Body) -> Response {
    let body = match read_body(body, BODY_LIMIT).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let d: ManualDecision = match parse_json(&body) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let t = d.decision_type.clone().unwrap_or_else(|| "ban".into());
    let reason = d
        .reason
        .clone()
        .unwrap_or_else(|| format!("manual '{t}' from '{CLI_MACHINE}'"));
    let mut source =
        json!({"scope": d.scope, "value": d.value, "cn": "", "as_name": "", "as_number": ""});
    match crate::store::canonical_scope(&d.scope).as_ref() {
        "Ip" => source["ip"] = d.value.clone().into(),
        "Range" => source["range"] = d.value.clone().into(),
        _ => {}
    }
    match manual_alert(std::slice::from_ref(&d), "cscli", "4h", &reason, source) {
        Ok(inc) => added_response(&state, inc),
        Err(e) => message(StatusCode::BAD_REQUEST, e),
    }
}

/// An import (`garrison decisions import`): decisions already read from CSV or JSON.
#[derive(Debug, Deserialize)]
struct Import {
    decisions: Vec<ManualDecision>,
    #[serde(default)]
    duration: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

/// POST /v1/garrison/decisions/import: one alert, origin `cscli-import`.
async fn import_decisions(State(state): State<ApiState>, body: axum::body::Body) -> Response {
    let body = match read_body(body, BODY_LIMIT).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let mut imp: Import = match parse_json(&body) {
        Ok(d) => d,
        Err(r) => return r,
    };
    if imp.decisions.is_empty() {
        return message(StatusCode::BAD_REQUEST, "no decisions to import");
    }
    if let Some(r) = &imp.reason {
        for d in &mut imp.decisions {
            d.reason.get_or_insert_with(|| r.clone());
        }
    }
    let n = imp.decisions.len();
    let scenario = format!("import {n} decisions");
    let source = json!({"scope": "cscli/manual-import", "value": format!("{n} decisions")});
    let duration = imp.duration.as_deref().unwrap_or("4h");
    match manual_alert(&imp.decisions, "cscli-import", duration, &scenario, source) {
        Ok(inc) => added_response(&state, inc),
        Err(e) => message(StatusCode::BAD_REQUEST, e),
    }
}

/// DELETE /v1/garrison/decisions: `ip`, `range` (with `contains`), `id`, or `all=true`,
/// narrowed by `type`, `origin`, `scenario`, `scope`, `value`. Expires, never erases.
async fn delete_decisions(State(state): State<ApiState>, params: Params) -> Response {
    let mut filter = Filter::from_params(&params);
    filter.no_simulated = false;
    let place = match Where::from_params(&params) {
        Ok(w) => w,
        Err(e) => return message(StatusCode::BAD_REQUEST, e),
    };
    let id = match params.get("id").map(str::parse::<i64>) {
        Some(Ok(i)) => Some(i),
        Some(Err(_)) => return message(StatusCode::BAD_REQUEST, "id must be a number"),
        None => None,
    };
    let all = params.get("all").is_some_and(|v| v == "true");
    let narrowed = filter.value.is_some()
        || filter.scenario.is_some()
        || filter.origins.is_some()
        || filter.decision_type.is_some()
        || filter.scopes.is_some();
    if place.is_none() && id.is_none() && !all && !narrowed {
        return message(
            StatusCode::BAD_REQUEST,
            "say which decisions to delete: ip, range, id, a filter, or all=true",
        );
    }
    let ids = state.store.expire_where(|d, strings| {
        id.is_none_or(|i| d.id == i)
            && place.is_none_or(|w| w.accepts(&d.target))
            && filter.matches(d, strings)
    });
    tracing::info!(count = ids.len(), "decisions deleted from the CLI");
    json(StatusCode::OK, &json!({ "deleted": ids.len(), "ids": ids }))
}

async fn list_alerts(State(state): State<ApiState>, params: Params) -> Response {
    let q = match AlertQuery::from_params(&params) {
        Ok(q) => q,
        Err(e) => return message(StatusCode::BAD_REQUEST, e),
    };
    match tokio::task::spawn_blocking(move || query_alerts(&state, &q)).await {
        Ok(Ok(v)) => json(StatusCode::OK, &v),
        Ok(Err(e)) => message(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => message(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn get_alert(State(state): State<ApiState>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return message(StatusCode::BAD_REQUEST, format!("invalid alert id '{id}'"));
    };
    match tokio::task::spawn_blocking(move || query_alerts(&state, &AlertQuery::by_id(id))).await {
        Ok(Ok(mut v)) if !v.is_empty() => json(StatusCode::OK, &v.remove(0)),
        Ok(Ok(_)) => message(StatusCode::NOT_FOUND, format!("no alert with id {id}")),
        Ok(Err(e)) => message(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => message(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn list_bouncers(State(state): State<ApiState>) -> Response {
    let v: Vec<Value> = state
        .auth
        .bouncers()
        .into_iter()
        .map(|b| {
            json!({
                "name": b.name,
                "ip_address": b.ip_address,
                "type": b.bouncer_type,
                "version": b.version,
                "created_at": rfc3339(b.created_at),
                "last_pull": time_or_null(b.last_pull),
                "last_pull_id": b.last_pull_id,
                "auto_created": b.auto_created,
                "key_file": b.key_file,
            })
        })
        .collect();
    json(StatusCode::OK, &v)
}

#[derive(Deserialize)]
struct AddBouncer {
    name: String,
    #[serde(default)]
    key: Option<String>,
}

async fn add_bouncer(State(state): State<ApiState>, body: axum::body::Body) -> Response {
    let body = match read_body(body, BODY_LIMIT).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let a: AddBouncer = match parse_json(&body) {
        Ok(a) => a,
        Err(r) => return r,
    };
    match state.auth.add_bouncer(&a.name, a.key.as_deref()) {
        Ok(key) => {
            tracing::info!(bouncer = %a.name, "bouncer added");
            json(StatusCode::CREATED, &json!({ "name": a.name, "key": key }))
        }
        Err(e) => auth_error(e),
    }
}

async fn delete_bouncer(State(state): State<ApiState>, Path(name): Path<String>) -> Response {
    match state.auth.delete_bouncer(&name) {
        Ok(gone) => {
            tracing::info!(bouncer = %name, "bouncer deleted");
            json(StatusCode::OK, &json!({ "deleted": gone }))
        }
        Err(e) => auth_error(e),
    }
}

async fn list_machines(State(state): State<ApiState>) -> Response {
    let v: Vec<Value> = state
        .auth
        .machines()
        .into_iter()
        .map(|m| {
            json!({
                "machine_id": m.machine_id,
                "ip_address": m.ip_address,
                "version": m.version,
                "scenarios": m.scenarios,
                "is_validated": m.is_validated,
                "created_at": rfc3339(m.created_at),
                "last_push": time_or_null(m.last_push),
                "last_heartbeat": time_or_null(m.last_heartbeat),
            })
        })
        .collect();
    json(StatusCode::OK, &v)
}

#[derive(Deserialize)]
struct AddMachine {
    machine_id: String,
    #[serde(default)]
    password: Option<String>,
}

async fn add_machine(State(state): State<ApiState>, body: axum::body::Body) -> Response {
    let body = match read_body(body, BODY_LIMIT).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let a: AddMachine = match parse_json(&body) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let password = match a.password {
        Some(p) => p,
        None => match crate::store::auth::generate_password() {
            Ok(p) => p,
            Err(e) => return auth_error(e),
        },
    };
    let auth = state.auth.clone();
    let (id, pw) = (a.machine_id.clone(), password.clone());
    let r = tokio::task::spawn_blocking(move || auth.add_machine(&id, &pw, "", true)).await;
    match r {
        Ok(Ok(())) => {
            tracing::info!(machine = %a.machine_id, "machine added");
            json(
                StatusCode::CREATED,
                &json!({ "machine_id": a.machine_id, "password": password }),
            )
        }
        Ok(Err(e)) => auth_error(e),
        Err(e) => message(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn validate_machine(State(state): State<ApiState>, Path(id): Path<String>) -> Response {
    match state.auth.validate_machine(&id) {
        Ok(()) => json(StatusCode::OK, &json!({ "validated": id })),
        Err(e) => auth_error(e),
    }
}

async fn delete_machine(State(state): State<ApiState>, Path(id): Path<String>) -> Response {
    match state.auth.delete_machine(&id) {
        Ok(()) => json(StatusCode::OK, &json!({ "deleted": id })),
        Err(e) => auth_error(e),
    }
}
