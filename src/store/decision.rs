//! Decisions in memory: the compact record and the index every reader uses (the Local API,
//! the enforcer, the CLI). SQLite holds the same rows; this index answers queries without it.

use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv6Addr};
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
    /// never enforced in the kernel.
    Other {
        /// The canonical scope name.
        scope: Arc<str>,
        /// The value.
        value: Box<str>,
    },
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
                Ok(Target::Other {
                    scope: Arc::from(other),
                    value: Box::from(value),
                })
            }
        }
    }

    /// The wire scope (`Ip`, `Range`, ...).
    pub fn scope(&self) -> &str {
        match self {
            Target::Ip(_) => "Ip",
            Target::Range(_) => "Range",
            Target::Other { scope, .. } => scope,
        }
    }

    /// The wire value (`1.2.3.4`, `1.2.3.0/24`, ...).
    pub fn value(&self) -> String {
        match self {
            Target::Ip(ip) => ip.to_string(),
            Target::Range(net) => net.to_string(),
            Target::Other { value, .. } => value.to_string(),
        }
    }

    /// Appends the wire value to `out` (what [`Target::value`] returns, without allocating).
    pub fn write_value(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = match self {
            Target::Ip(ip) => write!(out, "{ip}"),
            Target::Range(net) => write!(out, "{net}"),
            Target::Other { value, .. } => {
                out.push_str(value);
                Ok(())
            }
        };
    }

    /// The addresses it covers, for Ip and Range.
    pub fn net(&self) -> Option<IpNet> {
        match self {
            Target::Ip(ip) => Some(IpNet::from(*ip)),
            Target::Range(net) => Some(*net),
            Target::Other { .. } => None,
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

/// Ids of decisions by key (address, range, value). Nearly every key has one decision, so
/// its id is stored inline: 16-byte entries for IPv4 addresses, where a `Vec` per key would
/// add a heap allocation (and 32 bytes) for each of a million list entries. A key with
/// several decisions has 0 inline (ids start at 1) and its ids in `more`.
#[derive(Debug)]
struct IdMap<K> {
    first: HashMap<K, i64>,
    more: HashMap<K, Vec<i64>>,
}

impl<K> Default for IdMap<K> {
    fn default() -> Self {
        IdMap {
            first: HashMap::new(),
            more: HashMap::new(),
        }
    }
}

impl<K: std::hash::Hash + Eq + Clone> IdMap<K> {
    fn get<Q>(&self, key: &Q) -> &[i64]
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        match self.first.get(key) {
            None => &[],
            Some(0) => self.more.get(key).map_or(&[], Vec::as_slice),
            Some(id) => std::slice::from_ref(id),
        }
    }

    fn add(&mut self, key: K, id: i64) {
        match self.first.entry(key) {
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(id);
            }
            std::collections::hash_map::Entry::Occupied(mut e) => {
                let first = std::mem::replace(e.get_mut(), 0);
                let key = e.key().clone();
                let ids = self.more.entry(key).or_default();
                if first != 0 {
                    ids.push(first);
                }
                ids.push(id);
            }
        }
    }

    fn remove(&mut self, key: &K, id: i64) {
        match self.first.get(key).copied() {
            None => {}
            Some(0) => {
                let Some(ids) = self.more.get_mut(key) else {
                    return;
                };
                ids.retain(|x| *x != id);
                match ids.as_slice() {
                    [] => {
                        self.more.remove(key);
                        self.first.remove(key);
                    }
                    [one] => {
                        let one = *one;
                        self.more.remove(key);
                        self.first.insert(key.clone(), one);
                    }
                    _ => {}
                }
            }
            Some(only) if only == id => {
                self.first.remove(key);
            }
            Some(_) => {}
        }
    }
}

/// Retained decisions in id order, as a sorted vector: ids only grow, so a new decision is
/// appended, and each costs its 88 bytes where a B-tree filled by appends is half empty
/// (about 180 bytes a decision). A removed decision leaves a tombstone until more than half
/// the slots are dead, then the vector is compacted (amortised O(1) per removal).
#[derive(Debug, Default)]
struct Slots {
    items: Vec<Decision>,
    dead: Vec<bool>,
    n_dead: usize,
}

impl Slots {
    fn position(&self, id: i64) -> Result<usize, usize> {
        self.items.binary_search_by_key(&id, |d| d.id)
    }

    fn len(&self) -> usize {
        self.items.len() - self.n_dead
    }

    fn get(&self, id: i64) -> Option<&Decision> {
        // The decision just added is looked up at once (to announce it): no search.
        if let Some(last) = self.items.last()
            && last.id == id
        {
            return (!self.dead[self.items.len() - 1]).then_some(last);
        }
        match self.position(id) {
            Ok(i) if !self.dead[i] => Some(&self.items[i]),
            _ => None,
        }
    }

    fn get_mut(&mut self, id: i64) -> Option<&mut Decision> {
        match self.position(id) {
            Ok(i) if !self.dead[i] => Some(&mut self.items[i]),
            _ => None,
        }
    }

    /// Adds (or replaces) a decision; the old one with that id, if any.
    fn insert(&mut self, d: Decision) -> Option<Decision> {
        if self.items.last().is_none_or(|last| last.id < d.id) {
            self.items.push(d);
            self.dead.push(false);
            return None;
        }
        match self.position(d.id) {
            Ok(i) => {
                let old = std::mem::replace(&mut self.items[i], d);
                if std::mem::replace(&mut self.dead[i], false) {
                    self.n_dead -= 1;
                    None
                } else {
                    Some(old)
                }
            }
            Err(i) => {
                self.items.insert(i, d);
                self.dead.insert(i, false);
                None
            }
        }
    }

    fn remove(&mut self, id: i64) -> Option<Decision> {
        let i = self.position(id).ok().filter(|&i| !self.dead[i])?;
        self.dead[i] = true;
        self.n_dead += 1;
        let d = self.items[i].clone();
        if self.n_dead > 1024 && self.n_dead * 2 > self.items.len() {
            let mut dead = self.dead.iter();
            self.items.retain(|_| dead.next().is_some_and(|x| !*x));
            self.dead.clear();
            self.dead.resize(self.items.len(), false);
            self.n_dead = 0;
        }
        Some(d)
    }

    /// Live decisions from position `start` on.
    fn from(&self, start: usize) -> impl DoubleEndedIterator<Item = &Decision> {
        self.items[start..]
            .iter()
            .zip(&self.dead[start..])
            .filter(|(_, dead)| !**dead)
            .map(|(d, _)| d)
    }

    /// Live decisions with an id above `id`.
    fn after(&self, id: i64) -> impl DoubleEndedIterator<Item = &Decision> {
        self.from(self.items.partition_point(|d| d.id <= id))
    }
}

/// Every decision the store retains (active and recently expired), indexed for the queries
/// of bouncers, the enforcer and the CLI. Sized for a million decisions (a community
/// blocklist): the indexes by address keep one inline id per key, and decisions live in a
/// sorted vector rather than a tree.
#[derive(Debug, Default)]
pub struct DecisionIndex {
    /// Retained decisions by id.
    by_id: Slots,
    /// (until, id) of every retained decision: expirations in a time window.
    by_until: BTreeSet<(Millis, i64)>,
    /// Ids of decisions on single IPv4 addresses (most of them: 12-byte keys, no `IpAddr`
    /// padding).
    by_ip4: IdMap<u32>,
    /// Ids of decisions on single IPv6 addresses.
    by_ip6: IdMap<Ipv6Addr>,
    /// Ids of range decisions, by range; the prefix lengths present are kept so that an
    /// address lookup costs one hash probe per length, not a scan.
    by_range: IdMap<IpNet>,
    range_prefixes: BTreeMap<(bool, u8), usize>,
    /// Ids of decisions of other scopes, by value.
    by_other: IdMap<Box<str>>,
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
        self.by_id.len()
    }

    /// Whether nothing is retained.
    pub fn is_empty(&self) -> bool {
        self.by_id.len() == 0
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

    fn ip_ids(&self, ip: IpAddr) -> &[i64] {
        match ip {
            IpAddr::V4(a) => self.by_ip4.get(&u32::from(a)),
            IpAddr::V6(a) => self.by_ip6.get(&a),
        }
    }

    /// Adds a decision (loaded from the database or just assigned).
    pub fn insert(&mut self, d: Decision) {
        self.next_id = self.next_id.max(d.id + 1);
        let (id, until) = (d.id, d.until);
        let key = d.target.clone();
        if let Some(old) = self.by_id.insert(d) {
            // The same id again (not something the store does): forget the old entries.
            self.unindex(&old);
        }
        self.by_until.insert((until, id));
        match key {
            Target::Ip(IpAddr::V4(a)) => self.by_ip4.add(u32::from(a), id),
            Target::Ip(IpAddr::V6(a)) => self.by_ip6.add(a, id),
            Target::Range(net) => {
                *self
                    .range_prefixes
                    .entry((net.addr().is_ipv4(), net.prefix_len()))
                    .or_default() += 1;
                self.by_range.add(net, id);
            }
            Target::Other { value, .. } => self.by_other.add(value, id),
        }
    }

    /// Removes `d` from every index but `by_id`.
    fn unindex(&mut self, d: &Decision) {
        let id = d.id;
        self.by_until.remove(&(d.until, id));
        match &d.target {
            Target::Ip(IpAddr::V4(a)) => self.by_ip4.remove(&u32::from(*a), id),
            Target::Ip(IpAddr::V6(a)) => self.by_ip6.remove(a, id),
            Target::Range(net) => {
                self.by_range.remove(net, id);
                let key = (net.addr().is_ipv4(), net.prefix_len());
                if let Some(n) = self.range_prefixes.get_mut(&key) {
                    *n -= 1;
                    if *n == 0 {
                        self.range_prefixes.remove(&key);
                    }
                }
            }
            Target::Other { value, .. } => self.by_other.remove(value, id),
        }
    }

    /// Removes a decision for good (pruning).
    pub fn remove(&mut self, id: i64) -> Option<Decision> {
        let d = self.by_id.remove(id)?;
        self.unindex(&d);
        Some(d)
    }

    /// Ends a decision at `at` (deletion); returns it when it was active.
    pub fn expire(&mut self, id: i64, at: Millis) -> Option<&Decision> {
        let d = self.by_id.get_mut(id)?;
        if d.until <= at {
            return None;
        }
        let old = d.until;
        d.until = at;
        self.by_until.remove(&(old, id));
        self.by_until.insert((at, id));
        self.by_id.get(id)
    }

    /// A decision by id.
    pub fn get(&self, id: i64) -> Option<&Decision> {
        self.by_id.get(id)
    }

    /// Every retained decision, by id.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Decision> {
        self.by_id.from(0)
    }

    /// Retained decisions with an id above `id`, by id.
    pub fn after_id(&self, id: i64) -> impl Iterator<Item = &Decision> {
        self.by_id.after(id)
    }

    /// Decisions whose end falls in `(from, to]`.
    pub fn ending_between(&self, from: Millis, to: Millis) -> impl Iterator<Item = &Decision> {
        self.by_until
            .range((from, i64::MAX)..=(to, i64::MAX))
            .filter(move |(u, _)| *u > from)
            .filter_map(|(_, id)| self.by_id.get(*id))
    }

    /// Decisions active at `now`.
    pub fn active(&self, now: Millis) -> impl Iterator<Item = &Decision> {
        self.by_until
            .range((now.saturating_add(1), i64::MIN)..)
            .filter_map(|(_, id)| self.by_id.get(*id))
    }

    /// Decisions that ended before `before`, oldest first.
    pub fn ended_before(&self, before: Millis) -> impl Iterator<Item = &Decision> {
        self.by_until
            .range(..(before, i64::MIN))
            .filter_map(|(_, id)| self.by_id.get(*id))
    }

    /// Retained decisions whose target covers `ip` (its own, and ranges containing it).
    pub fn covering_ip(&self, ip: IpAddr) -> Vec<&Decision> {
        let mut out: Vec<&Decision> = Vec::new();
        out.extend(self.ip_ids(ip).iter().filter_map(|id| self.by_id.get(*id)));
        for (v4, len) in self.range_prefixes.keys() {
            if *v4 != ip.is_ipv4() {
                continue;
            }
            if let Ok(net) = IpNet::new(ip, *len) {
                let ids = self.by_range.get(&net.trunc());
                out.extend(ids.iter().filter_map(|id| self.by_id.get(*id)));
            }
        }
        out
    }

    /// Retained decisions whose target covers the whole of `net`.
    pub fn covering_range(&self, net: IpNet) -> Vec<&Decision> {
        let mut out: Vec<&Decision> = Vec::new();
        if net.prefix_len() == net.max_prefix_len() {
            out.extend(
                self.ip_ids(net.addr())
                    .iter()
                    .filter_map(|id| self.by_id.get(*id)),
            );
        }
        for (v4, len) in self.range_prefixes.keys() {
            if *v4 != net.addr().is_ipv4() || *len > net.prefix_len() {
                continue;
            }
            if let Ok(outer) = IpNet::new(net.addr(), *len) {
                let ids = self.by_range.get(&outer.trunc());
                out.extend(ids.iter().filter_map(|id| self.by_id.get(*id)));
            }
        }
        out
    }

    /// Retained decisions whose target lies inside `net` (`contains=false` queries).
    pub fn inside_range(&self, net: IpNet) -> Vec<&Decision> {
        self.iter()
            .filter(|d| d.target.net().is_some_and(|n| net.contains(&n)))
            .collect()
    }

    /// Retained decisions on exactly this target.
    pub fn on_target(&self, target: &Target) -> Vec<&Decision> {
        self.target_ids(target)
            .iter()
            .filter_map(|id| self.by_id.get(*id))
            .filter(|d| &d.target == target)
            .collect()
    }

    /// Ids of the retained decisions indexed under this target's key (its address, range
    /// or value; for other scopes several scopes may share a value).
    pub fn target_ids(&self, target: &Target) -> &[i64] {
        match target {
            Target::Ip(ip) => self.ip_ids(*ip),
            Target::Range(net) => self.by_range.get(net),
            Target::Other { value, .. } => self.by_other.get(value),
        }
    }

    /// Retained decisions on exactly this target, without allocating (the stream's
    /// longest-decision de-duplication asks this once per decision).
    pub fn on_target_iter<'a>(&'a self, target: &'a Target) -> impl Iterator<Item = &'a Decision> {
        self.target_ids(target)
            .iter()
            .filter_map(|id| self.by_id.get(*id))
            .filter(move |d| &d.target == target)
    }

    /// Retained decisions whose wire value is `value`, whatever their scope (the Local API's
    /// `value=` filter).
    pub fn with_value(&self, value: &str) -> Vec<&Decision> {
        let mut ids: Vec<i64> = Vec::new();
        if let Ok(ip) = value.parse::<IpAddr>() {
            ids.extend(self.ip_ids(ip));
        }
        if let Ok(net) = value.parse::<IpNet>() {
            ids.extend(self.by_range.get(&net));
        }
        ids.extend(self.by_other.get(value));
        ids.sort_unstable();
        ids.dedup();
        ids.iter()
            .filter_map(|id| self.by_id.get(*id))
            .filter(|d| d.target.value() == value)
            .collect()
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
