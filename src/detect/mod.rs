//! Detection: events pour into the buckets of every scenario whose filter matches; a bucket
//! that overflows emits an [`Alert`].
//!
//! Semantics follow CrowdSec's (`pkg/leakybucket`):
//! - leaky: a token bucket that starts full with `capacity` tokens and regains one token per
//!   `leakspeed`; a pour with less than one whole token overflows, so `capacity N` overflows
//!   on the N+1-th event of a burst. A bucket idle for `(capacity + 1) × leakspeed` dies.
//! - trigger: every pour overflows.
//! - counter: overflows `duration` after its first pour, with the count.
//! - conditional: overflows when `condition` (over the queue) becomes true; lives `leakspeed`
//!   after its last pour.
//! - `distinct`: an event whose distinct value the bucket already saw is ignored (no token,
//!   no count, no timer reset). `cancel-on`: kills the bucket without an alert.
//! - `blackhole`: after an alert for a key, alerts for the same key within the blackhole are
//!   dropped (the bucket still dies); this survives bucket re-creation.
//! - An overflow kills the bucket; the next event starts a fresh, full one.
//!
//! Time is passed in by the caller: the event's time in replay, the wall clock live.

use crate::FastState;
use crate::alert::{Alert, AlertEvents, Scope};
use crate::compile::{CompiledScenario, Ruleset};
use crate::event::{Event, FieldId, FieldValue, Namespace, Timestamp};
use crate::expr::{EvalCtx, FieldLogic, Program, VerdictMemo};
use crate::rules::model::{ScenarioKind, ScenarioScope};
use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::Arc;

mod sample;
mod verdicts;
pub(crate) use sample::Sample;
use sample::{QueuedSample, SampleSpec};

/// Events kept in a bucket whose scenario sets no `capacity` or `cache-size` bound
/// (conditional and counter scenarios), so one attacker cannot grow memory without limit.
pub const DEFAULT_QUEUE_LIMIT: usize = 64;

/// One live bucket.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    /// When tokens were last counted ([`nanos`]).
    last_refill: i64,
    first_at: Timestamp,
    /// The last pour ([`nanos`]).
    last_at: i64,
    count: u64,
    /// The events an alert will carry: compact, shared between the buckets an event
    /// poured into.
    queue: VecDeque<QueuedSample>,
    /// Conditional scenarios: the queue as events holding only what the condition reads.
    cond_queue: VecDeque<Event>,
    /// Conditional scenarios whose condition reads only the number and times of queued
    /// events ([`Program::reads_queue_times_only`]): the queue as those times (Unix
    /// nanoseconds), instead of `cond_queue`.
    /// Oldest first; a full one drops its oldest as the next comes.
    cond_times: Vec<i128>,
    /// `distinct` values already poured.
    seen: DistinctSeen,
}

impl Bucket {
    /// A bucket whose queue holds at most `queue_limit + 1` samples (none unless
    /// `keeps_samples`), with room for `cond_times` queued times.
    fn new(
        capacity: i64,
        queue_limit: usize,
        keeps_samples: bool,
        cond_times: usize,
        now: PourTime,
    ) -> Self {
        let reserved = if keeps_samples {
            (queue_limit + 1).min(Self::QUEUE_START)
        } else {
            0
        };
        Bucket {
            tokens: capacity.max(0) as f64,
            last_refill: now.ns,
            first_at: now.at,
            last_at: now.ns,
            count: 0,
            // Sized for a small bucket's whole life (a leaky capacity 5 holds 6) in one
            // allocation, instead of growing 4 → 8; big queues still grow as they fill.
            queue: VecDeque::with_capacity(reserved),
            cond_queue: VecDeque::new(),
            // The few times a time-based condition reads, in one allocation for the
            // bucket's life instead of growing 4 → 8 → ... as attempts come.
            cond_times: Vec::with_capacity(cond_times.min(Self::QUEUE_START)),
            seen: DistinctSeen::default(),
        }
    }

    /// The most queue slots a new bucket reserves.
    const QUEUE_START: usize = 16;

    /// Starts the bucket afresh at `now` (its lifetime passed), keeping its allocations.
    fn restart(&mut self, capacity: i64, now: PourTime) {
        self.tokens = capacity.max(0) as f64;
        self.last_refill = now.ns;
        self.first_at = now.at;
        self.last_at = now.ns;
        self.count = 0;
        self.queue.clear();
        self.cond_queue.clear();
        self.cond_times.clear();
        self.seen.clear();
    }
}

/// The time of a pour, also as [`nanos`]: buckets compare and subtract times at every pour,
/// which on integers costs a few instructions instead of a hundred of timestamp arithmetic.
#[derive(Debug, Clone, Copy)]
struct PourTime {
    at: Timestamp,
    ns: i64,
}

impl PourTime {
    fn of(at: Timestamp) -> Self {
        PourTime { at, ns: nanos(at) }
    }
}

/// `t` in nanoseconds since the Unix epoch, saturating (`i64` spans ±292 years).
fn nanos(t: Timestamp) -> i64 {
    t.as_second()
        .saturating_mul(1_000_000_000)
        .saturating_add(i64::from(t.subsec_nanosecond()))
}

/// `d` in nanoseconds, saturating.
fn duration_nanos(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// The `distinct` values a bucket saw. Most buckets see a few (a user-enumeration bucket
/// overflows at its capacity + 1): those are kept in one buffer with each value's
/// [`packed_head`], which is compared in turn (one integer comparison a value, the bytes
/// only when a long value's head is the same), with no hash to compute (a keyed hash of a
/// user name is ~140 instructions) and no allocation a value. Past
/// [`DistinctSeen::LINEAR`] values, they move to a hash table, so that an attacker's
/// thousand names cost a probe each, not a thousand comparisons.
#[derive(Debug, Default)]
struct DistinctSeen {
    /// The values, one after the other, while there are at most `LINEAR`.
    text: String,
    /// Where each value in `text` ends.
    ends: Vec<u32>,
    /// Each value's [`packed_head`].
    heads: Vec<u64>,
    /// Every value (by [`key_hash`]), once there are more than `LINEAR`.
    table: HashTable<Box<str>>,
}

impl DistinctSeen {
    /// Values compared in turn at most.
    const LINEAR: usize = 32;
    /// Values the first insertion makes room for.
    const FIRST_VALUES: usize = 8;

    /// Records `value` (whose [`key_hash`] `hash` gives); false when it was seen before.
    fn insert(&mut self, value: &str, hash: impl FnOnce() -> u64) -> bool {
        if self.table.is_empty() {
            let head = packed_head(value);
            for (j, &seen) in self.heads.iter().enumerate() {
                if seen == head && (value.len() <= PACKED_BYTES || self.same_at(j, value)) {
                    return false;
                }
            }
            if self.ends.len() < Self::LINEAR {
                if self.ends.capacity() == 0 {
                    // Room for a small bucket's values (capacity 5 overflows at its sixth)
                    // at once, instead of growing the buffers five times between them.
                    self.ends.reserve(Self::FIRST_VALUES);
                    self.heads.reserve(Self::FIRST_VALUES);
                    self.text.reserve(Self::FIRST_VALUES * 8);
                }
                self.text.push_str(value);
                self.ends.push(self.text.len() as u32);
                self.heads.push(head);
                return true;
            }
            // One more: every value moves to the table.
            let mut start = 0;
            for &end in &self.ends {
                let v = self.text.get(start..end as usize).unwrap_or_default();
                self.table
                    .insert_unique(key_hash(v), Box::from(v), |k| key_hash(k));
                start = end as usize;
            }
            self.text = String::new();
            self.ends = Vec::new();
            self.heads = Vec::new();
        }
        match self.table.entry(hash(), |k| **k == *value, |k| key_hash(k)) {
            Entry::Occupied(_) => false,
            Entry::Vacant(v) => {
                v.insert(Box::from(value));
                true
            }
        }
    }

    /// Whether the `j`th value in `text` is `value`.
    fn same_at(&self, j: usize, value: &str) -> bool {
        let start = j
            .checked_sub(1)
            .and_then(|p| self.ends.get(p))
            .map_or(0, |&e| e as usize);
        let end = self.ends.get(j).map_or(0, |&e| e as usize);
        self.text
            .as_bytes()
            .get(start..end)
            .is_some_and(|seen| crate::same_bytes(seen, value.as_bytes()))
    }

    fn clear(&mut self) {
        self.text.clear();
        self.ends.clear();
        self.heads.clear();
        self.table.clear();
    }
}

/// The bytes of a value [`packed_head`] holds.
const PACKED_BYTES: usize = 7;

/// A value's first [`PACKED_BYTES`] bytes (zero-padded) and, in the top byte, its length
/// (at most 255): two values of at most `PACKED_BYTES` bytes are equal exactly when their
/// heads are, and longer ones only if their heads are. Its guard-class [`head`] packed
/// into one word.
fn packed_head(value: &str) -> u64 {
    let (len, word) = head(value.as_bytes());
    word & 0x00ff_ffff_ffff_ffff | (len.min(255) as u64) << 56
}

/// The state of one scenario besides its buckets (those are in [`BucketGroups`]).
#[derive(Debug, Default)]
struct ScenarioState {
    /// Keys whose overflows are ignored until a time, by [`key_hash`]: the hash their
    /// bucket group already holds, so that an overflow in blackhole (most overflows of a
    /// long attack) hashes nothing.
    blackhole_until: HashTable<(Box<str>, Timestamp)>,
}

/// The live buckets of every scenario, grouped by key. The scenarios an event pours into
/// mostly group by the same value (six ssh scenarios by the source address): their
/// buckets for it are found with one hash-table probe a line instead of one a scenario
/// (a probe and key comparison cost ~100 instructions), and the key is stored once.
///
/// Slots are freed (and the table compacted) only by [`BucketGroups::free_empty`]
/// (expiry, between lines): a slot found during a line stays that key's for the whole line.
#[derive(Debug, Default)]
struct BucketGroups {
    /// Slots of `groups` by their key's [`key_hash`].
    index: HashTable<u32>,
    groups: Vec<Group>,
    /// Slots of `groups` that hold no key.
    free: Vec<u32>,
    /// The slot each recently looked-up key had, by a fast hash of the key (one entry a
    /// hash, the last key wins; empty until the first look-up): a key found here and
    /// still in that slot needs neither its keyed hash (~100 instructions for an address)
    /// nor a probe of `index`. An attacker who makes keys collide here only makes them
    /// miss, and a miss costs what a look-up cost without it.
    recent: Box<[u32]>,
    /// Live groups at which the next sweep of idle buckets is due
    /// ([`BucketGroups::sweep_due`]).
    sweep_at: usize,
}

/// The buckets of one key: one per scenario that has one, by scenario index.
#[derive(Debug, Default)]
struct Group {
    key: Box<str>,
    hash: u64,
    /// Whether the slot holds a key.
    live: bool,
    buckets: Vec<(usize, Bucket)>,
}

impl Group {
    /// Buckets the first one makes room for.
    const FIRST_BUCKETS: usize = 8;
}

impl BucketGroups {
    /// Entries of [`BucketGroups::recent`]: more than the addresses a busy host sees
    /// attacking at once, in 16 KiB.
    const RECENT: usize = 4096;

    /// The slot of `key`'s group, made when it has none: from the recent keys when it is
    /// there, else by its [`key_hash`] (through `hasher`).
    #[inline]
    fn slot_of(&mut self, key: &str, hasher: &mut KeyHasher) -> u32 {
        static FAST: std::sync::LazyLock<crate::FastState> =
            std::sync::LazyLock::new(crate::FastState::default);
        if self.recent.is_empty() {
            self.recent = vec![LineKeys::NO_GROUP; Self::RECENT].into_boxed_slice();
        }
        let at = FAST.hash_one(key.as_bytes()) as usize & (Self::RECENT - 1);
        let known = self.recent[at];
        if let Some(g) = self.groups.get(known as usize)
            && g.live
            && crate::same_text(&g.key, key)
        {
            return known;
        }
        let slot = self.slot(key, hasher.hash(key));
        self.recent[at] = slot;
        slot
    }

    /// The slot of `key`'s group (`hash` is its [`key_hash`]), made when it has none.
    fn slot(&mut self, key: &str, hash: u64) -> u32 {
        let groups = &mut self.groups;
        let entry = self.index.entry(
            hash,
            |&s| crate::same_text(&groups[s as usize].key, key),
            |&s| groups[s as usize].hash,
        );
        match entry {
            Entry::Occupied(o) => *o.get(),
            Entry::Vacant(v) => {
                let s = match self.free.pop() {
                    Some(s) => s,
                    None => {
                        groups.push(Group::default());
                        (groups.len() - 1) as u32
                    }
                };
                let g = &mut groups[s as usize];
                g.key = Box::from(key);
                g.hash = hash;
                g.live = true;
                v.insert(s);
                s
            }
        }
    }

    /// The live groups.
    fn live_mut(&mut self) -> impl Iterator<Item = &mut Group> {
        self.groups.iter_mut().filter(|g| g.live)
    }

    /// Slots below which the table is never compacted.
    const COMPACT_MIN: usize = 1024;

    /// Live groups a sweep is never due below.
    const SWEEP_MIN: usize = 1024;

    /// Groups that hold a key.
    fn live(&self) -> usize {
        self.groups.len() - self.free.len()
    }

    /// Whether a sweep of idle buckets is due: the live groups doubled since the last one
    /// (and are at least [`Self::SWEEP_MIN`]). A sweep walks every group, so the
    /// groups made between two sweeps pay for it (a sweep every 8,192 lines was 3 % of
    /// an sshd replay), while memory stays within twice what the last sweep left.
    fn sweep_due(&self) -> bool {
        self.live() >= self.sweep_at.max(Self::SWEEP_MIN)
    }

    /// Frees the slots of groups left without buckets. When fewer than a quarter of the
    /// slots are live, the table is compacted, so that the memory of an attack's
    /// thousands of addresses goes back once their buckets expire.
    fn free_empty(&mut self) {
        for (s, g) in self.groups.iter_mut().enumerate() {
            if !g.live || !g.buckets.is_empty() {
                continue;
            }
            if let Ok(e) = self.index.find_entry(g.hash, |&x| x as usize == s) {
                e.remove();
            }
            *g = Group::default();
            self.free.push(s as u32);
        }
        let live = self.groups.len() - self.free.len();
        if self.groups.len() > Self::COMPACT_MIN && live < self.groups.len() / 4 {
            self.groups.retain(|g| g.live);
            self.groups.shrink_to_fit();
            self.free = Vec::new();
            let groups = &self.groups;
            self.index.clear();
            self.index.shrink_to_fit(|&s| groups[s as usize].hash);
            for (s, g) in groups.iter().enumerate() {
                self.index
                    .insert_unique(g.hash, s as u32, |&x| groups[x as usize].hash);
            }
        }
    }

    /// Live buckets in total.
    fn bucket_count(&self) -> usize {
        self.groups.iter().map(|g| g.buckets.len()).sum()
    }
}

/// The hash of a bucket key or `distinct` value. Keys come from attackers, so this is the
/// standard library's SipHash with random keys, drawn once per process so that every
/// detector (and a reloaded one adopting buckets) agrees.
fn key_hash(key: &str) -> u64 {
    static STATE: std::sync::OnceLock<RandomState> = std::sync::OnceLock::new();
    // One `write` of the bytes: `hash_one(key)` would add a second for `str`'s terminator,
    // which only matters when several values are hashed in sequence.
    let mut h = STATE.get_or_init(RandomState::new).build_hasher();
    h.write(key.as_bytes());
    h.finish()
}

/// Remembers the last bucket key hashed: an event pours into several scenarios that mostly
/// group by the same value (the source address), which is then hashed once per event
/// instead of once per lookup.
#[derive(Debug, Default)]
struct KeyHasher {
    last_key: String,
    last_hash: u64,
}

impl KeyHasher {
    /// The hash of `key` ([`key_hash`]).
    fn hash(&mut self, key: &str) -> u64 {
        if !crate::same_text(key, &self.last_key) || self.last_key.is_empty() {
            self.last_hash = key_hash(key);
            self.last_key.clear();
            self.last_key.push_str(key);
        }
        self.last_hash
    }
}

/// A line's values of the fields bucket keys and `distinct` values read, with their hashes
/// once computed: the scenarios an event pours into mostly group by the same field (the
/// source address) and count the same distinct one (the user), which are then read and
/// hashed once a line instead of once a scenario.
struct LineKeys<'e> {
    entries: [LineKey<'e>; LineKeys::SLOTS],
    len: usize,
    /// The key of the last pour ([`KeyExpr::code`]; `u32::MAX` before the first) and its
    /// group's slot ([`LineKeys::NO_GROUP`] when the event has no such key), compared as
    /// plain numbers: a comparison of the enums cost more than the look-up it saved.
    last_key: u32,
    last_slot: u32,
}

/// A field's value on the current line, its [`key_hash`] and its bucket group's slot in
/// [`BucketGroups`], each set when first needed.
type LineKey<'e> = (FieldId, &'e str, Option<u64>, Option<u32>);

impl Default for LineKeys<'_> {
    fn default() -> Self {
        LineKeys {
            entries: [(FieldId(0), "", None, None); LineKeys::SLOTS],
            len: 0,
            last_key: u32::MAX,
            last_slot: LineKeys::NO_GROUP,
        }
    }
}

impl<'e> LineKeys<'e> {
    /// Fields remembered (more are read at every use).
    const SLOTS: usize = 4;
    /// The `last_slot` of an event without the last key (no group has this slot: slots
    /// index a vector of groups).
    const NO_GROUP: u32 = u32::MAX;

    /// The entry of `id`, read from `event` the first time.
    #[inline(always)]
    fn entry(&mut self, event: &'e Event, id: FieldId) -> Option<&mut LineKey<'e>> {
        let known = self.entries[..self.len].iter().position(|e| e.0 == id);
        let at = match known {
            Some(at) => at,
            None if self.len < Self::SLOTS => {
                self.entries[self.len] = (id, event.get(id), None, None);
                self.len += 1;
                self.len - 1
            }
            None => return None,
        };
        self.entries.get_mut(at)
    }

    /// `event`'s value of `id`.
    #[inline(always)]
    fn value(&mut self, event: &'e Event, id: FieldId) -> &'e str {
        self.entry(event, id).map_or_else(|| event.get(id), |e| e.1)
    }

    /// The hash of `event`'s value of `id`, by `hash` the first time.
    #[inline]
    fn hash(&mut self, event: &'e Event, id: FieldId, hash: impl FnOnce(&str) -> u64) -> u64 {
        match self.entry(event, id) {
            Some((_, _, Some(h), _)) => *h,
            Some((_, value, known, _)) => *known.insert(hash(value)),
            None => hash(event.get(id)),
        }
    }

    /// The slot in `groups` of the bucket group keyed by `event`'s value of `id`; `None`
    /// when that value is empty and `skip_empty` (a scenario without `groupby` keys by
    /// the source address and ignores events with none).
    #[inline]
    fn group(
        &mut self,
        event: &'e Event,
        id: FieldId,
        skip_empty: bool,
        hasher: &mut KeyHasher,
        groups: &mut BucketGroups,
    ) -> Option<u32> {
        match self.entry(event, id) {
            Some((_, _, _, Some(slot))) => Some(*slot),
            Some((_, "", _, _)) if skip_empty => None,
            Some((_, value, _, slot)) => Some(*slot.insert(groups.slot_of(value, hasher))),
            None => {
                let value = event.get(id);
                (!(skip_empty && value.is_empty())).then(|| groups.slot_of(value, hasher))
            }
        }
    }
}

/// Counters for metrics and `replay` summaries.
#[derive(Debug, Default, Clone)]
pub struct DetectStats {
    /// Events poured, per scenario index.
    pub pours: Vec<u64>,
    /// Overflows (alerts emitted), per scenario index.
    pub overflows: Vec<u64>,
    /// Overflows dropped by a blackhole, per scenario index.
    pub blackholed: Vec<u64>,
}

/// The bucket engine for one ruleset.
///
/// Not `Send`: its buckets share event samples with plain reference counts
/// (`QueuedSample`), so a detector (and the engine holding it) is built on the
/// thread that runs it. Alerts carry copies and go anywhere.
#[derive(Debug)]
pub struct Detector {
    ruleset: Arc<Ruleset>,
    states: Vec<ScenarioState>,
    /// Every scenario's buckets.
    groups: BucketGroups,
    /// Per scenario, the last verdict of its `cancel-on` when a few fields decide it
    /// (`evt.Meta.log_type == 'auth_success'`): it is asked at every pour.
    cancel_memos: Vec<Option<VerdictMemo>>,
    enabled: Vec<bool>,
    /// Per scenario, what the hot path precomputes.
    plans: Vec<Plan>,
    /// Scenarios with the same filter text share one evaluation per event: the index of
    /// each scenario's filter among the distinct ones.
    filter_slot: Vec<usize>,
    /// Per distinct filter, this event's verdict (scratch, reset per pour).
    filter_memo: Vec<Option<bool>>,
    /// Per distinct filter, values some fields must hold for it to match (checked before
    /// running the filter).
    filter_guards: Vec<Vec<Guard>>,
    /// The fields and values the guards test.
    guard_fields: GuardFields,
    /// Per guard field, this event's class (scratch: set for the fields of its route).
    guard_classes: Vec<u8>,
    /// Per distinct filter, its top-level conjuncts that only test fields whose values the
    /// index or a guard has checked before it runs: they are skipped
    /// ([`Program::checked_conjuncts`]).
    filter_skip: Vec<u64>,
    /// Per distinct filter, its conjuncts that are combinations of field tests against
    /// literals (`evt.Meta.sub_type == 'x' || evt.Meta.http_status == '400'`) over guard
    /// fields: a route knows their value from its classes, drops the filter's scenario
    /// when one is false, and the filter skips them ([`Detector::filter_skip`]).
    filter_determined: Vec<Vec<ClassLogic>>,
    /// Per scenario, its `cancel-on` over guard fields when it is nothing but
    /// combinations of field tests against literals (`evt.Meta.log_type ==
    /// 'auth_success'`): a route whose key holds those fields knows its verdict.
    cancel_determined: Vec<Option<Vec<ClassLogic>>>,
    /// Per scenario, the predicate of its condition's queue filter
    /// ([`Program::queue_filter_tests`]) over guard fields, likewise: a route whose key
    /// holds those fields knows whether an event joins the queue the condition reads.
    queue_filter_determined: Vec<Option<Vec<ClassLogic>>>,
    /// Per distinct filter, whether it is nothing but such checked tests
    /// (`evt.Meta.log_type == 'ssh_failed-auth'`): then it is not run at all.
    filter_checked_only: Vec<bool>,
    /// Per distinct filter that reads one field once its checked conjuncts are skipped,
    /// its verdicts by that field's value.
    verdicts: verdicts::FieldVerdicts,
    /// The scenarios an event can match, by its `log_type`.
    index: ScenarioIndex,
    /// The steps left once the index and guards ruled scenarios out, by route.
    dispatch: Dispatch,
    /// What alert samples keep.
    sample_spec: SampleSpec,
    /// Hashes keys for the bucket tables.
    hasher: KeyHasher,
    /// This line's values of the groupby programs ([`KeyExpr::Program`]).
    computed_keys: Vec<ComputedKey>,
    /// Counts pours: what `computed_keys` were computed for.
    line: u64,
    /// Counters.
    pub stats: DetectStats,
}

/// A string-valued expression that is often a bare field read (`evt.Meta.source_ip`):
/// those read the slot directly instead of running the interpreter.
#[derive(Debug, Clone, Copy)]
enum KeyExpr {
    /// No expression (a groupby then keys by the source address).
    None,
    /// `evt.<Namespace>.<name>`.
    Field(FieldId),
    /// Anything else: run the program, once a line for all the scenarios that share its
    /// text (its index among the detector's [`ComputedKey`]s).
    Program(usize),
}

impl KeyExpr {
    /// A number that tells key expressions apart, compared in one instruction.
    fn code(self) -> u32 {
        match self {
            KeyExpr::None => 0,
            KeyExpr::Field(id) => 1 + u32::from(id.0),
            KeyExpr::Program(k) => (1 << 20) + k as u32,
        }
    }

    /// `p` as a key expression; programs get an index among `programs` (by source text).
    fn of(p: Option<&Program>, rs: &Ruleset, programs: &mut Vec<Box<str>>) -> Self {
        let Some(p) = p else {
            return KeyExpr::None;
        };
        if let Some(id) = bare_field(p.source(), rs) {
            return KeyExpr::Field(id);
        }
        let at = programs.iter().position(|s| **s == *p.source());
        KeyExpr::Program(at.unwrap_or_else(|| {
            programs.push(Box::from(p.source()));
            programs.len() - 1
        }))
    }
}

/// A groupby program's value on the current line and its bucket group, computed on the
/// first pour that needs it (`evt.Meta.source_ip + '/' + evt.Parsed.target_fqdn` groups both
/// `http-probing` and `http-crawl-non_statics`) into a buffer kept from line to line.
#[derive(Debug, Default)]
struct ComputedKey {
    text: String,
    /// The program gave a value (not `nil`, no error).
    ok: bool,
    /// The slot of the group keyed by `text` in [`BucketGroups`], once looked up.
    slot: Option<u32>,
    /// The line (`Detector::line`) it was computed for.
    line: u64,
}

impl ComputedKey {
    /// The slot in `groups` of the bucket group keyed by `program`'s value on `event`
    /// (line `line`), or `None` when it gives none.
    fn group(
        &mut self,
        program: &Program,
        rs: &Ruleset,
        event: &Event,
        line: u64,
        hasher: &mut KeyHasher,
        groups: &mut BucketGroups,
    ) -> Option<u32> {
        if self.line != line {
            self.line = line;
            self.slot = None;
            self.text.clear();
            self.ok =
                program.eval_string_into(&EvalCtx::for_event(event, &rs.data), &mut self.text);
        }
        if !self.ok {
            return None;
        }
        let text = &self.text;
        Some(
            *self
                .slot
                .get_or_insert_with(|| groups.slot_of(text, hasher)),
        )
    }
}

/// The field a source text such as `evt.Meta.source_ip` reads, when it is only that.
fn bare_field(src: &str, rs: &Ruleset) -> Option<FieldId> {
    let rest = src.trim().strip_prefix("evt.")?;
    let (ns, name) = rest.split_once('.')?;
    let ns = match ns {
        "Meta" | "Parsed" | "Enriched" => Namespace::from_name(ns)?,
        _ => return None,
    };
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return None;
    }
    rs.fields.get(ns, name)
}

/// The string value of a distinct expression that is not a bare field read (those are read
/// through [`LineKeys`]; groupby programs through [`ComputedKey`]).
fn string_of<'e>(program: &Program, rs: &Ruleset, event: &'e Event) -> Option<Cow<'e, str>> {
    program
        .eval_string(&EvalCtx::for_event(event, &rs.data))
        .map(|c| Cow::Owned(c.into_owned()))
}

/// `evt.<field>` must be one of some values for a filter to match: the field by its index
/// in [`GuardFields`], the values as a mask of that field's value classes.
#[derive(Debug)]
struct Guard {
    field: usize,
    mask: u64,
}

/// A [`FieldLogic`] over guard fields: each test is a mask of its field's value classes.
#[derive(Debug)]
enum ClassLogic {
    /// The field (by its index in [`GuardFields`]), the classes of the test's literals,
    /// and whether it holds when the value is among them.
    Test {
        field: usize,
        mask: u64,
        member: bool,
    },
    And(Box<ClassLogic>, Box<ClassLogic>),
    Or(Box<ClassLogic>, Box<ClassLogic>),
    Not(Box<ClassLogic>),
}

impl ClassLogic {
    /// `logic` over classes, registering its literals as values of their fields; `None`
    /// when a field would need more classes than a mask holds.
    fn of(logic: &FieldLogic, fields: &mut GuardFields) -> Option<ClassLogic> {
        let both = |a: &FieldLogic, b: &FieldLogic, fields: &mut GuardFields| {
            Some((
                Box::new(Self::of(a, fields)?),
                Box::new(Self::of(b, fields)?),
            ))
        };
        Some(match logic {
            FieldLogic::Test(field, values, member) => {
                let g = fields.guard(*field, values)?;
                ClassLogic::Test {
                    field: g.field,
                    mask: g.mask,
                    member: *member,
                }
            }
            FieldLogic::And(a, b) => {
                let (a, b) = both(a, b, fields)?;
                ClassLogic::And(a, b)
            }
            FieldLogic::Or(a, b) => {
                let (a, b) = both(a, b, fields)?;
                ClassLogic::Or(a, b)
            }
            FieldLogic::Not(a) => ClassLogic::Not(Box::new(Self::of(a, fields)?)),
        })
    }

    /// Each of `logic` (conjuncts: all must hold) over classes, when every one is a
    /// [`FieldLogic`] that [`ClassLogic::of`] takes; else `None`, with `fields` as it was.
    fn of_all(
        logic: impl IntoIterator<Item = Option<FieldLogic>>,
        fields: &mut GuardFields,
    ) -> Option<Vec<ClassLogic>> {
        let mark = fields.mark();
        let classes: Option<Vec<ClassLogic>> = logic
            .into_iter()
            .map(|l| ClassLogic::of(&l?, fields))
            .collect();
        if classes.is_none() {
            fields.rewind(&mark);
        }
        classes
    }

    /// Its value for an event whose fields have `classes`. A value equals one of a test's
    /// literals exactly when its class is one of theirs: every literal has a class.
    fn holds(&self, classes: &[u8]) -> bool {
        match self {
            ClassLogic::Test {
                field,
                mask,
                member,
            } => (mask & (1 << classes[*field]) != 0) == *member,
            ClassLogic::And(a, b) => a.holds(classes) && b.holds(classes),
            ClassLogic::Or(a, b) => a.holds(classes) || b.holds(classes),
            ClassLogic::Not(a) => !a.holds(classes),
        }
    }

    /// Adds the guard fields it reads to `out`.
    fn fields(&self, out: &mut Vec<usize>) {
        match self {
            ClassLogic::Test { field, .. } => out.push(*field),
            ClassLogic::And(a, b) | ClassLogic::Or(a, b) => {
                a.fields(out);
                b.fields(out);
            }
            ClassLogic::Not(a) => a.fields(out),
        }
    }
}

/// The last value of rule-constant text a look-up saw, with its answer. Values set from rule
/// constants (`log_type`, `service`) are the same `&'static str` line after line, so
/// comparing its address and length ([`crate::event::static_text_key`]) replaces hashing and
/// comparing the text.
#[derive(Debug, Clone, Copy)]
struct StaticMemo<T: Copy> {
    /// The text's address and length; [`StaticMemo::NONE`] before the first.
    text: (usize, usize),
    answer: T,
}

impl<T: Copy + Default> Default for StaticMemo<T> {
    fn default() -> Self {
        StaticMemo {
            text: Self::NONE,
            answer: T::default(),
        }
    }
}

impl<T: Copy> StaticMemo<T> {
    /// No text: no `&'static str` ends at the last address (compared as plain numbers,
    /// not as an `Option`, which cost a few instructions more at each of an event's
    /// guard fields).
    const NONE: (usize, usize) = (usize::MAX, usize::MAX);

    /// The answer for `event`'s value of `id` when it is the static text last seen, else
    /// `look_up(value)`, remembered when the value is static text.
    #[inline(always)]
    fn get(&mut self, event: &Event, id: FieldId, look_up: impl FnOnce(&[u8]) -> T) -> T {
        let (at, text) = match event.slot(id) {
            Some(&FieldValue::Static(s)) => (crate::event::static_text_key(s), s.as_bytes()),
            // Unset (an HTTP field on an sshd line): the empty text, at no address.
            Some(FieldValue::Unset) | None => ((0, 0), &b""[..]),
            Some(_) => return look_up(event.get_bytes(id)),
        };
        if self.text != at {
            self.answer = look_up(text);
            self.text = at;
        }
        self.answer
    }
}

/// The fields guards test, each with the distinct values guards name. An event's value of
/// each is classified once per pour (its index among them, or [`GuardFields::OTHER`]), so
/// the guards of a few dozen filters are bit tests, not string comparisons.
#[derive(Debug, Default)]
struct GuardFields {
    fields: Vec<FieldId>,
    values: Vec<Vec<Box<str>>>,
    /// Per field, each value's [`head`]: most values (statuses, verbs, log types) are
    /// told apart by it without a `memcmp` call.
    heads: Vec<Vec<(usize, u64)>>,
    /// Per field, an open-addressed table of its classes by [`head`] ([`probe_start`]):
    /// a value is classified in one or two probes instead of a walk over every value
    /// guards name (an nginx line classifies seven fields, some with a dozen values).
    probes: Vec<[u8; PROBES]>,
    /// Per field, the class of the static text it last held.
    memos: Vec<StaticMemo<u8>>,
}

/// Slots of a field's probe table: at least twice the classes a field can have, so a
/// probe for an unknown value soon meets an empty slot.
const PROBES: usize = 128;
/// An empty probe slot.
const NO_CLASS: u8 = u8::MAX;

/// Where the probe for a value with head `h` starts.
fn probe_start(h: (usize, u64)) -> usize {
    let mixed = (h.1 ^ (h.0 as u64).rotate_left(56)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> 57) as usize & (PROBES - 1)
}

/// A string's length and first eight bytes (zero-padded), one comparison for short
/// strings.
fn head(b: &[u8]) -> (usize, u64) {
    let word = match (
        b.first_chunk::<8>(),
        b.first_chunk::<4>(),
        b.last_chunk::<4>(),
    ) {
        (Some(w), _, _) => u64::from_le_bytes(*w),
        // Four to seven bytes: two overlapping words, the second shifted to its place.
        (None, Some(lo), Some(hi)) => {
            u64::from(u32::from_le_bytes(*lo))
                | u64::from(u32::from_le_bytes(*hi)) << ((b.len() - 4) * 8)
        }
        _ => b
            .iter()
            .rev()
            .fold(0u64, |w, &byte| w << 8 | u64::from(byte)),
    };
    (b.len(), word)
}

impl GuardFields {
    /// The class of a value no guard names.
    const OTHER: u8 = 63;
    /// Scratch value: not classified yet.
    const UNKNOWN: u8 = u8::MAX;

    /// A guard admitting `values` of `field`; `None` when the field would need more
    /// classes than a mask holds (the filter then runs unguarded on that field).
    fn guard(&mut self, field: FieldId, values: &[Box<str>]) -> Option<Guard> {
        let fi = match self.fields.iter().position(|f| *f == field) {
            Some(i) => i,
            None => {
                self.fields.push(field);
                self.values.push(Vec::new());
                self.heads.push(Vec::new());
                self.fields.len() - 1
            }
        };
        let known = &mut self.values[fi];
        // All or nothing: a guard that does not fit must leave no values behind, or every
        // event would be classified against values no guard tests (a 208-name data list
        // once filled `file_name`'s classes before failing).
        let new = values.iter().filter(|v| !known.contains(v)).count();
        if known.len() + new > usize::from(Self::OTHER) {
            return None;
        }
        let mut mask = 0u64;
        for v in values {
            let class = match known.iter().position(|k| k == v) {
                Some(c) => c,
                None => {
                    known.push(v.clone());
                    self.heads[fi].push(head(v.as_bytes()));
                    known.len() - 1
                }
            };
            mask |= 1 << class;
        }
        self.index(fi);
        Some(Guard { field: fi, mask })
    }

    /// Rebuilds field `fi`'s probe table from its values.
    fn index(&mut self, fi: usize) {
        if self.probes.len() <= fi {
            self.probes.resize_with(fi + 1, || [NO_CLASS; PROBES]);
        }
        // The classes changed: forget what the memo knew.
        self.memos.resize(self.probes.len(), StaticMemo::default());
        self.memos[fi] = StaticMemo::default();
        let table = &mut self.probes[fi];
        table.fill(NO_CLASS);
        for (class, &h) in self.heads[fi].iter().enumerate() {
            let mut at = probe_start(h);
            while table[at] != NO_CLASS {
                at = (at + 1) & (PROBES - 1);
            }
            table[at] = class as u8;
        }
    }

    /// The class of `event`'s value of field `fi`.
    fn classify(&mut self, fi: usize, event: &Event) -> u8 {
        let Some(&field) = self.fields.get(fi) else {
            return Self::OTHER;
        };
        let Self {
            memos,
            probes,
            heads,
            values,
            ..
        } = self;
        let look_up = |v: &[u8]| Self::class_of(v, probes.get(fi), heads.get(fi), values.get(fi));
        match memos.get_mut(fi) {
            Some(memo) => memo.get(event, field, look_up),
            None => look_up(event.get_bytes(field)),
        }
    }

    /// The class of value `v` of a field with this probe table, these heads and values.
    fn class_of(
        v: &[u8],
        table: Option<&[u8; PROBES]>,
        heads: Option<&Vec<(usize, u64)>>,
        values: Option<&Vec<Box<str>>>,
    ) -> u8 {
        let h = head(v);
        let (Some(table), Some(heads), Some(values)) = (table, heads, values) else {
            return Self::OTHER;
        };
        let mut at = probe_start(h);
        // The table is at most half full: every probe ends at an empty slot.
        loop {
            let class = table[at];
            if class == NO_CLASS {
                return Self::OTHER;
            }
            let c = usize::from(class);
            if heads.get(c) == Some(&h)
                && (h.0 <= 8 || values.get(c).is_some_and(|k| k.as_bytes() == v))
            {
                return class;
            }
            at = (at + 1) & (PROBES - 1);
        }
    }

    /// How many fields and values of each are registered, to go back to.
    fn mark(&self) -> Vec<usize> {
        self.values.iter().map(Vec::len).collect()
    }

    /// Forgets what was registered since `mark` (a combination that did not fit must
    /// leave no classes behind for events to be compared with).
    fn rewind(&mut self, mark: &[usize]) {
        self.fields.truncate(mark.len());
        self.values.truncate(mark.len());
        self.heads.truncate(mark.len());
        self.probes.truncate(mark.len());
        self.memos.truncate(mark.len());
        for ((values, heads), &n) in self.values.iter_mut().zip(&mut self.heads).zip(mark) {
            values.truncate(n);
            heads.truncate(n);
        }
        for fi in 0..mark.len() {
            self.index(fi);
        }
    }
}

/// The field most filters test first.
const INDEX_FIELD: &str = "log_type";

/// Scenarios by the `evt.Meta.log_type` values their filters accept: most filters start
/// with `evt.Meta.log_type == '...'`, so an event only needs the few scenarios listening
/// for its type plus those that accept any type, instead of every filter of the ruleset.
#[derive(Debug, Default)]
struct ScenarioIndex {
    field: Option<FieldId>,
    /// Per value: its candidate list in `lists`. The values come from the rules and the
    /// map never grows, so a fast unkeyed hash is safe here.
    by_value: HashMap<Box<[u8]>, usize, FastState>,
    /// Candidate lists, each in ruleset order; the last one holds the scenarios that
    /// accept any value (events whose value no filter names).
    lists: Vec<Box<[usize]>>,
    /// The list of the static text the field last held.
    memo: StaticMemo<usize>,
}

impl ScenarioIndex {
    fn new(rs: &Ruleset) -> Self {
        let Some(field) = rs.fields.get(Namespace::Meta, INDEX_FIELD) else {
            return ScenarioIndex {
                field: None,
                by_value: HashMap::default(),
                lists: vec![(0..rs.scenarios.len()).collect()],
                memo: StaticMemo::default(),
            };
        };
        let accepts: Vec<Option<Vec<Box<str>>>> = rs
            .scenarios
            .iter()
            .map(|sc| sc.filter.implied_values(field))
            .collect();
        let mut values: Vec<Box<str>> = Vec::new();
        for v in accepts.iter().flatten().flatten() {
            if !values.contains(v) {
                values.push(v.clone());
            }
        }
        let mut lists: Vec<Vec<usize>> = vec![Vec::new(); values.len() + 1];
        for (i, acc) in accepts.iter().enumerate() {
            match acc {
                None => lists.iter_mut().for_each(|l| l.push(i)),
                Some(vals) => {
                    for v in vals {
                        if let Some(k) = values.iter().position(|x| x == v) {
                            lists[k].push(i);
                        }
                    }
                }
            }
        }
        ScenarioIndex {
            field: Some(field),
            by_value: values
                .into_iter()
                .enumerate()
                .map(|(k, v)| (Box::<[u8]>::from(v.as_bytes()), k))
                .collect(),
            lists: lists.into_iter().map(Vec::into_boxed_slice).collect(),
            memo: StaticMemo::default(),
        }
    }

    /// The candidate list `event` falls in (an index into `lists`).
    fn list_of(&mut self, event: &Event) -> usize {
        let rest = self.lists.len() - 1;
        match self.field {
            Some(f) => {
                let by_value = &self.by_value;
                self.memo
                    .get(event, f, |v| by_value.get(v).copied().unwrap_or(rest))
            }
            None => rest,
        }
    }
}

/// One scenario an event goes on to, once the index and guards admitted it.
#[derive(Debug, Clone, Copy)]
struct Step {
    scenario: usize,
    /// Its filter among the distinct ones.
    slot: usize,
    /// Whether the filter still has to run: false when the index and guards checked all
    /// of it.
    run_filter: bool,
    /// The verdict of the scenario's `cancel-on` when the route's classes decide it.
    cancel: Option<bool>,
    /// Whether the event joins the queue its condition filters, when the route's classes
    /// decide it.
    queue_admits: Option<bool>,
}

/// The routes of events through the scenarios: for each candidate list, the guard fields
/// its filters test, and for each combination of the classes of those fields, the steps
/// left. An event then costs one look-up instead of a walk over every candidate and its
/// guards. Combinations are few (the classes are the values rules name, plus "other"),
/// and the table is bounded all the same.
#[derive(Debug, Default)]
struct Dispatch {
    /// Per candidate list: the guard fields (by index in [`GuardFields`]) its filters test.
    fields: Vec<Box<[usize]>>,
    /// Per candidate list, whether `fields` also holds those of its scenarios'
    /// determined `cancel-on` and queue filters ([`Detector::cancel_determined`],
    /// [`Detector::queue_filter_determined`]).
    pour_fields: Vec<bool>,
    /// Routes by route key ([`Dispatch::key`]): indices into `steps`.
    routes: HashMap<u64, usize, FastState>,
    /// The steps of each route. An event reads them by index, with no reference count
    /// to take on a shared list.
    steps: Vec<Box<[Step]>>,
    /// The steps of the last event whose list has no key ([`Dispatch::UNKEYED`]).
    unkeyed: Box<[Step]>,
    /// Routes by [`ConstKey`], direct-mapped ([`Dispatch::CONST_ROUTES`] entries, made at
    /// the first one kept): an sshd line's guard fields all hold constants its parser set,
    /// so its route is found by comparing a few addresses, without classifying the fields
    /// (~150 instructions a line, measured, when its type differs from the last line's).
    const_routes: Vec<(ConstKey, usize)>,
}

/// An event's candidate list and the constants its guard fields hold (each as
/// [`crate::event::static_text_key`]; an unset field as `(0, 0)`), when they all hold one
/// and are at most [`ConstKey::FIELDS`]. Its route is that of the classes of those
/// constants, which never change once the detector is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ConstKey {
    list: usize,
    texts: [(usize, usize); ConstKey::FIELDS],
}

impl ConstKey {
    /// Guard fields a key holds at most.
    const FIELDS: usize = 6;
    /// The key of no event.
    const NONE: ConstKey = ConstKey {
        list: usize::MAX,
        texts: [(0, 0); ConstKey::FIELDS],
    };

    /// The key of `event` in candidate list `list` whose guard fields (indices into
    /// `guard_fields`) are `fields`; `None` when one holds other than a constant.
    fn of(list: usize, fields: &[usize], guard_fields: &[FieldId], event: &Event) -> Option<Self> {
        if fields.len() > Self::FIELDS {
            return None;
        }
        let mut texts = [(0, 0); Self::FIELDS];
        for (text, &f) in texts.iter_mut().zip(fields) {
            *text = match event.slot(*guard_fields.get(f)?) {
                Some(&FieldValue::Static(s)) => crate::event::static_text_key(s),
                Some(FieldValue::Unset) | None => (0, 0),
                Some(_) => return None,
            };
        }
        Some(ConstKey { list, texts })
    }

    /// Its entry in [`Dispatch::const_routes`].
    fn at(&self) -> usize {
        let mixed = self.texts.iter().fold(self.list as u64, |h, t| {
            (h ^ t.0 as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        });
        (mixed >> 58) as usize & (Dispatch::CONST_ROUTES - 1)
    }
}

impl Dispatch {
    /// Routes kept at most; past it the table starts over.
    const MAX_ROUTES: usize = 4096;
    /// Guard fields a key can hold (6 bits each under the list's 16).
    const MAX_FIELDS: usize = 8;
    /// The route of an event whose list has no key: its steps are worked out each time.
    const UNKEYED: usize = usize::MAX;

    /// Where the steps of route `r` ([`Detector::route`]) are kept.
    fn steps_mut(&mut self, r: usize) -> Option<&mut Box<[Step]>> {
        if r == Self::UNKEYED {
            Some(&mut self.unkeyed)
        } else {
            self.steps.get_mut(r)
        }
    }

    /// The steps of route `r`, taken out until [`Dispatch::put_back`].
    fn take(&mut self, r: usize) -> Box<[Step]> {
        self.steps_mut(r).map(std::mem::take).unwrap_or_default()
    }

    /// Puts back the steps [`Dispatch::take`] took from route `r`.
    fn put_back(&mut self, r: usize, steps: Box<[Step]>) {
        if let Some(s) = self.steps_mut(r) {
            *s = steps;
        }
    }

    /// Forgets every route (the enabled scenarios changed, or the table is full).
    fn clear(&mut self) {
        self.routes.clear();
        self.steps.clear();
        self.const_routes.clear();
    }

    /// Entries of [`Dispatch::const_routes`].
    const CONST_ROUTES: usize = 64;

    /// The route kept for `key`.
    fn const_route(&self, key: &ConstKey) -> Option<usize> {
        self.const_routes
            .get(key.at())
            .filter(|(k, _)| k == key)
            .map(|&(_, r)| r)
    }

    /// Keeps route `r` for `key`, in place of what its entry held.
    fn keep_const_route(&mut self, key: ConstKey, r: usize) {
        if self.const_routes.is_empty() {
            self.const_routes = vec![(ConstKey::NONE, 0); Self::CONST_ROUTES];
        }
        if let Some(entry) = self.const_routes.get_mut(key.at()) {
            *entry = (key, r);
        }
    }

    /// The route key of an event in candidate list `list`, or `None` when the list's
    /// filters test more guard fields than a key holds.
    fn key(&self, list: usize, classes: &[u8]) -> Option<u64> {
        let fields = &self.fields[list];
        if fields.len() > Self::MAX_FIELDS {
            return None;
        }
        let mut key = (list as u64) << 48;
        for (k, &f) in fields.iter().enumerate() {
            key |= u64::from(classes[f]) << (6 * k);
        }
        Some(key)
    }
}

/// A scenario's constants, computed once.
#[derive(Debug)]
struct Plan {
    groupby: KeyExpr,
    /// `groupby`'s [`KeyExpr::code`].
    key_code: u32,
    /// The field `distinct` reads, when it is a bare field read (every shipped scenario's
    /// is); other programs run at each pour.
    distinct_field: Option<FieldId>,
    /// How long an idle bucket lives ([`bucket_lifetime`]), in nanoseconds.
    lifetime: Option<i64>,
    /// Leaky: the nanoseconds a token takes to come back.
    leak_ns: f64,
    queue_limit: usize,
    /// Conditional scenarios: the fields queued events keep for the condition
    /// ([`Program::queued_event_fields`]), and whether it reads the raw
    /// line.
    cond_fields: Vec<FieldId>,
    cond_raw: bool,
    /// Conditional scenarios whose buckets queue only event times (`Bucket::cond_times`):
    /// how many a bucket keeps, the queue's (`queue_limit` + 1) or fewer when the condition
    /// reads only the most recent ([`Program::queue_times_read`]).
    cond_times: Option<usize>,
    /// Whether its buckets queue event samples for their alerts (see
    /// [`Detector::without_alert_events`]).
    keeps_samples: bool,
    /// The scenario's kind, capacity and whether it has a `distinct` or a `cancel-on`,
    /// copied here so that a pour reads one plan instead of the scenario too.
    kind: ScenarioKind,
    capacity: i64,
    has_distinct: bool,
    has_cancel: bool,
}

impl Detector {
    /// A detector with every scenario of the ruleset enabled.
    pub fn new(ruleset: Arc<Ruleset>) -> Self {
        let n = ruleset.scenarios.len();
        let mut key_programs: Vec<Box<str>> = Vec::new();
        let plans: Vec<Plan> = ruleset
            .scenarios
            .iter()
            .map(|sc| {
                let groupby = KeyExpr::of(sc.groupby.as_ref(), &ruleset, &mut key_programs);
                Plan {
                    groupby,
                    key_code: groupby.code(),
                    distinct_field: sc
                        .distinct
                        .as_ref()
                        .and_then(|d| bare_field(d.source(), &ruleset)),
                    lifetime: bucket_lifetime(sc).map(duration_nanos),
                    leak_ns: sc
                        .leakspeed
                        .map_or(1e9, |l| duration_nanos(l.0) as f64)
                        .max(1.0),
                    queue_limit: queue_limit(sc),
                    cond_fields: sc
                        .condition
                        .as_ref()
                        .map(|c| c.queued_event_fields())
                        .unwrap_or_default(),
                    cond_raw: sc.condition.as_ref().is_some_and(reads_raw_line),
                    cond_times: sc
                        .condition
                        .as_ref()
                        .filter(|c| c.reads_queue_times_only())
                        .map(|c| {
                            let queue = queue_limit(sc) + 1;
                            c.queue_times_read()
                                .map_or(queue, |read| read.clamp(1, queue))
                        }),
                    keeps_samples: true,
                    kind: sc.kind,
                    capacity: sc.capacity,
                    has_distinct: sc.distinct.is_some(),
                    has_cancel: sc.cancel_on.is_some(),
                }
            })
            .collect();
        let mut filters: Vec<&Program> = Vec::new();
        let filter_slot: Vec<usize> = ruleset
            .scenarios
            .iter()
            .map(|sc| {
                let src = sc.filter.source();
                filters
                    .iter()
                    .position(|f| f.source() == src)
                    .unwrap_or_else(|| {
                        filters.push(&sc.filter);
                        filters.len() - 1
                    })
            })
            .collect();
        let filter_memo = vec![None; filters.len()];
        let cancel_memos = ruleset
            .scenarios
            .iter()
            .map(|sc| sc.cancel_on.as_ref().and_then(VerdictMemo::of))
            .collect();
        let index = ScenarioIndex::new(&ruleset);
        let mut guard_fields = GuardFields::default();
        // Per filter, its guards and the fields they (or the index) check.
        let (filter_guards, filter_checked): (Vec<Vec<Guard>>, Vec<Box<[FieldId]>>) = filters
            .iter()
            .map(|f| {
                let mut guards = Vec::new();
                // The index guarantees the value of its field for every candidate whose
                // filter implies any: it lists a scenario only under the values its
                // filter implies.
                let mut checked: Vec<FieldId> = index.field.into_iter().collect();
                for field in f.referenced_fields() {
                    if Some(field) == index.field {
                        continue;
                    }
                    let Some(values) = f.implied_values(field) else {
                        continue;
                    };
                    if let Some(g) = guard_fields.guard(field, &values) {
                        guards.push(g);
                        checked.push(field);
                    }
                }
                (guards, checked.into_boxed_slice())
            })
            .unzip();
        let mut filter_skip: Vec<u64> = filters
            .iter()
            .zip(&filter_checked)
            .map(|(f, checked)| f.checked_conjuncts(&|id| checked.contains(&id)))
            .collect();
        // The conjuncts left that the classes of their fields decide.
        let mut filter_all_skipped = Vec::with_capacity(filters.len());
        let filter_determined: Vec<Vec<ClassLogic>> = filters
            .iter()
            .zip(filter_skip.iter_mut())
            .map(|(f, skip)| {
                let conjuncts = f.conjunct_logic();
                let mut determined = Vec::new();
                for (i, logic) in conjuncts.iter().enumerate().take(64) {
                    if *skip >> i & 1 == 1 {
                        continue;
                    }
                    let Some(logic) = logic else { continue };
                    let mark = guard_fields.mark();
                    match ClassLogic::of(logic, &mut guard_fields) {
                        Some(c) => {
                            determined.push(c);
                            *skip |= 1 << i;
                        }
                        None => guard_fields.rewind(&mark),
                    }
                }
                filter_all_skipped
                    .push((0..conjuncts.len()).all(|i| i < 64 && *skip >> i & 1 == 1));
                determined
            })
            .collect();
        let cancel_determined: Vec<Option<Vec<ClassLogic>>> = ruleset
            .scenarios
            .iter()
            .map(|sc| {
                let logic = sc.cancel_on.as_ref()?.conjunct_logic();
                ClassLogic::of_all(logic, &mut guard_fields)
            })
            .collect();
        let queue_filter_determined: Vec<Option<Vec<ClassLogic>>> = ruleset
            .scenarios
            .iter()
            .map(|sc| {
                let tests = sc.condition.as_ref()?.queue_filter_tests()?;
                let logic = tests.iter().map(|(field, values, member)| {
                    Some(FieldLogic::Test(*field, values.to_vec(), *member))
                });
                ClassLogic::of_all(logic, &mut guard_fields)
            })
            .collect();
        let guard_classes = vec![GuardFields::UNKNOWN; guard_fields.fields.len()];
        let filter_checked_only: Vec<bool> = filters
            .iter()
            .zip(&filter_checked)
            .zip(&filter_all_skipped)
            .map(|((f, checked), all)| *all || f.only_field_tests(&|id| checked.contains(&id)))
            .collect();
        let runs: Vec<bool> = filter_checked_only.iter().map(|only| !only).collect();
        let verdicts = verdicts::FieldVerdicts::new(&filters, &filter_skip, &runs);
        let sample_spec = SampleSpec::new(&ruleset);
        let (list_fields, pour_fields) = index
            .lists
            .iter()
            .map(|list| {
                let mut fields: Vec<usize> = list
                    .iter()
                    .flat_map(|&i| &filter_guards[filter_slot[i]])
                    .map(|g| g.field)
                    .collect();
                for &i in list.iter() {
                    for logic in &filter_determined[filter_slot[i]] {
                        logic.fields(&mut fields);
                    }
                }
                fields.sort_unstable();
                fields.dedup();
                // The `cancel-on` and queue filter fields too, while a route key still
                // holds them all (else those scenarios run them at each pour).
                let mut with_pour_logic = fields.clone();
                for &i in list.iter() {
                    let pour_logic = [&cancel_determined[i], &queue_filter_determined[i]];
                    for logic in pour_logic.into_iter().flatten().flatten() {
                        logic.fields(&mut with_pour_logic);
                    }
                }
                with_pour_logic.sort_unstable();
                with_pour_logic.dedup();
                if with_pour_logic.len() <= Dispatch::MAX_FIELDS
                    || with_pour_logic.len() == fields.len()
                {
                    (with_pour_logic.into_boxed_slice(), true)
                } else {
                    (fields.into_boxed_slice(), false)
                }
            })
            .unzip();
        let dispatch = Dispatch {
            fields: list_fields,
            pour_fields,
            ..Dispatch::default()
        };
        Detector {
            plans,
            filter_slot,
            filter_memo,
            filter_guards,
            guard_fields,
            guard_classes,
            filter_skip,
            filter_determined,
            cancel_determined,
            queue_filter_determined,
            filter_checked_only,
            verdicts,
            index,
            dispatch,
            sample_spec,
            hasher: KeyHasher::default(),
            computed_keys: key_programs
                .iter()
                .map(|_| ComputedKey::default())
                .collect(),
            line: 0,
            ruleset,
            states: (0..n).map(|_| ScenarioState::default()).collect(),
            groups: BucketGroups::default(),
            cancel_memos,
            enabled: vec![true; n],
            stats: DetectStats {
                pours: vec![0; n],
                overflows: vec![0; n],
                blackholed: vec![0; n],
            },
        }
    }

    /// Live reload: takes over the buckets and blackholes of `old`'s scenarios whose
    /// definition is unchanged in this detector's ruleset (matched by name), so an attacker
    /// halfway to a ban stays halfway, and one just banned stays blackholed. Scenarios that
    /// changed or are new start empty. Returns the names of the scenarios that kept their
    /// state.
    pub fn adopt(&mut self, mut old: Detector) -> Vec<Arc<str>> {
        let remap = FieldRemap::new(&old.ruleset, &self.ruleset);
        let identity = remap.is_identity();
        let mut kept = Vec::new();
        // Per old scenario, its index here when its buckets are kept.
        let mut new_index: Vec<Option<usize>> = vec![None; old.states.len()];
        for (j, sc) in self.ruleset.scenarios.iter().enumerate() {
            let Some(i) = old
                .ruleset
                .scenarios
                .iter()
                .position(|o| o.name == sc.name && same_definition(o, sc))
            else {
                continue;
            };
            new_index[i] = Some(j);
            self.states[j] = std::mem::take(&mut old.states[i]);
            kept.push(sc.name.clone());
        }
        for g in old.groups.live_mut() {
            let mut slot = None;
            for (i, mut b) in g.buckets.drain(..) {
                let Some(j) = new_index.get(i).copied().flatten() else {
                    continue;
                };
                if !identity {
                    remap.bucket(&mut b);
                }
                // Key hashes are the process's: the old one holds here.
                let s = *slot.get_or_insert_with(|| self.groups.slot(&g.key, g.hash));
                self.groups.groups[s as usize].buckets.push((j, b));
            }
        }
        kept
    }

    /// Alerts will be read for their summaries only: the scenario, source, count and times
    /// (replay prints nothing else, when no profile reads `Alert.Events` or `Alert.Meta`:
    /// [`Ruleset::profiles_read_alert_events`]). Buckets then queue no event samples and
    /// alerts carry none: building a sample and sharing it with every bucket was a tenth
    /// of an sshd line. Counters still keep theirs: they overflow at a deadline after
    /// their last event, and their alert's source is read from its sample.
    pub fn without_alert_events(&mut self) {
        for (plan, sc) in self.plans.iter_mut().zip(&self.ruleset.scenarios) {
            plan.keeps_samples = sc.kind == ScenarioKind::Counter;
        }
    }

    /// Enables only the named scenarios (as a hub test's `config.yaml` does). Returns the
    /// names that match no scenario.
    pub fn only(&mut self, names: &[String]) -> Vec<String> {
        let mut unknown = Vec::new();
        self.enabled.iter_mut().for_each(|e| *e = false);
        // Routes list only enabled scenarios.
        self.dispatch.clear();
        for n in names {
            match self.ruleset.scenarios.iter().position(|s| &*s.name == n) {
                Some(i) => self.enabled[i] = true,
                None => unknown.push(n.clone()),
            }
        }
        unknown
    }

    /// The scenarios a parsed event matches, by index (for `explain`).
    pub fn matching(&self, event: &Event) -> Vec<usize> {
        let ctx = self.ctx(Some(event), None);
        self.ruleset
            .scenarios
            .iter()
            .enumerate()
            .filter(|(i, s)| self.enabled[*i] && s.filter.eval_bool(&ctx))
            .map(|(i, _)| i)
            .collect()
    }

    fn ctx<'a>(&'a self, event: Option<&'a Event>, queue: Option<&'a [Event]>) -> EvalCtx<'a> {
        EvalCtx {
            event,
            alert: None,
            queue,
            data: &self.ruleset.data,
            decisions: None,
            writes: Default::default(),
            queue_prefiltered: false,
        }
    }

    /// Pours a parsed, non-whitelisted event at time `now`; alerts go to `out`. Returns the
    /// indices of the scenarios it poured into.
    pub fn pour(&mut self, event: &Event, now: Timestamp, out: &mut Vec<Alert>) -> Vec<usize> {
        let mut poured = Vec::new();
        self.pour_with(event, now, out, |i| poured.push(i));
        poured
    }

    /// [`Detector::pour`] without collecting the scenarios poured into (the engine's path).
    pub fn pour_quiet(&mut self, event: &Event, now: Timestamp, out: &mut Vec<Alert>) {
        self.pour_with(event, now, out, |_| {});
    }

    fn pour_with(
        &mut self,
        event: &Event,
        now: Timestamp,
        out: &mut Vec<Alert>,
        mut poured: impl FnMut(usize),
    ) {
        let route = self.route(event);
        let now = PourTime::of(now);
        self.line += 1;
        self.filter_memo.iter_mut().for_each(|m| *m = None);
        self.verdicts.start_line();
        // The event's sample, built by its first pour that keeps one.
        let mut sample: Option<QueuedSample> = None;
        let mut keys = LineKeys::default();
        // Fields a filter wrote: empty but for the rare filter that writes (declared once,
        // not at each of an nginx line's nine judged filters).
        let mut writes = Vec::new();
        // Taken out of the table for the walk (nothing in it reads the routes), instead of
        // looked up again at each step while the pours borrow the detector.
        let steps = self.dispatch.take(route);
        for &step in steps.iter() {
            let (i, slot) = (step.scenario, step.slot);
            if step.run_filter {
                match self.filter_memo[slot] {
                    Some(false) => continue,
                    Some(true) => {}
                    None => {
                        if !self.judge_filter(i, slot, event, &mut writes) {
                            continue;
                        }
                        if !writes.is_empty() {
                            poured(i);
                            let writes = std::mem::take(&mut writes);
                            self.pour_rewritten(i, event, writes, now, out);
                            continue;
                        }
                    }
                }
            }
            poured(i);
            let known = (i, step.cancel, step.queue_admits);
            self.pour_one(known, event, &mut keys, &mut sample, now, out);
        }
        self.dispatch.put_back(route, steps);
    }

    /// Scenario `i`'s filter (in filter slot `slot`) on `event`, its verdict remembered
    /// for the line unless the filter wrote fields (`evt.SetMeta`). When it admits the
    /// event, those go to `writes` (empty on entry and left empty otherwise), for a copy
    /// of the event that only this scenario sees. Inlined: an nginx line judges nine
    /// filters, and a call each cost ~20 instructions.
    #[inline(always)]
    fn judge_filter(
        &mut self,
        i: usize,
        slot: usize,
        event: &Event,
        writes: &mut Vec<(FieldId, String)>,
    ) -> bool {
        let (filter, skip) = (&self.ruleset.scenarios[i].filter, self.filter_skip[slot]);
        let data = &self.ruleset.data;
        // The context is built only when the filter runs: most verdicts come from the
        // cache.
        let mut wrote = false;
        let ok = self.verdicts.verdict(slot, event, || {
            let ctx = EvalCtx::for_event(event, data);
            let ok = filter.eval_bool_skipping(&ctx, skip);
            let written = ctx.writes.take();
            wrote = !written.is_empty();
            // A filter that fails pours nothing: its writes go nowhere.
            if ok {
                *writes = written;
            }
            ok
        });
        if !wrote {
            self.filter_memo[slot] = Some(ok);
        }
        ok
    }

    /// Pours into scenario `i` a copy of `event` with the fields its filter wrote.
    #[cold]
    fn pour_rewritten(
        &mut self,
        i: usize,
        event: &Event,
        writes: Vec<(FieldId, String)>,
        now: PourTime,
        out: &mut Vec<Alert>,
    ) {
        let mut e = event.clone();
        for (id, v) in writes {
            e.set_owned(id, v);
        }
        // Keys computed for this copy are not the line's, before or after it.
        self.line += 1;
        // The copy's written fields may change what `cancel-on` and a queue filter read.
        let unknown = (i, None, None);
        self.pour_one(unknown, &e, &mut LineKeys::default(), &mut None, now, out);
        self.line += 1;
    }

    /// The steps `event` goes through: from the route table, or worked out (and kept) the
    /// first time its combination of index list and guard classes is seen. A list whose
    /// filters test more guard fields than a key holds gets no key: its steps are worked
    /// out at every event (no shipped ruleset has one).
    fn route(&mut self, event: &Event) -> usize {
        let list = self.index.list_of(event);
        let fields = &self.dispatch.fields[list];
        let const_key = ConstKey::of(list, fields, &self.guard_fields.fields, event);
        if let Some(r) = const_key.and_then(|k| self.dispatch.const_route(&k)) {
            return r;
        }
        for &f in fields.iter() {
            self.guard_classes[f] = self.guard_fields.classify(f, event);
        }
        let key = self.dispatch.key(list, &self.guard_classes);
        if let Some(&r) = key.and_then(|k| self.dispatch.routes.get(&k)) {
            if let Some(c) = const_key {
                self.dispatch.keep_const_route(c, r);
            }
            return r;
        }
        // A scenario's determined verdict (`cancel-on`, queue filter), when the key holds
        // its fields.
        let decided = |logic: Option<&Option<Vec<ClassLogic>>>| {
            logic
                .and_then(Option::as_ref)
                .filter(|_| self.dispatch.pour_fields[list])
                .map(|logic| logic.iter().all(|l| l.holds(&self.guard_classes)))
        };
        let steps: Box<[Step]> = self.index.lists[list]
            .iter()
            .filter(|&&i| self.enabled[i])
            .filter_map(|&i| {
                let slot = self.filter_slot[i];
                let classes = &self.guard_classes;
                (self.filter_guards[slot]
                    .iter()
                    .all(|g| g.mask & (1 << classes[g.field]) != 0)
                    && self.filter_determined[slot]
                        .iter()
                        .all(|l| l.holds(classes)))
                .then_some(Step {
                    scenario: i,
                    slot,
                    run_filter: !self.filter_checked_only[slot],
                    cancel: decided(self.cancel_determined.get(i)),
                    queue_admits: decided(self.queue_filter_determined.get(i)),
                })
            })
            .collect();
        let Some(k) = key else {
            self.dispatch.unkeyed = steps;
            return Dispatch::UNKEYED;
        };
        if self.dispatch.routes.len() >= Dispatch::MAX_ROUTES {
            self.dispatch.clear();
        }
        self.dispatch.steps.push(steps);
        let r = self.dispatch.steps.len() - 1;
        self.dispatch.routes.insert(k, r);
        if let Some(c) = const_key {
            self.dispatch.keep_const_route(c, r);
        }
        r
    }

    /// Pours `event` into scenario `i`'s bucket for its key; `cancel` is its `cancel-on`
    /// verdict and `queue_admits` its condition's queue filter verdict when the route
    /// knows them (else they run here).
    fn pour_one<'e>(
        &mut self,
        (i, cancel, queue_admits): (usize, Option<bool>, Option<bool>),
        event: &'e Event,
        keys: &mut LineKeys<'e>,
        sample: &mut Option<QueuedSample>,
        now: PourTime,
        out: &mut Vec<Alert>,
    ) {
        // Borrowed field by field: the ruleset is read while the buckets change, with no
        // reference count taken on it.
        let Detector {
            ruleset,
            hasher,
            plans,
            states,
            groups,
            cancel_memos,
            stats,
            computed_keys,
            line,
            sample_spec,
            ..
        } = self;
        let line = *line;
        let rs: &Ruleset = ruleset;
        let Some(plan) = plans.get(i) else {
            return;
        };
        if let Some(n) = stats.pours.get_mut(i) {
            *n += 1;
        }
        // The scenario itself is read only off the common path (a program key, a
        // `distinct` or `cancel-on` to run, a counter, a condition, an alert).
        let sc = || &rs.scenarios[i];
        // The bucket key's group and the distinct value, with its hash. Bare field reads
        // and the default (`Meta.source_ip`) borrow from the event, hashed and looked up
        // once a line. The scenarios an event pours into mostly share their key (six ssh
        // ones): the last pour's group is kept for the next.
        let slot = if keys.last_key == plan.key_code {
            keys.last_slot
        } else {
            let slot = match plan.groupby {
                KeyExpr::None => keys.group(event, rs.well_known.source_ip, true, hasher, groups),
                KeyExpr::Field(id) => keys.group(event, id, false, hasher, groups),
                KeyExpr::Program(k) => match (computed_keys.get_mut(k), &sc().groupby) {
                    (Some(keys), Some(groupby)) => {
                        keys.group(groupby, rs, event, line, hasher, groups)
                    }
                    _ => None,
                },
            }
            .unwrap_or(LineKeys::NO_GROUP);
            (keys.last_key, keys.last_slot) = (plan.key_code, slot);
            slot
        };
        if slot == LineKeys::NO_GROUP {
            return;
        }
        let distinct = match (plan.has_distinct, plan.distinct_field) {
            (false, _) => None,
            (true, Some(id)) => Some((Cow::Borrowed(keys.value(event, id)), Some(id))),
            (true, None) => sc()
                .distinct
                .as_ref()
                .and_then(|d| string_of(d, rs, event))
                .map(|d| (d, None)),
        };
        // Known from the route, or run (through its memo).
        let cancel = cancel.unwrap_or_else(|| {
            plan.has_cancel
                && sc().cancel_on.as_ref().is_some_and(|c| {
                    let judge = || c.eval_bool(&EvalCtx::for_event(event, &rs.data));
                    match cancel_memos.get_mut(i) {
                        Some(Some(memo)) => memo.verdict(event, judge),
                        _ => judge(),
                    }
                })
        });
        let lifetime = plan.lifetime;
        let queue_limit = plan.queue_limit;
        let Some(group) = groups.groups.get_mut(slot as usize) else {
            return;
        };

        // A bucket idle past its lifetime is gone (underflow): it starts afresh, in place.
        // A counter past its duration overflowed at its deadline, which replay sees only
        // now.
        let at = match group.buckets.iter().position(|(s, _)| *s == i) {
            Some(at) => {
                let b = &mut group.buckets[at].1;
                let duration = (plan.kind == ScenarioKind::Counter)
                    .then(|| sc().duration)
                    .flatten();
                if duration.is_some_and(|d| add(b.first_at, d.0) <= now.at) {
                    let (_, b) = group.buckets.swap_remove(at);
                    let at = duration.map_or(now.at, |d| add(b.first_at, d.0));
                    out.extend(overflow_alert(
                        rs,
                        &mut states[i],
                        stats,
                        i,
                        (&group.key, group.hash),
                        b,
                        at,
                        None,
                    ));
                    return;
                }
                if cancel {
                    group.buckets.swap_remove(at);
                    return;
                }
                if lifetime.is_some_and(|l| now.ns.saturating_sub(b.last_at) > l) {
                    b.restart(plan.capacity, now);
                }
                at
            }
            None if cancel => return,
            None => {
                if group.buckets.capacity() == 0 {
                    // The scenarios an event pours into mostly share its key (six ssh
                    // ones): room for them at once, instead of moving four buckets when
                    // the fifth comes.
                    group.buckets.reserve(Group::FIRST_BUCKETS);
                }
                group.buckets.push((
                    i,
                    Bucket::new(
                        plan.capacity,
                        queue_limit,
                        plan.keeps_samples,
                        plan.cond_times.unwrap_or(0),
                        now,
                    ),
                ));
                group.buckets.len() - 1
            }
        };
        let bucket = &mut group.buckets[at].1;
        if let Some((d, field)) = distinct {
            // Hashed only when the values are many: once a line for a field.
            let hash = || match field {
                Some(id) => keys.hash(event, id, key_hash),
                None => key_hash(&d),
            };
            if !bucket.seen.insert(&d, hash) {
                return;
            }
        }
        bucket.count += 1;
        bucket.last_at = now.ns;
        if plan.keeps_samples {
            // The event's sample, built at its first pour and shared by every bucket.
            let sample = sample
                .get_or_insert_with(|| sample_spec.sample(event))
                .clone();
            if bucket.queue.len() > queue_limit {
                bucket.queue.pop_front();
            }
            bucket.queue.push_back(sample);
        }

        let overflow = match plan.kind {
            ScenarioKind::Trigger => true,
            ScenarioKind::Counter => false,
            ScenarioKind::Leaky => {
                let elapsed = now.ns.saturating_sub(bucket.last_refill).max(0) as f64;
                bucket.tokens = (bucket.tokens + elapsed / plan.leak_ns).min(plan.capacity as f64);
                bucket.last_refill = now.ns;
                if bucket.tokens >= 1.0 {
                    bucket.tokens -= 1.0;
                    false
                } else {
                    true
                }
            }
            ScenarioKind::Conditional => sc().condition.as_ref().is_some_and(|c| {
                // A condition that reads the queue only as `filter(queue.Queue, P)` sees
                // only the events `P` admits: the bucket tests each once, here, instead of
                // the condition filtering the whole queue at every pour. The queue limit
                // then counts the events the condition can see.
                let prefiltered = c.has_queue_filter();
                let admitted = !prefiltered
                    || queue_admits.unwrap_or_else(|| c.queue_filter_admits(event, &rs.data));
                if let Some(kept) = plan.cond_times {
                    let times = &mut bucket.cond_times;
                    if admitted {
                        let t = event.time.as_nanosecond();
                        match times.len() {
                            n @ 1.. if n >= kept => {
                                // The oldest goes: a handful of times, moved by hand.
                                for j in 1..n {
                                    times[j - 1] = times[j];
                                }
                                times[n - 1] = t;
                            }
                            _ => times.push(t),
                        }
                    }
                    return c.holds_over_times(times);
                }
                if admitted {
                    if bucket.cond_queue.len() > queue_limit {
                        bucket.cond_queue.pop_front();
                    }
                    bucket.cond_queue.push_back(sample::condition_event(
                        event,
                        &plan.cond_fields,
                        plan.cond_raw,
                    ));
                }
                let queue: &[Event] = bucket.cond_queue.make_contiguous();
                c.eval_bool(&EvalCtx {
                    event: Some(event),
                    alert: None,
                    queue: Some(queue),
                    data: &rs.data,
                    decisions: None,
                    writes: Default::default(),
                    queue_prefiltered: prefiltered,
                })
            }),
        };
        if !overflow {
            return;
        }
        let (_, bucket) = group.buckets.swap_remove(at);
        out.extend(overflow_alert(
            rs,
            &mut states[i],
            stats,
            i,
            (&group.key, group.hash),
            bucket,
            now.at,
            Some(event),
        ));
    }

    /// Ends a replay: counters whose deadline passed by `now` overflow.
    pub fn flush(&mut self, now: Timestamp, out: &mut Vec<Alert>) {
        let ruleset = self.ruleset.clone();
        // Per scenario, its counting duration when it is an enabled counter.
        let durations: Vec<Option<std::time::Duration>> = ruleset
            .scenarios
            .iter()
            .zip(&self.enabled)
            .map(|(sc, &on)| {
                (on && sc.kind == ScenarioKind::Counter)
                    .then_some(sc.duration.map(|d| d.0))
                    .flatten()
            })
            .collect();
        if durations.iter().all(Option::is_none) {
            return;
        }
        let mut due: Vec<(usize, Box<str>, u64, Bucket)> = Vec::new();
        for g in self.groups.live_mut() {
            let mut k = 0;
            while let Some((i, b)) = g.buckets.get(k) {
                match durations.get(*i).copied().flatten() {
                    Some(d) if add(b.first_at, d) <= now => {
                        let (i, b) = g.buckets.swap_remove(k);
                        due.push((i, g.key.clone(), g.hash, b));
                    }
                    _ => k += 1,
                }
            }
        }
        // In ruleset order, as the scenarios are listed.
        due.sort_by_key(|(i, ..)| *i);
        for (i, k, hash, b) in due {
            let at = durations[i].map_or(now, |d| add(b.first_at, d));
            if let Some(a) = overflow_alert(
                &ruleset,
                &mut self.states[i],
                &mut self.stats,
                i,
                (&k, hash),
                b,
                at,
                None,
            ) {
                out.push(a);
            }
        }
    }

    /// Drops buckets idle past their lifetime (live mode calls this on a timer).
    pub fn expire(&mut self, now: Timestamp) {
        let now_ns = nanos(now);
        let plans = &self.plans;
        for g in self.groups.live_mut() {
            g.buckets.retain(|(i, b)| {
                plans
                    .get(*i)
                    .and_then(|p| p.lifetime)
                    .is_none_or(|l| now_ns.saturating_sub(b.last_at) <= l)
            });
        }
        self.groups.free_empty();
        self.groups.sweep_at = 2 * self.groups.live();
        for state in &mut self.states {
            state.blackhole_until.retain(|(_, until)| *until > now);
        }
    }

    /// Whether a sweep of idle buckets ([`Detector::expire`]) is due: the live bucket
    /// groups doubled since the last one. The engine sweeps when it is, between lines;
    /// the daemon sweeps on a timer as well.
    pub fn expiry_due(&self) -> bool {
        self.groups.sweep_due()
    }

    /// Live buckets in total (for metrics and memory bounds).
    pub fn bucket_count(&self) -> usize {
        self.groups.bucket_count()
    }
}

/// A bucket of scenario `i` (whose state is `state`) overflowed at `at`: its alert, unless
/// the source is blackholed. `last` is the event whose pour made it overflow, when one did.
#[allow(clippy::too_many_arguments)]
fn overflow_alert(
    rs: &Ruleset,
    state: &mut ScenarioState,
    stats: &mut DetectStats,
    i: usize,
    (key, hash): (&str, u64),
    bucket: Bucket,
    at: Timestamp,
    last: Option<&Event>,
) -> Option<Alert> {
    let sc = &rs.scenarios[i];
    let same_key = |(k, _): &(Box<str>, Timestamp)| **k == *key;
    if let Some((_, until)) = state.blackhole_until.find(hash, same_key)
        && at < *until
    {
        stats.blackholed[i] += 1;
        return None;
    }
    if let Some(bh) = sc.blackhole {
        let until = add(at, bh.0);
        match state
            .blackhole_until
            .entry(hash, same_key, |(k, _)| key_hash(k))
        {
            Entry::Occupied(mut o) => o.get_mut().1 = until,
            Entry::Vacant(v) => {
                v.insert((Box::from(key), until));
            }
        }
    }
    let alert = build_alert(rs, sc, bucket, at, last)?;
    stats.overflows[i] += 1;
    Some(alert)
}

/// Whether two compiled scenarios behave the same, so buckets of one are valid for the
/// other: same kind, expressions (by source text), bucket parameters, scope and labels.
fn same_definition(a: &CompiledScenario, b: &CompiledScenario) -> bool {
    fn src(p: &Option<Program>) -> Option<&str> {
        p.as_ref().map(|p| p.source())
    }
    a.kind == b.kind
        && a.filter.source() == b.filter.source()
        && src(&a.groupby) == src(&b.groupby)
        && src(&a.distinct) == src(&b.distinct)
        && src(&a.condition) == src(&b.condition)
        && src(&a.cancel_on) == src(&b.cancel_on)
        && src(&a.scope_expression) == src(&b.scope_expression)
        && a.capacity == b.capacity
        && a.leakspeed == b.leakspeed
        && a.duration.map(|d| d.0) == b.duration.map(|d| d.0)
        && a.blackhole.map(|d| d.0) == b.blackhole.map(|d| d.0)
        && a.cache_size == b.cache_size
        && a.scope == b.scope
        && a.labels == b.labels
        && a.remediation == b.remediation
}

/// Field ids of an old ruleset mapped to a new one's, by namespace and name: a reload that
/// adds a parser renumbers fields, and kept bucket contents must follow.
struct FieldRemap {
    /// Indexed by old id; `None` when the new ruleset has no such field.
    map: Vec<Option<FieldId>>,
}

impl FieldRemap {
    fn new(old: &Ruleset, new: &Ruleset) -> Self {
        let map = (0..old.fields.len())
            .map(|i| {
                let id = FieldId(i as u16);
                let (ns, name) = old.fields.name(id);
                new.fields.get(ns, name)
            })
            .collect();
        FieldRemap { map }
    }

    fn is_identity(&self) -> bool {
        self.map
            .iter()
            .enumerate()
            .all(|(i, m)| *m == Some(FieldId(i as u16)))
    }

    fn get(&self, id: FieldId) -> Option<FieldId> {
        self.map.get(usize::from(id.0)).copied().flatten()
    }

    fn bucket(&self, b: &mut Bucket) {
        for s in b.queue.iter_mut() {
            *s = s.remapped(|id| self.get(id));
        }
        for e in b.cond_queue.iter_mut() {
            let fields = e.take_slots();
            for (i, v) in fields.into_iter().enumerate() {
                if let Some(id) = self.get(FieldId(i as u16))
                    && v != crate::event::FieldValue::Unset
                {
                    e.set(id, v);
                }
            }
        }
    }
}

fn add(t: Timestamp, d: std::time::Duration) -> Timestamp {
    jiff::SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

/// How long an idle bucket lives: `(capacity + 1) × leakspeed` for leaky, `leakspeed` for
/// conditional, none for triggers (they never hold state) and counters (their deadline rules).
fn bucket_lifetime(sc: &CompiledScenario) -> Option<std::time::Duration> {
    match sc.kind {
        ScenarioKind::Leaky => sc
            .leakspeed
            .map(|l| l.0 * u32::try_from(sc.capacity + 1).unwrap_or(u32::MAX)),
        ScenarioKind::Conditional => sc.leakspeed.map(|l| l.0),
        ScenarioKind::Trigger | ScenarioKind::Counter => None,
    }
}

/// Events kept for the alert: CrowdSec keeps capacity (or cache-size) + 1.
fn queue_limit(sc: &CompiledScenario) -> usize {
    let cap = if sc.capacity > 0 {
        sc.capacity as usize
    } else {
        DEFAULT_QUEUE_LIMIT
    };

    sc.cache_size.map_or(cap, |c| (c as usize).min(cap))
}

/// Whether an expression reads an event's raw line (`Line.Raw`), which is no field slot.
fn reads_raw_line(p: &Program) -> bool {
    p.source().contains("Line")
}

/// The alert of `bucket`, its source read from `last` (the event that made it overflow) or,
/// without one, from the last sample it queued.
fn build_alert(
    rs: &Ruleset,
    sc: &CompiledScenario,
    bucket: Bucket,
    at: Timestamp,
    last: Option<&Event>,
) -> Option<Alert> {
    // The alert's copies, which other threads may read.
    let samples: Vec<Sample> = bucket.queue.iter().map(QueuedSample::shared).collect();
    let sampled;
    let last: &Event = match last {
        Some(e) => e,
        None => {
            sampled = samples.last()?.to_event();
            &sampled
        }
    };
    let (scope, value) = match sc.scope {
        ScenarioScope::Ip => {
            let ip = crate::parse::normalized_ip_text(last.get(rs.well_known.source_ip))?;
            (Scope::Ip, ip)
        }
        ScenarioScope::Range => {
            let v = match &sc.scope_expression {
                Some(e) => e
                    .eval_string(&EvalCtx::for_event(last, &rs.data))
                    .map(|c| c.into_owned())
                    .unwrap_or_default(),
                None => last.get(rs.well_known.source_range).to_owned(),
            };
            let net = crate::config::types::Cidr::parse(&v).ok()?;
            (Scope::Range, net.to_string())
        }
    };
    Some(Alert {
        scenario: sc.name.clone(),
        scope,
        value,
        events_count: bucket.count,
        start_at: bucket.first_at,
        stop_at: at,
        remediation: sc.remediation,
        events: AlertEvents::from_samples(samples),
        labels: sc.labels.clone(),
        custom_message: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::FieldValue;
    use std::collections::HashSet;

    /// The index of scenario `name` in `rs`.
    fn scenario_index(rs: &Ruleset, name: &str) -> usize {
        rs.scenarios
            .iter()
            .position(|s| &*s.name == name)
            .unwrap_or_else(|| panic!("no scenario {name}"))
    }

    /// The default ruleset, and a look-up of its `Meta` fields by name.
    fn default_rules() -> (Arc<Ruleset>, impl Fn(&str) -> FieldId) {
        let rs = crate::compile::compile_path(None)
            .expect("the default configuration compiles")
            .ruleset;
        let fields = rs.clone();
        let meta = move |n: &str| fields.fields.get(Namespace::Meta, n).expect("a Meta field");
        (rs, meta)
    }

    /// The default rules, and an ssh event of a `log_type` from an address for a user at
    /// a time, as the sshd parser sets them.
    fn ssh_events() -> (
        Arc<Ruleset>,
        impl Fn(&'static str, &'static str, &'static str, Timestamp) -> Event,
    ) {
        let (rs, meta) = default_rules();
        let (log_type, service, ip, user) = (
            meta("log_type"),
            meta("service"),
            meta("source_ip"),
            meta("target_user"),
        );
        let fields = rs.fields.len();
        let event = move |kind, from, who, at| {
            let mut e = Event::new(String::new(), at, fields);
            e.set(log_type, FieldValue::Static(kind));
            e.set(service, FieldValue::Static("ssh"));
            e.set(ip, FieldValue::Static(from));
            e.set(user, FieldValue::Static(who));
            e
        };
        (rs, event)
    }

    /// A detector running only ssh-bf, and an sshd failure from an address at a time.
    fn ssh_bf_only() -> (Detector, impl Fn(&str, Timestamp) -> Event) {
        let (rs, meta) = default_rules();
        let (log_type, ip) = (meta("log_type"), meta("source_ip"));
        let mut detector = Detector::new(rs.clone());
        detector.only(&["ssh-bf".to_string()]);
        let failure = move |from: &str, at: Timestamp| {
            let mut e = Event::new(String::new(), at, rs.fields.len());
            e.set(log_type, FieldValue::Static("ssh_failed-auth"));
            e.set(ip, FieldValue::Owned(from.to_string()));
            e
        };
        (detector, failure)
    }

    #[test]
    fn a_bucket_idle_past_its_lifetime_starts_afresh() {
        let (rs, meta) = default_rules();
        let (log_type, ip, user) = (meta("log_type"), meta("source_ip"), meta("target_user"));
        let mut detector = Detector::new(rs.clone());
        let t0 = Timestamp::from_second(1_700_000_000).expect("a time");
        let at = |ms: i64| t0 + jiff::SignedDuration::from_millis(ms);
        let mut pour = |ms: i64| {
            let mut e = Event::new(String::new(), at(ms), rs.fields.len());
            e.set(log_type, FieldValue::Static("ssh_failed-auth"));
            e.set(ip, FieldValue::Static("203.0.113.9"));
            e.set(user, FieldValue::Static("root"));
            let mut out = Vec::new();
            detector.pour_quiet(&e, at(ms), &mut out);
            out.into_iter()
                .filter(|a| &*a.scenario == "ssh-bf")
                .collect::<Vec<_>>()
        };
        // Four attempts, then silence well past ssh-bf's lifetime (capacity 5 × 10 s).
        for ms in [0, 1_000, 2_000, 3_000] {
            assert!(pour(ms).is_empty());
        }
        let later = 1_000_000;
        for k in 0..5 {
            assert!(
                pour(later + k * 100).is_empty(),
                "attempt {k} after the pause"
            );
        }
        let alerts = pour(later + 500);
        assert_eq!(alerts.len(), 1);
        // Counted from the restart, not from the first attempts.
        assert_eq!(alerts[0].events_count, 6);
        assert_eq!(alerts[0].start_at, at(later));
        assert_eq!(alerts[0].events.len(), 6);
        // The samples read as events only when asked, and say the same either way.
        let events = &alerts[0].events;
        assert_eq!(events.first_value(user), "root");
        let as_events = events.as_slice();
        assert_eq!(as_events.len(), 6);
        assert_eq!(as_events[5].time, at(later + 500));
        assert!(as_events.iter().all(|e| e.get(ip) == "203.0.113.9"));
        assert_eq!(events.first_value(user), "root");
    }

    #[test]
    fn distinct_values_are_told_apart_before_and_after_the_table() {
        let mut seen = DistinctSeen::default();
        let mut model = HashSet::new();
        let hashed = std::cell::Cell::new(0);
        // Values repeat, prefixes of each other included, past the linear limit.
        let values: Vec<String> = (0..200)
            .map(|k: usize| "u".repeat(1 + (k * 7) % 40) + &((k * 13) % 29).to_string())
            .collect();
        for (k, v) in values.iter().enumerate() {
            let hash = || {
                hashed.set(hashed.get() + 1);
                key_hash(v)
            };
            assert_eq!(
                seen.insert(v, hash),
                model.insert(v.clone()),
                "value {k}: {v}"
            );
            assert!(!seen.insert(v, || key_hash(v)), "value {k} again");
            assert_eq!(
                seen.insert("", || key_hash("")),
                model.insert(String::new())
            );
        }
        assert!(model.len() > DistinctSeen::LINEAR);
        assert!(hashed.get() > 0, "the table took over");
        // While values are few, nothing is hashed.
        let mut few = DistinctSeen::default();
        for v in ["root", "admin", "roo", "root", ""] {
            few.insert(v, || panic!("hashed {v}"));
        }
        few.clear();
        assert!(few.insert("root", || panic!("hashed")));
    }

    /// Checks that each of `keys` has its own group, holding it, the same at each look-up.
    fn assert_own_groups(groups: &mut BucketGroups, hasher: &mut KeyHasher, keys: &[String]) {
        let slots: Vec<u32> = keys.iter().map(|k| groups.slot_of(k, hasher)).collect();
        let distinct: HashSet<&u32> = slots.iter().collect();
        assert_eq!(distinct.len(), keys.len(), "one group a key");
        for (k, &s) in keys.iter().zip(&slots) {
            assert_eq!(groups.slot_of(k, hasher), s, "{k} again");
            assert_eq!(&*groups.groups[s as usize].key, k.as_str());
            assert_eq!(groups.slot(k, key_hash(k)), s, "{k} through the index");
        }
    }

    #[test]
    fn recent_keys_lead_to_their_own_group_through_collisions_and_reused_slots() {
        let mut groups = BucketGroups::default();
        let mut hasher = KeyHasher::default();
        // More keys than recent entries: many share one, and the last looked up wins it.
        let keys: Vec<String> = (0..3 * BucketGroups::RECENT)
            .map(|i| format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255))
            .collect();
        assert_own_groups(&mut groups, &mut hasher, &keys);
        // Every group freed (and the table compacted): remembered slots now hold other
        // keys or none. Looked up in another order, each key still gets its own.
        groups.free_empty();
        assert!(groups.groups.len() < keys.len());
        let mut reversed = keys.clone();
        reversed.reverse();
        assert_own_groups(&mut groups, &mut hasher, &reversed);
        // Freed without compaction (slots reused in place), then new keys take them.
        let mut small = BucketGroups::default();
        let few: Vec<String> = (0..100).map(|i| format!("192.0.2.{i}")).collect();
        assert_own_groups(&mut small, &mut hasher, &few);
        small.free_empty();
        let others: Vec<String> = (0..100).map(|i| format!("198.51.100.{i}")).collect();
        assert_own_groups(&mut small, &mut hasher, &others);
        assert_own_groups(&mut small, &mut hasher, &few);
    }

    #[test]
    fn packed_heads_are_equal_exactly_for_equal_short_values() {
        let mut values: Vec<Vec<u8>> = vec![Vec::new()];
        for len in 1..=10 {
            // ASCII (values are text), the extremes included.
            for fill in [0u8, b'a', 0x7f] {
                let base = vec![fill; len];
                values.push(base.clone());
                // Each byte changed on its own: a head must see every byte it packs.
                for at in 0..len {
                    let mut v = base.clone();
                    v[at] ^= 0x41;
                    values.push(v);
                }
            }
        }
        for a in &values {
            for b in &values {
                let text = |v: &[u8]| String::from_utf8(v.to_vec()).expect("ASCII");
                let same = packed_head(&text(a)) == packed_head(&text(b));
                if a.len() <= PACKED_BYTES && b.len() <= PACKED_BYTES {
                    assert_eq!(same, a == b, "{a:?} {b:?}");
                } else if a == b {
                    assert!(same, "{a:?}");
                }
            }
        }
        // Long values with the same head are told apart by their bytes.
        let mut seen = DistinctSeen::default();
        assert!(seen.insert("administrator", || 0));
        assert!(seen.insert("administrators", || 0));
        assert!(seen.insert("adminisXrator", || 0));
        assert!(!seen.insert("administrator", || 0));
        assert!(seen.insert("rootroot", || 0));
        assert!(seen.insert("rootrooT", || 0));
        assert!(!seen.insert("rootrooT", || 0));
    }

    #[test]
    fn buckets_of_a_key_share_a_group_until_they_expire() {
        let (rs, ssh_event) = ssh_events();
        let mut detector = Detector::new(rs);
        let t0 = Timestamp::from_second(1_700_000_000).expect("a time");
        let pour = |detector: &mut Detector, kind: &'static str, from: &'static str| {
            let e = ssh_event(kind, from, "root", t0);
            let mut out = Vec::new();
            let poured = detector.pour(&e, t0, &mut out);
            assert!(out.is_empty());
            poured.len()
        };
        let live = |d: &Detector| d.groups.groups.iter().filter(|g| g.live).count();
        // Six ssh scenarios, one group.
        assert_eq!(pour(&mut detector, "ssh_failed-auth", "192.0.2.1"), 6);
        assert_eq!((detector.bucket_count(), live(&detector)), (6, 1));
        assert_eq!(pour(&mut detector, "ssh_failed-auth", "192.0.2.2"), 6);
        assert_eq!((detector.bucket_count(), live(&detector)), (12, 2));
        // A login cancels the two time-based buckets of its source, and only those.
        assert_eq!(pour(&mut detector, "auth_success", "192.0.2.1"), 2);
        assert_eq!(detector.bucket_count(), 10);
        // The next failure is judged again: it does not cancel.
        assert_eq!(pour(&mut detector, "ssh_failed-auth", "192.0.2.1"), 6);
        assert_eq!(detector.bucket_count(), 12);
        // Past every lifetime (time-based: 2 h), the buckets and their groups are gone,
        // and a new key takes a freed slot.
        detector.expire(t0 + jiff::SignedDuration::from_hours(3));
        assert_eq!((detector.bucket_count(), live(&detector)), (0, 0));
        assert_eq!(pour(&mut detector, "ssh_failed-auth", "192.0.2.3"), 6);
        assert_eq!((detector.bucket_count(), live(&detector)), (6, 1));
        assert_eq!(detector.groups.groups.len(), 2);
        assert_eq!(detector.groups.index.len(), 1);
    }

    #[test]
    fn conditions_over_queued_times_overflow_as_over_queued_events() {
        let (rs, ssh_event) = ssh_events();
        let names = ["ssh-time-based-bf", "ssh-time-based-bf_user-enum"].map(String::from);
        let mut times_only = Detector::new(rs.clone());
        times_only.only(&names);
        assert!(names.iter().all(|n| {
            times_only.plans[scenario_index(&rs, n)]
                .cond_times
                .is_some()
        }));
        // The same scenarios with their queues as events, as any other condition keeps
        // them.
        let mut events = Detector::new(rs.clone());
        events.only(&names);
        events.plans.iter_mut().for_each(|p| p.cond_times = None);
        let t0 = Timestamp::from_second(1_700_000_000).expect("a time");
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut secs = 0i64;
        let mut alerts = (Vec::new(), Vec::new());
        for _ in 0..6000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Mostly bursts, sometimes long pauses: queues grow past their limit, restart
            // after their lifetime and overflow when their last pauses are long.
            secs += match x % 10 {
                0..=6 => (x >> 8) % 60,
                _ => 300 + (x >> 8) % 2400,
            } as i64;
            let at = t0 + jiff::SignedDuration::from_secs(secs);
            let kind = if (x >> 20).is_multiple_of(40) {
                "auth_success"
            } else {
                "ssh_failed-auth"
            };
            let from = ["192.0.2.1", "192.0.2.2", "192.0.2.3"][((x >> 30) % 3) as usize];
            let who = ["root", "admin", "pi", "git", "oracle", "test", "ubuntu"];
            let e = ssh_event(kind, from, who[((x >> 40) % 7) as usize], at);
            times_only.pour(&e, at, &mut alerts.0);
            events.pour(&e, at, &mut alerts.1);
        }
        let end = t0 + jiff::SignedDuration::from_secs(secs);
        times_only.flush(end, &mut alerts.0);
        events.flush(end, &mut alerts.1);
        let summary = |a: &Alert| {
            let name: &str = &a.scenario;
            (
                name.to_owned(),
                a.value.clone(),
                a.events_count,
                a.start_at,
                a.stop_at,
            )
        };
        let times: Vec<_> = alerts.0.iter().map(summary).collect();
        let queued: Vec<_> = alerts.1.iter().map(summary).collect();
        assert_eq!(times, queued);
        for n in &names {
            let count = times.iter().filter(|(s, ..)| s == n).count();
            assert!(count >= 10, "{count} {n} alerts");
        }
    }

    #[test]
    fn a_blackhole_ignores_overflows_of_its_key_until_it_ends_and_then_starts_again() {
        let (mut detector, failure) = ssh_bf_only();
        let t0 = Timestamp::from_second(1_700_000_000).expect("a time");
        // Six failures in a second overflow ssh-bf (capacity 5), blackholed for a minute.
        let burst = |detector: &mut Detector, from: &str, secs: i64| {
            let mut alerts = Vec::new();
            for k in 0..6 {
                let at = t0 + jiff::SignedDuration::from_millis(secs * 1000 + k * 100);
                detector.pour(&failure(from, at), at, &mut alerts);
            }
            alerts.iter().map(|a| a.value.clone()).collect::<Vec<_>>()
        };
        let a = "192.0.2.1";
        assert_eq!(burst(&mut detector, a, 0), [a]);
        // In blackhole: no alert, for this key only.
        assert!(burst(&mut detector, a, 30).is_empty());
        assert_eq!(burst(&mut detector, "192.0.2.2", 30), ["192.0.2.2"]);
        // Ended (its entry not yet dropped by `expire`): an alert, and a new minute.
        assert_eq!(burst(&mut detector, a, 61), [a]);
        assert!(burst(&mut detector, a, 100).is_empty());
        assert_eq!(burst(&mut detector, a, 125), [a]);
        // Dropped by `expire` once ended: the next overflow alerts as well.
        detector.expire(t0 + jiff::SignedDuration::from_secs(200));
        assert!(detector.states.iter().all(|s| s.blackhole_until.is_empty()));
        assert_eq!(burst(&mut detector, a, 201), [a]);
        assert!(burst(&mut detector, a, 230).is_empty());
    }

    #[test]
    fn expired_groups_give_their_memory_back_and_the_rest_stay_found() {
        let (mut detector, failure) = ssh_bf_only();
        let t0 = Timestamp::from_second(1_700_000_000).expect("a time");
        let pour = |detector: &mut Detector, from: &str, at: Timestamp| {
            detector.pour(&failure(from, at), at, &mut Vec::new());
        };
        // 3,000 addresses, then ten of them again two minutes later (ssh-bf lives 60 s).
        for k in 0..3000 {
            pour(&mut detector, &format!("10.0.{}.{}", k / 250, k % 250), t0);
        }
        let later = t0 + jiff::SignedDuration::from_mins(2);
        for k in 0..10 {
            pour(&mut detector, &format!("10.0.0.{k}"), later);
        }
        assert_eq!(detector.bucket_count(), 3000);
        detector.expire(later);
        assert_eq!(detector.bucket_count(), 10);
        assert_eq!(detector.groups.groups.len(), 10, "compacted");
        assert!(detector.groups.free.is_empty());
        // The ten keep their buckets: a pour finds each, with no new group.
        for k in 0..10 {
            pour(&mut detector, &format!("10.0.0.{k}"), later);
        }
        assert_eq!(detector.bucket_count(), 10);
        assert_eq!(detector.groups.groups.len(), 10);
        pour(&mut detector, "10.0.0.10", later);
        assert_eq!(detector.groups.groups.len(), 11);
        assert_eq!(detector.groups.index.len(), 11);
    }

    #[test]
    fn routes_follow_the_enabled_scenarios_and_stay_bounded() {
        let (rs, meta) = default_rules();
        let mut detector = Detector::new(rs.clone());
        let mut e = Event::new(String::new(), Timestamp::UNIX_EPOCH, rs.fields.len());
        e.set(meta("log_type"), FieldValue::Static("ssh_failed-auth"));
        e.set(meta("service"), FieldValue::Static("ssh"));
        e.set(meta("source_ip"), FieldValue::Static("203.0.113.9"));
        let name = |i: &usize| rs.scenarios[*i].name.to_string();
        let mut out = Vec::new();
        let all: Vec<String> = detector
            .pour(&e, e.time, &mut out)
            .iter()
            .map(name)
            .collect();
        assert!(
            all.len() > 1 && all.contains(&"ssh-bf".to_owned()),
            "{all:?}"
        );
        assert_eq!(detector.dispatch.routes.len(), 1);
        // The same event after `only`: the route it took before is not reused.
        assert!(detector.only(&["ssh-slow-bf".to_owned()]).is_empty());
        let some: Vec<String> = detector
            .pour(&e, e.time, &mut out)
            .iter()
            .map(name)
            .collect();
        assert_eq!(some, ["ssh-slow-bf"]);

        // Keys hold a list and up to eight guard classes; more fields get no key.
        let d = Dispatch {
            fields: vec![(0..8).collect(), (0..9).collect()],
            ..Dispatch::default()
        };
        let classes = [1, 2, 3, 4, 5, 6, 7, 63, 9];
        let key = d.key(0, &classes).expect("a key");
        assert_eq!(key >> 48, 0);
        assert_eq!((key >> 42) & 63, 63);
        assert_ne!(d.key(0, &[1, 2, 3, 4, 5, 6, 7, 62, 9]), Some(key));
        assert_eq!(d.key(1, &classes), None);
    }

    #[test]
    fn only_filters_that_admit_an_event_give_their_writes() {
        let rs = crate::compile::ruleset_with_local_rules(
            r#"
scenarios {
    - "test-writes-then-fails" {
        type trigger
        filter "evt.SetMeta('cve', 'x') && evt.Meta.log_type contains 'never'"
    }
    - "test-writes-and-admits" {
        type trigger
        filter "evt.SetMeta('cve', 'y') && evt.Meta.log_type contains 'failed'"
    }
}
"#,
        );
        let mut detector = Detector::new(rs.clone());
        let meta = |n: &str| rs.fields.get(Namespace::Meta, n).expect("a Meta field");
        let mut e = Event::new(String::new(), Timestamp::UNIX_EPOCH, rs.fields.len());
        e.set(meta("log_type"), FieldValue::Static("ssh_failed-auth"));
        let (fails, admits) = (
            scenario_index(&rs, "test-writes-then-fails"),
            scenario_index(&rs, "test-writes-and-admits"),
        );
        let mut writes = Vec::new();
        let slot = detector.filter_slot[fails];
        assert!(!detector.judge_filter(fails, slot, &e, &mut writes));
        assert!(writes.is_empty(), "a failed filter's writes: {writes:?}");
        let slot = detector.filter_slot[admits];
        assert!(detector.judge_filter(admits, slot, &e, &mut writes));
        assert_eq!(writes, [(meta("cve"), "y".to_string())]);
    }

    #[test]
    fn scenarios_without_groupby_key_by_the_source_and_skip_events_without_one() {
        let rs = crate::compile::ruleset_with_local_rules(
            r#"
scenarios {
    - "test-no-groupby" {
        type leaky
        filter "evt.Meta.log_type == 'test-line'"
        capacity 1
        leakspeed "1m"
    }
}
"#,
        );
        let mut detector = Detector::new(rs.clone());
        detector.only(&["test-no-groupby".to_string()]);
        let meta = |n: &str| rs.fields.get(Namespace::Meta, n).expect("a Meta field");
        let event = |ip: &'static str| {
            let mut e = Event::new(String::new(), Timestamp::UNIX_EPOCH, rs.fields.len());
            e.set(meta("log_type"), FieldValue::Static("test-line"));
            e.set(meta("source_ip"), FieldValue::Static(ip));
            e
        };
        let mut out = Vec::new();
        // Events without an address (before, between and after the others) neither fill
        // the address's bucket nor make one of their own.
        let mut buckets = Vec::new();
        for ip in ["", "192.0.2.1", "", "", "192.0.2.1", ""] {
            detector.pour(&event(ip), Timestamp::UNIX_EPOCH, &mut out);
            buckets.push(detector.bucket_count());
        }
        assert_eq!(buckets, [0, 1, 1, 1, 0, 0]);
        let alerts: Vec<(&str, u64)> = out
            .iter()
            .map(|a| (a.value.as_str(), a.events_count))
            .collect();
        assert_eq!(alerts, [("192.0.2.1", 2)]);
    }

    #[test]
    fn scenarios_pouring_one_event_by_different_keys_keep_apart_buckets() {
        let rs = crate::compile::ruleset_with_local_rules(
            r#"
scenarios {
    - "test-by-default" {
        type leaky
        filter "evt.Meta.log_type == 'test-line'"
        capacity 2
        leakspeed "1m"
    }
    - "test-by-user" {
        type leaky
        filter "evt.Meta.log_type == 'test-line'"
        groupby "evt.Meta.target_user"
        capacity 1
        leakspeed "1m"
    }
    - "test-by-address" {
        type leaky
        filter "evt.Meta.log_type == 'test-line'"
        groupby "evt.Meta.source_ip"
        capacity 3
        leakspeed "1m"
    }
    - "test-by-user-and-address" {
        type leaky
        filter "evt.Meta.log_type == 'test-line'"
        groupby "evt.Meta.target_user + '@' + evt.Meta.source_ip"
        capacity 1
        leakspeed "1m"
    }
}
"#,
        );
        let meta = |n: &str| rs.fields.get(Namespace::Meta, n).expect("a Meta field");
        let all = [
            "test-by-default",
            "test-by-user",
            "test-by-address",
            "test-by-user-and-address",
        ];
        // Every pair too, so that each two keys follow each other in some route.
        let mut sets = vec![all.to_vec()];
        for (k, a) in all.iter().enumerate() {
            for b in &all[k + 1..] {
                sets.push(vec![*a, *b]);
            }
        }
        for names in sets {
            let mut detector = Detector::new(rs.clone());
            let enabled: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            detector.only(&enabled);
            let mut out = Vec::new();
            // One address; the user alternates, so that each key counts differently.
            for (n, user) in ["a", "b", "a", "b"].into_iter().enumerate() {
                let mut e = Event::new(String::new(), Timestamp::UNIX_EPOCH, rs.fields.len());
                e.set(meta("log_type"), FieldValue::Static("test-line"));
                e.set(meta("source_ip"), FieldValue::Static("192.0.2.1"));
                e.set(meta("target_user"), FieldValue::Static(user));
                let before = out.len();
                detector.pour(&e, Timestamp::UNIX_EPOCH, &mut out);
                let mut fired: Vec<&str> = out[before..].iter().map(|a| &*a.scenario).collect();
                fired.sort_unstable();
                let expected: &[&str] = match n {
                    0 | 1 => &[],
                    // The third event overflows the address's capacity 2 and user a's 1.
                    2 => &[
                        "test-by-default",
                        "test-by-user",
                        "test-by-user-and-address",
                    ],
                    _ => &[
                        "test-by-address",
                        "test-by-user",
                        "test-by-user-and-address",
                    ],
                };
                let expected: Vec<&str> = expected
                    .iter()
                    .copied()
                    .filter(|s| names.contains(s))
                    .collect();
                assert_eq!(fired, expected, "event {n} with {names:?}");
            }
        }
    }

    /// Event `n` of a run from one address whose `log_type` cycles through `log_types`,
    /// its service through two tested values, none and another, its user through two.
    fn varied_event(rs: &Ruleset, log_types: [&'static str; 3], n: usize) -> Event {
        let meta = |n: &str| rs.fields.get(Namespace::Meta, n).expect("a Meta field");
        let mut e = Event::new(String::new(), Timestamp::UNIX_EPOCH, rs.fields.len());
        let service = ["test-svc", "", "test-other", "ssh"][n / 3 % 4];
        e.set(meta("log_type"), FieldValue::Static(log_types[n % 3]));
        if !service.is_empty() {
            e.set(meta("service"), FieldValue::Static(service));
        }
        let user = ["bob", "admin7"][n / 12 % 2];
        e.set(meta("target_user"), FieldValue::Static(user));
        e.set(meta("source_ip"), FieldValue::Static("192.0.2.1"));
        e
    }

    /// Two detectors of `rs` running only the scenarios `names`.
    fn two_detectors(rs: &Arc<Ruleset>, names: &[&str]) -> (Detector, Detector) {
        let enabled: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let one = || {
            let mut d = Detector::new(rs.clone());
            d.only(&enabled);
            d
        };
        (one(), one())
    }

    /// Each alert's scenario and events count.
    fn scenario_counts(out: &[Alert]) -> Vec<(String, u64)> {
        out.iter()
            .map(|a| (a.scenario.to_string(), a.events_count))
            .collect()
    }

    #[test]
    fn cancel_verdicts_known_from_routes_agree_with_running_cancel_on() {
        let rs = crate::compile::ruleset_with_local_rules(
            r#"
scenarios {
    - "test-cancel-by-type" {
        type leaky
        filter "evt.Meta.log_type in ['test-line', 'test-ok']"
        capacity 2
        leakspeed "1m"
        cancel-on "evt.Meta.log_type == 'test-ok'"
    }
    - "test-cancel-by-service-and-type" {
        type leaky
        filter "evt.Meta.log_type in ['test-line', 'test-ok']"
        capacity 2
        leakspeed "1m"
        cancel-on "evt.Meta.service == 'test-svc' && evt.Meta.log_type != 'test-line'"
    }
    - "test-cancel-by-any-service" {
        type leaky
        filter "evt.Meta.log_type in ['test-line', 'test-ok']"
        capacity 2
        leakspeed "1m"
        cancel-on "evt.Meta.service in ['test-svc', 'test-other']"
    }
    - "test-cancel-by-user" {
        type leaky
        filter "evt.Meta.log_type in ['test-line', 'test-ok']"
        capacity 2
        leakspeed "1m"
        cancel-on "evt.Meta.target_user contains 'admin'"
    }
}
"#,
        );
        let names = [
            "test-cancel-by-type",
            "test-cancel-by-service-and-type",
            "test-cancel-by-any-service",
            "test-cancel-by-user",
        ];
        // The reference runs every `cancel-on`.
        let (mut routed, mut running) = two_detectors(&rs, &names);
        running.cancel_determined.iter_mut().for_each(|c| *c = None);
        let known: Vec<bool> = names
            .iter()
            .map(|n| routed.cancel_determined[scenario_index(&rs, n)].is_some())
            .collect();
        assert_eq!(known, [true, true, true, false]);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let mut cancels = 0;
        for n in 0..120usize {
            let e = varied_event(&rs, ["test-line", "test-line", "test-ok"], n);
            let (buckets_before, alerts_before) = (routed.bucket_count(), a.len());
            routed.pour(&e, Timestamp::UNIX_EPOCH, &mut a);
            running.pour(&e, Timestamp::UNIX_EPOCH, &mut b);
            // A bucket gone without an alert was cancelled.
            cancels +=
                usize::from(routed.bucket_count() < buckets_before && a.len() == alerts_before);
            assert_eq!(scenario_counts(&a), scenario_counts(&b), "event {n}");
            assert_eq!(routed.bucket_count(), running.bucket_count(), "event {n}");
        }
        assert!(cancels > 0, "no event cancelled a bucket");
    }

    #[test]
    fn queue_filter_verdicts_known_from_routes_agree_with_running_the_filter() {
        let rs = crate::compile::ruleset_with_local_rules(
            r#"
scenarios {
    - "test-queue-by-type" {
        type conditional
        filter "evt.Meta.log_type in ['test-line', 'test-ok']"
        capacity -1
        leakspeed "1h"
        condition "let lines = filter(queue.Queue, {#.Meta.log_type == 'test-line'}); len(lines) >= 3"
    }
    - "test-queue-by-service" {
        type conditional
        filter "evt.Meta.log_type in ['test-line', 'test-ok']"
        capacity -1
        leakspeed "1h"
        condition "len(filter(queue.Queue, {#.Meta.service in ['test-svc', 'test-other']})) >= 2"
    }
    - "test-queue-by-user" {
        type conditional
        filter "evt.Meta.log_type in ['test-line', 'test-ok']"
        capacity -1
        leakspeed "1h"
        condition "len(filter(queue.Queue, {#.Meta.target_user contains 'admin'})) >= 2"
    }
}
"#,
        );
        let names = [
            "test-queue-by-type",
            "test-queue-by-service",
            "test-queue-by-user",
        ];
        // The reference runs every queue filter.
        let (mut routed, mut running) = two_detectors(&rs, &names);
        running
            .queue_filter_determined
            .iter_mut()
            .for_each(|c| *c = None);
        let known: Vec<bool> = names
            .iter()
            .map(|n| routed.queue_filter_determined[scenario_index(&rs, n)].is_some())
            .collect();
        assert_eq!(known, [true, true, false]);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for n in 0..120usize {
            let e = varied_event(&rs, ["test-line", "test-ok", "test-ok"], n);
            routed.pour(&e, Timestamp::UNIX_EPOCH, &mut a);
            running.pour(&e, Timestamp::UNIX_EPOCH, &mut b);
            assert_eq!(scenario_counts(&a), scenario_counts(&b), "event {n}");
            assert_eq!(routed.bucket_count(), running.bucket_count(), "event {n}");
        }
        let fired = |name: &str| a.iter().filter(|x| &*x.scenario == name).count();
        assert!(names.iter().all(|n| fired(n) > 0), "every scenario fired");
    }

    #[test]
    fn routes_pour_where_the_filters_match() {
        let (rs, meta) = default_rules();
        let parsed = |n: &str| rs.fields.get(Namespace::Parsed, n).expect("a Parsed field");
        // Filters whose conjuncts are all tests of literals, including disjunctions, do
        // not run: their route decides them. One with a substring test still runs.
        let mut detector = Detector::new(rs.clone());
        let slot_of = |name: &str| detector.filter_slot[scenario_index(&rs, name)];
        for name in ["http-invalid-request", "http-tls-probing"] {
            assert!(detector.filter_checked_only[slot_of(name)], "{name}");
        }
        assert!(!detector.filter_checked_only[slot_of("http-shellshock")]);
        // Every combination of the values those filters test: the scenarios an event pours
        // into are those whose filter, run in full, matches it.
        let (log_type, service, sub_type, status) = (
            meta("log_type"),
            meta("service"),
            meta("sub_type"),
            meta("http_status"),
        );
        let (ua, verb) = (meta("http_user_agent"), parsed("verb"));
        let mut e = Event::new(String::new(), Timestamp::UNIX_EPOCH, rs.fields.len());
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for t in [
            "http_access-log",
            "http_error-log",
            "bad_ssl_handshake",
            "ssh_failed-auth",
            "",
        ] {
            for sv in ["http", "ssh", ""] {
                for sub in [
                    "invalid_request",
                    "invalid_uri",
                    "ssl_handshake_failed",
                    "shellshock",
                    "auth_fail",
                    "",
                ] {
                    for st in ["400", "404", "403", "401", "200", ""] {
                        for (v, agent) in [
                            ("POST", "() { :; }; x"),
                            ("GET", "Mozilla/5.0"),
                            ("CONNECT", ""),
                        ] {
                            e.reset("", Timestamp::UNIX_EPOCH);
                            for (f, x) in [
                                (log_type, t),
                                (service, sv),
                                (sub_type, sub),
                                (status, st),
                                (ua, agent),
                                (verb, v),
                            ] {
                                if !x.is_empty() {
                                    e.set(f, FieldValue::Static(x));
                                }
                            }
                            e.set(meta("source_ip"), FieldValue::Static("203.0.113.9"));
                            let want = detector.matching(&e);
                            let got = detector.pour(&e, e.time, &mut out);
                            assert_eq!(got, want, "{t} {sv} {sub} {st} {v} {agent:?}");
                            seen.extend(got);
                        }
                    }
                }
            }
        }
        let names: HashSet<&str> = seen.iter().map(|&i| &*rs.scenarios[i].name).collect();
        for name in [
            "http-invalid-request",
            "http-tls-probing",
            "http-shellshock",
            "ssh-bf",
        ] {
            assert!(names.contains(name), "{name} in {names:?}");
        }
    }

    #[test]
    fn filters_cached_by_value_pour_where_they_match_in_full() {
        let (rs, _) = default_rules();
        let mut detector = Detector::new(rs.clone());
        // Path, query string, file name, request and user agent each feed filters whose
        // other conjuncts the route checks.
        assert!(
            detector.verdicts.cached_filters() >= 6,
            "{} filters cached",
            detector.verdicts.cached_filters()
        );
        let mut pipeline = crate::parse::Pipeline::new(
            rs.clone(),
            crate::parse::timefmt::TimeContext::new(Timestamp::UNIX_EPOCH),
        );
        pipeline.no_whitelist = true;
        let requests = [
            "/",
            "/index.php?author=1",
            "/../../etc/passwd",
            "/search?q=1%20union%20select%20password",
            "/search?q=<script>alert(1)</script>",
            "/wp-config.php.bak",
            "/shell.php",
            "/.env",
            "/wp-login.php",
            "/static/app.js",
            "/admin/login",
        ];
        let agents = [
            "Mozilla/5.0",
            "Mozilla/5.0 (Nikto/2.5.0)",
            "() { :; }; /bin/sh",
            "curl/8.0",
        ];
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        // Every value comes back under other statuses, verbs and sources, and the whole
        // set twice: the second time every verdict of a cached filter is a hit.
        for round in 0..2 {
            for (n, (req, (status, verb))) in requests
                .iter()
                .flat_map(|r| {
                    ["200", "404", "403", "400", "401"]
                        .into_iter()
                        .flat_map(|s| ["GET", "POST"].map(move |v| (s, v)))
                        .map(move |sv| (r, sv))
                })
                .enumerate()
            {
                let agent = agents[(n + round) % agents.len()];
                let line = format!(
                    r#"198.51.100.{} - - [18/Nov/2026:09:46:40 +0000] "{verb} {req} HTTP/1.1" {status} 123 "-" "{agent}""#,
                    n % 200 + 1
                );
                let mut e = Event::new(line.clone(), Timestamp::UNIX_EPOCH, rs.fields.len());
                assert_eq!(
                    pipeline.parse(&mut e, "nginx", None),
                    crate::parse::Outcome::Parsed,
                    "{line}"
                );
                let want = detector.matching(&e);
                let got = detector.pour(&e, e.time, &mut out);
                assert_eq!(got, want, "{line}");
                seen.extend(got);
            }
        }
        let names: HashSet<&str> = seen.iter().map(|&i| &*rs.scenarios[i].name).collect();
        for name in [
            "http-path-traversal-probing",
            "http-sqli-probbing-detection",
            "http-xss-probbing",
            "http-backdoors-attempts",
            "http-sensitive-files",
            "http-bad-user-agent",
            "http-wordpress_user-enum",
            "http-wordpress_wpconfig",
        ] {
            assert!(names.contains(name), "{name} in {names:?}");
        }
    }

    #[test]
    fn filters_cached_by_several_values_pour_where_they_match_in_full() {
        let (rs, meta) = default_rules();
        let mut detector = Detector::new(rs.clone());
        let shellshock = scenario_index(&rs, "http-shellshock");
        let slot = detector.filter_slot[shellshock];
        assert!(
            detector.verdicts.is_cached(slot),
            "its filter reads sub_type, log_type and the user agent: cached by all three"
        );
        let (log_type, sub_type, agent, service, ip) = (
            meta("log_type"),
            meta("sub_type"),
            meta("http_user_agent"),
            meta("service"),
            meta("source_ip"),
        );
        let mut out = Vec::new();
        let mut poured = 0;
        // The same user agents under other log types and sub types, and the other way
        // round, twice over: a verdict kept by the agent alone pours where the filter
        // does not match.
        for round in 0..2 {
            for (n, (lt, st, ua)) in ["http_access-log", "http_error-log"]
                .into_iter()
                .flat_map(|lt| ["", "shellshock", "auth_fail"].map(move |st| (lt, st)))
                .flat_map(|(lt, st)| {
                    ["() { :; }; /bin/sh", "Mozilla/5.0", ""].map(move |ua| (lt, st, ua))
                })
                .enumerate()
            {
                let mut e = Event::new(String::new(), Timestamp::UNIX_EPOCH, rs.fields.len());
                e.set(service, FieldValue::Static("http"));
                e.set(log_type, FieldValue::Static(crate::event::intern(lt)));
                e.set(sub_type, FieldValue::Static(crate::event::intern(st)));
                e.set(agent, FieldValue::Static(crate::event::intern(ua)));
                let source = format!("198.51.100.{}", n + round * 20 + 1);
                e.set(ip, FieldValue::Static(crate::event::intern(&source)));
                let want = detector.matching(&e);
                let got = detector.pour(&e, e.time, &mut out);
                assert_eq!(got, want, "{lt} {st} {ua}");
                poured += usize::from(got.contains(&shellshock));
            }
        }
        // Per round: sub_type shellshock under either log type and any agent (6), and the
        // shellshock agent on access lines of the two other sub types (2).
        assert_eq!(poured, 2 * (6 + 2), "shellshock pours");
    }

    #[test]
    fn classes_by_head_agree_with_string_equality() {
        let mut fields = crate::event::FieldRegistry::new();
        let f = fields.intern(Namespace::Meta, "x");
        // Values of every length around the eight-byte head, differing in the first, the
        // eighth and the last byte, and prefixes of one another.
        let mut values: Vec<String> = vec![String::new()];
        for len in 1..=12 {
            let base: String = "abcdefghijkl"[..len].to_owned();
            values.push(base.clone());
            for at in [0, 7, len - 1] {
                if at < len {
                    let mut b = base.clone().into_bytes();
                    b[at] = b'Z';
                    values.push(String::from_utf8(b).expect("ascii"));
                }
            }
        }
        values.dedup();
        // Every other value is known: a value and its last-byte variant fall on both sides.
        let known: Vec<String> = values.iter().step_by(2).cloned().collect();
        let others: Vec<String> = values.iter().skip(1).step_by(2).cloned().collect();
        let mut gf = GuardFields::default();
        let boxed: Vec<Box<str>> = known.iter().map(|v| Box::from(v.as_str())).collect();
        assert!(gf.guard(f, &boxed).is_some());
        let mut e = Event::new(String::new(), Timestamp::UNIX_EPOCH, 1);
        for v in known.iter().chain(&others) {
            e.set(f, FieldValue::Owned(v.clone()));
            let want = known
                .iter()
                .position(|k| k == v)
                .map_or(GuardFields::OTHER, |c| c as u8);
            assert_eq!(gf.classify(0, &e), want, "{v:?}");
        }
        // As many classes as a field holds, all with one head: one long probe chain, which
        // an unknown value with that head walks to its end.
        let g = fields.intern(Namespace::Meta, "y");
        let same_head: Vec<Box<str>> = (0..62).map(|i| format!("samehead{i:02}").into()).collect();
        assert!(gf.guard(g, &same_head).is_some());
        for (i, v) in same_head.iter().enumerate() {
            e.set(g, FieldValue::Owned(v.to_string()));
            assert_eq!(gf.classify(1, &e), i as u8, "{v}");
        }
        for v in ["samehead62", "samehead", "samehead000", "Samehead01"] {
            e.set(g, FieldValue::Owned(v.into()));
            assert_eq!(gf.classify(1, &e), GuardFields::OTHER, "{v}");
        }
    }

    #[test]
    fn static_values_classify_as_their_text_does() {
        let mut fields = crate::event::FieldRegistry::new();
        let f = fields.intern(Namespace::Meta, "log_type");
        let mut gf = GuardFields::default();
        let known: Vec<Box<str>> = vec!["ab".into(), "a".into(), "ssh_failed-auth".into()];
        assert!(gf.guard(f, &known).is_some());
        let mut e = Event::new("ab ssh_failed-auth".into(), Timestamp::UNIX_EPOCH, 1);
        // The same static text again, a prefix of it at the same address, the same text at
        // another address or as a range of the line, and unknown text at a known address.
        let ab: &'static str = "ab";
        let other: &'static str = "zz";
        let cases: [(FieldValue, u8); 10] = [
            (FieldValue::Static(ab), 0),
            (FieldValue::Static(ab), 0),
            (FieldValue::Static(&ab[..1]), 1),
            (
                FieldValue::Static(crate::event::intern("ssh_failed-auth")),
                2,
            ),
            (FieldValue::Line { start: 0, end: 2 }, 0),
            (FieldValue::Line { start: 3, end: 18 }, 2),
            (FieldValue::Static(other), GuardFields::OTHER),
            (FieldValue::Unset, GuardFields::OTHER),
            (FieldValue::Static(""), GuardFields::OTHER),
            (FieldValue::Static(ab), 0),
        ];
        for (value, want) in cases {
            e.set(f, value.clone());
            assert_eq!(gf.classify(0, &e), want, "{value:?}");
        }
        // New classes for the field: a memo of the old ones is forgotten.
        e.set(f, FieldValue::Static(other));
        assert_eq!(gf.classify(0, &e), GuardFields::OTHER);
        assert!(gf.guard(f, &[Box::from("zz")]).is_some());
        assert_eq!(gf.classify(0, &e), 3);
        // An unset field is the empty text, which a guard may name.
        e.set(f, FieldValue::Unset);
        assert_eq!(gf.classify(0, &e), GuardFields::OTHER);
        assert!(gf.guard(f, &[Box::from("")]).is_some());
        assert_eq!(gf.classify(0, &e), 4);
    }

    #[test]
    fn guards_classify_each_value_once_and_test_bits() {
        let mut fields = crate::event::FieldRegistry::new();
        let status = fields.intern(Namespace::Meta, "http_status");
        let verb = fields.intern(Namespace::Meta, "http_verb");
        let mut gf = GuardFields::default();
        let strs = |v: &[&str]| v.iter().map(|s| Box::<str>::from(*s)).collect::<Vec<_>>();
        let not_found = gf.guard(status, &strs(&["404", "403"])).expect("a guard");
        let bad_request = gf.guard(status, &strs(&["400", "404"])).expect("a guard");
        let post = gf.guard(verb, &strs(&["POST"])).expect("a guard");
        assert_eq!(not_found.field, bad_request.field);
        assert_ne!(not_found.field, post.field);
        let mut admits = |g: &Guard, e: &Event| g.mask & (1 << gf.classify(g.field, e)) != 0;
        let mut e = Event::new(String::new(), Timestamp::UNIX_EPOCH, fields.len());
        for (st, v, want) in [
            ("404", "GET", [true, true, false]),
            ("403", "POST", [true, false, true]),
            ("400", "post", [false, true, false]),
            ("200", "", [false, false, false]),
            ("", "POST", [false, false, true]),
        ] {
            e.set(status, FieldValue::Owned(st.into()));
            e.set(verb, FieldValue::Owned(v.into()));
            let got = [&not_found, &bad_request, &post].map(|g| admits(g, &e));
            assert_eq!(got, want, "{st} {v}");
        }
        // A field with more values than a mask has classes gets no more guards.
        let many: Vec<String> = (0..70).map(|i| i.to_string()).collect();
        let many: Vec<&str> = many.iter().map(|s| s.as_str()).collect();
        let path = fields.intern(Namespace::Meta, "http_path");
        assert!(gf.guard(path, &strs(&many[..60])).is_some());
        assert!(gf.guard(path, &strs(&many[60..])).is_none());
        // One that does not fit leaves no classes behind for events to be compared with.
        let classes = |gf: &GuardFields, field: FieldId| {
            let at = gf.fields.iter().position(|f| *f == field);
            at.map(|i| gf.values[i].len())
        };
        assert_eq!(classes(&gf, path), Some(60));
        let name = fields.intern(Namespace::Parsed, "file_name");
        assert!(gf.guard(name, &strs(&many)).is_none());
        assert!(gf.guard(name, &strs(&["wp-login.php"])).is_some());
        assert_eq!(classes(&gf, name), Some(1));
        // A combination whose second test does not fit takes back its first test's values.
        let method = fields.intern(Namespace::Meta, "method");
        let test = |f, v: &[&str]| FieldLogic::Test(f, strs(v), true);
        let logic = FieldLogic::And(
            Box::new(test(name, &["xmlrpc.php"])),
            Box::new(FieldLogic::Or(
                Box::new(test(method, &["PUT"])),
                Box::new(test(path, &many[60..])),
            )),
        );
        let mark = gf.mark();
        assert!(ClassLogic::of(&logic, &mut gf).is_none());
        gf.rewind(&mark);
        assert_eq!(classes(&gf, name), Some(1));
        assert_eq!(classes(&gf, method), None);
        assert_eq!(classes(&gf, path), Some(60));
        let e = Event::new(String::new(), Timestamp::UNIX_EPOCH, 8);
        assert_eq!(gf.classify(0, &e), GuardFields::OTHER);
    }
}
