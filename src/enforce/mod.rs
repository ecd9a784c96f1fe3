//! Enforcement: bans become elements of nftables sets in one table, `inet <table>`, that
//! garrison owns alone.
//!
//! Layout of the table (created with `nft -f`, see `ruleset`):
//! - sets `banned-ipv4`, `banned-ipv6` (`flags timeout`) for single addresses and
//!   `banned-ipv4-ranges`, `banned-ipv6-ranges` (`flags interval, timeout`) for ranges; each
//!   element times out with its ban and carries a comment naming it (`ssh-bf #42`,
//!   `lists:firehol #7`);
//! - one base chain per configured hook (`input`, `forward`) at the configured priority, with
//!   one counted rule per set that drops, or jumps to `reject-banned` (TCP reset, else ICMP
//!   administratively prohibited).
//!
//! Elements go to the kernel over netlink, in NFNL batches (see `netlink`, `txn`), from one
//! worker thread fed by a channel: changes queued while a batch is in flight form the next
//! batch, so a burst costs a few transactions and a lone ban is applied at once. The worker
//! checks twice a second that the table is still there and intact, and rebuilds it from the
//! daemon's snapshot when a firewall reload or `nft flush ruleset` removed it.
//!
//! Network namespaces: everything happens in the namespace of the thread calling [`spawn`].

mod elements;
mod error;
mod inspect;
mod model;
mod netlink;
mod ruleset;
mod txn;
mod worker;

pub use elements::SetKind;
pub use error::EnforceError;
pub use inspect::{Inspector, KernelElement};
pub use ruleset::{RuleCounter, table_name_problem};

use crate::config::model::Nftables;
use crossbeam_channel::Sender;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A ban to enforce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    /// The decision's id (shown in the element's comment).
    pub id: i64,
    /// The banned address (a /32 or /128) or range.
    pub net: ipnet::IpNet,
    /// When the ban ends; the kernel element times out then.
    pub expires: jiff::Timestamp,
    /// Where it came from: `crowdsec`, `cscli`, `lists:<name>`, `CAPI`. Shared, not owned:
    /// the store hands out its interned strings, so a million bans cost no string copies.
    pub origin: Arc<str>,
    /// Why: the scenario or list name (shared, like `origin`).
    pub reason: Arc<str>,
}

/// How the enforcer runs.
#[derive(Debug, Clone)]
pub struct EnforcerConfig {
    /// Table, hooks, priority, action and stop behaviour.
    pub nftables: Nftables,
    /// Never banned, whatever the origin (whitelists and admin CIDRs): a ban overlapping any
    /// of these is refused and logged.
    pub never: Vec<ipnet::IpNet>,
    /// Log what would be done; never touch the kernel.
    pub dry_run: bool,
}

/// Counters of the enforcer, for metrics and `garrison nft status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnforcerStats {
    /// The first full sync is done.
    pub synced: bool,
    /// Addresses in `banned-ipv4`.
    pub ipv4: usize,
    /// Addresses in `banned-ipv6`.
    pub ipv6: usize,
    /// Elements (disjoint segments) in `banned-ipv4-ranges`.
    pub ipv4_ranges: usize,
    /// Elements (disjoint segments) in `banned-ipv6-ranges`.
    pub ipv6_ranges: usize,
    /// Range bans behind those segments (nested bans share segments).
    pub range_bans: usize,
    /// Transactions the kernel committed.
    pub batches: u64,
    /// Elements added (including re-additions for renewals).
    pub added: u64,
    /// Elements deleted (including deletions for renewals).
    pub deleted: u64,
    /// Deletions of elements the kernel had already timed out.
    pub already_gone: u64,
    /// Bans refused because they overlap a `never` network.
    pub refused: u64,
    /// Element changes the kernel refused (each logged).
    pub kernel_refused: u64,
    /// Failures (nft, netlink) since start.
    pub errors: u64,
    /// The last failure.
    pub last_error: Option<String>,
    /// Full syncs (start, `resync`, repairs after the table was changed from outside).
    pub full_syncs: u64,
    /// How long the last full sync took.
    pub last_full_sync: Option<Duration>,
    /// From the oldest request of the last batch to the kernel's acknowledgement.
    pub last_apply_latency: Option<Duration>,
    /// The largest such latency seen.
    pub max_apply_latency: Duration,
}

/// A request to the worker.
enum Request {
    Add(Ban, Instant),
    Remove(ipnet::IpNet),
    Resync,
    Shutdown,
}

/// State shared between the handle and the worker.
#[derive(Default)]
struct Shared {
    stats: Mutex<EnforcerStats>,
    synced: Condvar,
    /// Told each incremental transaction's latency (see [`EnforcerHandle::on_applied`]).
    on_applied: std::sync::OnceLock<Box<dyn Fn(Duration) + Send + Sync>>,
}

impl Shared {
    fn update(&self, f: impl FnOnce(&mut EnforcerStats)) {
        let mut s = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        let was = s.synced;
        f(&mut s);
        if s.synced && !was {
            self.synced.notify_all();
        }
    }
}

/// Changes queued beyond this make [`EnforcerHandle::add`] wait for the worker (bounded
/// memory under a flood; the worker drains thousands per millisecond).
const QUEUE: usize = 1 << 16;

/// The daemon's side of the enforcer. Dropping it without [`EnforcerHandle::shutdown`]
/// lets the thread apply what is queued and stop in the background, keeping the table.
pub struct EnforcerHandle {
    tx: Sender<Request>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// A snapshot that streams: called with a sink, it hands every active ban to it, one at a
/// time, so a million bans are never held in memory at once (see [`spawn_streaming`]).
pub type StreamingSnapshot = Arc<dyn Fn(&mut dyn FnMut(Ban)) + Send + Sync>;

/// Spawns the enforcer thread: builds the table, loads `snapshot()` in batches, then
/// applies changes. `snapshot` must return every active ban (the store's view); it is
/// called again whenever the table has to be rebuilt, so the daemon should store a decision
/// before calling [`EnforcerHandle::add`].
///
/// Fails when the table name is unusable or the netlink socket cannot be opened; failures
/// of nft or the kernel afterwards are logged, counted in [`EnforcerStats`] and retried.
pub fn spawn(
    cfg: EnforcerConfig,
    snapshot: Arc<dyn Fn() -> Vec<Ban> + Send + Sync>,
) -> std::io::Result<EnforcerHandle> {
    spawn_streaming(
        cfg,
        Arc::new(move |sink: &mut dyn FnMut(Ban)| snapshot().into_iter().for_each(&mut *sink)),
    )
}

/// [`spawn`] with a snapshot that streams its bans into a sink instead of returning them
/// all: the worker commits them in bounded chunks as they come, so loading a million bans
/// at start needs memory for one chunk, not for the whole snapshot. The snapshot may hand
/// over a ban more than once (a change racing the load); the enforcer is idempotent.
pub fn spawn_streaming(
    cfg: EnforcerConfig,
    snapshot: StreamingSnapshot,
) -> std::io::Result<EnforcerHandle> {
    let invalid = |e: EnforceError| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
    ruleset::check_table_name(&cfg.nftables.table).map_err(invalid)?;
    let nl = if cfg.dry_run {
        None
    } else {
        Some(netlink::Netlink::open().map_err(std::io::Error::other)?)
    };
    let (tx, rx) = crossbeam_channel::bounded(QUEUE);
    let shared = Arc::new(Shared::default());
    let worker = worker::Worker::new(cfg, snapshot, rx, Arc::clone(&shared), nl);
    let thread = std::thread::Builder::new()
        .name("garrison-enforce".into())
        .spawn(move || worker.run())?;
    Ok(EnforcerHandle {
        tx,
        shared,
        thread: Some(thread),
    })
}

impl EnforcerHandle {
    fn send(&self, r: Request) {
        if self.tx.send(r).is_err() {
            tracing::error!("the enforcer thread is gone; change not applied");
        }
    }

    /// A new or renewed decision. A renewal extends the element's timeout (by deleting and
    /// re-adding it: re-adding alone does not refresh timeouts on every kernel); a ban that
    /// ends before the one already enforced changes nothing.
    pub fn add(&self, ban: Ban) {
        self.send(Request::Add(ban, Instant::now()));
    }

    /// Deletes the address or range, whatever decision put it there (an element that has
    /// already timed out is fine). If another decision still covers it, add it again.
    pub fn remove(&self, net: ipnet::IpNet) {
        self.send(Request::Remove(net));
    }

    /// Reconciles now: restores the table if needed, reads the kernel's elements back and
    /// brings them in line with `snapshot()` (missing added, stale deleted, timeouts fixed).
    pub fn resync(&self) {
        self.send(Request::Resync);
    }

    /// Waits until the first full sync is done; false on timeout.
    pub fn wait_synced(&self, timeout: Duration) -> bool {
        let guard = self.shared.stats.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = self
            .shared
            .synced
            .wait_timeout_while(guard, timeout, |s| !s.synced)
            .unwrap_or_else(|p| p.into_inner());
        guard.synced
    }

    /// Calls `f` after each incremental transaction the kernel acknowledged, with the time
    /// since its oldest ban was queued (the daemon's enforcement latency histogram). Set
    /// once; later calls are ignored. `f` runs on the enforcer thread: it must be quick.
    pub fn on_applied(&self, f: impl Fn(Duration) + Send + Sync + 'static) {
        let _ = self.shared.on_applied.set(Box::new(f));
    }

    /// Current counters.
    pub fn stats(&self) -> EnforcerStats {
        self.shared
            .stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Applies what is queued and stops the thread; removes the table only when
    /// `keep_on_stop` is false (kept bans still expire by their timeouts).
    pub fn shutdown(mut self) {
        self.send(Request::Shutdown);
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("the enforcer thread panicked");
        }
    }
}

/// A cloneable sender of changes to the enforcer thread, for the store's subscriber (the
/// handle itself stays with the daemon, which shuts it down).
#[derive(Clone)]
pub struct EnforcerSender {
    tx: Sender<Request>,
}

impl EnforcerSender {
    /// Same as [`EnforcerHandle::add`].
    pub fn add(&self, ban: Ban) {
        if self.tx.send(Request::Add(ban, Instant::now())).is_err() {
            tracing::error!("the enforcer thread is gone; change not applied");
        }
    }

    /// Same as [`EnforcerHandle::remove`].
    pub fn remove(&self, net: ipnet::IpNet) {
        if self.tx.send(Request::Remove(net)).is_err() {
            tracing::error!("the enforcer thread is gone; change not applied");
        }
    }
}

impl EnforcerHandle {
    /// A sender for other threads.
    pub fn sender(&self) -> EnforcerSender {
        EnforcerSender {
            tx: self.tx.clone(),
        }
    }
}

/// Deletes garrison's table `inet <table>` (`garrison nft remove`); no error when it is not
/// there. Works in the calling thread's network namespace.
pub fn remove_table(table: &str) -> Result<(), EnforceError> {
    ruleset::check_table_name(table)?;
    let mut nl = netlink::Netlink::open()?;
    let mut buf = netlink::MsgBuf::default();
    if ruleset::delete_table(&mut nl, &mut buf, table)? {
        tracing::info!(table, "nftables table deleted");
    }
    Ok(())
}

/// The comment of a ban's element: `ssh-bf #42`, `lists:firehol #7`, `cscli manual #3`.
fn write_comment(s: &mut String, ban: &Ban) {
    use std::fmt::Write as _;
    let _ = if &*ban.origin == "crowdsec" || ban.origin.is_empty() {
        write!(s, "{} #{}", ban.reason, ban.id)
    } else if ban.origin.starts_with("lists:") || ban.reason.is_empty() || ban.reason == ban.origin
    {
        write!(s, "{} #{}", ban.origin, ban.id)
    } else {
        write!(s, "{} {} #{}", ban.origin, ban.reason, ban.id)
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ban(origin: &str, reason: &str) -> Ban {
        Ban {
            id: 42,
            net: "192.0.2.1/32".parse().unwrap(),
            expires: jiff::Timestamp::UNIX_EPOCH,
            origin: origin.into(),
            reason: reason.into(),
        }
    }

    #[test]
    fn comments_say_why() {
        let c = |o, r| {
            let mut s = String::new();
            write_comment(&mut s, &ban(o, r));
            s
        };
        assert_eq!(c("crowdsec", "ssh-bf"), "ssh-bf #42");
        assert_eq!(c("lists:firehol", "firehol"), "lists:firehol #42");
        assert_eq!(c("cscli", "manual ban"), "cscli manual ban #42");
        assert_eq!(c("CAPI", ""), "CAPI #42");
    }
}
