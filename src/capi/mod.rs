//! CrowdSec's Central API (CAPI): the community blocklist, the lists the machine is
//! subscribed to in the console, and signal sharing. Off unless `central.enable`: a fresh
//! install makes no outbound call.
//!
//! One thread, with a blocking client ([`client`]), off the async runtime:
//! - registers once (credentials in `<state-dir>/capi-credentials.json`, mode 0600), logs in
//!   with the installed scenarios (again on a 401 or near the token's expiry);
//! - pulls the community blocklist: in full at start (`startup=true`), then deltas every
//!   `pull-interval` with jitter. Only the difference reaches the store: new values become
//!   decisions with origin `CAPI`, values gone are expired, unchanged values keep their
//!   decision (renewed when less than half of their duration remains);
//! - downloads the subscribed lists the stream links to (pre-signed URLs, one value per
//!   line, `If-Modified-Since`) and applies them the same way, with origin `lists` and the
//!   list's name as scenario, as CrowdSec does;
//! - pushes the signals of local alerts in batches of at most 250 every 10 s, anonymised:
//!   scenario, source, times, decisions, never an event or a log line;
//! - sends its metrics every 30 minutes (its sign of life).
//!
//! While the Central API is unreachable or answers 5xx, calls stop and are retried after an
//! exponential backoff with jitter (1 s doubling up to 30 min); a failed or bad pull
//! changes nothing in the store, so the previous lists stay in force.

pub mod client;

use crate::store::{Added, Millis, NewDecision, Store, Target, now_millis};
use client::{BlocklistLink, CapiError, Client, Credentials, Stream};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// The origin of community blocklist decisions (CrowdSec's name).
pub const ORIGIN_CAPI: &str = "CAPI";
/// The origin of subscribed list decisions (CrowdSec's name, shared with third-party lists).
pub const ORIGIN_LISTS: &str = "lists";
/// The state file (subscribed lists and their validators) inside the state directory.
pub const STATE_FILE: &str = "capi.json";
/// The default Central API.
pub const DEFAULT_URL: &str = "https://api.crowdsec.net/";

/// Decisions handed to the store per call, so readers get the index between chunks.
const CHUNK: usize = 20_000;

/// Knobs of the CAPI thread: [`Options::from_config`] for the daemon; tests shorten the
/// delays.
#[derive(Debug, Clone)]
pub struct Options {
    /// The Central API's URL.
    pub url: String,
    /// How often to pull the decision stream.
    pub pull_interval: Duration,
    /// The largest random shift of each pull (either way), so machines do not all pull at
    /// the same moment.
    pub pull_jitter: Duration,
    /// Push signals of local alerts.
    pub share_signals: bool,
    /// How often queued signals are pushed.
    pub push_interval: Duration,
    /// Signals per push.
    pub push_batch: usize,
    /// Signals kept while the Central API is unreachable; the oldest are dropped beyond.
    pub queue_limit: usize,
    /// How often metrics are sent.
    pub heartbeat_interval: Duration,
    /// The first retry delay after a failure; it doubles at each failure in a row.
    pub backoff_min: Duration,
    /// The longest retry delay.
    pub backoff_max: Duration,
    /// The largest answer or list accepted.
    pub size_limit: u64,
    /// How long a call may take, connection included.
    pub timeout: Duration,
    /// The installed scenarios, sent at login: the community list depends on them.
    pub scenarios: Vec<String>,
}

impl Options {
    /// The daemon's options for `central` and the enabled scenarios.
    pub fn from_config(central: &crate::config::model::Central, scenarios: Vec<String>) -> Self {
        let pull_interval = central.pull_interval.0;
        Options {
            url: central.url.clone(),
            pull_interval,
            // ±5 minutes for the default 2 hours, as CrowdSec.
            pull_jitter: pull_interval / 24,
            share_signals: central.share_signals,
            push_interval: Duration::from_secs(10),
            push_batch: 250,
            queue_limit: 10_000,
            heartbeat_interval: Duration::from_secs(30 * 60),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30 * 60),
            size_limit: crate::blocklists::fetch::SIZE_LIMIT,
            timeout: Duration::from_secs(60),
            scenarios,
        }
    }
}

/// A subscribed list as the status shows it: the type third-party lists use.
pub use crate::blocklists::ListStatus;

/// The CAPI thread's state, for `garrison blocklists list` and the admin route.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The Central API's URL.
    pub url: String,
    /// The machine id, once registered.
    pub machine_id: Option<String>,
    /// Credentials exist (registered now or before).
    pub registered: bool,
    /// A valid token is held.
    pub logged_in: bool,
    /// Signals are shared.
    pub share_signals: bool,
    /// When the last pull succeeded.
    pub last_pull: Option<Millis>,
    /// When the next pull is due.
    pub next_pull: Option<Millis>,
    /// Community values with an active decision.
    pub community_size: usize,
    /// Decisions made at the last pull.
    pub added: usize,
    /// Decisions expired at the last pull.
    pub removed: usize,
    /// Decisions renewed at the last pull.
    pub renewed: usize,
    /// Invalid values in the last stream.
    pub invalid: usize,
    /// Values refused at the last pull because they cover a protected address.
    pub refused: usize,
    /// The subscribed lists.
    pub lists: Vec<ListStatus>,
    /// The last failure (none once a call succeeds again).
    pub last_error: Option<String>,
    /// Failures in a row.
    pub failures: u32,
    /// While backing off: when calls resume.
    pub retry_at: Option<Millis>,
    /// Signals accepted by the Central API.
    pub signals_sent: u64,
    /// Signals waiting to be pushed.
    pub signals_queued: usize,
    /// Signals dropped (queue full while unreachable, or refused).
    pub signals_dropped: u64,
    /// When signals were last pushed.
    pub last_push: Option<Millis>,
    /// When metrics were last sent.
    pub last_heartbeat: Option<Millis>,
}

/// A signal: a local alert as shared with the Central API (`AddSignalsRequestItem`). It
/// carries no event, log line, label or context: only the scenario, the source, the times
/// and the decisions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    /// The alert's summary (`Ip 192.0.2.1 performed 'ssh-bf' (6 events over 3s) at ...`).
    pub message: String,
    /// The scenario.
    pub scenario: String,
    /// The scenario file's hash (garrison's scenarios are not the hub's: empty).
    pub scenario_hash: String,
    /// The scenario's hub version (empty, as above).
    pub scenario_version: String,
    /// `custom`: CrowdSec's trust for a scenario without a hub hash.
    pub scenario_trust: String,
    /// The source.
    pub source: SignalSource,
    /// First event (RFC 3339).
    pub start_at: String,
    /// Overflow (RFC 3339).
    pub stop_at: String,
    /// When the alert was stored (RFC 3339).
    pub created_at: String,
    /// This machine's Central API id (set when pushed).
    pub machine_id: String,
    /// A random id for the alert.
    pub uuid: String,
    /// What raised it: `crowdsec` (a scenario).
    pub kind: String,
    /// The local alert id.
    pub alert_id: i64,
    /// The decisions made.
    pub decisions: Vec<SignalDecision>,
}

/// `AddSignalsRequestItemSource`; the fields garrison knows (no geolocation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignalSource {
    /// `Ip` or `Range`.
    pub scope: String,
    /// The address or range.
    pub value: String,
    /// The address, for an `Ip` source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The range, for a `Range` source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<String>,
    /// The autonomous system number, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<String>,
    /// The autonomous system name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_name: Option<String>,
    /// The country code, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cn: Option<String>,
}

/// `AddSignalsRequestItemDecisionsItem`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignalDecision {
    /// The local decision id.
    pub id: i64,
    /// A random id.
    pub uuid: String,
    /// A Go duration (`4h0m0s`).
    pub duration: String,
    /// `crowdsec`.
    pub origin: String,
    /// The scenario.
    pub scenario: String,
    /// `Ip` or `Range`.
    pub scope: String,
    /// `ban`.
    #[serde(rename = "type")]
    pub decision_type: String,
    /// The address or range.
    pub value: String,
    /// The end (RFC 3339).
    pub until: String,
    /// Recorded but not enforced.
    pub simulated: bool,
}

fn rfc3339(ms: Millis) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

impl Signal {
    /// The signal of a local alert and the decisions the store made for it (`decisions`
    /// as given to [`Store::add`], `added` its answer). `None` when every decision is
    /// simulated: CrowdSec does not share simulated alerts.
    pub fn from_alert(
        alert: &crate::alert::Alert,
        decisions: &[NewDecision],
        added: &Added,
        created_at: Millis,
    ) -> Option<Signal> {
        if !decisions.is_empty() && decisions.iter().all(|d| d.simulated) {
            return None;
        }
        let refused: HashSet<&str> = added.refused.iter().map(|(v, _)| v.as_str()).collect();
        let made = decisions
            .iter()
            .filter(|d| !refused.contains(d.target.value().as_str()));
        let decisions = made
            .zip(added.decision_ids.iter())
            .map(|(d, id)| SignalDecision {
                id: *id,
                uuid: uuid::Uuid::new_v4().to_string(),
                duration: crate::parse::timefmt::format_go_duration(Duration::from_millis(
                    u64::try_from(d.until.saturating_sub(created_at)).unwrap_or(0),
                )),
                origin: d.origin.clone(),
                scenario: d.scenario.clone(),
                scope: d.target.scope().to_owned(),
                decision_type: d.decision_type.clone(),
                value: d.target.value(),
                until: rfc3339(d.until),
                simulated: d.simulated,
            })
            .collect();
        let scope = alert.scope.as_str().to_owned();
        Some(Signal {
            message: alert.message().into_owned(),
            scenario: alert.scenario.to_string(),
            scenario_hash: String::new(),
            scenario_version: String::new(),
            scenario_trust: "custom".into(),
            source: SignalSource {
                ip: (alert.scope == crate::alert::Scope::Ip).then(|| alert.value.clone()),
                range: (alert.scope == crate::alert::Scope::Range).then(|| alert.value.clone()),
                scope,
                value: alert.value.clone(),
                as_number: None,
                as_name: None,
                cn: None,
            },
            start_at: alert.start_at.to_string(),
            stop_at: alert.stop_at.to_string(),
            created_at: rfc3339(created_at),
            machine_id: String::new(),
            uuid: uuid::Uuid::new_v4().to_string(),
            kind: "crowdsec".into(),
            alert_id: added.alert_id,
            decisions,
        })
    }
}

enum Msg {
    Signal(Box<Signal>),
    Stop,
}

/// The CAPI thread's handle. The thread stops at [`CapiHandle::stop`] or when every handle
/// and [`SignalSink`] connection is gone.
#[derive(Clone)]
pub struct CapiHandle {
    tx: Sender<Msg>,
    status: Arc<Mutex<Status>>,
    share_signals: bool,
    /// Disconnected when the thread has ended.
    done: Receiver<()>,
}

impl std::fmt::Debug for CapiHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CapiHandle").finish_non_exhaustive()
    }
}

impl CapiHandle {
    /// The thread's current state.
    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Asks the thread to stop (it finishes the call under way, if any); does not wait.
    pub fn stop(&self) {
        let _ = self.tx.send(Msg::Stop);
    }

    /// Waits until the thread has ended (after [`CapiHandle::stop`]), at most `timeout`;
    /// whether it has.
    pub fn wait_stopped(&self, timeout: Duration) -> bool {
        matches!(
            self.done.recv_timeout(timeout),
            Err(RecvTimeoutError::Disconnected)
        )
    }

    /// Queues a signal (only when signals are shared). Never blocks: when the queue is full
    /// the signal is dropped with a warning.
    pub fn push(&self, signal: Signal) {
        if !self.share_signals {
            return;
        }
        if let Err(TrySendError::Full(_)) = self.tx.try_send(Msg::Signal(Box::new(signal))) {
            tracing::warn!("Central API signal queue full; a signal is not shared");
        }
    }
}

/// Where the engine hands its alerts' signals: connected to the CAPI thread while it runs
/// and shares signals, otherwise a no-op. The daemon reconnects it on reload.
#[derive(Debug, Clone, Default)]
pub struct SignalSink {
    slot: Arc<RwLock<Option<CapiHandle>>>,
}

impl SignalSink {
    /// Connects the sink to a CAPI thread, or disconnects it.
    pub fn connect(&self, handle: Option<CapiHandle>) {
        *self
            .slot
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = handle;
    }

    /// Whether signals go anywhere (so the engine can skip building them).
    pub fn active(&self) -> bool {
        self.slot
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .is_some_and(|h| h.share_signals)
    }

    /// Queues a signal for the Central API, when connected.
    pub fn push(&self, signal: Signal) {
        if let Some(h) = self
            .slot
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
        {
            h.push(signal);
        }
    }
}

/// Starts the CAPI thread with [`Options::from_config`].
pub fn spawn(
    central: &crate::config::model::Central,
    scenarios: Vec<String>,
    store: Store,
    state_dir: &Path,
) -> std::io::Result<CapiHandle> {
    spawn_with(Options::from_config(central, scenarios), store, state_dir)
}

/// Starts the CAPI thread with explicit [`Options`].
pub fn spawn_with(options: Options, store: Store, state_dir: &Path) -> std::io::Result<CapiHandle> {
    let (tx, rx) = crossbeam_channel::bounded(options.queue_limit.max(1));
    let status = Arc::new(Mutex::new(Status {
        url: options.url.clone(),
        share_signals: options.share_signals,
        ..Status::default()
    }));
    let share_signals = options.share_signals;
    let mut worker = Worker {
        client: Client::new(&options.url, options.timeout, options.size_limit),
        creds_path: state_dir.join(client::CREDENTIALS_FILE),
        state_path: state_dir.join(STATE_FILE),
        store,
        creds: None,
        community: HashMap::new(),
        lists: BTreeMap::new(),
        pulled: false,
        next_pull: Instant::now(),
        next_push: Instant::now() + options.push_interval,
        next_heartbeat: None,
        failures: 0,
        blocked_until: None,
        queue: VecDeque::new(),
        status: status.clone(),
        options,
    };
    worker.load();
    let (done_tx, done) = crossbeam_channel::bounded::<()>(0);
    std::thread::Builder::new()
        .name("garrison-capi".into())
        .spawn(move || {
            worker.run(rx);
            drop(done_tx);
        })?;
    Ok(CapiHandle {
        tx,
        status,
        share_signals,
        done,
    })
}

/// Community values with an active decision: (decision id, end).
type Applied = HashMap<Target, (i64, Millis)>;

/// A subscribed list as the thread keeps it: its entries in force are a third-party list's
/// (and applied the same way).
struct List {
    link: BlocklistLink,
    applied: crate::blocklists::apply::Applied,
    status: ListStatus,
}

impl List {
    /// A list known by name only (from the state file, or a link not yet fetched).
    fn named(name: &str, decision_type: &str) -> List {
        List {
            link: BlocklistLink {
                name: name.to_owned(),
                url: String::new(),
                remediation: decision_type.to_owned(),
                scope: "ip".into(),
                duration: String::new(),
            },
            applied: Default::default(),
            status: ListStatus {
                name: name.to_owned(),
                decision_type: decision_type.to_owned(),
                ..ListStatus::default()
            },
        }
    }
}

/// What the state file keeps across restarts: the subscribed lists, so their decisions
/// are recognised (and dropped when unsubscribed), and their validators.
#[derive(Debug, Default, Serialize, Deserialize)]
struct SavedState {
    #[serde(default)]
    lists: BTreeMap<String, SavedList>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct SavedList {
    #[serde(default)]
    last_modified: Option<String>,
    #[serde(default)]
    decision_type: String,
}

struct Worker {
    options: Options,
    client: Client,
    creds_path: PathBuf,
    state_path: PathBuf,
    store: Store,
    creds: Option<Credentials>,
    community: Applied,
    lists: BTreeMap<String, List>,
    /// The startup (full) pull is done.
    pulled: bool,
    next_pull: Instant,
    next_push: Instant,
    /// Set after the first successful pull.
    next_heartbeat: Option<Instant>,
    failures: u32,
    blocked_until: Option<Instant>,
    queue: VecDeque<Signal>,
    status: Arc<Mutex<Status>>,
}

/// A value the Central API wants in force.
struct Want {
    target: Target,
    scenario: String,
    until: Millis,
}

/// What [`apply_community`] did.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    added: usize,
    removed: usize,
    renewed: usize,
    refused: usize,
}

fn millis(d: Duration) -> Millis {
    Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
}

/// A uniformly random duration in `[0, max]`.
fn random_up_to(max: Duration) -> Duration {
    let r = getrandom::u64().unwrap_or(0);
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(r % (nanos + 1).max(1))
}

/// The backoff ceiling after `failures` failures in a row: `min` doubled each time, at
/// most `max`.
fn backoff(min: Duration, max: Duration, failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(30);
    min.saturating_mul(1u32 << exp).min(max)
}

/// A URL without its query (pre-signed URLs carry credentials there).
fn unsigned(url: &str) -> String {
    url.split('?').next().unwrap_or_default().to_owned()
}

impl Worker {
    /// Takes over the decisions a previous run made: community values (origin `CAPI`) and
    /// subscribed lists' (origin `lists`, scenario a list in the state file).
    fn load(&mut self) {
        let saved = read_state(&self.state_path);
        let now = now_millis();
        let mut doubles = Vec::new();
        let mut found: HashMap<String, Vec<(Target, i64, Millis)>> = HashMap::new();
        {
            let index = self.store.read();
            for d in index.active(now) {
                let origin = &**index.strings.get(d.origin);
                if origin == ORIGIN_LISTS {
                    let name = &**index.strings.get(d.scenario);
                    if saved.lists.contains_key(name) {
                        found.entry(name.to_owned()).or_default().push((
                            d.target.clone(),
                            d.id,
                            d.until,
                        ));
                    }
                    continue;
                }
                if origin != ORIGIN_CAPI {
                    continue;
                }
                match self.community.get_mut(&d.target) {
                    // A renewal interrupted by a stop: keep the longest.
                    Some(e) if e.1 >= d.until => doubles.push(d.id),
                    Some(e) => {
                        doubles.push(e.0);
                        *e = (d.id, d.until);
                    }
                    None => {
                        self.community.insert(d.target.clone(), (d.id, d.until));
                    }
                }
            }
        }
        // Lists in the state file without any decision left still need their validators
        // dropped: the store does not hold them.
        for (name, s) in saved.lists {
            let mut l = List::named(&name, &s.decision_type);
            if let Some(ds) = found.remove(&name) {
                l.applied = crate::blocklists::apply::Applied::from_decisions(ds, &mut doubles);
                l.status.last_modified = s.last_modified;
            }
            l.status.size = l.applied.len();
            if l.applied.is_empty() {
                l.status.last_modified = None;
            }
            self.lists.insert(name, l);
        }
        self.store.expire_ids(&doubles);
        if let Ok(Some(c)) = Credentials::read(&self.creds_path) {
            self.creds = Some(c);
        }
        self.publish(|_| {});
    }

    fn run(mut self, rx: Receiver<Msg>) {
        tracing::info!(
            url = %self.options.url,
            share_signals = self.options.share_signals,
            community = self.community.len(),
            "Central API client starting"
        );
        loop {
            self.step();
            let wait = self.next_due().saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(Msg::Signal(s)) => self.enqueue(*s),
                Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
            // Drain what else arrived, so a burst costs one wake-up.
            loop {
                match rx.try_recv() {
                    Ok(Msg::Signal(s)) => self.enqueue(*s),
                    Ok(Msg::Stop) => {
                        self.stopped();
                        return;
                    }
                    Err(_) => break,
                }
            }
            self.publish(|_| {});
        }
        self.stopped();
    }

    fn stopped(&self) {
        if !self.queue.is_empty() {
            tracing::info!(
                unsent = self.queue.len(),
                "Central API client stopping; queued signals are not shared"
            );
        }
    }

    fn enqueue(&mut self, s: Signal) {
        self.queue.push_back(s);
        if self.queue.len() > self.options.queue_limit {
            let drop = self.queue.len() - self.options.queue_limit;
            self.queue.drain(..drop);
            self.publish(|st| st.signals_dropped += drop as u64);
            tracing::warn!(
                dropped = drop,
                "Central API unreachable for long; oldest signals dropped"
            );
        }
    }

    /// When something is next due.
    fn next_due(&self) -> Instant {
        if let Some(b) = self.blocked_until {
            return b;
        }
        let mut due = self.next_pull;
        if !self.queue.is_empty() {
            due = due.min(self.next_push);
        }
        if let Some(h) = self.next_heartbeat {
            due = due.min(h);
        }
        due
    }

    /// Does what is due, unless backing off.
    fn step(&mut self) {
        let now = Instant::now();
        if let Some(b) = self.blocked_until {
            if now < b {
                return;
            }
            self.blocked_until = None;
        }
        let result = self.session().and_then(|()| {
            if self.next_pull <= now {
                self.pull()?;
            }
            if !self.queue.is_empty() && self.next_push <= now {
                self.push_signals()?;
            }
            if self.next_heartbeat.is_some_and(|h| h <= now) {
                self.heartbeat()?;
            }
            Ok(())
        });
        match result {
            Ok(()) => {
                if self.failures > 0 {
                    tracing::info!(failures = self.failures, "Central API reachable again");
                }
                self.failures = 0;
                self.publish(|st| {
                    st.last_error = None;
                    st.failures = 0;
                    st.retry_at = None;
                });
            }
            Err(e) => self.failed(&e),
        }
    }

    /// Backs off after a failure: 1 s doubling at each failure in a row up to 30 min, the
    /// actual delay picked at random in its upper half so machines spread out.
    fn failed(&mut self, e: &CapiError) {
        self.failures = self.failures.saturating_add(1);
        let full = backoff(
            self.options.backoff_min,
            self.options.backoff_max,
            self.failures,
        );
        let delay = full / 2 + random_up_to(full / 2);
        self.blocked_until = Some(Instant::now() + delay);
        if let CapiError::Unauthorized(_) = e {
            self.client.forget_token();
        }
        match e {
            CapiError::BadPayload(_) => tracing::error!(
                url = %self.options.url,
                error = %e,
                retry_in_ms = delay.as_millis() as u64,
                "Central API answer rejected; the previous lists stay in force"
            ),
            _ => tracing::warn!(
                url = %self.options.url,
                error = %e,
                failures = self.failures,
                retry_in_ms = delay.as_millis() as u64,
                "Central API call failed; backing off"
            ),
        }
        let retry_at = now_millis() + millis(delay);
        let failures = self.failures;
        let text = e.to_string();
        self.publish(|st| {
            st.last_error = Some(text);
            st.failures = failures;
            st.retry_at = Some(retry_at);
        });
    }

    /// Registers (once) and logs in (when the token is missing or about to expire).
    fn session(&mut self) -> Result<(), CapiError> {
        let creds = match &self.creds {
            Some(c) => c.clone(),
            None => {
                let c = Credentials::generate(&self.options.url).map_err(CapiError::Unreachable)?;
                self.client.register(&c)?;
                c.write(&self.creds_path).map_err(|e| {
                    tracing::error!(error = %e, "cannot save the Central API credentials");
                    CapiError::Unreachable(e)
                })?;
                tracing::info!(
                    machine = %c.login,
                    file = %self.creds_path.display(),
                    "registered with the Central API"
                );
                self.creds = Some(c.clone());
                c
            }
        };
        if !self.client.logged_in() {
            self.client.login(&creds, &self.options.scenarios)?;
            tracing::debug!(machine = %creds.login, "logged in to the Central API");
        }
        let login = creds.login.clone();
        self.publish(|st| {
            st.machine_id = Some(login);
            st.registered = true;
            st.logged_in = true;
        });
        Ok(())
    }

    /// Runs `call`; on a 401 logs in again and retries once.
    fn authed<T>(
        &mut self,
        call: impl Fn(&Client) -> Result<T, CapiError>,
    ) -> Result<T, CapiError> {
        match call(&self.client) {
            Err(CapiError::Unauthorized(why)) => {
                tracing::info!(reason = %why, "Central API token refused; logging in again");
                self.client.forget_token();
                self.session()?;
                call(&self.client)
            }
            r => r,
        }
    }

    fn schedule_pull(&mut self) {
        let interval = self.options.pull_interval;
        let jitter = self.options.pull_jitter;
        let shift = random_up_to(jitter * 2);
        // interval - jitter + [0, 2 * jitter]
        let delay = interval.saturating_sub(jitter) + shift;
        self.next_pull = Instant::now() + delay;
        let at = now_millis() + millis(delay);
        self.publish(|st| st.next_pull = Some(at));
    }

    /// Pulls the decision stream and applies it; then the subscribed lists it links to.
    fn pull(&mut self) -> Result<(), CapiError> {
        let startup = !self.pulled;
        let started = Instant::now();
        let stream = self.authed(|c| c.decisions_stream(startup))?;
        let now = now_millis();
        let (wanted, deleted, invalid) = validate(&stream, now)?;
        let counts = apply_community(
            &self.store,
            &mut self.community,
            wanted,
            &deleted,
            startup,
            now,
        );
        self.pulled = true;
        if self.next_heartbeat.is_none() {
            self.next_heartbeat = Some(Instant::now());
        }
        tracing::info!(
            startup,
            size = self.community.len(),
            added = counts.added,
            removed = counts.removed,
            renewed = counts.renewed,
            refused = counts.refused,
            invalid,
            ms = started.elapsed().as_millis() as u64,
            "community blocklist pulled from the Central API"
        );
        let size = self.community.len();
        self.publish(|st| {
            st.last_pull = Some(now);
            st.community_size = size;
            st.added = counts.added;
            st.removed = counts.removed;
            st.renewed = counts.renewed;
            st.refused = counts.refused;
            st.invalid = invalid;
        });
        if let Some(links) = stream.links.as_ref().and_then(|l| l.blocklists.as_ref()) {
            self.refresh_lists(links);
        }
        self.schedule_pull();
        Ok(())
    }

    /// Downloads every subscribed list; drops the lists no longer linked. A list that
    /// cannot be fetched or read keeps its previous content and says why in its status.
    fn refresh_lists(&mut self, links: &[BlocklistLink]) {
        let linked: HashSet<&str> = links.iter().map(|l| l.name.as_str()).collect();
        let gone: Vec<String> = self
            .lists
            .keys()
            .filter(|n| !linked.contains(n.as_str()))
            .cloned()
            .collect();
        for name in gone {
            if let Some(l) = self.lists.remove(&name) {
                let ids: Vec<i64> = l.applied.ids().collect();
                let n = self.store.expire_ids(&ids);
                tracing::info!(list = %name, expired = n, "unsubscribed from a Central API blocklist");
            }
        }
        for link in links {
            let l = self
                .lists
                .entry(link.name.clone())
                .or_insert_with(|| List::named(&link.name, &link.remediation));
            if l.link.remediation != link.remediation || l.link.duration != link.duration {
                // Fetched in full again so every entry gets the new type or duration.
                l.status.last_modified = None;
            }
            // Entries made with another type are renewed with the new one.
            let retype = l.status.decision_type != link.remediation;
            l.link = link.clone();
            l.status.source = unsigned(&link.url);
            l.status.decision_type = link.remediation.clone();
            refresh_list(
                &self.store,
                self.client.agent(),
                l,
                retype,
                self.options.size_limit,
            );
        }
        self.save();
        let lists: Vec<ListStatus> = self.lists.values().map(|l| l.status.clone()).collect();
        self.publish(|st| st.lists = lists);
    }

    fn push_signals(&mut self) -> Result<(), CapiError> {
        let machine = self
            .creds
            .as_ref()
            .map(|c| c.login.clone())
            .unwrap_or_default();
        while !self.queue.is_empty() {
            let n = self.queue.len().min(self.options.push_batch.max(1));
            let batch: Vec<Signal> = self
                .queue
                .iter()
                .take(n)
                .cloned()
                .map(|mut s| {
                    s.machine_id.clone_from(&machine);
                    s
                })
                .collect();
            match self.authed(|c| c.push_signals(&batch)) {
                Ok(()) => {
                    self.queue.drain(..n);
                    let at = now_millis();
                    self.publish(|st| {
                        st.signals_sent += n as u64;
                        st.last_push = Some(at);
                    });
                    tracing::debug!(signals = n, "signals pushed to the Central API");
                }
                Err(CapiError::Refused(s, why)) => {
                    // A batch the Central API rejects would block the queue forever.
                    self.queue.drain(..n);
                    self.publish(|st| st.signals_dropped += n as u64);
                    tracing::warn!(status = s, reason = %why, signals = n, "the Central API refused signals; they are dropped");
                }
                Err(e) => return Err(e),
            }
        }
        self.next_push = Instant::now() + self.options.push_interval;
        Ok(())
    }

    fn heartbeat(&mut self) -> Result<(), CapiError> {
        let machine = self
            .creds
            .as_ref()
            .map(|c| c.login.clone())
            .unwrap_or_default();
        let now = rfc3339(now_millis());
        let body = serde_json::json!({
            "bouncers": [],
            "machines": [{
                "name": machine,
                "version": concat!("garrison/v", env!("CARGO_PKG_VERSION")),
                "last_update": now,
                "last_push": now,
            }],
        });
        self.authed(|c| c.push_metrics(&body))?;
        self.next_heartbeat = Some(Instant::now() + self.options.heartbeat_interval);
        let at = now_millis();
        self.publish(|st| st.last_heartbeat = Some(at));
        Ok(())
    }

    fn publish(&self, f: impl FnOnce(&mut Status)) {
        let mut st = self
            .status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut st);
        st.community_size = self.community.len();
        st.signals_queued = self.queue.len();
        st.registered = st.registered || self.creds.is_some();
        if st.machine_id.is_none() {
            st.machine_id = self.creds.as_ref().map(|c| c.login.clone());
        }
        st.logged_in = self.client.logged_in();
    }

    fn save(&self) {
        let state = SavedState {
            lists: self
                .lists
                .iter()
                .map(|(n, l)| {
                    (
                        n.clone(),
                        SavedList {
                            last_modified: l.status.last_modified.clone(),
                            decision_type: l.link.remediation.clone(),
                        },
                    )
                })
                .collect(),
        };
        if let Err(e) = write_state(&self.state_path, &state) {
            tracing::warn!(path = %self.state_path.display(), error = %e, "cannot save the Central API state");
        }
    }
}

/// Checks a stream and turns it into targets. Invalid values are skipped and counted; a
/// stream with values but not one valid is rejected whole (it is not a decision stream).
#[allow(clippy::type_complexity)]
fn validate(stream: &Stream, now: Millis) -> Result<(Vec<Want>, Vec<Target>, usize), CapiError> {
    let mut wanted = Vec::new();
    let mut deleted = Vec::new();
    let mut invalid = 0usize;
    let mut sample: Vec<String> = Vec::new();
    let mut bad = |what: String, invalid: &mut usize| {
        *invalid += 1;
        if sample.len() < 5 {
            sample.push(what);
        }
    };
    for item in stream.new.iter().flatten() {
        for d in &item.decisions {
            let target = Target::parse(&item.scope, &d.value);
            let duration =
                crate::parse::timefmt::parse_go_duration(&d.duration).filter(|d| !d.is_zero());
            match (target, duration) {
                (Ok(target), Some(duration)) => wanted.push(Want {
                    target,
                    scenario: item.scenario.clone(),
                    until: now.saturating_add(millis(duration)),
                }),
                (Err(e), _) => bad(e, &mut invalid),
                (Ok(_), None) => bad(
                    format!("`{}`: bad duration `{}`", d.value, d.duration),
                    &mut invalid,
                ),
            }
        }
    }
    for item in stream.deleted.iter().flatten() {
        for v in &item.decisions {
            match Target::parse(&item.scope, v) {
                Ok(t) => deleted.push(t),
                Err(e) => bad(e, &mut invalid),
            }
        }
    }
    if invalid > 0 && wanted.is_empty() && deleted.is_empty() {
        return Err(CapiError::BadPayload(format!(
            "no valid decision: {invalid} invalid values (first: {sample:?})"
        )));
    }
    if invalid > 0 {
        tracing::warn!(invalid, sample = ?sample, "Central API values ignored: not an address, a range or a duration");
    }
    Ok((wanted, deleted, invalid))
}

/// Downloads a subscribed list and applies it as a third-party list is (only the
/// difference); failures are recorded in its status. `retype`: its decision type changed,
/// so every entry is renewed.
fn refresh_list(store: &Store, agent: &ureq::Agent, l: &mut List, retype: bool, limit: u64) {
    let now = now_millis();
    l.status.last_refresh = Some(now);
    let duration =
        crate::parse::timefmt::parse_go_duration(&l.link.duration).filter(|d| !d.is_zero());
    let Some(duration) = duration else {
        let e = format!("bad duration `{}`", l.link.duration);
        tracing::error!(list = %l.link.name, error = %e, "Central API blocklist not applied; the previous one stays in force");
        l.status.last_error = Some(e);
        return;
    };
    let fetched = crate::blocklists::fetch::url(
        agent,
        &l.link.url,
        None,
        l.status.last_modified.as_deref(),
        limit,
    )
    .map_err(|e| e.replace(&l.link.url, &unsigned(&l.link.url)));
    let entries = fetched.and_then(|f| match f {
        crate::blocklists::fetch::Fetched::NotModified => Ok(None),
        crate::blocklists::fetch::Fetched::Body {
            bytes,
            last_modified,
            ..
        } => crate::blocklists::parse::parse(&bytes, crate::config::model::BlocklistFormat::Text)
            .map(|p| Some((p, last_modified))),
    });
    let entries = match entries {
        Err(e) => {
            tracing::error!(list = %l.link.name, error = %e, "Central API blocklist not refreshed; the previous one stays in force");
            l.status.last_error = Some(e);
            return;
        }
        // Unchanged: only renewals.
        Ok(None) => {
            l.status.not_modified = true;
            None
        }
        Ok(Some((parsed, last_modified))) => {
            if parsed.invalid > 0 {
                tracing::warn!(list = %l.link.name, invalid = parsed.invalid, sample = ?parsed.sample, "Central API blocklist entries ignored: neither an address nor a range");
            }
            l.status.not_modified = false;
            l.status.invalid = parsed.invalid;
            l.status.last_modified = last_modified;
            Some(parsed)
        }
    };
    let spec = crate::blocklists::apply::ListSpec {
        origin: ORIGIN_LISTS,
        name: &l.link.name,
        decision_type: &l.link.remediation,
        duration: millis(duration),
        retype,
    };
    let counts =
        crate::blocklists::apply::apply(store, spec, &mut l.applied, entries, now, &mut Vec::new());
    l.status.last_error = None;
    l.status.last_success = Some(now);
    l.status.record(counts, l.applied.len());
    tracing::info!(
        list = %l.link.name,
        size = l.status.size,
        added = counts.added,
        removed = counts.removed,
        renewed = counts.renewed,
        refused = counts.refused,
        "Central API blocklist refreshed"
    );
}

/// Applies the community stream to the store, touching only what changes. `full`: `wanted`
/// is the whole list (the startup pull), so applied values not in it are expired;
/// otherwise it is a delta and `deleted` says what goes. A value already applied keeps its
/// decision unless less than half of the new duration remains, when a new decision
/// replaces it. Unlike a list, each value has its own scenario and duration, so this is
/// not [`crate::blocklists::apply::apply`].
fn apply_community(
    store: &Store,
    applied: &mut Applied,
    wanted: Vec<Want>,
    deleted: &[Target],
    full: bool,
    now: Millis,
) -> Counts {
    let mut counts = Counts::default();
    let mut add: Vec<(Want, Option<i64>)> = Vec::new();
    let mut expire: Vec<i64> = Vec::new();
    let mut seen: HashSet<Target> = HashSet::with_capacity(wanted.len());
    for w in wanted {
        if !seen.insert(w.target.clone()) {
            continue;
        }
        match applied.get(&w.target) {
            None => add.push((w, None)),
            Some((id, until)) if *until <= now => {
                // Ended on its own: a new decision, not a renewal.
                expire.push(*id);
                add.push((w, None));
            }
            Some((id, until)) if *until < now + (w.until - now) / 2 => {
                let id = *id;
                add.push((w, Some(id)));
            }
            Some(_) => {}
        }
    }
    let mut removed: Vec<Target> = Vec::new();
    if full {
        removed.extend(applied.keys().filter(|t| !seen.contains(*t)).cloned());
    }
    removed.extend(deleted.iter().filter(|t| !seen.contains(*t)).cloned());
    // Protected values are counted and logged once, not offered to the store one by one.
    let mut refused_sample: Vec<String> = Vec::new();
    add.retain(|(w, _)| match store.protected_reason(&w.target) {
        Some(reason) => {
            counts.refused += 1;
            if refused_sample.len() < 5 {
                refused_sample.push(format!("{} ({reason})", w.target.value()));
            }
            if let Some((id, _)) = applied.remove(&w.target) {
                expire.push(id);
            }
            false
        }
        None => true,
    });
    if counts.refused > 0 {
        tracing::warn!(list = "community blocklist", refused = counts.refused, sample = ?refused_sample, "Central API values on protected addresses ignored");
    }
    let mut renewed_old: Vec<i64> = Vec::new();
    for chunk in add.chunks(CHUNK) {
        let decisions: Vec<NewDecision> = chunk
            .iter()
            .map(|(w, _)| NewDecision {
                origin: ORIGIN_CAPI.to_owned(),
                scenario: w.scenario.clone(),
                decision_type: "ban".to_owned(),
                target: w.target.clone(),
                until: w.until,
                simulated: false,
            })
            .collect();
        let out = store.add(None, decisions);
        let refused: HashSet<&str> = out.refused.iter().map(|(v, _)| v.as_str()).collect();
        let mut ids = out.decision_ids.into_iter();
        for (w, old) in chunk {
            if !refused.is_empty() && refused.contains(w.target.value().as_str()) {
                counts.refused += 1;
                applied.remove(&w.target);
                continue;
            }
            if let Some(id) = ids.next() {
                applied.insert(w.target.clone(), (id, w.until));
                match old {
                    Some(old) => {
                        renewed_old.push(*old);
                        counts.renewed += 1;
                    }
                    None => counts.added += 1,
                }
            }
        }
    }
    // Renewed values: the old decision ends once the new one is in place.
    store.expire_ids(&renewed_old);
    store.expire_ids(&expire);
    let mut removed_ids = Vec::with_capacity(removed.len());
    for t in &removed {
        if let Some((id, _)) = applied.remove(t) {
            removed_ids.push(id);
        }
    }
    counts.removed = store.expire_ids(&removed_ids);
    counts
}

fn read_state(path: &Path) -> SavedState {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable Central API state file");
            SavedState::default()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => SavedState::default(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the Central API state file");
            SavedState::default()
        }
    }
}

fn write_state(path: &Path, state: &SavedState) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_with_only_invalid_values_are_rejected_and_mixed_ones_filtered() {
        let s: Stream = serde_json::from_str(
            r#"{"new":[{"scenario":"s","scope":"ip","decisions":[{"value":"nope","duration":"1h"},{"value":"999.1.1.1","duration":"1h"}]}],"deleted":null}"#,
        )
        .expect("shape");
        assert!(matches!(validate(&s, 0), Err(CapiError::BadPayload(_))));
        let s: Stream = serde_json::from_str(
            r#"{"new":[{"scenario":"s","scope":"Ip","decisions":[{"value":"192.0.2.1","duration":"1h"},{"value":"x","duration":"1h"},{"value":"192.0.2.2","duration":"-1h"}]}],"deleted":[{"scope":"range","decisions":["198.51.100.0/24"]}]}"#,
        )
        .expect("shape");
        let (w, d, invalid) = validate(&s, 1000).expect("valid");
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].until, 1000 + 3_600_000);
        assert_eq!(
            d,
            vec![Target::parse("Range", "198.51.100.0/24").expect("range")]
        );
        assert_eq!(invalid, 2);
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum_with_jitter_in_the_upper_half() {
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(1800));
        let steps: Vec<u64> = (1..=13).map(|f| backoff(min, max, f).as_secs()).collect();
        assert_eq!(
            steps,
            vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 1800, 1800]
        );
        assert_eq!(backoff(min, max, u32::MAX), max);
        for _ in 0..50 {
            let d = random_up_to(Duration::from_millis(100));
            assert!(d <= Duration::from_millis(100));
        }
        assert_eq!(random_up_to(Duration::ZERO), Duration::ZERO);
        assert_eq!(unsigned("https://x/y?sig=abc"), "https://x/y");
    }
}
