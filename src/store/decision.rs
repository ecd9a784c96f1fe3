//! Decisions in memory: the compact record and the index every reader uses (the Local API,
//! the enforcer, the CLI). SQLite holds the same rows; this index answers queries without it.

use hashbrown::HashTable;
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::Arc;

/// Milliseconds since the Unix epoch: compact (8 bytes) and what SQLite stores.
pub type Millis = i64;

/// The wall clock in [`Millis`].
pub fn now_millis() -> Millis {
    jiff::Timestamp::now().as_millisecond()
}

/// What a decision applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// One address (scope `Ip`).
    Ip(IpAddr),
    /// A CIDR range (scope `Range`).
    Range(IpNet),
    /// Any other scope CrowdSec knows (`Country`, `AS`, `username`...): stored and served,
    /// never enforced in the kernel. Boxed: such decisions are rare, and two strings inline
    /// would make every decision 16 bytes larger.
    Other(Box<OtherTarget>),
}

/// A target of a scope other than `Ip` and `Range`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OtherTarget {
    /// The canonical scope name.
    pub scope: Arc<str>,
    /// The value.
    pub value: Box<str>,
}

impl Target {
    /// Parses a scope (case-insensitive, as CrowdSec normalises it) and a value.
    pub fn parse(scope: &str, value: &str) -> Result<Target, String> {
        match canonical_scope(scope).as_ref() {
            "Ip" => {
                let ip = crate::parse::normalize_ip(value)
                    .ok_or_else(|| format!("`{value}` is not an IP address"))?;
                Ok(Target::Ip(ip))
            }
            "Range" => {
                let net: IpNet = value
                    .trim()
                    .parse()
                    .map_err(|_| format!("`{value}` is not a CIDR range"))?;
                Ok(Target::Range(net.trunc()))
            }
            other => {
                if value.is_empty() {
                    return Err(format!("empty value for scope `{other}`"));
                }
                Ok(Target::Other(Box::new(OtherTarget {
                    scope: Arc::from(other),
                    value: Box::from(value),
                })))
            }
        }
    }

    /// The wire scope (`Ip`, `Range`, ...).
    pub fn scope(&self) -> &str {
        match self {
            Target::Ip(_) => "Ip",
            Target::Range(_) => "Range",
            Target::Other(o) => &o.scope,
        }
    }

    /// The wire value (`1.2.3.4`, `1.2.3.0/24`, ...).
    pub fn value(&self) -> String {
        match self {
            Target::Ip(ip) => ip.to_string(),
            Target::Range(net) => net.to_string(),
            Target::Other(o) => o.value.to_string(),
        }
    }

    /// Appends the wire value to `out` (what [`Target::value`] returns, without allocating).
    pub fn write_value(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = match self {
            Target::Ip(ip) => write!(out, "{ip}"),
            Target::Range(net) => write!(out, "{net}"),
            Target::Other(o) => {
                out.push_str(&o.value);
                Ok(())
            }
        };
    }

    /// The addresses it covers, for Ip and Range.
    pub fn net(&self) -> Option<IpNet> {
        match self {
            Target::Ip(ip) => Some(IpNet::from(*ip)),
            Target::Range(net) => Some(*net),
            Target::Other(_) => None,
        }
    }
}

/// CrowdSec's scope normalisation: `ip` → `Ip`, `range` → `Range`, `country` → `Country`,
/// `as` → `AS`; anything else is kept as written.
pub fn canonical_scope(scope: &str) -> std::borrow::Cow<'_, str> {
    match scope.to_ascii_lowercase().as_str() {
        "ip" => "Ip".into(),
        "range" => "Range".into(),
        "country" => "Country".into(),
        "as" => "AS".into(),
        _ => scope.into(),
    }
}

/// Interns the few distinct strings decisions repeat (origins, scenarios, types), so a
/// million decisions do not carry a million copies of `crowdsec` and `ban`.
#[derive(Debug, Default)]
pub struct Interner {
    ids: HashMap<Arc<str>, u32>,
    strings: Vec<Arc<str>>,
}

impl Interner {
    /// The id of `s`, adding it when new.
    pub fn intern(&mut self, s: &str) -> u32 {
        if let Some(id) = self.ids.get(s) {
            return *id;
        }
        let id = u32::try_from(self.strings.len()).unwrap_or(u32::MAX);
        let s: Arc<str> = Arc::from(s);
        self.strings.push(s.clone());
        self.ids.insert(s, id);
        id
    }

    /// The string of an id.
    pub fn get(&self, id: u32) -> &Arc<str> {
        &self.strings[id as usize]
    }
}

/// A decision as stored: compact, with interned strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Monotonic id: the Local API's stream cursor depends on it.
    pub id: i64,
    /// When it was made.
    pub created_at: Millis,
    /// When it ends (set to the deletion time when deleted: CrowdSec expires, never
    /// deletes, so bouncers see the deletion in their next delta).
    pub until: Millis,
    /// The alert that caused it (0: none).
    pub alert_id: i64,
    /// Interned origin (`crowdsec`, `cscli`, `lists`, `CAPI`).
    pub origin: u32,
    /// Interned scenario (or list name, or manual reason).
    pub scenario: u32,
    /// Interned type (`ban`, `captcha`).
    pub decision_type: u32,
    /// What it applies to.
    pub target: Target,
    /// Recorded but not enforced.
    pub simulated: bool,
}

impl Decision {
    /// Whether it is in force at `now`.
    pub fn is_active(&self, now: Millis) -> bool {
        self.until > now
    }
}

/// A decision to create: what profiles, the CLI, lists and the API hand to the store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDecision {
    /// Origin (`crowdsec`, `cscli`, `lists`, `CAPI`).
    pub origin: String,
    /// Scenario, list name or reason.
    pub scenario: String,
    /// Type (`ban`).
    pub decision_type: String,
    /// Target.
    pub target: Target,
    /// End time.
    pub until: Millis,
    /// Recorded but not enforced.
    pub simulated: bool,
}

/// What the index hashes a target by: its address, its range, or (other scopes) its value
/// alone, so that a value is found whatever its scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key<'a> {
    V4(u32),
    V6(u128),
    Net(IpNet),
    Value(&'a str),
}

impl Target {
    fn key(&self) -> Key<'_> {
        match self {
            Target::Ip(IpAddr::V4(a)) => Key::V4(u32::from(*a)),
            Target::Ip(IpAddr::V6(a)) => Key::V6(u128::from(*a)),
            Target::Range(net) => Key::Net(*net),
            Target::Other(o) => Key::Value(&o.value),
        }
    }
}

/// Pairs a merge takes at least: below this, out-of-order pairs simply wait in the tree.
const ENDS_MERGE_MIN: usize = 4096;

/// (until, id) of every retained decision, sorted: the decisions ending in a time window
/// (the stream's deltas, pruning). A sorted vector costs 16 bytes a decision where a
/// B-tree of pairs, filled in order, is half empty (31 bytes). Most pairs arrive in order
/// (a new decision ends after the others) and are appended; the others (a deletion ends a
/// decision now, before every active one) wait in a small B-tree, merged into the vector
/// once it holds an eighth as many. A removed pair is flagged dead and dropped at the next
/// merge, or once half the vector is dead.
#[derive(Debug, Default)]
struct Ends {
    sorted: Vec<(Millis, i64)>,
    dead: Vec<bool>,
    n_dead: usize,
    recent: BTreeSet<(Millis, i64)>,
}

impl Ends {
    fn insert(&mut self, until: Millis, id: i64) {
        let pair = (until, id);
        if self.sorted.last().is_none_or(|last| *last < pair) {
            self.sorted.push(pair);
            self.dead.push(false);
            return;
        }
        self.recent.insert(pair);
        if self.recent.len() > ENDS_MERGE_MIN.max(self.sorted.len() / 8) {
            self.merge();
        }
    }

    fn remove(&mut self, until: Millis, id: i64) {
        let pair = (until, id);
        if self.recent.remove(&pair) {
            return;
        }
        if let Ok(i) = self.sorted.binary_search(&pair)
            && !self.dead[i]
        {
            self.dead[i] = true;
            self.n_dead += 1;
            if self.n_dead > ENDS_MERGE_MIN && self.n_dead * 2 > self.sorted.len() {
                self.merge();
            }
        }
    }

    /// Removes pairs given in ascending order: each search gallops on from the previous
    /// one, which is cheap when they are close (thousands out of a million, a blocklist's
    /// refresh), where a binary search each costs a string of cache misses.
    fn remove_sorted(&mut self, pairs: &[(Millis, i64)]) {
        let mut from = 0;
        for pair in pairs {
            if self.recent.remove(pair) {
                continue;
            }
            let i = gallop(&self.sorted, from, |p| p < pair);
            from = i;
            if self.sorted.get(i) == Some(pair) && !self.dead[i] {
                self.dead[i] = true;
                self.n_dead += 1;
            }
        }
        if self.n_dead > ENDS_MERGE_MIN && self.n_dead * 2 > self.sorted.len() {
            self.merge();
        }
    }

    /// Folds `recent` into the vector and drops the dead pairs.
    fn merge(&mut self) {
        let recent = std::mem::take(&mut self.recent);
        let mut out = Vec::with_capacity(self.sorted.len() - self.n_dead + recent.len());
        out.extend(Merged::new(
            live(&self.sorted, &self.dead),
            recent.into_iter(),
        ));
        self.dead.clear();
        self.dead.resize(out.len(), false);
        self.sorted = out;
        self.n_dead = 0;
    }

    /// Live pairs in `[lo, hi)`, in order.
    fn range(
        &self,
        lo: (Millis, i64),
        hi: (Millis, i64),
    ) -> impl Iterator<Item = (Millis, i64)> + '_ {
        let a = self.sorted.partition_point(|p| *p < lo);
        let b = self.sorted.partition_point(|p| *p < hi).max(a);
        let recent = (lo < hi)
            .then(|| self.recent.range(lo..hi).copied())
            .into_iter()
            .flatten();
        Merged::new(live(&self.sorted[a..b], &self.dead[a..b]), recent)
    }
}

/// The position in `items` (sorted by id, from `from` on) of the first decision whose id is
/// `id` or more. Ids are given in sequence and only removals leave gaps, so the decision
/// `id - items[from].id` places after `from` is at or past the answer, and nearly always
/// it: a lookup is a probe or two where a binary search over a million decisions is twenty,
/// each a cache miss.
fn locate(items: &[Decision], from: usize, id: i64) -> usize {
    let Some(first) = items.get(from) else {
        return from;
    };
    if first.id >= id {
        return from;
    }
    // Past the answer or at it: `items[from + k].id >= first.id + k`.
    let mut hi = usize::try_from(id - first.id)
        .map_or(items.len(), |d| from.saturating_add(d).min(items.len()));
    let mut step = 1;
    loop {
        // Gallop back from `hi` to a decision before `id` (there is one: `items[from]`).
        let k = hi.saturating_sub(step).max(from);
        if items[k].id < id {
            return k + 1 + items[k + 1..hi].partition_point(|d| d.id < id);
        }
        hi = k;
        step *= 2;
    }
}

/// The partition point of `v[from..]` for `is_before` (true on a prefix of it), as a
/// position in `v`: found by galloping from `from`, so a search costs the log of the
/// distance covered rather than of the whole vector (keys searched in ascending order).
fn gallop<T>(v: &[T], from: usize, is_before: impl Fn(&T) -> bool) -> usize {
    let (mut lo, mut hi, mut step) = (from, from, 1);
    while hi < v.len() && is_before(&v[hi]) {
        lo = hi + 1;
        hi += step;
        step *= 2;
    }
    let hi = hi.min(v.len());
    lo + v[lo..hi].partition_point(is_before)
}

/// The pairs of `sorted` not flagged in `dead`.
fn live<'a>(
    sorted: &'a [(Millis, i64)],
    dead: &'a [bool],
) -> impl Iterator<Item = (Millis, i64)> + 'a {
    sorted
        .iter()
        .zip(dead)
        .filter(|(_, dead)| !**dead)
        .map(|(p, _)| *p)
}

/// Two sorted iterators as one.
struct Merged<A: Iterator, B: Iterator<Item = A::Item>> {
    a: std::iter::Peekable<A>,
    b: std::iter::Peekable<B>,
}

impl<A: Iterator, B: Iterator<Item = A::Item>> Merged<A, B> {
    fn new(a: A, b: B) -> Self {
        Merged {
            a: a.peekable(),
            b: b.peekable(),
        }
    }
}

impl<T: Ord, A: Iterator<Item = T>, B: Iterator<Item = T>> Iterator for Merged<A, B> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        match (self.a.peek(), self.b.peek()) {
            (Some(x), Some(y)) if y < x => self.b.next(),
            (Some(_), _) => self.a.next(),
            (None, _) => self.b.next(),
        }
    }
}

/// Every decision the store retains (active and recently expired), indexed for the queries
/// of bouncers, the enforcer and the CLI. Sized for a million decisions (a community
/// blocklist): decisions live in a vector sorted by id, the lookups by target are a hash
/// table of positions in it (5 bytes a decision, where a map from address to id took 36),
/// and the end times a sorted vector.
#[derive(Debug, Default)]
pub struct DecisionIndex {
    /// Retained decisions in id order: ids only grow, so a new decision is appended, and
    /// each costs its 72 bytes where a B-tree filled by appends is half empty. A removed
    /// decision leaves a tombstone (`dead`) until more than half the slots are dead, then
    /// the vector is compacted (amortised O(1) per removal).
    items: Vec<Decision>,
    dead: Vec<bool>,
    n_dead: usize,
    /// Positions in `items` of the live decisions, hashed by their target's [`Key`]; a key
    /// with several decisions has several entries. Positions are u32: four billion
    /// decisions would take 300 GB.
    by_key: HashTable<u32>,
    hasher: RandomState,
    /// (until, id) of every live decision.
    ends: Ends,
    /// The range prefix lengths present, with their counts: an address lookup costs one
    /// hash probe per length, not a scan.
    range_prefixes: BTreeMap<(bool, u8), usize>,
    /// Interned strings.
    pub strings: Interner,
    next_id: i64,
}

impl DecisionIndex {
    /// An empty index whose next id is `next_id`.
    pub fn with_next_id(next_id: i64) -> Self {
        DecisionIndex {
            next_id: next_id.max(1),
            ..Default::default()
        }
    }

    /// The id the next decision gets.
    pub fn next_id(&self) -> i64 {
        self.next_id
    }

    /// The highest id given so far (0 when none).
    pub fn last_id(&self) -> i64 {
        self.next_id - 1
    }

    /// Retained decisions.
    pub fn len(&self) -> usize {
        self.items.len() - self.n_dead
    }

    /// Whether nothing is retained.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Builds a stored decision from a new one, giving it the next id.
    pub fn assign(&mut self, d: &NewDecision, alert_id: i64, now: Millis) -> Decision {
        let origin = self.strings.intern(&d.origin);
        let scenario = self.strings.intern(&d.scenario);
        let decision_type = self.strings.intern(&d.decision_type);
        self.assign_interned(
            [origin, scenario, decision_type],
            d.target.clone(),
            d.until,
            d.simulated,
            alert_id,
            now,
        )
    }

    /// [`DecisionIndex::assign`] with the origin, scenario and type already interned (in
    /// that order): bulk adds intern them once, not once per decision.
    pub fn assign_interned(
        &mut self,
        [origin, scenario, decision_type]: [u32; 3],
        target: Target,
        until: Millis,
        simulated: bool,
        alert_id: i64,
        now: Millis,
    ) -> Decision {
        let id = self.next_id;
        self.next_id += 1;
        Decision {
            id,
            created_at: now,
            until,
            alert_id,
            origin,
            scenario,
            decision_type,
            target,
            simulated,
        }
    }

    /// The position of a live decision.
    fn position(&self, id: i64) -> Option<usize> {
        // The decision just added is looked up at once (to announce it): no search.
        let i = match self.items.last() {
            Some(last) if last.id == id => self.items.len() - 1,
            _ => locate(&self.items, 0, id),
        };
        (self.items.get(i)?.id == id && !self.dead[i]).then_some(i)
    }

    /// Adds the decision at `pos` to the lookups by target and by end.
    fn index_at(&mut self, pos: usize) {
        let DecisionIndex {
            items,
            by_key,
            hasher,
            ends,
            range_prefixes,
            ..
        } = self;
        let d = &items[pos];
        let hash = hasher.hash_one(d.target.key());
        by_key.insert_unique(hash, pos as u32, |p| {
            hasher.hash_one(items[*p as usize].target.key())
        });
        ends.insert(d.until, d.id);
        if let Target::Range(net) = &d.target {
            *range_prefixes
                .entry((net.addr().is_ipv4(), net.prefix_len()))
                .or_default() += 1;
        }
    }

    /// Removes the decision at `pos` from the lookups by target and by end.
    fn unindex_at(&mut self, pos: usize) {
        let d = &self.items[pos];
        let hash = self.hasher.hash_one(d.target.key());
        if let Ok(entry) = self.by_key.find_entry(hash, |p| *p as usize == pos) {
            entry.remove();
        }
        self.ends.remove(d.until, d.id);
        if let Target::Range(net) = &d.target {
            let key = (net.addr().is_ipv4(), net.prefix_len());
            if let Some(n) = self.range_prefixes.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    self.range_prefixes.remove(&key);
                }
            }
        }
    }

    /// Adds a decision (loaded from the database or just assigned).
    pub fn insert(&mut self, d: Decision) {
        self.next_id = self.next_id.max(d.id + 1);
        let pos = if self.items.last().is_none_or(|last| last.id < d.id) {
            self.items.push(d);
            self.dead.push(false);
            self.items.len() - 1
        } else {
            match self.items.binary_search_by_key(&d.id, |x| x.id) {
                Ok(i) => {
                    if self.dead[i] {
                        self.dead[i] = false;
                        self.n_dead -= 1;
                    } else {
                        // The same id again (not something the store does): forget the
                        // old entries.
                        self.unindex_at(i);
                    }
                    self.items[i] = d;
                    i
                }
                Err(i) => {
                    // An id below the last that was never seen (not something the store
                    // does either): the positions after it move.
                    for p in self.by_key.iter_mut() {
                        if *p as usize >= i {
                            *p += 1;
                        }
                    }
                    self.items.insert(i, d);
                    self.dead.insert(i, false);
                    i
                }
            }
        };
        self.index_at(pos);
    }

    /// Removes a decision for good (pruning).
    pub fn remove(&mut self, id: i64) -> Option<Decision> {
        let pos = self.position(id)?;
        self.unindex_at(pos);
        self.dead[pos] = true;
        self.n_dead += 1;
        let d = self.items[pos].clone();
        if self.n_dead > 1024 && self.n_dead * 2 > self.items.len() {
            self.compact();
        }
        Some(d)
    }

    /// Drops the tombstones; the positions in `by_key` follow.
    fn compact(&mut self) {
        let mut moved: Vec<u32> = Vec::with_capacity(self.items.len());
        let mut next = 0u32;
        for dead in &self.dead {
            moved.push(next);
            next += u32::from(!*dead);
        }
        for p in self.by_key.iter_mut() {
            *p = moved[*p as usize];
        }
        let mut dead = self.dead.iter();
        self.items.retain(|_| dead.next().is_some_and(|x| !*x));
        self.dead.clear();
        self.dead.resize(self.items.len(), false);
        self.n_dead = 0;
    }

    /// Ends a decision at `at` (deletion); returns it when it was active.
    pub fn expire(&mut self, id: i64, at: Millis) -> Option<&Decision> {
        let pos = self.position(id)?;
        let d = &mut self.items[pos];
        if d.until <= at {
            return None;
        }
        let old = std::mem::replace(&mut d.until, at);
        self.ends.remove(old, id);
        self.ends.insert(at, id);
        Some(&self.items[pos])
    }

    /// Ends at `at` the active decisions among `ids` (ascending, as [`Store::expire_ids`]
    /// sorts them); returns the ids of those it ended. Each search starts where the
    /// previous one ended.
    ///
    /// [`Store::expire_ids`]: super::Store::expire_ids
    pub fn expire_sorted(&mut self, ids: &[i64], at: Millis) -> Vec<i64> {
        let mut ended_pairs = Vec::new();
        let mut from = 0;
        for &id in ids {
            let i = locate(&self.items, from, id);
            from = i;
            if let Some(d) = self.items.get_mut(i)
                && d.id == id
                && !self.dead[i]
                && d.until > at
            {
                ended_pairs.push((std::mem::replace(&mut d.until, at), id));
            }
        }
        let ended: Vec<i64> = ended_pairs.iter().map(|(_, id)| *id).collect();
        ended_pairs.sort_unstable();
        self.ends.remove_sorted(&ended_pairs);
        for id in &ended {
            self.ends.insert(at, *id);
        }
        ended
    }

    /// The retained decisions among `ids` (ascending), in that order.
    pub fn get_sorted<'s>(&'s self, ids: &'s [i64]) -> impl Iterator<Item = &'s Decision> {
        let mut from = 0;
        ids.iter().filter_map(move |&id| {
            let i = locate(&self.items, from, id);
            from = i;
            self.items.get(i).filter(|d| d.id == id && !self.dead[i])
        })
    }

    /// A decision by id.
    pub fn get(&self, id: i64) -> Option<&Decision> {
        self.position(id).map(|i| &self.items[i])
    }

    /// Live decisions from position `start` on.
    fn from(&self, start: usize) -> impl DoubleEndedIterator<Item = &Decision> {
        self.items[start..]
            .iter()
            .zip(&self.dead[start..])
            .filter(|(_, dead)| !**dead)
            .map(|(d, _)| d)
    }

    /// Every retained decision, by id.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Decision> {
        self.from(0)
    }

    /// Retained decisions with an id above `id`, by id.
    pub fn after_id(&self, id: i64) -> impl Iterator<Item = &Decision> {
        self.from(self.items.partition_point(|d| d.id <= id))
    }

    /// The decisions of (until, id) pairs.
    fn of_ends(
        &self,
        pairs: impl Iterator<Item = (Millis, i64)>,
    ) -> impl Iterator<Item = &Decision> {
        pairs.filter_map(move |(_, id)| self.get(id))
    }

    /// Decisions whose end falls in `(from, to]`, by end.
    pub fn ending_between(&self, from: Millis, to: Millis) -> impl Iterator<Item = &Decision> {
        let lo = (from.saturating_add(1), i64::MIN);
        let hi = (to.saturating_add(1), i64::MIN);
        self.of_ends(self.ends.range(lo, hi))
    }

    /// Decisions active at `now`, by id: one pass over the vector, where a walk of the
    /// ends would search each id (a million searches for a community list).
    pub fn active(&self, now: Millis) -> impl Iterator<Item = &Decision> {
        self.iter().filter(move |d| d.is_active(now))
    }

    /// Decisions that ended before `before`, oldest first.
    pub fn ended_before(&self, before: Millis) -> impl Iterator<Item = &Decision> {
        self.of_ends(self.ends.range((Millis::MIN, i64::MIN), (before, i64::MIN)))
    }

    /// Decisions indexed under `key` (for values, whatever their scope), in no order.
    fn on_key<'s>(&'s self, key: Key<'_>) -> impl Iterator<Item = &'s Decision> {
        self.by_key
            .iter_hash(self.hasher.hash_one(key))
            .map(move |p| &self.items[*p as usize])
            .filter(move |d| d.target.key() == key)
    }

    fn ip_key(ip: IpAddr) -> Key<'static> {
        match ip {
            IpAddr::V4(a) => Key::V4(u32::from(a)),
            IpAddr::V6(a) => Key::V6(u128::from(a)),
        }
    }

    /// Retained decisions whose target covers `ip` (its own, and ranges containing it), by
    /// id.
    pub fn covering_ip(&self, ip: IpAddr) -> Vec<&Decision> {
        let mut out: Vec<&Decision> = self.on_key(Self::ip_key(ip)).collect();
        for (v4, len) in self.range_prefixes.keys() {
            if *v4 != ip.is_ipv4() {
                continue;
            }
            if let Ok(net) = IpNet::new(ip, *len) {
                out.extend(self.on_key(Key::Net(net.trunc())));
            }
        }
        out.sort_unstable_by_key(|d| d.id);
        out
    }

    /// Retained decisions whose target covers the whole of `net`, by id.
    pub fn covering_range(&self, net: IpNet) -> Vec<&Decision> {
        let mut out: Vec<&Decision> = Vec::new();
        if net.prefix_len() == net.max_prefix_len() {
            out.extend(self.on_key(Self::ip_key(net.addr())));
        }
        for (v4, len) in self.range_prefixes.keys() {
            if *v4 != net.addr().is_ipv4() || *len > net.prefix_len() {
                continue;
            }
            if let Ok(outer) = IpNet::new(net.addr(), *len) {
                out.extend(self.on_key(Key::Net(outer.trunc())));
            }
        }
        out.sort_unstable_by_key(|d| d.id);
        out
    }

    /// Retained decisions whose target lies inside `net` (`contains=false` queries).
    pub fn inside_range(&self, net: IpNet) -> Vec<&Decision> {
        self.iter()
            .filter(|d| d.target.net().is_some_and(|n| net.contains(&n)))
            .collect()
    }

    /// Retained decisions on exactly this target, by id.
    pub fn on_target(&self, target: &Target) -> Vec<&Decision> {
        let mut out: Vec<&Decision> = self.on_target_iter(target).collect();
        out.sort_unstable_by_key(|d| d.id);
        out
    }

    /// Ids of the retained decisions indexed under this target's key (its address, range
    /// or value; for other scopes several scopes may share a value), in order.
    pub fn target_ids(&self, target: &Target) -> Vec<i64> {
        let mut ids: Vec<i64> = self.on_key(target.key()).map(|d| d.id).collect();
        ids.sort_unstable();
        ids
    }

    /// Retained decisions on exactly this target, in no order, without allocating (the
    /// stream's longest-decision de-duplication asks this once per decision).
    pub fn on_target_iter<'s>(&'s self, target: &Target) -> impl Iterator<Item = &'s Decision> {
        self.on_key(target.key())
            .filter(move |d| &d.target == target)
    }

    /// Retained decisions whose wire value is `value`, whatever their scope (the Local API's
    /// `value=` filter), by id.
    pub fn with_value(&self, value: &str) -> Vec<&Decision> {
        let mut out: Vec<&Decision> = Vec::new();
        if let Ok(ip) = value.parse::<IpAddr>() {
            out.extend(self.on_key(Self::ip_key(ip)));
        }
        if let Ok(net) = value.parse::<IpNet>() {
            out.extend(self.on_key(Key::Net(net)));
        }
        out.extend(self.on_key(Key::Value(value)));
        out.sort_unstable_by_key(|d| d.id);
        out.dedup_by_key(|d| d.id);
        out.retain(|d| d.target.value() == value);
        out
    }

    /// Decisions ever made on `value` that are still retained (CrowdSec's
    /// `GetDecisionsCount`, and escalation).
    pub fn count_for_value(&self, value: &str, since: Millis) -> usize {
        match Target::parse("Ip", value).or_else(|_| Target::parse("Range", value)) {
            Ok(t) => self
                .on_target(&t)
                .into_iter()
                .filter(|d| d.created_at >= since)
                .count(),
            Err(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(target: &str, until: Millis) -> NewDecision {
        let scope = if target.contains('/') { "range" } else { "ip" };
        NewDecision {
            origin: "cscli".into(),
            scenario: "manual".into(),
            decision_type: "ban".into(),
            target: Target::parse(scope, target).expect("valid target"),
            until,
            simulated: false,
        }
    }

    #[test]
    fn ids_are_monotonic_and_lookups_cover_ranges() {
        let mut idx = DecisionIndex::with_next_id(1);
        for (t, u) in [
            ("1.2.3.4", 100),
            ("1.2.3.0/24", 200),
            ("2001:db8::/32", 300),
        ] {
            let d = idx.assign(&new(t, u), 0, 10);
            idx.insert(d);
        }
        assert_eq!(idx.last_id(), 3);
        let ip: IpAddr = "1.2.3.4".parse().expect("ip");
        let ids: Vec<i64> = idx.covering_ip(ip).iter().map(|d| d.id).collect();
        assert_eq!(ids, vec![1, 2]);
        let v6: IpAddr = "2001:db8:1::5".parse().expect("ip");
        assert_eq!(idx.covering_ip(v6).len(), 1);
        assert_eq!(idx.covering_ip("1.2.4.4".parse().expect("ip")).len(), 0);
        assert_eq!(idx.active(150).count(), 2);
        assert_eq!(idx.ending_between(100, 250).count(), 1);
    }

    #[test]
    fn expire_moves_the_end_and_remove_forgets() {
        let mut idx = DecisionIndex::with_next_id(1);
        let d = idx.assign(&new("10.0.0.1", 1000), 0, 10);
        idx.insert(d);
        assert!(idx.expire(1, 50).is_some());
        assert!(idx.expire(1, 60).is_none(), "already ended");
        assert_eq!(idx.active(55).count(), 0);
        assert_eq!(idx.ended_before(51).count(), 1);
        assert!(idx.remove(1).is_some());
        assert!(idx.covering_ip("10.0.0.1".parse().expect("ip")).is_empty());
        assert_eq!(idx.next_id(), 2, "ids are never reused");
    }

    #[test]
    fn expiring_sorted_ids_matches_expiring_them_one_by_one() {
        // 20,000 decisions, some removed (tombstones), some with the same end; expire a
        // scattered sorted subset including unknown, removed and already-ended ids.
        let build = || {
            let mut idx = DecisionIndex::with_next_id(1);
            for i in 0..20_000u32 {
                let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
                let d = idx.assign(&new(&ip, 5000 + Millis::from(i % 3)), 0, 10);
                idx.insert(d);
            }
            for id in (1..20_000).step_by(11) {
                idx.remove(id);
            }
            idx.expire(4, 100);
            idx
        };
        let ids: Vec<i64> = (0..25_000).step_by(7).chain([4, 12]).collect::<Vec<_>>();
        let mut ids = ids;
        ids.sort_unstable();
        ids.dedup();
        let mut one_by_one = build();
        let expected: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|id| one_by_one.expire(*id, 200).is_some())
            .collect();
        let mut batch = build();
        let ended = batch.expire_sorted(&ids, 200);
        assert_eq!(ended, expected);
        assert!(!ended.contains(&4) && !ended.contains(&12));
        let got: Vec<i64> = batch.get_sorted(&ended).map(|d| d.id).collect();
        assert_eq!(got, ended);
        assert!(batch.get_sorted(&ended).all(|d| d.until == 200));
        let ends = |idx: &DecisionIndex| -> Vec<(Millis, i64)> {
            idx.ending_between(Millis::MIN, Millis::MAX)
                .map(|d| (d.until, d.id))
                .collect()
        };
        assert_eq!(ends(&batch), ends(&one_by_one));
        assert_eq!(batch.active(300).count(), one_by_one.active(300).count());
    }

    #[test]
    fn locate_finds_ids_with_and_without_gaps() {
        let mut idx = DecisionIndex::with_next_id(1);
        for i in 0..3000u32 {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
            let d = idx.assign(&new(&ip, 5000), 0, 10);
            idx.insert(d);
        }
        // Gaps: runs removed, then compacted away (more than half dead).
        for id in (1..=3000).filter(|id| id % 5 != 0 || (1000..1400).contains(id)) {
            idx.remove(id);
        }
        assert!(idx.items.len() < 3000, "compacted");
        let ids: Vec<i64> = idx.items.iter().map(|d| d.id).collect();
        for from in [0, 1, 7, ids.len() - 1, ids.len()] {
            for id in [0, 1, 5, 6, 999, 1000, 1400, 1405, 2999, 3000, 3001, 9999] {
                let expected = ids.partition_point(|x| *x < id).max(from);
                assert_eq!(locate(&idx.items, from, id), expected, "{from} {id}");
            }
        }
        for id in [5, 1400, 1405, 3000] {
            assert_eq!(idx.get(id).map(|d| d.id), Some(id));
        }
        assert!(idx.get(6).is_none() && idx.get(1200).is_none() && idx.get(3001).is_none());
    }

    #[test]
    fn gallop_finds_the_partition_point_from_any_start() {
        let v: Vec<u32> = (0..1000).map(|i| i * 2).collect();
        for from in [0, 1, 17, 500, 999, 1000] {
            for key in [0, 1, 2, 35, 1000, 1998, 1999, 5000] {
                let expected = v.partition_point(|x| *x < key).max(from);
                assert_eq!(gallop(&v, from, |x| *x < key), expected, "{from} {key}");
            }
        }
    }

    #[test]
    fn removals_leave_tombstones_then_compact_without_losing_order_or_lookups() {
        let mut idx = DecisionIndex::with_next_id(1);
        for i in 0..5000u32 {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
            let d = idx.assign(&new(&ip, 1000 + i as Millis), 0, 10);
            idx.insert(d);
        }
        // Every other decision pruned: past half dead, the vector is compacted.
        for id in (1..=5000).step_by(2) {
            assert!(idx.remove(id).is_some());
            assert!(idx.remove(id).is_none(), "already removed");
        }
        assert_eq!(idx.len(), 2500);
        let ids: Vec<i64> = idx.iter().map(|d| d.id).collect();
        assert_eq!(ids, (2..=5000).step_by(2).collect::<Vec<i64>>());
        assert_eq!(idx.iter().next_back().map(|d| d.id), Some(5000));
        assert_eq!(
            idx.after_id(4995).map(|d| d.id).collect::<Vec<_>>(),
            [4996, 4998, 5000]
        );
        assert!(idx.get(3).is_none() && idx.get(4).is_some());
        let ip: IpAddr = "10.0.0.3".parse().expect("ip");
        assert_eq!(
            idx.covering_ip(ip).iter().map(|d| d.id).collect::<Vec<_>>(),
            [4]
        );
        assert!(idx.covering_ip("10.0.0.2".parse().expect("ip")).is_empty());
        // An id given again after its removal (a reload) is found again.
        let d = Decision {
            id: 3,
            created_at: 10,
            until: 99,
            alert_id: 0,
            origin: 0,
            scenario: 0,
            decision_type: 0,
            target: Target::parse("Ip", "10.0.0.2").expect("ip"),
            simulated: false,
        };
        idx.insert(d);
        assert_eq!(idx.get(3).map(|d| d.until), Some(99));
        assert_eq!(idx.iter().take(2).map(|d| d.id).collect::<Vec<_>>(), [2, 3]);
    }

    #[test]
    fn several_decisions_on_one_address_are_all_found_and_dropped_one_by_one() {
        let mut idx = DecisionIndex::with_next_id(1);
        for (t, u) in [("192.0.2.1", 100), ("192.0.2.1", 200), ("2001:db8::1", 300)] {
            let d = idx.assign(&new(t, u), 0, 10);
            idx.insert(d);
        }
        let t = Target::parse("Ip", "192.0.2.1").expect("ip");
        assert_eq!(idx.target_ids(&t), [1, 2]);
        assert!(idx.remove(1).is_some());
        assert_eq!(idx.target_ids(&t), [2]);
        assert_eq!(idx.on_target(&t).len(), 1);
        assert!(idx.remove(2).is_some());
        assert!(idx.target_ids(&t).is_empty());
        assert_eq!(idx.with_value("2001:db8::1").len(), 1);
    }

    #[test]
    fn targets_parse_like_crowdsec() {
        assert_eq!(
            Target::parse("IP", "::ffff:1.2.3.4").expect("ok"),
            Target::Ip("1.2.3.4".parse().expect("ip"))
        );
        assert_eq!(
            Target::parse("range", "1.2.3.9/24").expect("ok").value(),
            "1.2.3.0/24"
        );
        assert!(Target::parse("Ip", "1.2.3").is_err());
        assert_eq!(
            Target::parse("country", "FR").expect("ok").scope(),
            "Country"
        );
    }
}
