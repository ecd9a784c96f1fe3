//! What garrison believes is in its sets: expiry per single address, and for ranges the
//! bans themselves plus the disjoint segments derived from them that are in the kernel.
//!
//! Interval sets refuse overlapping elements (nft merges them in userland only). CIDR
//! ranges are either disjoint or nested, so a nested ban is resolved here: the kernel holds
//! disjoint segments, each timing out at the latest expiry among the bans covering it. Every
//! address thus stays banned exactly as long as its longest ban, and the kernel's own
//! timeouts do the unbanning.

use super::elements::{ElemKey, SetKind};
use super::txn::Pending;
use std::collections::{BTreeMap, HashMap};

/// Seconds since the Unix epoch (u32 lasts until 2106; later expiries saturate).
pub(crate) type Secs = u32;

/// Expiries match if they differ by no more than this (timeouts are whole-second-ish and
/// a reconcile reads back remaining times).
pub(crate) const TOLERANCE: Secs = 2;

/// Element timeout for an expiry, in ms but rounded to whole seconds (so that `nft list`
/// reads `timeout 4h`), at least 1 s.
pub(crate) fn timeout_ms(expires_ms: u64, now_ms: u64) -> u64 {
    ((expires_ms.saturating_sub(now_ms) + 500) / 1000).max(1) * 1000
}

/// An expiry in ms as [`Secs`] (rounded, saturating).
pub(crate) fn secs(ms: u64) -> Secs {
    ((ms + 500) / 1000).min(Secs::MAX as u64) as Secs
}

/// Expiry of the single addresses in the kernel.
#[derive(Debug, Default)]
pub(crate) struct Singles {
    v4: HashMap<u32, Secs>,
    v6: HashMap<u128, Secs>,
}

impl Singles {
    /// The expiry of `addr`, if it is in the model.
    pub(crate) fn get(&self, set: SetKind, addr: u128) -> Option<Secs> {
        if set.is_v4() {
            self.v4.get(&(addr as u32)).copied()
        } else {
            self.v6.get(&addr).copied()
        }
    }

    /// Records `addr` as in the kernel until `expires`.
    pub(crate) fn insert(&mut self, set: SetKind, addr: u128, expires: Secs) {
        if set.is_v4() {
            self.v4.insert(addr as u32, expires);
        } else {
            self.v6.insert(addr, expires);
        }
    }

    /// Forgets `addr`; its recorded expiry.
    pub(crate) fn remove(&mut self, set: SetKind, addr: u128) -> Option<Secs> {
        if set.is_v4() {
            self.v4.remove(&(addr as u32))
        } else {
            self.v6.remove(&addr)
        }
    }

    /// Number of addresses in `set`'s model.
    pub(crate) fn len(&self, set: SetKind) -> usize {
        if set.is_v4() {
            self.v4.len()
        } else {
            self.v6.len()
        }
    }

    /// Forgets what has expired (the kernel timed it out).
    pub(crate) fn purge(&mut self, now: Secs) {
        self.v4.retain(|_, e| *e > now);
        self.v6.retain(|_, e| *e > now);
    }
}

/// A range ban: `(first address, prefix length)`.
pub(crate) type RangeId = (u128, u8);

/// A range ban in the model.
#[derive(Debug, Clone)]
struct RangeBan {
    expires: Secs,
    comment: String,
}

/// A disjoint segment in the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    last: u128,
    expires: Secs,
    /// The ban whose expiry (and comment) the segment carries.
    owner: RangeId,
}

/// The range bans of one family and the segments derived from them.
#[derive(Debug)]
pub(crate) struct Ranges {
    set: SetKind,
    bits: u8,
    bans: BTreeMap<RangeId, RangeBan>,
    segments: BTreeMap<u128, Segment>,
}

impl Ranges {
    /// An empty model for `set` (an interval set).
    pub(crate) fn new(set: SetKind) -> Self {
        let bits = if set.is_v4() { 32 } else { 128 };
        Ranges {
            set,
            bits,
            bans: BTreeMap::new(),
            segments: BTreeMap::new(),
        }
    }

    /// The interval set this model is for.
    pub(crate) fn set(&self) -> SetKind {
        self.set
    }

    /// The last address of a range.
    fn last(&self, (start, prefix): RangeId) -> u128 {
        let host = self.bits - prefix;
        if host >= 128 {
            u128::MAX
        } else {
            start | ((1u128 << host) - 1)
        }
    }

    /// Number of segments in the kernel.
    pub(crate) fn segments(&self) -> usize {
        self.segments.len()
    }

    /// Number of range bans.
    pub(crate) fn bans(&self) -> usize {
        self.bans.len()
    }

    /// Records a ban; the expiry only ever grows (a renewal). True when it changed.
    pub(crate) fn insert(
        &mut self,
        id: RangeId,
        expires: Secs,
        comment: impl FnOnce() -> String,
    ) -> bool {
        match self.bans.get_mut(&id) {
            Some(b) if b.expires + TOLERANCE >= expires => false,
            Some(b) => {
                b.expires = expires;
                b.comment = comment();
                true
            }
            None => {
                self.bans.insert(
                    id,
                    RangeBan {
                        expires,
                        comment: comment(),
                    },
                );
                true
            }
        }
    }

    /// Forgets a ban. True when it was there.
    pub(crate) fn remove(&mut self, id: RangeId) -> bool {
        self.bans.remove(&id).is_some()
    }

    /// The outermost ban containing `id` (or `id` itself): the span whose segments a
    /// change to `id` can affect.
    fn cluster(&self, id: RangeId) -> (u128, u128) {
        for p in 0..id.1 {
            let host = self.bits - p;
            let start = if host >= 128 {
                0
            } else {
                id.0 & !((1u128 << host) - 1)
            };
            if self.bans.contains_key(&(start, p)) {
                return (start, self.last((start, p)));
            }
        }
        (id.0, self.last(id))
    }

    /// Queues the kernel changes that bring the segments under the cluster of `id` in line
    /// with the bans (deletions first, then additions).
    pub(crate) fn resegment(&mut self, id: RangeId, now_ms: u64, out: &mut Pending) {
        let (first, last) = self.cluster(id);
        self.resegment_span(first, last, now_ms, out);
    }

    fn resegment_span(&mut self, first: u128, last: u128, now_ms: u64, out: &mut Pending) {
        let now = (now_ms / 1000) as Secs;
        self.bans.retain(|_, b| b.expires > now);
        let wanted = self.compute(first, last);
        let old: Vec<(u128, Segment)> = self
            .segments
            .range(first..=last)
            .map(|(&s, &g)| (s, g))
            .collect();
        let same = |a: &Segment, b: &Segment| {
            a.last == b.last && a.expires.abs_diff(b.expires) <= TOLERANCE
        };
        for (start, seg) in &old {
            let keep = wanted.iter().any(|(s, w)| s == start && same(w, seg));
            if !keep {
                self.segments.remove(start);
                if seg.expires > now {
                    out.del(
                        self.set,
                        ElemKey {
                            start: *start,
                            last: seg.last,
                        },
                    );
                }
            }
        }
        for (start, seg) in wanted {
            match self.segments.get_mut(&start) {
                Some(kept) if same(kept, &seg) => kept.owner = seg.owner,
                _ => {
                    let comment = self.bans.get(&seg.owner).map_or("", |b| b.comment.as_str());
                    out.add(
                        self.set,
                        ElemKey {
                            start,
                            last: seg.last,
                        },
                        timeout_ms(seg.expires as u64 * 1000, now_ms),
                        |s| s.push_str(comment),
                    );
                    self.segments.insert(start, seg);
                }
            }
        }
    }

    /// The disjoint segments of the bans inside `[first, last]`: each address gets the
    /// latest expiry of the bans covering it; neighbours with the same owner are merged.
    fn compute(&self, first: u128, last: u128) -> Vec<(u128, Segment)> {
        struct Open {
            last: u128,
            expires: Secs,
            owner: RangeId,
        }
        let mut out: Vec<(u128, Segment)> = Vec::new();
        let mut emit = |from: u128, to: u128, o: &Open| {
            if let Some((_, prev)) = out.last_mut()
                && prev.owner == o.owner
                && prev.last.checked_add(1) == Some(from)
            {
                prev.last = to;
                return;
            }
            out.push((
                from,
                Segment {
                    last: to,
                    expires: o.expires,
                    owner: o.owner,
                },
            ));
        };
        let mut stack: Vec<Open> = Vec::new();
        // Next address not yet covered by an emitted piece; None past the last address.
        let mut cursor: Option<u128> = Some(first);
        // (start, prefix) order visits an enclosing range before the ranges inside it.
        for (&id, ban) in self.bans.range((first, 0)..=(last, u8::MAX)) {
            let r_last = self.last(id);
            while let Some(top) = stack.pop_if(|t| t.last < id.0) {
                if let Some(c) = cursor.filter(|&c| c <= top.last) {
                    emit(c, top.last, &top);
                }
                cursor = top.last.checked_add(1);
            }
            if let (Some(top), Some(c)) = (stack.last(), cursor)
                && c < id.0
            {
                emit(c, id.0 - 1, top);
            }
            cursor = Some(id.0);
            let open = match stack.last() {
                Some(top) if top.expires >= ban.expires => Open {
                    last: r_last,
                    expires: top.expires,
                    owner: top.owner,
                },
                _ => Open {
                    last: r_last,
                    expires: ban.expires,
                    owner: id,
                },
            };
            stack.push(open);
        }
        while let Some(top) = stack.pop() {
            if let Some(c) = cursor.filter(|&c| c <= top.last) {
                emit(c, top.last, &top);
            }
            cursor = top.last.checked_add(1);
        }
        out
    }

    /// Forgets what has expired (the kernel timed it out).
    pub(crate) fn purge(&mut self, now: Secs) {
        self.bans.retain(|_, b| b.expires > now);
        self.segments.retain(|_, s| s.expires > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: u64 = 1_000_000_000_000;
    const NOW: Secs = (NOW_MS / 1000) as Secs;

    fn v4(a: [u8; 4], p: u8) -> RangeId {
        (u32::from_be_bytes(a) as u128, p)
    }

    fn segs(r: &Ranges) -> Vec<(u128, u128, Secs)> {
        r.segments
            .iter()
            .map(|(&s, g)| (s, g.last, g.expires))
            .collect()
    }

    fn add(r: &mut Ranges, id: RangeId, exp: Secs, out: &mut Pending) {
        if r.insert(id, exp, || format!("{id:?}")) {
            r.resegment(id, NOW_MS, out);
        }
    }

    #[test]
    fn nested_shorter_ban_is_covered_by_the_outer_one() {
        let mut r = Ranges::new(SetKind::Ipv4Ranges);
        let mut out = Pending::default();
        add(&mut r, v4([10, 0, 0, 0], 8), NOW + 100, &mut out);
        add(&mut r, v4([10, 1, 0, 0], 16), NOW + 50, &mut out);
        assert_eq!(segs(&r), vec![(0x0a000000, 0x0affffff, NOW + 100)]);
        assert_eq!(out.len(), 1, "the inner ban changed nothing in the kernel");
    }

    #[test]
    fn nested_longer_ban_splits_the_outer_one() {
        let mut r = Ranges::new(SetKind::Ipv4Ranges);
        let mut out = Pending::default();
        add(&mut r, v4([10, 0, 0, 0], 8), NOW + 100, &mut out);
        add(&mut r, v4([10, 1, 0, 0], 16), NOW + 500, &mut out);
        assert_eq!(
            segs(&r),
            vec![
                (0x0a000000, 0x0a00ffff, NOW + 100),
                (0x0a010000, 0x0a01ffff, NOW + 500),
                (0x0a020000, 0x0affffff, NOW + 100),
            ]
        );
        assert_eq!(
            out.len(),
            1 + 1 + 3,
            "add /8, then delete it and add three pieces"
        );
        // Removing the outer ban leaves the inner one alone.
        out.clear();
        assert!(r.remove(v4([10, 0, 0, 0], 8)));
        r.resegment(v4([10, 0, 0, 0], 8), NOW_MS, &mut out);
        assert_eq!(segs(&r), vec![(0x0a010000, 0x0a01ffff, NOW + 500)]);
        assert_eq!(out.len(), 2, "two outer pieces deleted, the inner one kept");
    }

    #[test]
    fn renewal_extends_and_disjoint_ranges_are_independent() {
        let mut r = Ranges::new(SetKind::Ipv4Ranges);
        let mut out = Pending::default();
        add(&mut r, v4([192, 0, 2, 0], 24), NOW + 10, &mut out);
        add(&mut r, v4([198, 51, 100, 0], 24), NOW + 10, &mut out);
        out.clear();
        add(&mut r, v4([192, 0, 2, 0], 24), NOW + 1000, &mut out);
        assert_eq!(out.len(), 2, "renewal = delete + add of that range only");
        out.clear();
        add(&mut r, v4([192, 0, 2, 0], 24), NOW + 20, &mut out);
        assert_eq!(out.len(), 0, "a shorter ban never shortens a longer one");
        assert_eq!(segs(&r)[0].2, NOW + 1000);
    }

    #[test]
    fn deep_nesting_and_the_whole_space() {
        let mut r = Ranges::new(SetKind::Ipv6Ranges);
        let mut out = Pending::default();
        add(&mut r, (0, 0), NOW + 10, &mut out);
        add(&mut r, (u128::MAX << 64, 64), NOW + 30, &mut out);
        add(&mut r, (u128::MAX << 8, 120), NOW + 20, &mut out);
        let s = segs(&r);
        assert_eq!(
            s,
            vec![
                (0, (u128::MAX << 64) - 1, NOW + 10),
                (u128::MAX << 64, u128::MAX, NOW + 30)
            ]
        );
    }
}
