//! Alerts: agents and cscli push them (`POST /v1/alerts`), cscli lists and inspects them.
//! Alerts without decisions go through the profiles, like CrowdSec's `CreateAlert`.

use super::bouncer::peer_of;
use super::decisions::{Where, nb_deleted};
use super::machine::MachineAuth;
use super::wire::{go_duration, parse_rfc3339, rfc3339};
use super::{ApiState, BODY_LIMIT, Params, json, message, parse_json, read_body};
use crate::store::{Millis, NewAlert, NewDecision, Target, canonical_scope, now_millis};
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

/// An alert as received, checked and normalised.
#[derive(Debug)]
pub struct Incoming {
    /// What the store keeps.
    pub alert: NewAlert,
    /// The decisions it carried (`None`: run the profiles).
    pub decisions: Option<Vec<NewDecision>>,
}

fn field<'a>(o: &'a Map<String, Value>, k: &str) -> Result<&'a Value, String> {
    match o.get(k) {
        Some(Value::Null) | None => Err(format!("{k} in body is required")),
        Some(v) => Ok(v),
    }
}

fn str_field<'a>(o: &'a Map<String, Value>, k: &str) -> Result<&'a str, String> {
    field(o, k)?
        .as_str()
        .ok_or_else(|| format!("{k} in body must be of type string"))
}

fn time_field(o: &Map<String, Value>, k: &str) -> Result<Millis, String> {
    let s = str_field(o, k)?;
    parse_rfc3339(s).ok_or_else(|| format!("{k} in body must be an RFC 3339 time, got '{s}'"))
}

/// Checks and normalises one alert of a `POST /v1/alerts` body (the error is a 422
/// message). `until = stop_at + duration` for the decisions it carries.
pub fn parse_alert(v: &Value, machine_id: &str) -> Result<Incoming, String> {
    let o = v.as_object().ok_or("each alert must be a JSON object")?;
    let scenario = str_field(o, "scenario")?.to_owned();
    let events_count = field(o, "events_count")?
        .as_i64()
        .ok_or("events_count in body must be of type integer")?;
    let start_at = time_field(o, "start_at")?;
    let stop_at = time_field(o, "stop_at")?;
    let message = o
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let source = field(o, "source")?
        .as_object()
        .ok_or("source in body must be an object")?;
    let scope = canonical_scope(str_field(source, "scope").map_err(|e| format!("source.{e}"))?)
        .into_owned();
    let value = match source.get("value").and_then(Value::as_str) {
        Some(v) => v.to_owned(),
        None => source
            .get("ip")
            .or_else(|| source.get("range"))
            .and_then(Value::as_str)
            .ok_or("source.value in body is required")?
            .to_owned(),
    };
    if matches!(scope.as_str(), "Ip" | "Range") {
        Target::parse(&scope, &value).map_err(|e| format!("source: {e}"))?;
    }
    let simulated = o.get("simulated").and_then(Value::as_bool).unwrap_or(false);
    let remediation = o
        .get("remediation")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let decisions = match o.get("decisions") {
        Some(Value::Array(ds)) if !ds.is_empty() => {
            let mut out = Vec::with_capacity(ds.len());
            for (i, d) in ds.iter().enumerate() {
                out.push(
                    parse_decision(d, &scenario, stop_at, simulated)
                        .map_err(|e| format!("decisions[{i}]: {e}"))?,
                );
            }
            Some(out)
        }
        Some(Value::Array(_)) | Some(Value::Null) | None => None,
        Some(_) => return Err("decisions in body must be an array".into()),
    };
    let mut payload = o.clone();
    for k in ["decisions", "id", "uuid", "machine_id", "created_at"] {
        payload.remove(k);
    }
    if let Some(Value::Object(s)) = payload.get_mut("source") {
        s.insert("scope".into(), Value::String(scope.clone()));
        s.insert("value".into(), Value::String(value.clone()));
    }
    Ok(Incoming {
        alert: NewAlert {
            machine_id: machine_id.to_owned(),
            scenario,
            message,
            events_count,
            start_at,
            stop_at,
            source_scope: scope,
            source_value: value,
            remediation,
            simulated,
            payload: Value::Object(payload),
        },
        decisions,
    })
}

fn parse_decision(
    v: &Value,
    alert_scenario: &str,
    stop_at: Millis,
    alert_simulated: bool,
) -> Result<NewDecision, String> {
    let o = v.as_object().ok_or("a decision must be a JSON object")?;
    let duration = str_field(o, "duration")?;
    let d = crate::parse::timefmt::parse_go_duration(duration.trim())
        .ok_or_else(|| format!("duration '{duration}' is not a duration like 4h or 7d"))?;
    let scope = str_field(o, "scope")?;
    let value = str_field(o, "value")?;
    let target = Target::parse(scope, value)?;
    let decision_type = str_field(o, "type")?.to_owned();
    let origin = o
        .get("origin")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("crowdsec")
        .to_owned();
    let scenario = o
        .get("scenario")
        .and_then(Value::as_str)
        .unwrap_or(alert_scenario)
        .to_owned();
    let simulated = o.get("simulated").and_then(Value::as_bool).unwrap_or(false) || alert_simulated;
    Ok(NewDecision {
        origin,
        scenario,
        decision_type,
        target,
        until: stop_at.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2)),
        simulated,
    })
}

/// Runs the profiles over an alert without decisions; `None` when its source is
/// whitelisted (CrowdSec drops such alerts).
fn profile_decisions(state: &ApiState, a: &NewAlert) -> Option<Vec<NewDecision>> {
    let scope = match a.source_scope.as_str() {
        "Ip" => crate::alert::Scope::Ip,
        "Range" => crate::alert::Scope::Range,
        _ => return Some(Vec::new()),
    };
    let target = Target::parse(&a.source_scope, &a.source_value).ok()?;
    let rs = state.ruleset();
    let whitelisted = match &target {
        Target::Ip(ip) => rs.whitelist.covers(ip).is_some(),
        _ => false,
    } || state.store.protected_reason(&target).is_some();
    if whitelisted {
        tracing::info!(value = %a.source_value, scenario = %a.scenario, "alert from a whitelisted source dropped");
        return None;
    }
    let ts =
        |ms: Millis| jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let labels = a
        .payload
        .get("labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                    (std::sync::Arc::from(k.as_str()), v)
                })
                .collect()
        })
        .unwrap_or_default();
    let alert = crate::alert::Alert {
        scenario: std::sync::Arc::from(a.scenario.as_str()),
        scope,
        value: target.value(),
        events_count: u64::try_from(a.events_count).unwrap_or(0),
        start_at: ts(a.start_at),
        stop_at: ts(a.stop_at),
        remediation: a.remediation,
        events: Default::default(),
        labels,
        custom_message: Some(a.message.clone()),
    };
    let mut history = crate::decide::History::default();
    {
        let index = state.store.read();
        for d in index.with_value(&alert.value) {
            history.record(&alert.value, ts(d.created_at));
        }
    }
    let made = crate::decide::decide(&rs, &alert, &mut history, jiff::Timestamp::now());
    let mut out = Vec::with_capacity(made.len());
    for d in made {
        let Ok(target) = Target::parse(d.scope.as_str(), &d.value) else {
            continue;
        };
        out.push(NewDecision {
            origin: "crowdsec".into(),
            scenario: d.scenario.to_string(),
            decision_type: d.decision_type,
            target,
            until: a
                .stop_at
                .saturating_add(i64::try_from(d.duration.as_millis()).unwrap_or(i64::MAX / 2)),
            simulated: d.simulated || a.simulated,
        });
    }
    Some(out)
}

/// Stores checked alerts: their own decisions, or the profiles'. Returns the ids of the
/// alerts stored (whitelisted sources are dropped) and the decisions refused.
pub fn store_alerts(
    state: &ApiState,
    incoming: Vec<Incoming>,
) -> (Vec<i64>, Vec<(String, String)>) {
    let mut ids = Vec::with_capacity(incoming.len());
    let mut refused = Vec::new();
    for inc in incoming {
        let decisions = match inc.decisions {
            Some(d) => d,
            None => match profile_decisions(state, &inc.alert) {
                Some(d) => d,
                None => continue,
            },
        };
        let added = state.store.add(Some(inc.alert), decisions);
        ids.push(added.alert_id);
        refused.extend(added.refused);
    }
    (ids, refused)
}

/// POST /v1/alerts: a JSON array of alerts; 201 with their ids as strings.
pub async fn create(
    State(state): State<ApiState>,
    m: MachineAuth,
    body: axum::body::Body,
) -> Response {
    let body = match read_body(body, BODY_LIMIT).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let v: Value = match parse_json(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Value::Array(items) = v else {
        return message(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON array of alerts",
        );
    };
    let mut incoming = Vec::with_capacity(items.len());
    for (i, a) in items.iter().enumerate() {
        match parse_alert(a, &m.machine_id) {
            Ok(x) => incoming.push(x),
            Err(e) => {
                return message(StatusCode::UNPROCESSABLE_ENTITY, format!("alert {i}: {e}"));
            }
        }
    }
    let now = now_millis();
    let _ = state
        .auth
        .update_machine(&m.machine_id, |x| x.last_push = Some(now));
    let (ids, _) = store_alerts(&state, incoming);
    let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
    json(StatusCode::CREATED, &ids)
}

/// What `GET /v1/alerts` filters on.
#[derive(Debug, Default)]
pub struct AlertQuery {
    scope: Option<String>,
    value: Option<String>,
    scenario: Option<String>,
    place: Option<Where>,
    since: Option<Millis>,
    until: Option<Millis>,
    decision_type: Option<String>,
    origin: Option<String>,
    include_capi: bool,
    has_active_decision: Option<bool>,
    simulated: Option<bool>,
    limit: Option<usize>,
    ascending: bool,
    id: Option<i64>,
}

const ALERT_KEYS: &[&str] = &[
    "scope",
    "value",
    "scenario",
    "ip",
    "range",
    "contains",
    "since",
    "until",
    "created_before",
    "decision_type",
    "origin",
    "include_capi",
    "has_active_decision",
    "kind",
    "limit",
    "sort",
    "simulated",
    "with_decisions",
];

impl AlertQuery {
    /// Reads CrowdSec's alert filters; an unknown one is an error, as in CrowdSec.
    pub fn from_params(params: &Params) -> Result<AlertQuery, String> {
        let now = now_millis();
        let ago = |k: &str, v: &str| -> Result<Millis, String> {
            let d = crate::parse::timefmt::parse_go_duration(v.trim())
                .ok_or_else(|| format!("{k}: '{v}' is not a duration like 4h or 7d"))?;
            Ok(now - i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2))
        };
        let mut q = AlertQuery {
            include_capi: true,
            limit: Some(100),
            ..AlertQuery::default()
        };
        q.place = Where::from_params(params)?;
        for (k, v) in &params.0 {
            match k.as_str() {
                "scope" => q.scope = Some(canonical_scope(v).into_owned()),
                "value" => q.value = Some(v.clone()),
                "scenario" => q.scenario = Some(v.clone()),
                "since" => q.since = Some(ago(k, v)?),
                "until" | "created_before" => q.until = Some(ago(k, v)?),
                "decision_type" => q.decision_type = Some(v.clone()),
                "origin" => q.origin = Some(v.clone()),
                "include_capi" => q.include_capi = v != "false",
                "has_active_decision" => q.has_active_decision = Some(v == "true"),
                "simulated" => q.simulated = (v == "false").then_some(false),
                "limit" => {
                    let n: usize = v
                        .parse()
                        .map_err(|_| format!("limit: '{v}' is not a number"))?;
                    q.limit = (n > 0).then_some(n);
                }
                "sort" => q.ascending = v.eq_ignore_ascii_case("asc"),
                k if ALERT_KEYS.contains(&k) => {}
                _ => {
                    return Err(format!(
                        "Filter parameter '{k}' is unknown (={v}): invalid filter"
                    ));
                }
            }
        }
        Ok(q)
    }

    /// One alert by id.
    pub fn by_id(id: i64) -> AlertQuery {
        AlertQuery {
            include_capi: true,
            id: Some(id),
            limit: Some(1),
            ..AlertQuery::default()
        }
    }
}

struct AlertRow {
    id: i64,
    uuid: String,
    created_at: Millis,
    machine_id: String,
    scenario: String,
    message: String,
    events_count: i64,
    start_at: Millis,
    stop_at: Millis,
    source_scope: String,
    source_value: String,
    remediation: bool,
    simulated: bool,
    payload: String,
}

/// A stored decision, with its current end from the index.
struct DecisionOut {
    id: i64,
    uuid: Option<String>,
    until: Millis,
    origin: String,
    scenario: String,
    decision_type: String,
    scope: String,
    value: String,
    simulated: bool,
}

fn is_capi(origin: &str) -> bool {
    origin == "CAPI" || origin == "lists" || origin.starts_with("lists:")
}

/// Runs an alert query on a read-only connection (blocking: call off async threads).
/// Alerts come CrowdSec-shaped, with their decisions.
pub fn query_alerts(state: &ApiState, q: &AlertQuery) -> Result<Vec<Value>, String> {
    state.store.flush();
    let conn = state.store.reader().map_err(|e| format!("database: {e}"))?;
    let now = now_millis();
    let order = if q.ascending { "ASC" } else { "DESC" };
    let sql = format!(
        "SELECT id, uuid, created_at, machine_id, scenario, message, events_count, start_at, stop_at,
                source_scope, source_value, remediation, simulated, payload
         FROM alerts WHERE (?1 IS NULL OR id = ?1) ORDER BY id {order}"
    );
    let mut stmt = conn.prepare(&sql).map_err(|e| e.to_string())?;
    let mut dstmt = conn
        .prepare(
            "SELECT d.id, coalesce(e.until, d.until), d.origin, d.scenario, d.type, d.scope,
                    d.value, d.simulated, d.created_at
             FROM decisions d LEFT JOIN decision_ends e ON e.id = d.id
             WHERE d.alert_id = ?1 ORDER BY d.id",
        )
        .map_err(|e| e.to_string())?;
    let mut rows = stmt.query([q.id]).map_err(|e| e.to_string())?;
    // The same UUIDs as the stream's (derived from id and creation time).
    let uuids = super::decisions::decision_uuids(&state.store);
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(|e| e.to_string())? {
        let row = (|| -> rusqlite::Result<AlertRow> {
            Ok(AlertRow {
                id: r.get(0)?,
                uuid: r.get(1)?,
                created_at: r.get(2)?,
                machine_id: r.get(3)?,
                scenario: r.get(4)?,
                message: r.get(5)?,
                events_count: r.get(6)?,
                start_at: r.get(7)?,
                stop_at: r.get(8)?,
                source_scope: r.get(9)?,
                source_value: r.get(10)?,
                remediation: r.get::<_, i64>(11)? != 0,
                simulated: r.get::<_, i64>(12)? != 0,
                payload: r.get(13)?,
            })
        })()
        .map_err(|e| e.to_string())?;
        if q.scope.as_ref().is_some_and(|s| *s != row.source_scope)
            || q.value.as_ref().is_some_and(|v| *v != row.source_value)
            || q.scenario.as_ref().is_some_and(|s| *s != row.scenario)
            || q.since.is_some_and(|t| row.start_at < t)
            || q.until.is_some_and(|t| row.start_at > t)
            || q.simulated.is_some_and(|s| s != row.simulated)
        {
            continue;
        }
        if let Some(w) = q.place {
            let ok =
                Target::parse(&row.source_scope, &row.source_value).is_ok_and(|t| w.accepts(&t));
            if !ok {
                continue;
            }
        }
        let decisions = {
            let index = state.store.read();
            let mut ds = Vec::new();
            let mut drows = dstmt.query([row.id]).map_err(|e| e.to_string())?;
            while let Some(d) = drows.next().map_err(|e| e.to_string())? {
                let id: i64 = d.get(0).map_err(|e| e.to_string())?;
                let until = index
                    .get(id)
                    .map_or_else(|| d.get(1).unwrap_or(0), |x| x.until);
                let get = |i| d.get::<_, String>(i).unwrap_or_default();
                let created_at: Millis = d.get(8).map_err(|e| e.to_string())?;
                ds.push(DecisionOut {
                    id,
                    uuid: uuids.map(|u| u.of(id, created_at).to_string()),
                    until,
                    origin: get(2),
                    scenario: get(3),
                    decision_type: get(4),
                    scope: get(5),
                    value: get(6),
                    simulated: d.get::<_, i64>(7).unwrap_or(0) != 0,
                });
            }
            ds
        };
        if !q.include_capi && !decisions.is_empty() && decisions.iter().all(|d| is_capi(&d.origin))
        {
            continue;
        }
        if q.decision_type
            .as_ref()
            .is_some_and(|t| !decisions.iter().any(|d| d.decision_type == *t))
            || q.origin
                .as_ref()
                .is_some_and(|o| !decisions.iter().any(|d| d.origin == *o))
        {
            continue;
        }
        if let Some(want) = q.has_active_decision
            && decisions.iter().any(|d| d.until > now) != want
        {
            continue;
        }
        out.push(alert_json(row, decisions, now));
        if q.limit.is_some_and(|l| out.len() >= l) {
            break;
        }
    }
    Ok(out)
}

fn alert_json(row: AlertRow, decisions: Vec<DecisionOut>, now: Millis) -> Value {
    let mut o = match serde_json::from_str::<Value>(&row.payload) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let mut source = match o.remove("source") {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    source.insert("scope".into(), row.source_scope.clone().into());
    source.insert("value".into(), row.source_value.clone().into());
    if row.source_scope == "Ip" && !source.contains_key("ip") {
        source.insert("ip".into(), row.source_value.clone().into());
    }
    for k in ["cn", "as_name", "as_number", "range"] {
        source.entry(k).or_insert_with(|| "".into());
    }
    let ds: Vec<Value> = decisions
        .into_iter()
        .map(|d| {
            // Go's field order; `uuid` is omitted when empty, as Go's `omitempty` does.
            let mut m = Map::new();
            m.insert("duration".into(), go_duration(d.until - now).into());
            m.insert("id".into(), d.id.into());
            m.insert("origin".into(), d.origin.into());
            m.insert("scenario".into(), d.scenario.into());
            m.insert("scope".into(), d.scope.into());
            m.insert("simulated".into(), d.simulated.into());
            m.insert("type".into(), d.decision_type.into());
            m.insert("until".into(), rfc3339(d.until).into());
            if let Some(u) = d.uuid {
                m.insert("uuid".into(), u.into());
            }
            m.insert("value".into(), d.value.into());
            Value::Object(m)
        })
        .collect();
    let mut out = Map::new();
    out.insert("id".into(), row.id.into());
    out.insert("uuid".into(), row.uuid.into());
    out.insert("machine_id".into(), row.machine_id.into());
    out.insert("created_at".into(), rfc3339(row.created_at).into());
    out.insert("scenario".into(), row.scenario.into());
    out.insert("message".into(), row.message.into());
    out.insert("events_count".into(), row.events_count.into());
    out.insert("start_at".into(), rfc3339(row.start_at).into());
    out.insert("stop_at".into(), rfc3339(row.stop_at).into());
    out.insert("remediation".into(), row.remediation.into());
    out.insert("simulated".into(), row.simulated.into());
    out.insert("source".into(), Value::Object(source));
    out.insert("decisions".into(), Value::Array(ds));
    for (k, v) in [
        ("capacity", Value::from(0)),
        ("leakspeed", Value::from("0")),
        ("scenario_hash", Value::from("")),
        ("scenario_version", Value::from("")),
        ("events", Value::Array(Vec::new())),
        ("kind", Value::from("")),
    ] {
        out.insert(k.into(), o.remove(k).filter(|v| !v.is_null()).unwrap_or(v));
    }
    for (k, v) in o {
        out.entry(k).or_insert(v);
    }
    Value::Object(out)
}

async fn run_query(state: ApiState, q: AlertQuery) -> Result<Vec<Value>, Response> {
    tokio::task::spawn_blocking(move || query_alerts(&state, &q))
        .await
        .map_err(|e| message(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| message(StatusCode::INTERNAL_SERVER_ERROR, e))
}

/// GET|HEAD /v1/alerts.
pub async fn list(
    State(state): State<ApiState>,
    method: Method,
    _m: MachineAuth,
    params: Params,
) -> Response {
    let q = match AlertQuery::from_params(&params) {
        Ok(q) => q,
        Err(e) => return message(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    match run_query(state, q).await {
        Ok(_) if method == Method::HEAD => StatusCode::OK.into_response(),
        Ok(v) => json(StatusCode::OK, &v),
        Err(r) => r,
    }
}

fn parse_id(id: &str) -> Result<i64, Response> {
    id.parse::<i64>()
        .map_err(|_| message(StatusCode::BAD_REQUEST, format!("invalid alert id '{id}'")))
}

/// GET|HEAD /v1/alerts/{id}.
pub async fn get_one(
    State(state): State<ApiState>,
    method: Method,
    _m: MachineAuth,
    Path(id): Path<String>,
) -> Response {
    let id = match parse_id(&id) {
        Ok(i) => i,
        Err(r) => return r,
    };
    match run_query(state, AlertQuery::by_id(id)).await {
        Ok(v) if v.is_empty() => message(StatusCode::NOT_FOUND, "object not found"),
        Ok(_) if method == Method::HEAD => StatusCode::OK.into_response(),
        Ok(mut v) => json(StatusCode::OK, &v.remove(0)),
        Err(r) => r,
    }
}

fn trusted(req_peer: super::Peer) -> Result<(), Response> {
    if req_peer.is_local() {
        Ok(())
    } else {
        Err(super::bouncer::forbidden())
    }
}

async fn delete_matching(state: ApiState, q: AlertQuery) -> Response {
    let alerts = match run_query(state.clone(), q).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let ids: Vec<i64> = alerts
        .iter()
        .filter_map(|a| a.get("id").and_then(Value::as_i64))
        .collect();
    let n = state.store.delete_alerts(&ids);
    nb_deleted(n)
}

/// DELETE /v1/alerts: loopback or the Unix socket only; expires the alerts' decisions and
/// removes the alerts.
pub async fn delete_many(
    State(state): State<ApiState>,
    _m: MachineAuth,
    req: axum::extract::Request,
) -> Response {
    let (parts, _) = req.into_parts();
    if let Err(r) = trusted(peer_of(&parts)) {
        return r;
    }
    let params = match <Params as axum::extract::FromRequestParts<()>>::from_request_parts(
        &mut parts.clone(),
        &(),
    )
    .await
    {
        Ok(p) => p,
        Err(r) => return r,
    };
    let mut q = match AlertQuery::from_params(&params) {
        Ok(q) => q,
        Err(e) => return message(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    q.limit = None;
    delete_matching(state, q).await
}

/// DELETE /v1/alerts/{id}: loopback or the Unix socket only.
pub async fn delete_one(
    State(state): State<ApiState>,
    _m: MachineAuth,
    Path(id): Path<String>,
    req: axum::extract::Request,
) -> Response {
    let (parts, _) = req.into_parts();
    if let Err(r) = trusted(peer_of(&parts)) {
        return r;
    }
    let id = match parse_id(&id) {
        Ok(i) => i,
        Err(r) => return r,
    };
    delete_matching(state, AlertQuery::by_id(id)).await
}
