//! Third-party blocklists: lists of addresses and ranges fetched from a URL or read from a
//! file, refreshed periodically and applied to the store as decisions with origin `lists`
//! and the list's name as scenario (CrowdSec's convention).
//!
//! A refresh applies only the difference with what the list already put in the store: new
//! entries become decisions, entries gone are expired, unchanged entries keep their decision
//! (and id) unless less than half the list's duration remains, when they are renewed. A
//! payload that cannot be fetched or read changes nothing: the previous list stays in force.
//! Per-list state (counts, validators) lives in memory and in `<state-dir>/blocklists.json`,
//! so a restart with an unchanged list (HTTP 304, same file) applies nothing.

pub mod apply;
pub mod fetch;
pub mod parse;

pub use apply::ListStatus;

use crate::config::model::Blocklist;
use crate::store::{Change, Millis, Store, Target, now_millis};
use apply::{Applied, ListSpec, apply};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// The origin of list decisions.
pub const ORIGIN: &str = "lists";

/// The state file inside the state directory.
pub const STATE_FILE: &str = "blocklists.json";

/// How soon a failed refresh is tried again (or the list's interval, if shorter).
const RETRY: Duration = Duration::from_secs(600);

/// Knobs the daemon leaves at their defaults; tests and benchmarks change them.
#[derive(Debug, Clone)]
pub struct Options {
    /// The largest payload accepted.
    pub size_limit: u64,
    /// How long a download may take.
    pub timeout: Duration,
    /// Refresh every list as soon as the thread starts (otherwise after its interval).
    pub refresh_at_start: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            size_limit: fetch::SIZE_LIMIT,
            timeout: fetch::TIMEOUT,
            refresh_at_start: true,
        }
    }
}

enum Cmd {
    Refresh(Option<String>, Sender<Result<Vec<ListStatus>, String>>),
    Reconfigure(Vec<Blocklist>),
}

/// The blocklist thread's handle; cheap to clone. The thread stops when every handle is
/// dropped.
#[derive(Clone)]
pub struct BlocklistsHandle {
    tx: Sender<Cmd>,
    status: Arc<Mutex<Vec<ListStatus>>>,
}

impl std::fmt::Debug for BlocklistsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlocklistsHandle").finish_non_exhaustive()
    }
}

impl BlocklistsHandle {
    /// Refreshes one list (or all) now and waits for the outcome: the refreshed lists'
    /// status. An unknown name is an error; a list that fails to refresh is not (its
    /// `last_error` says why).
    pub fn refresh(&self, name: Option<&str>) -> Result<Vec<ListStatus>, String> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.tx
            .send(Cmd::Refresh(name.map(str::to_owned), tx))
            .map_err(|_| "the blocklist thread has stopped".to_owned())?;
        rx.recv()
            .map_err(|_| "the blocklist thread has stopped".to_owned())?
    }

    /// Every list's status, in configuration order.
    pub fn status(&self) -> Vec<ListStatus> {
        self.status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the configured lists (on reload): lists gone have their decisions expired,
    /// new or changed lists are refreshed at once.
    pub fn reconfigure(&self, lists: Vec<Blocklist>) {
        if self.tx.send(Cmd::Reconfigure(lists)).is_err() {
            tracing::error!("the blocklist thread has stopped; lists not reconfigured");
        }
    }
}

/// Starts the blocklist thread with the default [`Options`]. Relative `file` paths are
/// relative to `config_dir` (the configuration file's directory).
pub fn spawn(
    lists: Vec<Blocklist>,
    store: Store,
    state_dir: PathBuf,
    config_dir: Option<PathBuf>,
) -> std::io::Result<BlocklistsHandle> {
    spawn_with(lists, store, state_dir, config_dir, Options::default())
}

/// [`spawn`] with explicit [`Options`].
pub fn spawn_with(
    lists: Vec<Blocklist>,
    store: Store,
    state_dir: PathBuf,
    config_dir: Option<PathBuf>,
    options: Options,
) -> std::io::Result<BlocklistsHandle> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let status = Arc::new(Mutex::new(Vec::new()));
    // Ids of list decisions expired by anyone (the CLI too): such entries are no longer
    // applied, and the next refresh makes them again.
    let gone = Arc::new(Mutex::new(HashSet::new()));
    let weak: Weak<Mutex<HashSet<i64>>> = Arc::downgrade(&gone);
    store.subscribe(Box::new(move |change, index| {
        if let Change::Expired(d) = change
            && &**index.strings.get(d.origin) == ORIGIN
            && let Some(gone) = weak.upgrade()
        {
            gone.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(d.id);
        }
    }));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(options.timeout))
        .http_status_as_error(false)
        .user_agent(concat!("garrison/v", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut worker = Worker {
        store,
        state_path: state_dir.join(STATE_FILE),
        config_dir,
        options,
        agent,
        lists: Vec::new(),
        status: status.clone(),
        gone,
    };
    worker.configure(lists, true);
    std::thread::Builder::new()
        .name("garrison-lists".into())
        .spawn(move || worker.run(rx))?;
    Ok(BlocklistsHandle { tx, status })
}

/// A list as the worker keeps it.
struct List {
    cfg: Blocklist,
    status: ListStatus,
    /// Entries with an active decision.
    applied: Applied,
    due: Millis,
}

struct Worker {
    store: Store,
    state_path: PathBuf,
    config_dir: Option<PathBuf>,
    options: Options,
    agent: ureq::Agent,
    lists: Vec<List>,
    status: Arc<Mutex<Vec<ListStatus>>>,
    gone: Arc<Mutex<HashSet<i64>>>,
}

fn source_of(cfg: &Blocklist) -> String {
    match (&cfg.url, &cfg.file) {
        (Some(u), _) => u.clone(),
        (None, Some(f)) => f.clone(),
        (None, None) => String::new(),
    }
}

fn millis(d: Duration) -> Millis {
    Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
}

impl Worker {
    fn run(mut self, rx: Receiver<Cmd>) {
        loop {
            let now = now_millis();
            for i in 0..self.lists.len() {
                if self.lists[i].due <= now {
                    self.refresh(i);
                }
            }
            let next = self.lists.iter().map(|l| l.due).min();
            let wait = next.map_or(Duration::from_secs(3600), |d| {
                Duration::from_millis(u64::try_from(d - now_millis()).unwrap_or(0))
            });
            match rx.recv_timeout(wait) {
                Ok(Cmd::Refresh(name, reply)) => {
                    let picked: Vec<usize> = (0..self.lists.len())
                        .filter(|i| name.as_ref().is_none_or(|n| &self.lists[*i].cfg.name == n))
                        .collect();
                    if picked.is_empty()
                        && let Some(n) = name
                    {
                        let _ = reply.send(Err(format!("no blocklist named `{n}`")));
                        continue;
                    }
                    for i in &picked {
                        self.refresh(*i);
                    }
                    let out = picked.iter().map(|i| self.lists[*i].status.clone());
                    let _ = reply.send(Ok(out.collect()));
                }
                Ok(Cmd::Reconfigure(lists)) => self.configure(lists, false),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Takes a new set of lists: at start, the applied entries and validators come from
    /// the store and the state file; on reload, kept lists keep theirs.
    fn configure(&mut self, lists: Vec<Blocklist>, start: bool) {
        let mut saved: HashMap<String, ListStatus> = if start {
            read_state(&self.state_path)
        } else {
            HashMap::new()
        };
        let mut old: HashMap<String, List> = self
            .lists
            .drain(..)
            .map(|l| (l.cfg.name.clone(), l))
            .collect();
        let now = now_millis();
        let first_due = |refresh: Duration| {
            if start && !self.options.refresh_at_start {
                now + millis(refresh)
            } else {
                now
            }
        };
        let mut fresh: Vec<String> = Vec::new();
        for cfg in lists {
            let same = |l: &List| {
                l.cfg.url == cfg.url
                    && l.cfg.file == cfg.file
                    && l.cfg.format == cfg.format
                    && l.cfg.decision_type == cfg.decision_type
                    && l.cfg.duration.0 == cfg.duration.0
            };
            match old.remove(&cfg.name) {
                Some(mut l) if same(&l) => {
                    l.due = l.due.min(now + millis(cfg.refresh.0));
                    l.cfg = cfg;
                    self.lists.push(l);
                }
                Some(mut l) => {
                    // Changed: fetch again in full; a new type or duration renews everything.
                    l.status.etag = None;
                    l.status.last_modified = None;
                    l.status.source = source_of(&cfg);
                    l.due = now;
                    l.cfg = cfg;
                    self.lists.push(l);
                }
                None => {
                    let mut status = saved.remove(&cfg.name).unwrap_or_default();
                    if status.source != source_of(&cfg) {
                        status.etag = None;
                        status.last_modified = None;
                    }
                    status.name = cfg.name.clone();
                    status.source = source_of(&cfg);
                    fresh.push(cfg.name.clone());
                    let due = first_due(cfg.refresh.0);
                    self.lists.push(List {
                        cfg,
                        status,
                        applied: Applied::default(),
                        due,
                    });
                }
            }
        }
        // Lists removed from the configuration (now, or while the daemon was down) take
        // their decisions with them; decisions of lists never ours (the Central API's) stay.
        let mut dropped: HashSet<String> = old.into_keys().collect();
        dropped.extend(saved.into_keys());
        self.load_applied(&fresh, &dropped);
        self.publish();
        self.save();
    }

    /// Reads the active decisions of `names` from the store into their lists, and expires
    /// those of `dropped` lists.
    fn load_applied(&mut self, names: &[String], dropped: &HashSet<String>) {
        if names.is_empty() && dropped.is_empty() {
            return;
        }
        let now = now_millis();
        let mut found: HashMap<String, Vec<(Target, i64, Millis)>> = HashMap::new();
        let mut doubles: Vec<i64> = Vec::new();
        let mut expire: Vec<i64> = Vec::new();
        {
            let index = self.store.read();
            for d in index.active(now) {
                if &**index.strings.get(d.origin) != ORIGIN {
                    continue;
                }
                let scenario = &**index.strings.get(d.scenario);
                if dropped.contains(scenario) {
                    expire.push(d.id);
                    continue;
                }
                if !names.iter().any(|n| n == scenario) {
                    continue;
                }
                found.entry(scenario.to_owned()).or_default().push((
                    d.target.clone(),
                    d.id,
                    d.until,
                ));
            }
        }
        let mut applied: HashMap<String, Applied> = found
            .into_iter()
            .map(|(name, ds)| (name, Applied::from_decisions(ds, &mut doubles)))
            .collect();
        if !dropped.is_empty() {
            let n = self.store.expire_ids(&expire);
            tracing::info!(lists = ?dropped, expired = n, "blocklists removed from the configuration");
        }
        self.store.expire_ids(&doubles);
        for l in &mut self.lists {
            if let Some(a) = applied.remove(&l.cfg.name) {
                l.applied = a;
            }
            // The store does not hold what the state file says was applied (a new
            // database): fetch in full.
            if l.applied.len() != l.status.size {
                l.status.etag = None;
                l.status.last_modified = None;
            }
            l.status.size = l.applied.len();
        }
    }

    fn publish(&self) {
        let all: Vec<ListStatus> = self.lists.iter().map(|l| l.status.clone()).collect();
        *self
            .status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = all;
    }

    fn save(&self) {
        let map: HashMap<&str, &ListStatus> = self
            .lists
            .iter()
            .map(|l| (l.cfg.name.as_str(), &l.status))
            .collect();
        if let Err(e) = write_state(&self.state_path, &map) {
            tracing::warn!(path = %self.state_path.display(), error = %e, "cannot save the blocklists' state");
        }
    }

    fn refresh(&mut self, i: usize) {
        // Entries whose decision someone else expired are no longer applied.
        let gone = std::mem::take(
            &mut *self
                .gone
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if !gone.is_empty() {
            for l in &mut self.lists {
                l.applied.forget_ids(&gone);
            }
        }
        let started = std::time::Instant::now();
        let now = now_millis();
        let l = &self.lists[i];
        let fetched = match (&l.cfg.url, &l.cfg.file) {
            (Some(url), _) => fetch::url(
                &self.agent,
                url,
                l.status.etag.as_deref(),
                l.status.last_modified.as_deref(),
                self.options.size_limit,
            ),
            (None, Some(file)) => {
                let path = match &self.config_dir {
                    Some(dir) if Path::new(file).is_relative() => dir.join(file),
                    _ => PathBuf::from(file),
                };
                fetch::file(
                    &path,
                    l.status.last_modified.as_deref(),
                    self.options.size_limit,
                )
            }
            (None, None) => Err("neither `url` nor `file` is set".to_owned()),
        };
        let result = fetched.and_then(|f| match f {
            fetch::Fetched::NotModified => Ok(None),
            fetch::Fetched::Body {
                bytes,
                etag,
                last_modified,
            } => parse::parse(&bytes, l.cfg.format)
                .map(|p| Some((p, etag, last_modified)))
                .map_err(|e| format!("{}: {e}", source_of(&l.cfg))),
        });
        let retry = millis(RETRY.min(l.cfg.refresh.0));
        let interval = millis(l.cfg.refresh.0);
        let l = &mut self.lists[i];
        l.status.last_refresh = Some(now);
        match result {
            Err(e) => {
                tracing::error!(list = %l.cfg.name, error = %e, "blocklist not refreshed; the previous one stays in force");
                l.status.last_error = Some(e);
                l.due = now + retry;
            }
            Ok(fetched) => {
                let not_modified = fetched.is_none();
                let entries = match fetched {
                    None => None,
                    Some((parsed, etag, last_modified)) => {
                        if parsed.invalid > 0 {
                            tracing::warn!(list = %l.cfg.name, invalid = parsed.invalid, sample = ?parsed.sample, "blocklist entries ignored: neither an address nor a CIDR range");
                        }
                        l.status.invalid = parsed.invalid;
                        l.status.etag = etag;
                        l.status.last_modified = last_modified;
                        Some(parsed)
                    }
                };
                let spec = ListSpec {
                    origin: ORIGIN,
                    name: &l.cfg.name,
                    decision_type: &l.cfg.decision_type,
                    duration: millis(l.cfg.duration.0),
                    retype: l.status.decision_type != l.cfg.decision_type
                        && !l.status.decision_type.is_empty(),
                };
                let mut expired = Vec::new();
                let counts = apply(
                    &self.store,
                    spec,
                    &mut l.applied,
                    entries,
                    now,
                    &mut expired,
                );
                // Those expirations are ours and already reflected in `applied`: the
                // subscriber need not make the next refresh look for them.
                {
                    let mut gone = self
                        .gone
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    for id in &expired {
                        gone.remove(id);
                    }
                }
                l.status.record(counts, l.applied.len());
                l.status.not_modified = not_modified;
                l.status.last_error = None;
                l.status.last_success = Some(now);
                l.due = now + interval;
                tracing::info!(
                    list = %l.cfg.name,
                    size = l.status.size,
                    added = counts.added,
                    removed = counts.removed,
                    renewed = counts.renewed,
                    refused = counts.refused,
                    not_modified,
                    ms = started.elapsed().as_millis() as u64,
                    "blocklist refreshed"
                );
            }
        }
        let l = &mut self.lists[i];
        l.status.next_refresh = Some(l.due);
        l.status.decision_type = l.cfg.decision_type.clone();
        self.publish();
        self.save();
    }
}

fn read_state(path: &Path) -> HashMap<String, ListStatus> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable blocklist state file");
            HashMap::new()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the blocklist state file");
            HashMap::new()
        }
    }
}

fn write_state(path: &Path, map: &HashMap<&str, &ListStatus>) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(map).map_err(std::io::Error::other)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
