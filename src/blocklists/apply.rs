//! What third-party lists and the Central API's subscribed lists share: a list's status (as
//! `garrison blocklists list`, the admin route and the metrics show it), the entries it has
//! in force, and applying a payload to the store as a difference with them.
//!
//! A refresh applies only the difference: new entries become decisions, entries gone are
//! expired, unchanged entries keep their decision (and id) unless less than half the list's
//! duration remains, or the decision type changed, when they are renewed.

use super::parse::Parsed;
use crate::store::{Millis, Store, Target};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};

/// Decisions handed to the store per call, so readers get the index between chunks.
const CHUNK: usize = 20_000;

/// What a list did at its last refresh, and what it holds: a third-party list's, or a list
/// the Central API links to (which has no `ETag` and no schedule of its own).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ListStatus {
    /// The list's name (the scenario of its decisions).
    pub name: String,
    /// Its URL (without a pre-signed URL's signature) or file.
    pub source: String,
    /// The decision type of its entries.
    pub decision_type: String,
    /// Entries with an active decision.
    pub size: usize,
    /// When the last refresh was tried (ms since the epoch).
    pub last_refresh: Option<Millis>,
    /// When a payload was last applied or found unchanged.
    pub last_success: Option<Millis>,
    /// Why the last refresh failed (none when it succeeded).
    pub last_error: Option<String>,
    /// The source had not changed (HTTP 304, same file) at the last refresh.
    pub not_modified: bool,
    /// Decisions made at the last refresh for new entries.
    pub added: usize,
    /// Decisions expired at the last refresh for entries gone.
    pub removed: usize,
    /// Decisions renewed at the last refresh (less than half their duration remained).
    pub renewed: usize,
    /// Entries unchanged at the last refresh.
    pub unchanged: usize,
    /// Invalid entries in the last payload.
    pub invalid: usize,
    /// Entries refused at the last refresh because they cover a protected address.
    pub refused: usize,
    /// The payload's `ETag`, sent back as `If-None-Match`.
    pub etag: Option<String>,
    /// The payload's `Last-Modified` (for files: modification time and size), sent back as
    /// `If-Modified-Since`.
    pub last_modified: Option<String>,
    /// When the next refresh is due.
    pub next_refresh: Option<Millis>,
}

impl ListStatus {
    /// Records what [`apply`] did and what the list now holds.
    pub(crate) fn record(&mut self, counts: Counts, size: usize) {
        self.size = size;
        self.added = counts.added;
        self.removed = counts.removed;
        self.renewed = counts.renewed;
        self.refused = counts.refused;
        self.unchanged = size.saturating_sub(counts.added + counts.renewed);
    }
}

/// An IPv4 address a list has in force, with its decision: 16 bytes (the end in whole
/// seconds is precise enough to decide renewals).
#[derive(Debug, Clone, Copy)]
struct V4Entry {
    addr: u32,
    until_s: u32,
    id: i64,
}

impl V4Entry {
    fn new(addr: u32, id: i64, until: Millis) -> Self {
        let until_s = u32::try_from(until.max(0) / 1000).unwrap_or(u32::MAX);
        V4Entry { addr, until_s, id }
    }

    /// The end, in ms (rounded down to the second).
    fn until(&self) -> Millis {
        Millis::from(self.until_s) * 1000
    }
}

/// A list's entries with an active decision: entry -> (decision id, end). Single IPv4
/// addresses, nearly all of a big list, are a vector sorted by address (16 bytes each,
/// diffed against the next payload in one merge pass); the rest is a map.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    v4: Vec<V4Entry>,
    other: HashMap<Target, (i64, Millis)>,
}

impl Applied {
    /// Entries in force.
    pub(crate) fn len(&self) -> usize {
        self.v4.len() + self.other.len()
    }

    /// Whether no entry is in force.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The decisions of the entries.
    pub(crate) fn ids(&self) -> impl Iterator<Item = i64> + '_ {
        self.v4
            .iter()
            .map(|e| e.id)
            .chain(self.other.values().map(|(id, _)| *id))
    }

    /// Forgets the entries whose decision is one of `ids`.
    pub(crate) fn forget_ids(&mut self, ids: &HashSet<i64>) {
        self.v4.retain(|e| !ids.contains(&e.id));
        self.other.retain(|_, (id, _)| !ids.contains(id));
    }

    /// Builds from (entry, id, end) triples; when an entry has several decisions (a
    /// renewal interrupted by a stop) the longest is kept, ties going to the oldest, and
    /// the others' ids are pushed to `doubles`.
    pub(crate) fn from_decisions(
        found: impl IntoIterator<Item = (Target, i64, Millis)>,
        doubles: &mut Vec<i64>,
    ) -> Applied {
        let mut out = Applied::default();
        for (t, id, until) in found {
            match t {
                Target::Ip(IpAddr::V4(a)) => out.v4.push(V4Entry::new(u32::from(a), id, until)),
                t => match out.other.get_mut(&t) {
                    Some(e) if (e.1, -e.0) >= (until, -id) => doubles.push(id),
                    Some(e) => {
                        doubles.push(e.0);
                        *e = (id, until);
                    }
                    None => {
                        out.other.insert(t, (id, until));
                    }
                },
            }
        }
        out.v4
            .sort_unstable_by_key(|e| (e.addr, std::cmp::Reverse(e.until_s), e.id));
        let mut prev: Option<u32> = None;
        out.v4.retain(|e| {
            if prev == Some(e.addr) {
                doubles.push(e.id);
                return false;
            }
            prev = Some(e.addr);
            true
        });
        out
    }
}

/// What [`apply`] did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counts {
    /// Decisions made for new entries.
    pub added: usize,
    /// Decisions expired for entries gone.
    pub removed: usize,
    /// Decisions replaced by a longer one (or one of the new type).
    pub renewed: usize,
    /// Entries refused because they cover a protected address.
    pub refused: usize,
}

/// A list as [`apply`] writes it to the store.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ListSpec<'a> {
    /// The origin of its decisions (`lists`).
    pub origin: &'a str,
    /// Its name: the scenario of its decisions, and the `list` of its log lines.
    pub name: &'a str,
    /// The type of its decisions.
    pub decision_type: &'a str,
    /// How long its decisions last.
    pub duration: Millis,
    /// Its decisions have another type than `decision_type`: every entry is renewed.
    pub retype: bool,
}

/// Applies a list's entries (`None`: an unchanged source, only renewals) to the store and
/// returns what it did; `applied` follows. The diff is computed on compact keys (IPv4
/// addresses as integers, merged against the sorted applied entries), so a refresh of a
/// million-entry list that changes 1% costs one pass over the list plus the store work for
/// that 1%. Every decision it expires is in `expired` on return.
pub(crate) fn apply(
    store: &Store,
    spec: ListSpec<'_>,
    applied: &mut Applied,
    entries: Option<Parsed>,
    now: Millis,
    expired: &mut Vec<i64>,
) -> Counts {
    let until = now.saturating_add(spec.duration);
    let renew_before = now.saturating_add(spec.duration / 2);
    // An applied entry still in the list is renewed when less than half its duration
    // remains (or it lapsed), or its type changed.
    let stale = |u: Millis| u < renew_before || spec.retype;
    let mut counts = Counts::default();
    // The next entries, in address order: kept ones, and for each IPv4 entry to make a
    // decision for, a placeholder (id `PENDING`) filled in once the store gave its id. No
    // second vector merged afterwards: a million entries copied is tens of ms.
    let mut next_v4: Vec<V4Entry>;
    // The IPv4 entries to make a decision for, in address order: address, position of
    // their placeholder, and whether it renews a decision (whose old decision ends once the
    // new one is in place).
    let mut add_v4: Vec<(u32, u32, bool)> = Vec::new();
    let mut add_other: Vec<(Target, bool)> = Vec::new();
    let mut old_ids: Vec<i64> = Vec::new();
    let mut removed_ids: Vec<i64> = Vec::new();
    match entries {
        Some(parsed) => {
            let mut new_v4 = parsed.v4;
            sort_addresses(&mut new_v4);
            new_v4.dedup();
            let old_v4 = std::mem::take(&mut applied.v4);
            next_v4 = Vec::with_capacity(new_v4.len());
            // Both sides sorted by address: one merge pass.
            let mut old = old_v4.iter().peekable();
            let mut new = new_v4.iter().peekable();
            loop {
                match (old.peek(), new.peek()) {
                    (Some(e), Some(&&a)) if e.addr == a => {
                        if stale(e.until()) {
                            old_ids.push(e.id);
                            add_v4.push((a, position(&next_v4), true));
                            next_v4.push(V4Entry::new(a, PENDING, until));
                        } else {
                            next_v4.push(**e);
                        }
                        old.next();
                        new.next();
                    }
                    (Some(e), Some(&&a)) if e.addr < a => {
                        removed_ids.push(e.id);
                        old.next();
                    }
                    (Some(e), None) => {
                        removed_ids.push(e.id);
                        old.next();
                    }
                    (_, Some(&&a)) => {
                        add_v4.push((a, position(&next_v4), false));
                        next_v4.push(V4Entry::new(a, PENDING, until));
                        new.next();
                    }
                    (None, None) => break,
                }
            }
            let new: HashSet<Target> = parsed.other.into_iter().collect();
            applied.other.retain(|t, (id, _)| {
                let keep = new.contains(t);
                if !keep {
                    removed_ids.push(*id);
                }
                keep
            });
            for t in new {
                match applied.other.get(&t) {
                    None => add_other.push((t, false)),
                    Some((id, u)) if stale(*u) => {
                        old_ids.push(*id);
                        add_other.push((t, true));
                    }
                    Some(_) => {}
                }
            }
        }
        None => {
            // Same entries: renewals become placeholders in place.
            next_v4 = std::mem::take(&mut applied.v4);
            for (i, e) in next_v4.iter_mut().enumerate() {
                if stale(e.until()) {
                    old_ids.push(e.id);
                    add_v4.push((e.addr, i as u32, true));
                    *e = V4Entry::new(e.addr, PENDING, until);
                }
            }
            for (t, (id, u)) in &applied.other {
                if stale(*u) {
                    old_ids.push(*id);
                    add_other.push((t.clone(), true));
                }
            }
        }
    }
    // Protected entries are counted and logged once, not offered to the store one by one;
    // their placeholders go.
    let mut refused_sample: Vec<String> = Vec::new();
    let mut refuse = |t: &Target, counts: &mut Counts| match store.protected_reason(t) {
        Some(reason) => {
            counts.refused += 1;
            if refused_sample.len() < 5 {
                refused_sample.push(format!("{} ({reason})", t.value()));
            }
            true
        }
        None => false,
    };
    let mut dropped = false;
    add_v4.retain(|(a, pos, _)| {
        let refused = refuse(&v4_target(*a), &mut counts);
        if refused {
            next_v4[*pos as usize].id = DROPPED;
            dropped = true;
        }
        !refused
    });
    add_other.retain(|(t, _)| {
        let refused = refuse(t, &mut counts);
        if refused {
            applied.other.remove(t);
        }
        !refused
    });
    if counts.refused > 0 {
        tracing::warn!(list = %spec.name, refused = counts.refused, sample = ?refused_sample, "blocklist entries on protected addresses ignored");
    }
    let (origin, name, decision_type) = (spec.origin, spec.name, spec.decision_type);
    let count = |renewal: bool, counts: &mut Counts| {
        if renewal {
            counts.renewed += 1;
        } else {
            counts.added += 1;
        }
    };
    for chunk in add_v4.chunks(CHUNK) {
        let targets = chunk.iter().map(|(a, _, _)| v4_target(*a));
        let out = store.add_targets(origin, name, decision_type, until, targets);
        let refused: HashSet<&str> = out.refused.iter().map(|(v, _)| v.as_str()).collect();
        let mut ids = out.decision_ids.into_iter();
        for (a, pos, renewal) in chunk {
            let slot = &mut next_v4[*pos as usize];
            // Refused by the store: protected since the check above.
            if !refused.is_empty() && refused.contains(Ipv4Addr::from(*a).to_string().as_str()) {
                counts.refused += 1;
                slot.id = DROPPED;
                dropped = true;
                continue;
            }
            match ids.next() {
                Some(id) => {
                    slot.id = id;
                    count(*renewal, &mut counts);
                }
                None => {
                    slot.id = DROPPED;
                    dropped = true;
                }
            }
        }
    }
    if dropped {
        next_v4.retain(|e| e.id != DROPPED);
    }
    applied.v4 = next_v4;
    for chunk in add_other.chunks(CHUNK) {
        let targets = chunk.iter().map(|(t, _)| t.clone());
        let out = store.add_targets(origin, name, decision_type, until, targets);
        let refused: HashSet<&str> = out.refused.iter().map(|(v, _)| v.as_str()).collect();
        let mut ids = out.decision_ids.into_iter();
        for (t, renewal) in chunk {
            if !refused.is_empty() && refused.contains(t.value().as_str()) {
                counts.refused += 1;
                applied.other.remove(t);
                continue;
            }
            if let Some(id) = ids.next() {
                applied.other.insert(t.clone(), (id, until));
                count(*renewal, &mut counts);
            }
        }
    }
    // Renewed entries: the old decision ends once the new one is in place.
    store.expire_ids(&old_ids);
    counts.removed = store.expire_ids(&removed_ids);
    expired.extend(old_ids);
    expired.extend(removed_ids);
    // The parsed payload, the old entries and the rows queued for the database: tens of MB
    // after a million-entry list.
    crate::store::release_freed_memory();
    counts
}

fn v4_target(a: u32) -> Target {
    Target::Ip(IpAddr::V4(Ipv4Addr::from(a)))
}

/// The id of a placeholder entry: decision ids start at 1.
const PENDING: i64 = 0;

/// The id of a placeholder whose decision was refused: dropped at the end.
const DROPPED: i64 = -1;

/// The position the next entry pushed to `v` takes (lists hold far fewer than 2^32).
fn position(v: &[V4Entry]) -> u32 {
    v.len() as u32
}

/// Sorts addresses: a radix sort where the payload is large and out of order, faster than a
/// comparison sort on a million addresses; lists that come sorted (many do) cost one check.
fn sort_addresses(v: &mut [u32]) {
    if v.is_sorted() {
        return;
    }
    if v.len() < 1 << 14 {
        v.sort_unstable();
        return;
    }
    radix_sort(v);
}

/// Sorts `v` by its top byte into 256 buckets, then each bucket by its three low bytes.
/// Scattering into distant places is what a radix sort pays for (a cache and TLB miss per
/// element); a sort whose every pass spans the whole list (three of 11 bits, before) pays
/// it on each, while here only the first does and the others stay within a bucket, a
/// 256th of the list, in cache: 1M addresses in about half the time.
fn radix_sort(v: &mut [u32]) {
    let mut buf = vec![0u32; v.len()];
    let mut bounds = [0usize; 257];
    for x in v.iter() {
        bounds[(x >> 24) as usize + 1] += 1;
    }
    for i in 1..bounds.len() {
        bounds[i] += bounds[i - 1];
    }
    let mut next = bounds;
    for x in v.iter() {
        let b = (x >> 24) as usize;
        buf[next[b]] = *x;
        next[b] += 1;
    }
    for b in 0..256 {
        let range = bounds[b]..bounds[b + 1];
        // Three passes, from `buf` to `v` and back: the last one ends in `v`.
        let (mut src, mut dst) = (&mut buf[range.clone()], &mut v[range]);
        for shift in [0, 8, 16] {
            let mut starts = [0usize; 256];
            for x in src.iter() {
                starts[(x >> shift) as usize & 0xff] += 1;
            }
            let mut sum = 0;
            for s in starts.iter_mut() {
                let n = *s;
                *s = sum;
                sum += n;
            }
            for x in src.iter() {
                let k = (x >> shift) as usize & 0xff;
                dst[starts[k]] = *x;
                starts[k] += 1;
            }
            std::mem::swap(&mut src, &mut dst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_sort_like_a_comparison_sort() {
        // A xorshift sequence: every octet varies, with duplicates; then one whose top byte
        // never varies (a single bucket). The radix sort on its own too, at sizes where
        // `sort_addresses` would not use it.
        for n in [0, 1, 1_000, 100_000] {
            let mut x: u32 = 0x9e37_79b9;
            let spread: Vec<u32> = (0..n)
                .map(|i| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    if i % 7 == 0 { 0xc000_0201 } else { x }
                })
                .collect();
            let one_bucket: Vec<u32> = spread.iter().map(|x| 0x0a00_0000 | (x >> 8)).collect();
            for v in [spread, one_bucket] {
                let mut expected = v.clone();
                expected.sort_unstable();
                let mut sorted = v.clone();
                sort_addresses(&mut sorted);
                assert_eq!(sorted, expected, "{n}");
                let mut sorted = v;
                radix_sort(&mut sorted);
                assert_eq!(sorted, expected, "{n}");
            }
        }
        let mut small = vec![3, 1, 2];
        sort_addresses(&mut small);
        assert_eq!(small, [1, 2, 3]);
    }
}
