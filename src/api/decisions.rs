//! Bouncer routes (`GET /v1/decisions`, `GET /v1/decisions/stream`) and decision deletion
//! (`DELETE /v1/decisions[/id]`), answered from the in-memory index.

use super::bouncer::BouncerAuth;
use super::machine::MachineAuth;
use super::wire::{DecisionUuids, push_decision};
use super::{ApiState, Params, json_bytes, message};
use crate::store::{
    Decision, DecisionIndex, Interner, Millis, Store, Target, canonical_scope, now_millis,
};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use ipnet::IpNet;
use std::net::IpAddr;

/// Decisions examined per lock hold while streaming (the index is released between pages,
/// so writers are never held up for long and memory stays bounded).
const PAGE_SCAN: usize = 8192;

/// Where the decision-UUID namespace is kept: a row of the database's key-value `cursors`
/// table (next to the acquisition cursors `file:...` and `journald:...`), so it lives and
/// moves with the database, without a schema change.
const UUID_NAMESPACE_KEY: &str = "lapi:decision-uuid-namespace";

/// The decision UUIDs of `store`'s database ([`DecisionUuids`]): its namespace is read once
/// per process and database, and created (random) on first use. `None`, with a warning,
/// when the database cannot be read: the decisions are then served without `uuid` (Go's
/// `omitempty`) rather than with UUIDs from a namespace that would not last.
pub(crate) fn decision_uuids(store: &Store) -> Option<DecisionUuids> {
    use std::sync::{Mutex, PoisonError};
    // Keyed by database file: a process serves one database, tests serve many.
    static KNOWN: Mutex<Vec<(std::path::PathBuf, DecisionUuids)>> = Mutex::new(Vec::new());
    // Held while creating, so two first requests cannot store two different namespaces.
    let mut known = KNOWN.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, u)) = known.iter().find(|(p, _)| p == store.path()) {
        return Some(*u);
    }
    let stored = store
        .reader()
        .and_then(|conn| crate::store::db::read_cursor(&conn, UUID_NAMESPACE_KEY));
    // A stored value that is no UUID (edited by hand) is replaced like a missing one.
    let namespace = match stored.map(|v| v.and_then(|v| uuid::Uuid::parse_str(&v).ok())) {
        Ok(Some(u)) => *u.as_bytes(),
        Ok(None) => {
            let fresh = uuid::Uuid::new_v4();
            store.save_cursor(UUID_NAMESPACE_KEY, fresh.to_string());
            // On disk before any UUID derived from it is served.
            store.flush();
            *fresh.as_bytes()
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the decision UUID namespace; serving decisions without uuid");
            return None;
        }
    };
    let uuids = DecisionUuids::new(namespace);
    known.push((store.path().to_owned(), uuids));
    Some(uuids)
}

/// [`decision_uuids`] on a blocking thread: the first call reads (and may write) the
/// database.
async fn uuids_off_thread(store: &Store) -> Option<DecisionUuids> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || decision_uuids(&store))
        .await
        .ok()
        .flatten()
}

/// The filters bouncers pass (`scopes`, `origins`, `scenarios_containing`, ...).
#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// Canonical scopes; `None`: any.
    pub scopes: Option<Vec<String>>,
    /// Exact origins.
    pub origins: Option<Vec<String>>,
    /// Lower-cased words, any of which the scenario must contain.
    pub scenarios_containing: Vec<String>,
    /// Lower-cased words none of which the scenario may contain.
    pub scenarios_not_containing: Vec<String>,
    /// Exact type.
    pub decision_type: Option<String>,
    /// Exact value.
    pub value: Option<String>,
    /// Exact scenario (deletion).
    pub scenario: Option<String>,
    /// Exclude simulated decisions (the default).
    pub no_simulated: bool,
}

fn csv(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Filter {
    /// Reads the filters shared by every decision route from `params`.
    pub fn from_params(params: &Params) -> Filter {
        let mut f = Filter {
            no_simulated: true,
            ..Filter::default()
        };
        for (k, v) in &params.0 {
            match k.as_str() {
                "scope" | "scopes" => {
                    f.scopes = Some(
                        csv(v)
                            .iter()
                            .map(|s| canonical_scope(s).into_owned())
                            .collect(),
                    )
                }
                "origins" | "origin" => f.origins = Some(csv(v)),
                "scenarios_containing" => {
                    f.scenarios_containing = csv(v).iter().map(|s| s.to_lowercase()).collect()
                }
                "scenarios_not_containing" => {
                    f.scenarios_not_containing = csv(v).iter().map(|s| s.to_lowercase()).collect()
                }
                "type" => f.decision_type = Some(v.clone()),
                "value" => f.value = Some(v.clone()),
                "scenario" => f.scenario = Some(v.clone()),
                "simulated" => f.no_simulated = v == "false",
                _ => {}
            }
        }
        f
    }

    /// Whether `d` passes every filter but the address ones.
    pub fn matches(&self, d: &Decision, strings: &Interner) -> bool {
        if self.no_simulated && d.simulated {
            return false;
        }
        if let Some(s) = &self.scopes
            && !s.iter().any(|s| s == d.target.scope())
        {
            return false;
        }
        if let Some(o) = &self.origins
            && !o.iter().any(|o| **o == **strings.get(d.origin))
        {
            return false;
        }
        if let Some(t) = &self.decision_type
            && **t != **strings.get(d.decision_type)
        {
            return false;
        }
        if let Some(s) = &self.scenario
            && **s != **strings.get(d.scenario)
        {
            return false;
        }
        if !self.scenarios_containing.is_empty() || !self.scenarios_not_containing.is_empty() {
            let sc = strings.get(d.scenario).to_lowercase();
            if !self.scenarios_containing.is_empty()
                && !self
                    .scenarios_containing
                    .iter()
                    .any(|w| sc.contains(w.as_str()))
            {
                return false;
            }
            if self
                .scenarios_not_containing
                .iter()
                .any(|w| sc.contains(w.as_str()))
            {
                return false;
            }
        }
        if let Some(v) = &self.value
            && d.target.value() != *v
        {
            return false;
        }
        true
    }
}

/// An `ip=`/`range=` query, with `contains`.
#[derive(Debug, Clone, Copy)]
pub enum Where {
    /// Decisions covering (`contains=true`) or inside the address.
    Ip(IpAddr, bool),
    /// Decisions covering or inside the range.
    Range(IpNet, bool),
}

impl Where {
    /// Reads `ip`, `range` and `contains`; the error is CrowdSec's message.
    pub fn from_params(params: &Params) -> Result<Option<Where>, String> {
        let contains = params.get("contains").is_none_or(|v| v != "false");
        if let Some(ip) = params.get("ip") {
            let ip = crate::parse::normalize_ip(ip).ok_or_else(|| {
                format!(
                    "unable to convert '{ip}' to int: invalid address: invalid ip address / range"
                )
            })?;
            return Ok(Some(Where::Ip(ip, contains)));
        }
        if let Some(r) = params.get("range") {
            let net = match r.parse::<IpNet>() {
                Ok(n) => n.trunc(),
                Err(_) => match crate::parse::normalize_ip(r) {
                    Some(ip) => IpNet::from(ip),
                    None => {
                        return Err(format!(
                            "unable to convert '{r}' to int: invalid address: invalid ip address / range"
                        ));
                    }
                },
            };
            return Ok(Some(Where::Range(net, contains)));
        }
        Ok(None)
    }

    /// Whether `target` satisfies it.
    pub fn accepts(&self, target: &Target) -> bool {
        let Some(n) = target.net() else {
            return false;
        };
        match *self {
            Where::Ip(ip, true) => n.contains(&ip),
            Where::Ip(ip, false) => IpNet::from(ip).contains(&n),
            Where::Range(r, true) => n.contains(&r),
            Where::Range(r, false) => r.contains(&n),
        }
    }

    /// Candidate decisions from the index.
    pub fn candidates<'a>(&self, index: &'a DecisionIndex) -> Vec<&'a Decision> {
        match *self {
            Where::Ip(ip, true) => index.covering_ip(ip),
            Where::Ip(ip, false) => index.inside_range(IpNet::from(ip)),
            Where::Range(r, true) => index.covering_range(r),
            Where::Range(r, false) => index.inside_range(r),
        }
    }
}

/// Whether `d` is the longest decision on its (scope, type, value): CrowdSec's
/// `longestDecisionForScopeTypeValue`, ties broken by the highest id.
fn is_longest(d: &Decision, index: &DecisionIndex) -> bool {
    index
        .on_target_iter(&d.target)
        .filter(|o| o.decision_type == d.decision_type)
        .all(|o| (o.until, o.id) <= (d.until, d.id))
}

/// GET|HEAD /v1/decisions: every matching active decision (no de-duplication), `null`
/// when none.
pub async fn get(
    State(state): State<ApiState>,
    method: Method,
    bouncer: BouncerAuth,
    params: Params,
) -> Response {
    let filter = Filter::from_params(&params);
    let place = match Where::from_params(&params) {
        Ok(w) => w,
        Err(e) => return message(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    let num = |k: &str| params.get(k).and_then(|v| v.parse::<i64>().ok());
    let (limit, offset, id_gt) = (num("limit"), num("offset").unwrap_or(0), num("id_gt"));
    let now = now_millis();
    let mut out = Vec::with_capacity(256);
    let mut n = 0usize;
    {
        let index = state.store.read();
        let mut pick: Vec<&Decision> = match (place, &filter.value) {
            (Some(w), _) => w.candidates(&index),
            (None, Some(v)) => index.with_value(v),
            (None, None) => index.active(now).collect(),
        };
        pick.retain(|d| {
            d.is_active(now) && id_gt.is_none_or(|g| d.id > g) && filter.matches(d, &index.strings)
        });
        pick.sort_unstable_by_key(|d| d.id);
        pick.dedup_by_key(|d| d.id);
        let skip = usize::try_from(offset.max(0)).unwrap_or(0);
        let take = limit
            .filter(|l| *l > 0)
            .and_then(|l| usize::try_from(l).ok())
            .unwrap_or(usize::MAX);
        if method != Method::HEAD {
            out.push(b'[');
            for d in pick.iter().skip(skip).take(take) {
                if n > 0 {
                    out.push(b',');
                }
                push_decision(&mut out, d, &index, now, None);
                n += 1;
            }
            out.push(b']');
        }
    }
    if method == Method::HEAD {
        return StatusCode::OK.into_response();
    }
    state.auth.touch_pull(&bouncer.name, now);
    if n == 0 {
        return json_bytes(b"null".to_vec());
    }
    json_bytes(out)
}

/// HEAD /v1/decisions/stream: 200 at once (the key was checked).
pub async fn stream_head(_: BouncerAuth) -> Response {
    StatusCode::OK.into_response()
}

enum Phase {
    Head,
    New { after: i64 },
    Middle,
    Deleted { pos: usize },
    DeletedScan { after: i64 },
    Tail,
    Done,
}

struct StreamJob {
    state: ApiState,
    bouncer: String,
    filter: Filter,
    uuids: Option<DecisionUuids>,
    now: Millis,
    /// New decisions: ids in (from, upto].
    new_upto: i64,
    /// Delta deletions: ids of decisions that ended since the last pull.
    deleted: Option<Vec<i64>>,
    phase: Phase,
    first_new: bool,
    first_deleted: bool,
}

impl StreamJob {
    fn next_chunk(&mut self) -> Option<Bytes> {
        let mut out = Vec::with_capacity(64 * 1024);
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Head => {
                out.extend_from_slice(b"{\"new\": [");
                self.phase = Phase::New {
                    after: self.new_from(),
                };
            }
            Phase::New { after } => {
                let store = self.state.store.clone();
                let index = store.read();
                let mut last = after;
                let mut scanned = 0;
                for d in index.after_id(after) {
                    if d.id > self.new_upto {
                        last = self.new_upto;
                        break;
                    }
                    last = d.id;
                    scanned += 1;
                    if d.is_active(self.now)
                        && self.filter.matches(d, &index.strings)
                        && is_longest(d, &index)
                    {
                        if !self.first_new {
                            out.push(b',');
                        }
                        self.first_new = false;
                        push_decision(&mut out, d, &index, self.now, self.uuids.as_ref());
                    }
                    if scanned >= PAGE_SCAN {
                        break;
                    }
                }
                self.phase = if scanned < PAGE_SCAN || last >= self.new_upto {
                    Phase::Middle
                } else {
                    Phase::New { after: last }
                };
            }
            Phase::Middle => {
                out.extend_from_slice(b"], \"deleted\": [");
                self.phase = if self.deleted.is_some() {
                    Phase::Deleted { pos: 0 }
                } else {
                    Phase::DeletedScan { after: 0 }
                };
            }
            Phase::Deleted { pos } => {
                let store = self.state.store.clone();
                let index = store.read();
                let ids = self.deleted.take().unwrap_or_default();
                let end = (pos + PAGE_SCAN).min(ids.len());
                for id in &ids[pos.min(end)..end] {
                    if let Some(d) = index.get(*id) {
                        self.push_deleted(&mut out, d, &index);
                    }
                }
                let len = ids.len();
                self.deleted = Some(ids);
                self.phase = if end >= len {
                    Phase::Tail
                } else {
                    Phase::Deleted { pos: end }
                };
            }
            Phase::DeletedScan { after } => {
                let store = self.state.store.clone();
                let index = store.read();
                let mut last = after;
                let mut scanned = 0;
                for d in index.after_id(after) {
                    last = d.id;
                    scanned += 1;
                    self.push_deleted(&mut out, d, &index);
                    if scanned >= PAGE_SCAN {
                        break;
                    }
                }
                self.phase = if scanned < PAGE_SCAN {
                    Phase::Tail
                } else {
                    Phase::DeletedScan { after: last }
                };
            }
            Phase::Tail => {
                out.extend_from_slice(b"]}");
                self.phase = Phase::Done;
            }
            Phase::Done => {
                // The whole body was handed to the connection: move the cursor.
                self.state
                    .auth
                    .set_pulled(&self.bouncer, self.now, self.new_upto);
                return None;
            }
        }
        Some(Bytes::from(out))
    }

    fn push_deleted(&mut self, out: &mut Vec<u8>, d: &Decision, index: &DecisionIndex) {
        if !d.is_active(self.now) && self.filter.matches(d, &index.strings) && is_longest(d, index)
        {
            if !self.first_deleted {
                out.push(b',');
            }
            self.first_deleted = false;
            push_decision(out, d, index, self.now, self.uuids.as_ref());
        }
    }

    fn new_from(&self) -> i64 {
        match self.deleted {
            // Startup: everything.
            None => 0,
            Some(_) => self
                .state
                .auth
                .pull_cursor(&self.bouncer)
                .map_or(0, |(_, id)| id),
        }
    }
}

/// GET /v1/decisions/stream: `{"new": [...], "deleted": [...]}`, written page by page.
/// `startup=true` (or a bouncer that never pulled): every active decision, and every
/// retained expired one. Otherwise the delta since this bouncer's cursor: decisions created
/// since (by id, exact), and those that ended since its last pull (2 s overlap). The
/// cursor moves only once the whole body was produced.
pub async fn stream(
    State(state): State<ApiState>,
    bouncer: BouncerAuth,
    params: Params,
) -> Response {
    let mut filter = Filter::from_params(&params);
    if filter.scopes.is_none() {
        filter.scopes = Some(vec!["Ip".into(), "Range".into()]);
    }
    // The stream has no value/type/scenario filters.
    filter.value = None;
    filter.decision_type = None;
    filter.scenario = None;
    let startup = params.get("startup").is_some_and(|v| v == "true");
    let now = now_millis();
    let cursor = state.auth.pull_cursor(&bouncer.name);
    let (new_upto, deleted) = {
        let index = state.store.read();
        let upto = index.last_id();
        match cursor {
            Some((Some(last_pull), _)) if !startup => {
                let mut ids: Vec<i64> = index
                    .ending_between(last_pull - 2000, now)
                    .map(|d| d.id)
                    .collect();
                ids.sort_unstable();
                (upto, Some(ids))
            }
            _ => (upto, None),
        }
    };
    let uuids = uuids_off_thread(&state.store).await;
    let job = StreamJob {
        state,
        bouncer: bouncer.name,
        filter,
        uuids,
        now,
        new_upto,
        deleted,
        phase: Phase::Head,
        first_new: true,
        first_deleted: true,
    };
    let body = futures_util::stream::unfold(job, |mut job| async move {
        let chunk = job.next_chunk()?;
        Some((Ok::<_, std::convert::Infallible>(chunk), job))
    });
    let mut r = Response::new(Body::from_stream(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

/// The filters `DELETE /v1/decisions` accepts; any other is an error, as in CrowdSec.
const DELETE_KEYS: &[&str] = &[
    "contains", "scope", "scopes", "uuid", "origin", "value", "type", "ip", "range", "scenario",
];

/// DELETE /v1/decisions: expires (never erases) the matching active decisions.
/// `{"nbDeleted":"N"}`.
pub async fn delete_many(
    State(state): State<ApiState>,
    m: MachineAuth,
    params: Params,
) -> Response {
    if let Some((k, _)) = params
        .0
        .iter()
        .find(|(k, _)| !DELETE_KEYS.contains(&k.as_str()))
    {
        return message(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("'{k}' doesn't exist: invalid filter"),
        );
    }
    let mut filter = Filter::from_params(&params);
    filter.no_simulated = false;
    let place = match Where::from_params(&params) {
        Ok(w) => w,
        Err(e) => return message(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    // `uuid=A&uuid=B` (CrowdSec's `UUIDIn`); a value that is no UUID matches nothing.
    let wanted: Option<Vec<Option<uuid::Uuid>>> = {
        let v: Vec<_> = params
            .0
            .iter()
            .filter(|(k, _)| k == "uuid")
            .flat_map(|(_, v)| csv(v))
            .map(|v| uuid::Uuid::parse_str(&v).ok())
            .collect();
        (!v.is_empty() || params.get("uuid").is_some()).then_some(v)
    };
    let uuids = match &wanted {
        Some(_) => match uuids_off_thread(&state.store).await {
            Some(u) => Some(u),
            None => {
                return message(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "cannot read the decision UUID namespace",
                );
            }
        },
        None => None,
    };
    let ids = state.store.expire_where(|d, strings| {
        place.is_none_or(|w| w.accepts(&d.target))
            && filter.matches(d, strings)
            && match (&wanted, &uuids) {
                (Some(w), Some(u)) => w.contains(&Some(u.of(d.id, d.created_at))),
                _ => true,
            }
    });
    tracing::info!(machine = %m.machine_id, count = ids.len(), "decisions deleted");
    nb_deleted(ids.len())
}

pub(crate) fn nb_deleted(n: usize) -> Response {
    super::json(
        StatusCode::OK,
        &serde_json::json!({ "nbDeleted": n.to_string() }),
    )
}

/// DELETE /v1/decisions/{id}: `{"nbDeleted":"1"}`, 404 when no such active decision.
pub async fn delete_one(
    State(state): State<ApiState>,
    m: MachineAuth,
    Path(id): Path<String>,
) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return message(
            StatusCode::BAD_REQUEST,
            format!("invalid decision id '{id}'"),
        );
    };
    let ids = state.store.expire_where(|d, _| d.id == id);
    if ids.is_empty() {
        return message(
            StatusCode::NOT_FOUND,
            format!("decision with id '{id}' doesn't exist: object not found"),
        );
    }
    tracing::info!(machine = %m.machine_id, id, "decision deleted");
    nb_deleted(ids.len())
}
