//! Decisions in memory: the compact record and the index every reader uses (the Local API,
//! the enforcer, the CLI). SQLite holds the same rows; this index answers queries without it.

use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet, HashMap};
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

/// Every decision the store retains (active and recently expired), indexed for the queries
/// of bouncers, the enforcer and the CLI.
#[derive(Debug, Default)]
pub struct DecisionIndex {
    /// Retained decisions by id.
    by_id: BTreeMap<i64, Decision>,
    /// (until, id) of every retained decision: expirations in a time window.
    by_until: BTreeSet<(Millis, i64)>,
    /// Ids of decisions on single addresses.
    by_ip: HashMap<IpAddr, Vec<i64>>,
    /// Ids of range decisions, by range; the prefix lengths present are kept so that an
    /// address lookup costs one hash probe per length, not a scan.
    by_range: HashMap<IpNet, Vec<i64>>,
    range_prefixes: BTreeMap<(bool, u8), usize>,
    /// Ids of decisions of other scopes, by value.
    by_other: HashMap<Box<str>, Vec<i64>>,
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
        self.by_id.is_empty()
    }

    /// Builds a stored decision from a new one, giving it the next id.
    pub fn assign(&mut self, d: &NewDecision, alert_id: i64, now: Millis) -> Decision {
        let id = self.next_id;
        self.next_id += 1;
        Decision {
            id,
            created_at: now,
            until: d.until,
            alert_id,
            origin: self.strings.intern(&d.origin),
            scenario: self.strings.intern(&d.scenario),
            decision_type: self.strings.intern(&d.decision_type),
            target: d.target.clone(),
            simulated: d.simulated,
        }
    }

    /// Adds a decision (loaded from the database or just assigned).
    pub fn insert(&mut self, d: Decision) {
        self.next_id = self.next_id.max(d.id + 1);
        self.by_until.insert((d.until, d.id));
        match &d.target {
            Target::Ip(ip) => self.by_ip.entry(*ip).or_default().push(d.id),
            Target::Range(net) => {
                *self
                    .range_prefixes
                    .entry((net.addr().is_ipv4(), net.prefix_len()))
                    .or_default() += 1;
                self.by_range.entry(*net).or_default().push(d.id);
            }
            Target::Other { value, .. } => {
                self.by_other.entry(value.clone()).or_default().push(d.id)
            }
        }
        self.by_id.insert(d.id, d);
    }

    /// Removes a decision for good (pruning).
    pub fn remove(&mut self, id: i64) -> Option<Decision> {
        let d = self.by_id.remove(&id)?;
        self.by_until.remove(&(d.until, d.id));
        fn drop_id<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Vec<i64>>, key: &K, id: i64) {
            if let Some(v) = map.get_mut(key) {
                v.retain(|x| *x != id);
                if v.is_empty() {
                    map.remove(key);
                }
            }
        }
        match &d.target {
            Target::Ip(ip) => drop_id(&mut self.by_ip, ip, id),
            Target::Range(net) => {
                drop_id(&mut self.by_range, net, id);
                let key = (net.addr().is_ipv4(), net.prefix_len());
                if let Some(n) = self.range_prefixes.get_mut(&key) {
                    *n -= 1;
                    if *n == 0 {
                        self.range_prefixes.remove(&key);
                    }
                }
            }
            Target::Other { value, .. } => drop_id(&mut self.by_other, value, id),
        }
        Some(d)
    }

    /// Ends a decision at `at` (deletion); returns it when it was active.
    pub fn expire(&mut self, id: i64, at: Millis) -> Option<&Decision> {
        let d = self.by_id.get_mut(&id)?;
        if d.until <= at {
            return None;
        }
        self.by_until.remove(&(d.until, id));
        d.until = at;
        self.by_until.insert((at, id));
        Some(d)
    }

    /// A decision by id.
    pub fn get(&self, id: i64) -> Option<&Decision> {
        self.by_id.get(&id)
    }

    /// Every retained decision, by id.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Decision> {
        self.by_id.values()
    }

    /// Retained decisions with an id above `id`, by id.
    pub fn after_id(&self, id: i64) -> impl Iterator<Item = &Decision> {
        self.by_id.range(id.saturating_add(1)..).map(|(_, d)| d)
    }

    /// Decisions whose end falls in `(from, to]`.
    pub fn ending_between(&self, from: Millis, to: Millis) -> impl Iterator<Item = &Decision> {
        self.by_until
            .range((from, i64::MAX)..=(to, i64::MAX))
            .filter(move |(u, _)| *u > from)
            .filter_map(|(_, id)| self.by_id.get(id))
    }

    /// Decisions active at `now`.
    pub fn active(&self, now: Millis) -> impl Iterator<Item = &Decision> {
        self.by_until
            .range((now.saturating_add(1), i64::MIN)..)
            .filter_map(|(_, id)| self.by_id.get(id))
    }

    /// Decisions that ended before `before`, oldest first.
    pub fn ended_before(&self, before: Millis) -> impl Iterator<Item = &Decision> {
        self.by_until
            .range(..(before, i64::MIN))
            .filter_map(|(_, id)| self.by_id.get(id))
    }

    /// Retained decisions whose target covers `ip` (its own, and ranges containing it).
    pub fn covering_ip(&self, ip: IpAddr) -> Vec<&Decision> {
        let mut out: Vec<&Decision> = Vec::new();
        if let Some(ids) = self.by_ip.get(&ip) {
            out.extend(ids.iter().filter_map(|id| self.by_id.get(id)));
        }
        for (v4, len) in self.range_prefixes.keys() {
            if *v4 != ip.is_ipv4() {
                continue;
            }
            if let Ok(net) = IpNet::new(ip, *len)
                && let Some(ids) = self.by_range.get(&net.trunc())
            {
                out.extend(ids.iter().filter_map(|id| self.by_id.get(id)));
            }
        }
        out
    }

    /// Retained decisions whose target covers the whole of `net`.
    pub fn covering_range(&self, net: IpNet) -> Vec<&Decision> {
        let mut out: Vec<&Decision> = Vec::new();
        if net.prefix_len() == net.max_prefix_len()
            && let Some(ids) = self.by_ip.get(&net.addr())
        {
            out.extend(ids.iter().filter_map(|id| self.by_id.get(id)));
        }
        for (v4, len) in self.range_prefixes.keys() {
            if *v4 != net.addr().is_ipv4() || *len > net.prefix_len() {
                continue;
            }
            if let Ok(outer) = IpNet::new(net.addr(), *len)
                && let Some(ids) = self.by_range.get(&outer.trunc())
            {
                out.extend(ids.iter().filter_map(|id| self.by_id.get(id)));
            }
        }
        out
    }

    /// Retained decisions whose target lies inside `net` (`contains=false` queries).
    pub fn inside_range(&self, net: IpNet) -> Vec<&Decision> {
        self.by_id
            .values()
            .filter(|d| d.target.net().is_some_and(|n| net.contains(&n)))
            .collect()
    }

    /// Retained decisions on exactly this target.
    pub fn on_target(&self, target: &Target) -> Vec<&Decision> {
        let ids = match target {
            Target::Ip(ip) => self.by_ip.get(ip),
            Target::Range(net) => self.by_range.get(net),
            Target::Other { value, .. } => self.by_other.get(value),
        };
        ids.into_iter()
            .flatten()
            .filter_map(|id| self.by_id.get(id))
            .filter(|d| &d.target == target)
            .collect()
    }

    /// Ids of the retained decisions indexed under this target's key (its address, range
    /// or value; for other scopes several scopes may share a value).
    pub fn target_ids(&self, target: &Target) -> &[i64] {
        let ids = match target {
            Target::Ip(ip) => self.by_ip.get(ip),
            Target::Range(net) => self.by_range.get(net),
            Target::Other { value, .. } => self.by_other.get(value),
        };
        ids.map_or(&[], Vec::as_slice)
    }

    /// Retained decisions on exactly this target, without allocating (the stream's
    /// longest-decision de-duplication asks this once per decision).
    pub fn on_target_iter<'a>(&'a self, target: &'a Target) -> impl Iterator<Item = &'a Decision> {
        let ids = match target {
            Target::Ip(ip) => self.by_ip.get(ip),
            Target::Range(net) => self.by_range.get(net),
            Target::Other { value, .. } => self.by_other.get(value),
        };
        ids.into_iter()
            .flatten()
            .filter_map(|id| self.by_id.get(id))
            .filter(move |d| &d.target == target)
    }

    /// Retained decisions whose wire value is `value`, whatever their scope (the Local API's
    /// `value=` filter).
    pub fn with_value(&self, value: &str) -> Vec<&Decision> {
        let mut ids: Vec<i64> = Vec::new();
        if let Ok(ip) = value.parse::<IpAddr>()
            && let Some(v) = self.by_ip.get(&ip)
        {
            ids.extend(v);
        }
        if let Ok(net) = value.parse::<IpNet>()
            && let Some(v) = self.by_range.get(&net)
        {
            ids.extend(v);
        }
        if let Some(v) = self.by_other.get(value) {
            ids.extend(v);
        }
        ids.sort_unstable();
        ids.dedup();
        ids.iter()
            .filter_map(|id| self.by_id.get(id))
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
