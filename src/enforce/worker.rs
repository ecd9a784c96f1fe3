//! The enforcer thread: turns bans into queued element changes, commits them, watches the
//! table and rebuilds it from the snapshot when needed.

use super::elements::{ElemKey, SetKind};
use super::model::{self, Ranges, Secs, Singles};
use super::netlink::{MsgBuf, Netlink};
use super::ruleset::{self, TableProbe};
use super::txn::{self, CommitError, Pending};
use super::{Ban, EnforceError, EnforcerConfig, EnforcerStats, Request, Shared, StreamingSnapshot};
use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the table is checked (a flushed ruleset is restored within about this).
const TICK: Duration = Duration::from_millis(500);
/// How often the model forgets what the kernel has timed out.
const PURGE_EVERY: Duration = Duration::from_secs(60);
/// Changes taken from the channel before committing, under a flood.
const BATCH_MAX: usize = 65_536;
/// Changes committed at a time while loading a snapshot (bounds the queued memory).
const SYNC_CHUNK: usize = 65_536;
/// Longest element timeout (a longer ban is renewed when garrison restarts or resyncs).
const MAX_TIMEOUT_S: u64 = 365 * 86_400;
/// Longest wait between attempts when the table cannot be built.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Where a ban goes.
enum Target {
    Single(SetKind, u128),
    Range(usize, model::RangeId),
}

fn target(net: &ipnet::IpNet) -> Target {
    let net = net.trunc();
    match net {
        ipnet::IpNet::V4(n) if n.prefix_len() == 32 => {
            Target::Single(SetKind::Ipv4, u32::from(n.addr()) as u128)
        }
        ipnet::IpNet::V4(n) => Target::Range(0, (u32::from(n.network()) as u128, n.prefix_len())),
        ipnet::IpNet::V6(n) if n.prefix_len() == 128 => {
            Target::Single(SetKind::Ipv6, u128::from(n.addr()))
        }
        ipnet::IpNet::V6(n) => Target::Range(1, (u128::from(n.network()), n.prefix_len())),
    }
}

fn now_ms() -> u64 {
    jiff::Timestamp::now().as_millisecond().max(0) as u64
}

/// The enforcer thread's state.
pub(crate) struct Worker {
    cfg: EnforcerConfig,
    snapshot: StreamingSnapshot,
    rx: Receiver<Request>,
    shared: Arc<Shared>,
    nl: Option<Netlink>,
    buf: MsgBuf,
    singles: Singles,
    ranges: [Ranges; 2],
    pending: Pending,
    /// The table as it was after the last full sync, and its rule count.
    baseline: Option<(TableProbe, usize)>,
    need_sync: bool,
    next_sync_attempt: Instant,
    backoff: Duration,
    last_purge: Instant,
    stats: EnforcerStats,
    /// The wall clock, read once per batch of requests.
    now_ms: u64,
}

impl Worker {
    pub(crate) fn new(
        cfg: EnforcerConfig,
        snapshot: StreamingSnapshot,
        rx: Receiver<Request>,
        shared: Arc<Shared>,
        nl: Option<Netlink>,
    ) -> Self {
        Worker {
            cfg,
            snapshot,
            rx,
            shared,
            nl,
            buf: MsgBuf::default(),
            singles: Singles::default(),
            ranges: [
                Ranges::new(SetKind::Ipv4Ranges),
                Ranges::new(SetKind::Ipv6Ranges),
            ],
            pending: Pending::default(),
            baseline: None,
            need_sync: true,
            next_sync_attempt: Instant::now(),
            backoff: TICK,
            last_purge: Instant::now(),
            stats: EnforcerStats::default(),
            now_ms: now_ms(),
        }
    }

    pub(crate) fn run(mut self) {
        self.sync_if_needed();
        let mut next_tick = Instant::now() + TICK;
        let mut stop = false;
        while !stop {
            match self
                .rx
                .recv_timeout(next_tick.saturating_duration_since(Instant::now()))
            {
                Ok(req) => {
                    self.now_ms = now_ms();
                    stop = !self.handle(req);
                    // Take whatever else is queued: it goes into the same transaction.
                    while !stop && self.pending.len() < BATCH_MAX {
                        match self.rx.try_recv() {
                            Ok(req) => stop = !self.handle(req),
                            Err(TryRecvError::Empty) => break,
                            Err(TryRecvError::Disconnected) => stop = true,
                        }
                    }
                    self.flush();
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => stop = true,
            }
            self.sync_if_needed();
            if Instant::now() >= next_tick {
                self.tick();
                next_tick = Instant::now() + TICK;
            }
        }
        self.finish();
    }

    /// Handles one request; false on shutdown.
    fn handle(&mut self, req: Request) -> bool {
        match req {
            Request::Add(ban, at) => {
                self.pending.oldest.get_or_insert(at);
                self.apply_ban(&ban, self.now_ms);
            }
            Request::Remove(net) => self.apply_remove(&net),
            Request::Resync => {
                self.need_sync = true;
                self.next_sync_attempt = Instant::now();
            }
            Request::Shutdown => return false,
        }
        true
    }

    /// True when `ban` overlaps a network that is never banned (and logs it).
    fn refused(&mut self, ban: &Ban) -> bool {
        let hit = self
            .cfg
            .never
            .iter()
            .find(|n| n.contains(&ban.net.network()) || ban.net.contains(&n.network()));
        if let Some(n) = hit {
            tracing::warn!(net = %ban.net, never = %n, origin = %ban.origin, reason = %ban.reason, id = ban.id,
                "ban refused: it overlaps a whitelisted or admin network");
            self.stats.refused += 1;
        }
        hit.is_some()
    }

    /// Queues the changes for a ban.
    fn apply_ban(&mut self, ban: &Ban, now_ms: u64) {
        if self.refused(ban) {
            return;
        }
        let expires_ms =
            (ban.expires.as_millisecond().max(0) as u64).min(now_ms + MAX_TIMEOUT_S * 1000);
        if expires_ms <= now_ms + 500 {
            tracing::debug!(net = %ban.net, "ban already expired; ignored");
            return;
        }
        let now = (now_ms / 1000) as Secs;
        let exp = model::secs(expires_ms);
        match target(&ban.net) {
            Target::Single(set, addr) => {
                // Still enforced (not timed out) until when, if at all.
                let current = self.singles.get(set, addr).filter(|&e| e > now);
                if current.is_some_and(|e| e + model::TOLERANCE >= exp) {
                    return; // a renewal never shortens what is enforced
                }
                let present = current.is_some();
                let key = ElemKey {
                    start: addr,
                    last: addr,
                };
                if present {
                    // Delete + add: re-adding alone does not refresh the timeout everywhere.
                    self.pending.del(set, key);
                }
                self.pending
                    .add(set, key, model::timeout_ms(expires_ms, now_ms), |s| {
                        super::write_comment(s, ban)
                    });
                self.singles.insert(set, addr, exp);
            }
            Target::Range(fam, id) => {
                let ranges = &mut self.ranges[fam];
                if ranges.insert(id, exp, || {
                    let mut s = String::new();
                    super::write_comment(&mut s, ban);
                    s
                }) {
                    ranges.resegment(id, now_ms, &mut self.pending);
                }
            }
        }
    }

    fn apply_remove(&mut self, net: &ipnet::IpNet) {
        if self.cfg.dry_run {
            tracing::info!(%net, "dry run: would unban");
        }
        match target(net) {
            Target::Single(set, addr) => {
                self.singles.remove(set, addr);
                // Even if the model does not know it: the kernel tolerates a missing element.
                self.pending.del(
                    set,
                    ElemKey {
                        start: addr,
                        last: addr,
                    },
                );
            }
            Target::Range(fam, id) => {
                if self.ranges[fam].remove(id) {
                    self.ranges[fam].resegment(id, self.now_ms, &mut self.pending);
                }
            }
        }
    }

    /// Commits what is queued.
    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let oldest = self.pending.oldest;
        let ok = self.commit(false);
        if ok && let Some(at) = oldest {
            let lat = at.elapsed();
            self.stats.last_apply_latency = Some(lat);
            self.stats.max_apply_latency = self.stats.max_apply_latency.max(lat);
            if let Some(f) = self.shared.on_applied.get() {
                f(lat);
            }
        }
        self.publish();
    }

    /// Commits `pending` and clears it; false when it failed (a full sync is then due).
    fn commit(&mut self, atomic: bool) -> bool {
        let Some(nl) = self.nl.as_mut() else {
            self.pending.log_dry_run();
            self.pending.clear();
            return true;
        };
        let res = txn::commit(
            nl,
            &mut self.buf,
            &self.cfg.nftables.table,
            &self.pending,
            atomic,
        );
        self.pending.clear();
        match res {
            Ok(r) => {
                self.stats.batches += r.transactions;
                self.stats.added += r.added;
                self.stats.deleted += r.deleted;
                self.stats.already_gone += r.absent;
                self.stats.kernel_refused += r.refused;
                true
            }
            Err(CommitError::Missing) => {
                tracing::warn!(table = %self.cfg.nftables.table, "garrison's table or a set is gone; rebuilding it");
                self.need_sync = true;
                false
            }
            Err(CommitError::Failed(e)) => {
                self.error(&e);
                self.need_sync = true;
                false
            }
        }
    }

    fn error(&mut self, e: &EnforceError) {
        tracing::error!(error = %e, "nftables enforcement");
        self.stats.errors += 1;
        self.stats.last_error = Some(e.to_string());
    }

    fn sync_if_needed(&mut self) {
        if !self.need_sync || Instant::now() < self.next_sync_attempt {
            return;
        }
        let t0 = Instant::now();
        match self.full_sync() {
            Ok(()) => {
                self.need_sync = false;
                self.backoff = TICK;
                self.stats.synced = true;
                self.stats.full_syncs += 1;
                self.stats.last_full_sync = Some(t0.elapsed());
                tracing::info!(
                    table = %self.cfg.nftables.table,
                    ipv4 = self.singles.len(SetKind::Ipv4),
                    ipv6 = self.singles.len(SetKind::Ipv6),
                    ranges = self.ranges[0].bans() + self.ranges[1].bans(),
                    took_ms = t0.elapsed().as_millis() as u64,
                    "nftables enforcement in sync"
                );
            }
            Err(e) => {
                self.error(&e);
                self.next_sync_attempt = Instant::now() + self.backoff;
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            }
        }
        self.publish();
    }

    /// Makes the table match the configuration and its elements match `snapshot()`.
    ///
    /// A table that is already there (a restart with `keep_on_stop`, a `resync`, a repair)
    /// is not read back (dumping a large set is quadratic in the kernel): its sets are
    /// emptied and refilled in one transaction, so packets never see them empty. A new
    /// table is filled in bounded transactions.
    fn full_sync(&mut self) -> Result<(), EnforceError> {
        self.pending.clear();
        self.baseline = None;
        let table = self.cfg.nftables.table.clone();
        let now_ms = now_ms();
        let mut refill = false;
        if let Some(nl) = self.nl.as_mut() {
            refill = ruleset::probe_table(nl, &mut self.buf, &table)?.is_some();
            let script = ruleset::structure_script(&self.cfg.nftables);
            if let Err(e) = ruleset::run_nft(&script, "update garrison's table") {
                tracing::warn!(error = %e, "recreating garrison's table from scratch");
                ruleset::run_nft(
                    &ruleset::replace_script(&self.cfg.nftables),
                    "create garrison's table",
                )?;
                refill = false;
            }
            let probe = ruleset::probe_table(nl, &mut self.buf, &table)?.ok_or_else(|| {
                EnforceError::Protocol(format!("table inet {table} vanished after its creation"))
            })?;
            let rules = ruleset::dump_rules(nl, &mut self.buf, &table)?.len();
            self.baseline = Some((probe, rules));
        } else {
            tracing::info!("dry run: loading the snapshot without touching nftables");
        }
        self.singles = Singles::default();
        for r in &mut self.ranges {
            *r = Ranges::new(r.set());
        }
        if refill {
            for set in SetKind::ALL {
                self.pending.flush_set(set);
            }
        }
        // Streamed: each chunk goes to the kernel while the next is being read, and memory
        // holds one chunk, never the whole snapshot. After a failure the rest is skipped.
        let snapshot = Arc::clone(&self.snapshot);
        let mut failed: Option<EnforceError> = None;
        snapshot(&mut |ban: Ban| {
            if failed.is_some() {
                return;
            }
            self.apply_ban(&ban, now_ms);
            if !refill
                && self.pending.len() >= SYNC_CHUNK
                && let Err(e) = self.sync_commit(false)
            {
                failed = Some(e);
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        self.sync_commit(refill)
    }

    fn sync_commit(&mut self, atomic: bool) -> Result<(), EnforceError> {
        if self.commit(atomic) {
            Ok(())
        } else {
            Err(EnforceError::Protocol(
                "the table changed while it was being loaded".into(),
            ))
        }
    }

    /// Periodic work: check the table is intact, forget what timed out.
    fn tick(&mut self) {
        if self.last_purge.elapsed() >= PURGE_EVERY {
            let now = (now_ms() / 1000) as Secs;
            self.singles.purge(now);
            for r in &mut self.ranges {
                r.purge(now);
            }
            self.last_purge = Instant::now();
            self.publish();
        }
        let (Some(nl), Some(baseline)) = (self.nl.as_mut(), self.baseline) else {
            return;
        };
        let table = &self.cfg.nftables.table;
        let probe = ruleset::probe_table(nl, &mut self.buf, table);
        let current = match probe {
            Ok(Some(p)) => {
                ruleset::dump_rules(nl, &mut self.buf, table).map(|r| Some((p, r.len())))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        };
        match current {
            Ok(Some(c)) if c == baseline => {}
            Ok(c) => {
                tracing::warn!(
                    table = %table,
                    present = c.is_some(),
                    "garrison's table was changed or removed outside garrison; restoring it"
                );
                self.need_sync = true;
                self.next_sync_attempt = Instant::now();
            }
            Err(e) => self.error(&e),
        }
    }

    /// Copies the counters to the handle's side.
    fn publish(&mut self) {
        self.stats.ipv4 = self.singles.len(SetKind::Ipv4);
        self.stats.ipv6 = self.singles.len(SetKind::Ipv6);
        self.stats.ipv4_ranges = self.ranges[0].segments();
        self.stats.ipv6_ranges = self.ranges[1].segments();
        self.stats.range_bans = self.ranges[0].bans() + self.ranges[1].bans();
        let stats = self.stats.clone();
        self.shared.update(|s| *s = stats);
    }

    /// Stops: applies what is queued, removes the table unless it is to be kept.
    fn finish(mut self) {
        self.flush();
        if self.cfg.nftables.keep_on_stop {
            tracing::info!(table = %self.cfg.nftables.table, "enforcer stopped; bans stay in nftables until they expire");
            return;
        }
        if let Some(nl) = self.nl.as_mut() {
            match ruleset::delete_table(nl, &mut self.buf, &self.cfg.nftables.table) {
                Ok(_) => {
                    tracing::info!(table = %self.cfg.nftables.table, "enforcer stopped; table removed")
                }
                Err(e) => tracing::error!(error = %e, "could not remove garrison's table"),
            }
        }
    }
}
