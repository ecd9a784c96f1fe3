//! Prebuilt matchers for "a string against many literal patterns":
//! `x in ['a', 'b']`, `x in File(L)`, `any(File(L), {X contains #})`,
//! `any(File(L), {Upper(X) contains Upper(#)})`, `{X endsWith #}`, ...
//!
//! Case folding follows the expression exactly: with `Upper(X)` on the left, the haystack is
//! `Upper(X)`; patterns that contain lower-case ASCII letters can never match it and are
//! dropped; the rest match ASCII-case-insensitively against `X` itself when `X` is ASCII (no
//! allocation), or against the upper-cased copy of `X` otherwise.

use super::funcs::{go_lower, go_upper};
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use std::borrow::Cow;
use std::collections::HashSet;

use crate::FastState;

/// How a pattern is compared with the haystack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MatchOp {
    /// `X == p`
    Exact,
    /// `X contains p`
    Contains,
    /// `X startsWith p`
    Prefix,
    /// `X endsWith p`
    Suffix,
}

/// A case transform applied to the haystack (`Upper(X)` / `Lower(X)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fold {
    /// `X` as is.
    None,
    /// `Upper(X)`.
    Upper,
    /// `Lower(X)`.
    Lower,
}

#[derive(Debug)]
enum Imp {
    Never,
    Small(Vec<Box<str>>),
    Set(HashSet<Box<str>, FastState>),
    /// One case-sensitive `contains` pattern: a searcher built once (`str::contains`
    /// builds a new one at every call). Boxed: a finder is large, and matchers live in
    /// expression nodes, whose size the checker's recursion pays for at every level.
    One(Box<memchr::memmem::Finder<'static>>),
    Ac(AhoCorasick),
    Trie(Trie),
}

/// A compiled "any pattern matches" test.
#[derive(Debug)]
pub(crate) struct StrMatcher {
    op: MatchOp,
    fold: Fold,
    imp: Imp,
}

impl StrMatcher {
    /// Builds a matcher; `patterns` are already transformed as the expression says (`Upper(#)`).
    pub(crate) fn new<'p>(
        op: MatchOp,
        fold: Fold,
        patterns: impl IntoIterator<Item = &'p str>,
    ) -> Result<Self, String> {
        let mut pats: Vec<Box<str>> = Vec::new();
        for p in patterns {
            let keep = match fold {
                Fold::None => true,
                Fold::Upper => !p.bytes().any(|b| b.is_ascii_lowercase()),
                Fold::Lower => !p.bytes().any(|b| b.is_ascii_uppercase()),
            };
            if keep {
                pats.push(Box::from(p));
            }
        }
        pats.sort();
        pats.dedup();
        let imp = if pats.is_empty() {
            Imp::Never
        } else {
            match (op, fold) {
                (MatchOp::Exact, Fold::None) if pats.len() <= 8 => Imp::Small(pats),
                (MatchOp::Exact, Fold::None) => Imp::Set(pats.into_iter().collect()),
                (MatchOp::Contains, Fold::None) if pats.len() == 1 => Imp::One(Box::new(
                    memchr::memmem::Finder::new(pats[0].as_bytes()).into_owned(),
                )),
                (MatchOp::Contains, _) => Imp::Ac(
                    AhoCorasickBuilder::new()
                        .ascii_case_insensitive(fold != Fold::None)
                        .match_kind(MatchKind::Standard)
                        .build(pats.iter().map(|p| p.as_bytes()))
                        .map_err(|e| e.to_string())?,
                ),
                _ => {
                    let mut t = Trie::new(fold != Fold::None);
                    for p in &pats {
                        if op == MatchOp::Suffix {
                            t.insert(p.bytes().rev());
                        } else {
                            t.insert(p.bytes());
                        }
                    }
                    Imp::Trie(t)
                }
            }
        };
        Ok(StrMatcher { op, fold, imp })
    }

    /// The patterns, when this is an exact, case-sensitive test (`x in ['a', 'b']`): `x`
    /// matches exactly when it is one of them.
    pub(crate) fn exact_values(&self) -> Option<Vec<Box<str>>> {
        if (self.op, self.fold) != (MatchOp::Exact, Fold::None) {
            return None;
        }
        match &self.imp {
            Imp::Never => Some(Vec::new()),
            Imp::Small(v) => Some(v.clone()),
            Imp::Set(s) => Some(s.iter().cloned().collect()),
            Imp::One(_) | Imp::Ac(_) | Imp::Trie(_) => None,
        }
    }

    /// Whether this is an exact, case-sensitive test ([`Self::exact_values`] is `Some`),
    /// without listing the patterns.
    pub(crate) fn is_exact(&self) -> bool {
        (self.op, self.fold) == (MatchOp::Exact, Fold::None)
            && !matches!(self.imp, Imp::One(_) | Imp::Ac(_) | Imp::Trie(_))
    }

    /// True when some pattern matches `x` (after the fold).
    pub(crate) fn is_match(&self, x: &str) -> bool {
        if matches!(self.imp, Imp::Never) {
            return false;
        }
        let hay: Cow<'_, str> = match self.fold {
            Fold::None => Cow::Borrowed(x),
            _ if x.is_ascii() => Cow::Borrowed(x),
            Fold::Upper => Cow::Owned(go_upper(x)),
            Fold::Lower => Cow::Owned(go_lower(x)),
        };
        let h = hay.as_bytes();
        match &self.imp {
            Imp::Never => false,
            Imp::Small(v) => v.iter().any(|p| **p == *hay),
            Imp::Set(s) => s.contains(&*hay),
            Imp::One(finder) => finder.find(h).is_some(),
            Imp::Ac(ac) => ac.is_match(h),
            Imp::Trie(t) => match self.op {
                MatchOp::Exact => t.walk(h.iter().copied(), true),
                MatchOp::Prefix => t.walk(h.iter().copied(), false),
                MatchOp::Suffix => t.walk(h.iter().rev().copied(), false),
                MatchOp::Contains => false,
            },
        }
    }
}

#[derive(Debug, Default)]
struct TrieNode {
    terminal: bool,
    children: Vec<(u8, u32)>,
}

/// A byte trie for prefix / suffix / exact tests without allocation.
#[derive(Debug)]
struct Trie {
    nodes: Vec<TrieNode>,
    ci: bool,
}

impl Trie {
    fn new(ci: bool) -> Self {
        Trie {
            nodes: vec![TrieNode::default()],
            ci,
        }
    }

    fn norm(&self, b: u8) -> u8 {
        if self.ci { b.to_ascii_lowercase() } else { b }
    }

    fn insert(&mut self, bytes: impl Iterator<Item = u8>) {
        let mut cur = 0usize;
        for b in bytes {
            let b = self.norm(b);
            let next = match self.nodes[cur].children.binary_search_by_key(&b, |c| c.0) {
                Ok(i) => self.nodes[cur].children[i].1 as usize,
                Err(i) => {
                    let id = self.nodes.len();
                    self.nodes.push(TrieNode::default());
                    self.nodes[cur].children.insert(i, (b, id as u32));
                    id
                }
            };
            cur = next;
        }
        self.nodes[cur].terminal = true;
    }

    /// With `exact`, the whole input must be a pattern; otherwise some prefix of it.
    fn walk(&self, bytes: impl Iterator<Item = u8>, exact: bool) -> bool {
        let mut cur = 0usize;
        for b in bytes {
            let Some(node) = self.nodes.get(cur) else {
                return false;
            };
            if !exact && node.terminal {
                return true;
            }
            let b = self.norm(b);
            match node.children.binary_search_by_key(&b, |c| c.0) {
                Ok(i) => cur = node.children[i].1 as usize,
                Err(_) => return false,
            }
        }
        self.nodes.get(cur).is_some_and(|n| n.terminal)
    }
}

/// A regex list (`RegexpInFile`) with a small per-thread cache of verdicts.
///
/// A list of hundreds of patterns (the bad user agents) costs about a microsecond per test,
/// and the tested value (a user agent) repeats on most lines of a log. The cache is
/// direct-mapped: a fixed number of slots chosen by a seeded hash of the list and the value,
/// so an attacker sending new values only evicts (each test then costs what it did
/// without the cache), never grows it. Long values are not cached. Aiming at a slot would
/// gain nothing more than eviction, so the hash is the fast seeded one, not SipHash (which
/// cost half as much as the regex set's verdict on a typical user agent).
#[derive(Debug, Clone)]
pub(crate) struct RegexList {
    /// A regex list ([`DataKind::Regexes`](crate::data::DataKind)), its set built on first
    /// use.
    list: std::sync::Arc<crate::data::DataList>,
    /// Tells this list's cached verdicts apart from other lists' (unique per process).
    id: u64,
}

/// Slots of the verdict cache (a power of two).
const VERDICT_SLOTS: usize = 512;
/// Longest value whose verdict is cached.
const VERDICT_MAX_LEN: usize = 512;

/// The per-thread verdict cache of [`RegexList`].
struct Verdicts {
    keys: FastState,
    slots: Vec<Option<(u64, String, bool)>>,
}

thread_local! {
    static VERDICTS: std::cell::RefCell<Verdicts> = std::cell::RefCell::new(Verdicts {
        keys: FastState::default(),
        slots: Vec::new(),
    });
}

impl RegexList {
    /// Wraps a regex list.
    pub(crate) fn new(list: std::sync::Arc<crate::data::DataList>) -> Self {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        RegexList {
            list,
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Whether any pattern of the list matches `s`.
    pub(crate) fn is_match(&self, s: &str) -> bool {
        use std::hash::BuildHasher;
        if s.len() > VERDICT_MAX_LEN {
            return self.list.any_regex_matches(s);
        }
        VERDICTS.with(|cell| {
            let Ok(mut cache) = cell.try_borrow_mut() else {
                return self.list.any_regex_matches(s);
            };
            let cache = &mut *cache;
            if cache.slots.is_empty() {
                cache.slots.resize(VERDICT_SLOTS, None);
            }
            let slot = cache.keys.hash_one((self.id, s)) as usize & (VERDICT_SLOTS - 1);
            match &mut cache.slots[slot] {
                Some((id, text, verdict)) if *id == self.id && text == s => *verdict,
                entry => {
                    let verdict = self.list.any_regex_matches(s);
                    match entry {
                        Some((id, text, v)) => {
                            *id = self.id;
                            text.clear();
                            text.push_str(s);
                            *v = verdict;
                        }
                        None => *entry = Some((self.id, s.to_owned(), verdict)),
                    }
                    verdict
                }
            }
        })
    }
}
