//! Store: alerts and decisions, in memory for every reader and in SQLite for restarts.
//!
//! The daemon is the only writer of its database. Every change goes through [`Store`]: it
//! updates the in-memory [`DecisionIndex`] under a lock, tells the subscribers (the enforcer)
//! and queues the rows for the writer thread. Readers (the Local API, the CLI routes) query
//! the index and never wait on the disk.

pub mod auth;
pub mod db;
pub mod decision;

pub use decision::{
    Decision, DecisionIndex, Interner, Millis, NewDecision, OtherTarget, Target, canonical_scope,
    now_millis,
};

use crossbeam_channel::Sender;
use db::{AlertRow, Backlog, DbError, DecisionRow, TargetRows, Write};
use ipnet::IpNet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};

/// A change to the set of decisions, as subscribers see it.
#[derive(Debug, Clone, Copy)]
pub enum Change<'a> {
    /// A decision was made (or loaded at start).
    Added(&'a Decision),
    /// A decision was deleted before its end.
    Expired(&'a Decision),
}

/// A subscriber to decision changes. Called with the index lock held: it must only queue
/// work (the enforcer sends on a channel).
pub type Subscriber = Box<dyn Fn(Change<'_>, &DecisionIndex) + Send + Sync>;

/// An alert to store.
#[derive(Debug, Clone, Default)]
pub struct NewAlert {
    /// The machine that raised it (`garrison` for local detections).
    pub machine_id: String,
    /// Scenario.
    pub scenario: String,
    /// Human-readable summary.
    pub message: String,
    /// Events in the bucket.
    pub events_count: i64,
    /// First event time.
    pub start_at: Millis,
    /// Overflow time.
    pub stop_at: Millis,
    /// Source scope (`Ip`, `Range`).
    pub source_scope: String,
    /// Source value.
    pub source_value: String,
    /// The scenario asked for remediation.
    pub remediation: bool,
    /// Simulated.
    pub simulated: bool,
    /// Everything else, CrowdSec-shaped (events sample, labels, capacity, source details).
    pub payload: serde_json::Value,
}

/// What [`Store::add`] did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Added {
    /// The alert id (0 when none was given).
    pub alert_id: i64,
    /// Ids of the decisions made.
    pub decision_ids: Vec<i64>,
    /// Decisions refused because they cover a protected address, with the reason.
    pub refused: Vec<(String, String)>,
}

struct Shared {
    index: RwLock<DecisionIndex>,
    writer: Sender<Write>,
    next_alert_id: AtomicI64,
    subscribers: RwLock<Vec<Subscriber>>,
    protected: RwLock<Vec<(IpNet, Arc<str>)>>,
    /// Writes held back while a group is open (see [`Store::begin_group`]).
    held: std::sync::Mutex<Option<Vec<Write>>>,
    /// Rows queued for the writer thread.
    backlog: Arc<Backlog>,
    path: PathBuf,
}

/// Rows the writer may lag behind before a bulk add waits for it: about 16 MB of queued
/// rows, a fraction of a second of SQLite work.
const MAX_BACKLOG: usize = 131_072;

/// An add of at least this many decisions is a bulk add (a list, a community pull) and
/// waits for the writer when it lags; smaller ones (detections, the API) never wait.
const BULK: usize = 256;

/// The store handle; cheap to clone.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.shared.path)
            .finish()
    }
}

/// The database file inside the state directory.
pub const DB_FILE: &str = "garrison.db";

/// Hands the freed heap back to the system: glibc keeps freed small blocks in its arenas,
/// and after a bulk change to a million decisions (a blocklist applied, its rows written)
/// that is tens of MB resident for nothing.
pub(crate) fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

impl Store {
    /// Opens the database in `state_dir` (created if needed), migrates it, loads every
    /// retained decision and starts the writer thread.
    pub fn open(state_dir: &Path) -> Result<Store, DbError> {
        let path = state_dir.join(DB_FILE);
        if let Err(e) = std::fs::create_dir_all(state_dir) {
            return Err(DbError::Sqlite {
                path,
                source: rusqlite::Error::InvalidPath(
                    format!("{}: {e}", state_dir.display()).into(),
                ),
            });
        }
        let conn = db::open(&path)?;
        let (index, next_alert_id) = db::load(&conn).map_err(|source| DbError::Sqlite {
            path: path.clone(),
            source,
        })?;
        let (tx, rx) = crossbeam_channel::bounded(65536);
        let backlog = Arc::new(Backlog::default());
        db::spawn_writer(conn, rx, path.clone(), Arc::clone(&backlog)).map_err(|e| {
            DbError::Sqlite {
                path: path.clone(),
                source: rusqlite::Error::InvalidPath(format!("writer thread: {e}").into()),
            }
        })?;
        Ok(Store {
            shared: Arc::new(Shared {
                index: RwLock::new(index),
                writer: tx,
                next_alert_id: AtomicI64::new(next_alert_id),
                subscribers: RwLock::new(Vec::new()),
                protected: RwLock::new(Vec::new()),
                held: std::sync::Mutex::new(None),
                backlog,
                path,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// A read-only connection for queries the index does not answer (alerts).
    pub fn reader(&self) -> rusqlite::Result<rusqlite::Connection> {
        let conn = rusqlite::Connection::open_with_flags(
            &self.shared.path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(conn)
    }

    /// The decisions, for reading.
    pub fn read(&self) -> RwLockReadGuard<'_, DecisionIndex> {
        self.shared
            .index
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_index(&self) -> std::sync::RwLockWriteGuard<'_, DecisionIndex> {
        self.shared
            .index
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sets the ranges no decision may cover (whitelists and admin CIDRs), with reasons.
    pub fn set_protected(&self, ranges: Vec<(IpNet, Arc<str>)>) {
        *self
            .shared
            .protected
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = ranges;
    }

    /// Why `target` may not be banned, if it may not.
    pub fn protected_reason(&self, target: &Target) -> Option<Arc<str>> {
        let net = target.net()?;
        let protected = self
            .shared
            .protected
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        protected
            .iter()
            .find(|(p, _)| p.contains(&net) || net.contains(p))
            .map(|(p, r)| Arc::from(format!("{p} ({r})")))
    }

    /// Registers a subscriber to every later change (read the current state with
    /// [`Store::read`] first: the enforcer loads it as its snapshot).
    pub fn subscribe(&self, subscriber: Subscriber) {
        self.shared
            .subscribers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(subscriber);
    }

    fn notify(&self, change: Change<'_>, index: &DecisionIndex) {
        let subs = self
            .shared
            .subscribers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for s in subs.iter() {
            s(change, index);
        }
    }

    fn queue(&self, w: Write) {
        let mut held = self
            .shared
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(group) = held.as_mut() {
            group.push(w);
            return;
        }
        drop(held);
        self.send(w);
    }

    fn send(&self, w: Write) {
        self.shared.backlog.add(w.rows());
        if self.shared.writer.send(w).is_err() {
            tracing::error!("the database writer has stopped; a write is lost");
        }
    }

    /// Stores an alert (when given) and its decisions. Decisions covering a protected
    /// address are refused and logged, whatever their origin.
    pub fn add(&self, alert: Option<NewAlert>, decisions: Vec<NewDecision>) -> Added {
        if decisions.len() >= BULK {
            self.wait_for_writer();
        }
        let now = now_millis();
        let mut out = Added::default();
        let mut accepted = Vec::with_capacity(decisions.len());
        for d in decisions {
            if let Some(reason) = self.protected_reason(&d.target) {
                tracing::warn!(
                    value = %d.target.value(),
                    origin = %d.origin,
                    scenario = %d.scenario,
                    %reason,
                    "refusing a decision on a protected address"
                );
                out.refused.push((d.target.value(), reason.to_string()));
                continue;
            }
            accepted.push(d);
        }
        let alert_row = alert.map(|a| {
            let id = self.shared.next_alert_id.fetch_add(1, Ordering::SeqCst);
            out.alert_id = id;
            AlertRow {
                id,
                uuid: uuid::Uuid::new_v4().to_string(),
                created_at: now,
                alert: a,
            }
        });
        let mut rows = Vec::with_capacity(accepted.len());
        {
            let mut index = self.write_index();
            for d in &accepted {
                let stored = index.assign(d, out.alert_id, now);
                rows.push(DecisionRow::of(&stored, &index));
                out.decision_ids.push(stored.id);
                let id = stored.id;
                index.insert(stored);
                if let Some(d) = index.get(id) {
                    self.notify(Change::Added(d), &index);
                }
            }
            // Queued under the lock, so the writer sees ids in order.
            match alert_row {
                Some(a) => self.queue(Write::Alert(Box::new(a), rows)),
                None if !rows.is_empty() => self.queue(Write::Decisions(rows)),
                None => {}
            }
        }
        out
    }

    /// Waits while the database writer lags far behind (bulk adds only): the rows queued
    /// for it are memory, and a million of them would double the daemon's footprint.
    fn wait_for_writer(&self) {
        self.shared
            .backlog
            .wait_below(MAX_BACKLOG, std::time::Duration::from_secs(30));
    }

    /// Adds decisions that differ only by target (a blocklist, a community list), without
    /// an alert: [`Store::add`] for bulk, with the strings interned once instead of copied
    /// per decision. Targets covering a protected address are refused (and counted in
    /// [`Added::refused`]) but not logged one by one; the caller logs a summary.
    pub fn add_targets(
        &self,
        origin: &str,
        scenario: &str,
        decision_type: &str,
        until: Millis,
        targets: impl IntoIterator<Item = Target>,
    ) -> Added {
        let targets = targets.into_iter();
        if targets.size_hint().0 >= BULK {
            self.wait_for_writer();
        }
        let now = now_millis();
        let mut out = Added::default();
        let mut rows = Vec::with_capacity(targets.size_hint().0);
        let mut index = self.write_index();
        let strings = [
            index.strings.intern(origin),
            index.strings.intern(scenario),
            index.strings.intern(decision_type),
        ];
        for target in targets {
            if let Some(reason) = self.protected_reason(&target) {
                out.refused.push((target.value(), reason.to_string()));
                continue;
            }
            let stored = index.assign_interned(strings, target, until, false, 0, now);
            rows.push((stored.id, stored.target.clone()));
            out.decision_ids.push(stored.id);
            let id = stored.id;
            index.insert(stored);
            if let Some(d) = index.get(id) {
                self.notify(Change::Added(d), &index);
            }
        }
        // Queued under the lock, so the writer sees ids in order.
        if !rows.is_empty() {
            let [origin, scenario, decision_type] =
                strings.map(|s| Arc::clone(index.strings.get(s)));
            self.queue(Write::Targets(Box::new(TargetRows {
                created_at: now,
                until,
                origin,
                scenario,
                decision_type,
                rows,
            })));
        }
        out
    }

    /// Ends now every active decision `select` picks; returns their ids. Like CrowdSec, a
    /// deleted decision is expired, not erased, so bouncers see it in their next delta.
    pub fn expire_where(&self, select: impl Fn(&Decision, &Interner) -> bool) -> Vec<i64> {
        let now = now_millis();
        let mut index = self.write_index();
        let ids: Vec<i64> = index
            .active(now)
            .filter(|d| select(d, &index.strings))
            .map(|d| d.id)
            .collect();
        let mut ends = Vec::with_capacity(ids.len());
        for id in &ids {
            if index.expire(*id, now).is_some() {
                ends.push((*id, now));
                if let Some(d) = index.get(*id) {
                    self.notify(Change::Expired(d), &index);
                }
            }
        }
        if !ends.is_empty() {
            self.queue(Write::Expire(ends));
        }
        ids
    }

    /// Ends now the decisions with these ids that are still active; returns how many ended.
    /// Like [`Store::expire_where`] without its scan of every active decision: blocklists
    /// expire thousands of known ids out of a million active decisions.
    pub fn expire_ids(&self, ids: &[i64]) -> usize {
        if ids.is_empty() {
            return 0;
        }
        let now = now_millis();
        // In id order, so the index finds each where the previous one ended.
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let mut index = self.write_index();
        let ended = index.expire_sorted(&ids, now);
        for d in index.get_sorted(&ended) {
            self.notify(Change::Expired(d), &index);
        }
        let n = ended.len();
        if !ended.is_empty() {
            self.queue(Write::Expire(
                ended.into_iter().map(|id| (id, now)).collect(),
            ));
        }
        n
    }

    /// Deletes alerts (the Local API's `DELETE /v1/alerts`): their active decisions are
    /// expired, so bouncers see them go, and the alert rows are removed. Returns how many
    /// alerts were given.
    pub fn delete_alerts(&self, ids: &[i64]) -> usize {
        if ids.is_empty() {
            return 0;
        }
        let set: std::collections::HashSet<i64> = ids.iter().copied().collect();
        self.expire_where(|d, _| set.contains(&d.alert_id));
        self.queue(Write::DeleteAlerts(ids.to_vec()));
        ids.len()
    }

    /// Forgets decisions that ended more than `retention` ago and alerts older than
    /// `alert_retention` without any retained decision. Returns the decisions pruned.
    pub fn prune(
        &self,
        retention: std::time::Duration,
        alert_retention: std::time::Duration,
    ) -> usize {
        let now = now_millis();
        let cutoff = now.saturating_sub(retention.as_millis() as i64);
        let mut index = self.write_index();
        let old: Vec<i64> = index.ended_before(cutoff).map(|d| d.id).collect();
        for id in &old {
            index.remove(*id);
        }
        let n = old.len();
        if !old.is_empty() {
            self.queue(Write::Remove(old));
        }
        self.queue(Write::PruneAlerts(
            now.saturating_sub(alert_retention.as_millis() as i64),
        ));
        n
    }

    /// Holds writes back until [`Store::end_group`], which commits them in one transaction:
    /// the engine groups a batch of lines' alerts and decisions with the batch's cursor, so
    /// after a crash either all of them are stored, or none and the lines are read again.
    /// The in-memory index and subscribers see changes at once, as always.
    pub fn begin_group(&self) {
        let mut held = self
            .shared
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        held.get_or_insert_with(Vec::new);
    }

    /// Ends a group, adding the cursor (key, value) to it, and queues it.
    pub fn end_group(&self, cursor: Option<(String, String)>) {
        let group = self
            .shared
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let mut group = group.unwrap_or_default();
        if let Some((source, value)) = cursor {
            group.push(Write::Cursor(source, value));
        }
        if !group.is_empty() {
            self.send(Write::Group(group));
        }
    }

    /// Queues an acquisition cursor; it is committed after every write queued before it.
    pub fn save_cursor(&self, source: &str, value: String) {
        self.queue(Write::Cursor(source.to_owned(), value));
    }

    /// Reads a stored acquisition cursor.
    pub fn cursor(&self, source: &str) -> Option<String> {
        let conn = self.reader().ok()?;
        db::read_cursor(&conn, source).ok().flatten()
    }

    /// Waits until everything queued so far is committed (shutdown, tests).
    pub fn flush(&self) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.send(Write::Barrier(tx));
        let _ = rx.recv_timeout(std::time::Duration::from_secs(30));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ban(value: &str, until: Millis) -> NewDecision {
        NewDecision {
            origin: "cscli".into(),
            scenario: "manual".into(),
            decision_type: "ban".into(),
            target: Target::parse("Ip", value).expect("valid"),
            until,
            simulated: false,
        }
    }

    #[test]
    fn decisions_survive_a_reopen_with_their_ids_and_ends() {
        let dir = tempdir();
        let far = now_millis() + 3_600_000;
        {
            let store = Store::open(&dir).expect("open");
            let added = store.add(None, vec![ban("192.0.2.1", far), ban("192.0.2.2", far)]);
            assert_eq!(added.decision_ids, vec![1, 2]);
            let gone = store.expire_where(|d, _| d.id == 2);
            assert_eq!(gone, vec![2]);
            store.save_cursor("file:/x", "{\"offset\":5}".into());
            store.flush();
        }
        let store = Store::open(&dir).expect("reopen");
        let index = store.read();
        let now = now_millis();
        let active: Vec<i64> = index.active(now).map(|d| d.id).collect();
        assert_eq!(active, vec![1]);
        assert!(index.get(2).is_some_and(|d| !d.is_active(now)));
        assert_eq!(index.next_id(), 3);
        drop(index);
        assert_eq!(store.cursor("file:/x").as_deref(), Some("{\"offset\":5}"));
    }

    #[test]
    fn protected_addresses_are_refused_and_subscribers_see_changes() {
        let dir = tempdir();
        let store = Store::open(&dir).expect("open");
        store.set_protected(vec![(
            "10.0.0.0/8".parse().expect("net"),
            Arc::from("private"),
        )]);
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let s = seen.clone();
        store.subscribe(Box::new(move |c, _| {
            let tag = match c {
                Change::Added(d) => format!("+{}", d.id),
                Change::Expired(d) => format!("-{}", d.id),
            };
            s.lock().expect("lock").push(tag);
        }));
        let far = now_millis() + 60_000;
        let added = store.add(None, vec![ban("10.1.2.3", far), ban("203.0.113.9", far)]);
        assert_eq!(added.refused.len(), 1);
        assert_eq!(added.decision_ids, vec![1]);
        store.expire_where(|_, _| true);
        assert_eq!(*seen.lock().expect("lock"), vec!["+1", "-1"]);
    }

    #[test]
    fn bulk_adds_are_stored_indexed_announced_and_refused_like_single_ones() {
        let dir = tempdir();
        let far = now_millis() + 3_600_000;
        let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        {
            let store = Store::open(&dir).expect("open");
            store.set_protected(vec![(
                "10.0.0.0/8".parse().expect("net"),
                Arc::from("private"),
            )]);
            let s = seen.clone();
            store.subscribe(Box::new(move |c, _| {
                if let Change::Added(_) = c {
                    s.fetch_add(1, Ordering::SeqCst);
                }
            }));
            let targets = (0..1000u32)
                .map(|i| Target::Ip(std::net::Ipv4Addr::from(0xc612_0000 + i).into()))
                .chain([Target::parse("Ip", "10.9.9.9").expect("ip")]);
            let out = store.add_targets("lists", "bench", "ban", far, targets);
            assert_eq!(out.decision_ids, (1..=1000).collect::<Vec<i64>>());
            assert_eq!(out.refused.len(), 1);
            store.flush();
        }
        assert_eq!(seen.load(Ordering::SeqCst), 1000);
        let store = Store::open(&dir).expect("reopen");
        let index = store.read();
        assert_eq!(index.active(now_millis()).count(), 1000);
        let d = index.get(1000).expect("last decision");
        assert_eq!(d.target.value(), "198.18.3.231");
        assert_eq!(&**index.strings.get(d.origin), "lists");
        assert_eq!(&**index.strings.get(d.scenario), "bench");
        assert_eq!(d.until, far);
    }

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "garrison-store-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }
}
