//! Acting as an agent of another Local API (`lapi.url`: another garrison or a CrowdSec
//! LAPI): register and log in as a machine, push local alerts, and pull the decision
//! stream as a bouncer would, feeding it into the local store with the origins received.
//!
//! Credentials live in `<state-dir>/upstream.json` (mode 0600):
//! `{"url", "login", "password", "api_key"}`. Without a login, a machine
//! `garrison-<host>-<random>` registers itself; validate it upstream
//! (`garrison machines validate NAME` or `cscli machines validate NAME`) unless its address
//! is in the upstream's `auto-register-cidrs`. Decisions are pulled only when `api_key`
//! (a bouncer key made upstream with `garrison bouncers add` or `cscli bouncers add`) is in
//! the file. Everything runs on one thread with a blocking HTTP client, off the async
//! runtime.

use crate::store::{NewAlert, NewDecision, Store, Target, now_millis};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The machine id on the alerts that carry pulled decisions.
pub const UPSTREAM_MACHINE: &str = "upstream";

/// How often the upstream is polled.
const POLL: Duration = Duration::from_secs(10);
/// Alerts kept while the upstream is unreachable; older ones are dropped beyond this.
const QUEUE: usize = 1000;

/// The credentials file's contents.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Credentials {
    /// The upstream's URL (informative; `lapi.url` is used).
    #[serde(default)]
    pub url: String,
    /// Machine id.
    #[serde(default)]
    pub login: String,
    /// Machine password.
    #[serde(default)]
    pub password: String,
    /// Bouncer key for the decision stream.
    #[serde(default)]
    pub api_key: Option<String>,
}

/// A handle to push local alerts upstream; cheap to clone.
#[derive(Debug, Clone)]
pub struct Upstream {
    tx: Sender<Value>,
}

impl Upstream {
    /// Queues a local alert (CrowdSec-shaped JSON, with its decisions) for the upstream.
    /// Never blocks; when the queue is full the alert is dropped with a warning.
    pub fn push(&self, alert: Value) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(alert) {
            tracing::warn!("upstream LAPI queue full; an alert is not pushed");
        }
    }
}

/// Starts the upstream thread for `url`; stops when every [`Upstream`] handle is dropped.
pub fn spawn(url: &str, state_dir: &Path, store: Store) -> std::io::Result<Upstream> {
    let (tx, rx) = crossbeam_channel::bounded(QUEUE);
    let mut worker = Worker {
        base: url.trim_end_matches('/').to_owned(),
        creds_path: state_dir.join("upstream.json"),
        store,
        agent: ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .http_status_as_error(false)
            .user_agent(concat!("garrison/v", env!("CARGO_PKG_VERSION")))
            .build()
            .into(),
        token: None,
        pulled: false,
        mine: HashMap::new(),
        pending: Vec::new(),
    };
    std::thread::Builder::new()
        .name("garrison-upstream".into())
        .spawn(move || worker.run(rx))?;
    Ok(Upstream { tx })
}

struct Worker {
    base: String,
    creds_path: PathBuf,
    store: Store,
    agent: ureq::Agent,
    token: Option<(String, Instant)>,
    pulled: bool,
    /// Local decision id by (scope, value, type, origin) for decisions pulled from upstream.
    mine: HashMap<(String, String, String, String), i64>,
    pending: Vec<Value>,
}

impl Worker {
    fn run(&mut self, rx: Receiver<Value>) {
        let mut creds = match self.credentials() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, url = %self.base, "upstream LAPI disabled");
                return;
            }
        };
        let mut last_heartbeat = Instant::now() - Duration::from_secs(3600);
        loop {
            match rx.recv_timeout(POLL) {
                Ok(a) => self.pending.push(a),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
            }
            while let Ok(a) = rx.try_recv() {
                self.pending.push(a);
            }
            if self.pending.len() > QUEUE {
                let drop = self.pending.len() - QUEUE;
                self.pending.drain(..drop);
                tracing::warn!(
                    dropped = drop,
                    "upstream unreachable; oldest alerts dropped"
                );
            }
            if let Err(e) = self.push_alerts(&creds) {
                tracing::warn!(error = %e, url = %self.base, "pushing alerts upstream failed");
            }
            if last_heartbeat.elapsed() >= Duration::from_secs(60) && self.login(&creds).is_ok() {
                last_heartbeat = Instant::now();
                let _ = self.authed_get("/v1/heartbeat");
            }
            if let Some(key) = creds.api_key.clone()
                && let Err(e) = self.pull(&key)
            {
                tracing::warn!(error = %e, url = %self.base, "pulling decisions from upstream failed");
            }
            // The file may gain an api_key while running.
            if creds.api_key.is_none()
                && let Ok(c) = read_credentials(&self.creds_path)
            {
                creds = c;
            }
        }
    }

    fn credentials(&self) -> Result<Credentials, String> {
        if let Ok(c) = read_credentials(&self.creds_path)
            && !c.login.is_empty()
        {
            return Ok(c);
        }
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "host".into());
        let suffix = crate::store::auth::generate_key().map_err(|e| e.to_string())?;
        let suffix: String = suffix
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(8)
            .collect();
        let creds = Credentials {
            url: self.base.clone(),
            login: format!("garrison-{host}-{suffix}"),
            password: crate::store::auth::generate_password().map_err(|e| e.to_string())?,
            api_key: None,
        };
        let mut resp = self
            .agent
            .post(format!("{}/v1/watchers", self.base))
            .send_json(serde_json::json!({"machine_id": creds.login, "password": creds.password}))
            .map_err(|e| format!("registering: {e}"))?;
        let status = resp.status().as_u16();
        if status != 201 && status != 202 {
            let body = resp.body_mut().read_to_string().unwrap_or_default();
            return Err(format!(
                "registering as {}: HTTP {status}: {body}",
                creds.login
            ));
        }
        write_credentials(&self.creds_path, &creds)?;
        tracing::info!(
            machine = %creds.login,
            url = %self.base,
            validated = status == 202,
            file = %self.creds_path.display(),
            "registered with the upstream LAPI; validate this machine there if needed, and add an api_key to pull decisions"
        );
        Ok(creds)
    }

    fn login(&mut self, creds: &Credentials) -> Result<String, String> {
        if let Some((t, at)) = &self.token
            && at.elapsed() < Duration::from_secs(50 * 60)
        {
            return Ok(t.clone());
        }
        let mut resp = self
            .agent
            .post(format!("{}/v1/watchers/login", self.base))
            .send_json(serde_json::json!({"machine_id": creds.login, "password": creds.password, "scenarios": []}))
            .map_err(|e| format!("login: {e}"))?;
        let body: Value = resp
            .body_mut()
            .read_json()
            .map_err(|e| format!("login answer: {e}"))?;
        match body.get("token").and_then(Value::as_str) {
            Some(t) => {
                self.token = Some((t.to_owned(), Instant::now()));
                Ok(t.to_owned())
            }
            None => Err(format!(
                "login as {} refused: {}",
                creds.login,
                body.get("message").and_then(Value::as_str).unwrap_or("?")
            )),
        }
    }

    fn authed_get(&mut self, path: &str) -> Result<(), String> {
        let Some((t, _)) = &self.token else {
            return Err("not logged in".into());
        };
        self.agent
            .get(format!("{}{path}", self.base))
            .header("Authorization", &format!("Bearer {t}"))
            .call()
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn push_alerts(&mut self, creds: &Credentials) -> Result<(), String> {
        while !self.pending.is_empty() {
            let token = self.login(creds)?;
            let n = self.pending.len().min(50);
            let batch: Vec<Value> = self.pending[..n].to_vec();
            let mut resp = self
                .agent
                .post(format!("{}/v1/alerts", self.base))
                .header("Authorization", &format!("Bearer {token}"))
                .send_json(&batch)
                .map_err(|e| e.to_string())?;
            match resp.status().as_u16() {
                201 | 200 => {
                    self.pending.drain(..n);
                }
                401 => {
                    self.token = None;
                    return Err("token refused; logging in again next time".into());
                }
                s => {
                    let body = resp.body_mut().read_to_string().unwrap_or_default();
                    // A batch the upstream rejects would block the queue forever.
                    self.pending.drain(..n);
                    return Err(format!("HTTP {s}: {body}; {n} alerts dropped"));
                }
            }
        }
        Ok(())
    }

    fn pull(&mut self, key: &str) -> Result<(), String> {
        let startup = !self.pulled;
        let url = format!("{}/v1/decisions/stream?startup={startup}", self.base);
        let mut resp = self
            .agent
            .get(&url)
            .header("X-Api-Key", key)
            .call()
            .map_err(|e| e.to_string())?;
        if resp.status().as_u16() != 200 {
            return Err(format!(
                "HTTP {} (is the api_key valid upstream?)",
                resp.status()
            ));
        }
        let body: Value = resp
            .body_mut()
            .with_config()
            .limit(1 << 31)
            .read_json()
            .map_err(|e| format!("stream answer: {e}"))?;
        if startup {
            self.adopt_previous();
        }
        let list = |k: &str| match body.get(k) {
            Some(Value::Array(a)) => a.clone(),
            _ => Vec::new(),
        };
        let (new, deleted) = (list("new"), list("deleted"));
        let mut seen: HashSet<(String, String, String, String)> = HashSet::new();
        let mut add = Vec::new();
        let now = now_millis();
        for d in &new {
            let Some((key, nd)) = decision_of(d, now) else {
                continue;
            };
            seen.insert(key.clone());
            if self.mine.contains_key(&key) {
                continue;
            }
            add.push((key, nd));
        }
        // Deletions: expire the matching pulled decisions.
        let mut gone = HashSet::new();
        for d in &deleted {
            if let Some((key, _)) = decision_of(d, now)
                && let Some(id) = self.mine.remove(&key)
            {
                gone.insert(id);
            }
        }
        if startup {
            // Pulled before, no longer upstream: expired there while we were away.
            let stale: Vec<_> = self
                .mine
                .keys()
                .filter(|k| !seen.contains(*k))
                .cloned()
                .collect();
            for k in stale {
                if let Some(id) = self.mine.remove(&k) {
                    gone.insert(id);
                }
            }
        }
        if !gone.is_empty() {
            self.store.expire_where(|d, _| gone.contains(&d.id));
        }
        if !add.is_empty() {
            let n = add.len();
            let (keys, decisions): (Vec<_>, Vec<_>) = add.into_iter().unzip();
            let added = self.store.add(
                Some(NewAlert {
                    machine_id: UPSTREAM_MACHINE.into(),
                    scenario: format!("upstream: {n} decisions"),
                    message: format!("{n} decisions pulled from {}", self.base),
                    events_count: 0,
                    start_at: now,
                    stop_at: now,
                    source_scope: "upstream".into(),
                    source_value: self.base.clone(),
                    remediation: true,
                    simulated: false,
                    payload: serde_json::json!({"kind": "upstream"}),
                }),
                decisions,
            );
            // Refused (protected) decisions shift nothing: ids come in order of acceptance.
            let refused: HashSet<String> = added.refused.iter().map(|(v, _)| v.clone()).collect();
            let mut ids = added.decision_ids.into_iter();
            for k in keys {
                if refused.contains(&k.1) {
                    continue;
                }
                if let Some(id) = ids.next() {
                    self.mine.insert(k, id);
                }
            }
        }
        self.pulled = true;
        Ok(())
    }

    /// Takes over the active decisions pulled by a previous run (alerts of machine
    /// `upstream`), so a restart does not add them twice.
    fn adopt_previous(&mut self) {
        self.store.flush();
        let Ok(conn) = self.store.reader() else {
            return;
        };
        let alerts: HashSet<i64> = conn
            .prepare("SELECT id FROM alerts WHERE machine_id = ?1")
            .and_then(|mut s| {
                s.query_map([UPSTREAM_MACHINE], |r| r.get::<_, i64>(0))
                    .and_then(|rows| rows.collect())
            })
            .unwrap_or_default();
        let now = now_millis();
        let index = self.store.read();
        for d in index.active(now).filter(|d| alerts.contains(&d.alert_id)) {
            let key = (
                d.target.scope().to_owned(),
                d.target.value(),
                index.strings.get(d.decision_type).to_string(),
                index.strings.get(d.origin).to_string(),
            );
            // Several on one key: the longest, ties to the newest (the index walks by id).
            let longest = self
                .mine
                .get(&key)
                .and_then(|id| index.get(*id))
                .is_none_or(|o| (o.until, o.id) < (d.until, d.id));
            if longest {
                self.mine.insert(key, d.id);
            }
        }
    }
}

/// A stream decision as (scope, value, type, origin) and a local decision.
fn decision_of(d: &Value, now: i64) -> Option<((String, String, String, String), NewDecision)> {
    let s = |k: &str| {
        d.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let target = Target::parse(&s("scope"), &s("value")).ok()?;
    let dur = s("duration");
    let ms = if let Some(rest) = dur.strip_prefix('-') {
        -i64::try_from(crate::parse::timefmt::parse_go_duration(rest)?.as_millis()).ok()?
    } else {
        i64::try_from(crate::parse::timefmt::parse_go_duration(&dur)?.as_millis()).ok()?
    };
    let origin = match s("origin") {
        o if o.is_empty() => "crowdsec".to_owned(),
        o => o,
    };
    let key = (
        target.scope().to_owned(),
        target.value(),
        s("type"),
        origin.clone(),
    );
    Some((
        key,
        NewDecision {
            origin,
            scenario: s("scenario"),
            decision_type: s("type"),
            target,
            until: now + ms,
            simulated: false,
        },
    ))
}

fn read_credentials(path: &Path) -> Result<Credentials, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn write_credentials(path: &Path, c: &Credentials) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let text = serde_json::to_string_pretty(c).map_err(|e| e.to_string())?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(text.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))
}
