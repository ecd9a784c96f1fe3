//! The event: one parsed log line as it flows from `parse` into `detect`.
//!
//! Fields are interned at compile time ([`FieldRegistry`]): a filter reads a slot by
//! [`FieldId`], never a string-keyed map. Values captured from the line are byte ranges of
//! the line itself, so parsing a line allocates nothing in the common case.

use std::collections::HashMap;
use std::sync::Arc;

/// An instant in time (UTC), as used for event times and bucket clocks.
pub type Timestamp = jiff::Timestamp;

/// Which map of the event a field lives in (CrowdSec's `evt.Meta`, `evt.Parsed`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Namespace {
    /// `evt.Meta.*`: the fields that reach alerts and the API.
    Meta,
    /// `evt.Parsed.*`: pattern captures and intermediate values.
    Parsed,
    /// `evt.Enriched.*`: enricher outputs.
    Enriched,
    /// `evt.Line.Labels.*`: acquisition labels (`type`, ...).
    Labels,
}

impl Namespace {
    /// The name used in expressions (`Meta`, `Parsed`, `Enriched`, `Labels`).
    pub fn as_str(self) -> &'static str {
        match self {
            Namespace::Meta => "Meta",
            Namespace::Parsed => "Parsed",
            Namespace::Enriched => "Enriched",
            Namespace::Labels => "Labels",
        }
    }

    /// Parses the name used in expressions.
    pub fn from_name(name: &str) -> Option<Namespace> {
        Some(match name {
            "Meta" => Namespace::Meta,
            "Parsed" => Namespace::Parsed,
            "Enriched" => Namespace::Enriched,
            "Labels" => Namespace::Labels,
            _ => return None,
        })
    }
}

/// An interned field: an index into [`Event::fields`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldId(pub u16);

/// The table of every field that some enabled parser, label or enricher produces.
///
/// Built once by the compiler; expressions resolve `evt.Meta.source_ip` against it, so a
/// reference to a field nobody produces is a compile-time error.
#[derive(Debug, Clone, Default)]
pub struct FieldRegistry {
    by_name: HashMap<(Namespace, Box<str>), FieldId>,
    names: Vec<(Namespace, Box<str>)>,
}

impl FieldRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Interns a field, returning its id (the existing one if already known).
    pub fn intern(&mut self, ns: Namespace, name: &str) -> FieldId {
        if let Some(id) = self.by_name.get(&(ns, Box::from(name))) {
            return *id;
        }
        let id = FieldId(u16::try_from(self.names.len()).expect("fewer than 65536 fields"));
        self.names.push((ns, Box::from(name)));
        self.by_name.insert((ns, Box::from(name)), id);
        id
    }

    /// Looks a field up without interning it.
    pub fn get(&self, ns: Namespace, name: &str) -> Option<FieldId> {
        self.by_name.get(&(ns, Box::from(name))).copied()
    }

    /// The namespace and name of a field.
    pub fn name(&self, id: FieldId) -> (Namespace, &str) {
        let (ns, name) = &self.names[usize::from(id.0)];
        (*ns, name)
    }

    /// Number of interned fields (the length of [`Event::fields`]).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when no field is interned.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// All names of one namespace, for "did you mean" hints.
    pub fn names_in(&self, ns: Namespace) -> impl Iterator<Item = &str> {
        self.names
            .iter()
            .filter(move |(n, _)| *n == ns)
            .map(|(_, name)| &**name)
    }
}

/// The value of one field of an event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum FieldValue {
    /// Not set (reads as the empty string, like a missing key in CrowdSec).
    #[default]
    Unset,
    /// A byte range of [`Event::line`].
    Line { start: u32, end: u32 },
    /// A constant from the rules or the configuration (`statics`, the acquisition type,
    /// labels), interned ([`intern`]): setting one is a copy, with no reference count.
    Static(&'static str),
    /// A value computed at run time (expressions, enrichers).
    Owned(String),
}

impl FieldValue {
    /// The [`static_text_key`] of rule-constant text ([`FieldValue::Static`]); `None` for
    /// other values.
    pub fn static_key(&self) -> Option<(usize, usize)> {
        match self {
            FieldValue::Static(s) => Some(static_text_key(s)),
            _ => None,
        }
    }
}

/// The address and length of static text: a memo's cheap key for it, as equal keys mean
/// equal text (static text never moves, changes or is freed).
pub fn static_text_key(s: &'static str) -> (usize, usize) {
    (s.as_ptr() as usize, s.len())
}

/// The one copy of a constant that rules and configuration give fields, kept for the life
/// of the process.
///
/// Every line gets a few such constants (its acquisition type, `log_type`, `service`). As
/// `Arc<str>` each cost an atomic increment when set and a decrement at the next line's
/// reset, two dozen locked instructions a line with the default rules. Interned, they are
/// plain references. What is interned is bounded by the distinct constants of the
/// configurations loaded: a reload with the same rules adds nothing. Never intern
/// values read from lines.
pub fn intern(s: &str) -> &'static str {
    static TABLE: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<&'static str>>> =
        std::sync::OnceLock::new();
    let mut table = TABLE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(&known) = table.get(s) {
        return known;
    }
    let kept: &'static str = Box::leak(Box::from(s));
    table.insert(kept);
    kept
}

/// One log line on its way through the pipeline.
#[derive(Debug, Clone, Default)]
pub struct Event {
    /// The raw line (without its newline).
    pub line: String,
    /// The event time: from the line when a parser found a timestamp, else the time it was read.
    pub time: Timestamp,
    /// Whether a timestamp was found in the line (replay needs one).
    pub has_line_time: bool,
    /// Slots indexed by [`FieldId`], written only through [`Event::set`], each stamped with
    /// the generation it was written in: one of an earlier generation reads as unset, so a
    /// value can never outlive its line, and [`Event::reset`] clears nothing slot by slot.
    fields: Vec<Slot>,
    /// The current generation: 0 until the first reset, then one more at each.
    generation: u32,
    /// What an event reused line after line keeps between lines (from its first reset on);
    /// boxed, so the many events built once (conditional queues) stay small.
    reuse: Option<Box<Reuse>>,
    /// Set by a whitelist: the event never pours into a bucket.
    pub whitelisted: bool,
    /// Why it was whitelisted.
    pub whitelist_reason: Option<Arc<str>>,
    /// Verdicts of closure predicates that read only this event, two bits per memo slot
    /// (known, value): a conditional bucket re-runs its condition over its whole queue at
    /// every pour, and a queued event never changes.
    pub memo: std::cell::Cell<u64>,
}

/// A field's value and the generation of the event it was written in.
#[derive(Debug, Clone, Default)]
struct Slot {
    value: FieldValue,
    generation: u32,
}

/// What an unset or stale slot reads as.
static UNSET: FieldValue = FieldValue::Unset;

/// The bookkeeping of an event reused line after line.
#[derive(Debug, Clone, Default)]
struct Reuse {
    /// Emptied strings of computed values an overwrite let go of: the next computed value
    /// ([`Event::take_buffer`]) reuses one instead of allocating.
    spare: Vec<String>,
}

/// Keeps `s`'s allocation among `spare`, up to [`SPARE_BUFFERS`].
fn keep_spare(spare: &mut Vec<String>, mut s: String) {
    if spare.len() < SPARE_BUFFERS && s.capacity() > 0 {
        s.clear();
        spare.push(s);
    }
}

/// Spare buffers an event keeps at most (about the computed fields one line gets).
const SPARE_BUFFERS: usize = 16;

impl Event {
    /// A fresh event for `line` with room for `field_count` fields.
    pub fn new(line: String, time: Timestamp, field_count: usize) -> Self {
        Event {
            line,
            time,
            has_line_time: false,
            fields: vec![Slot::default(); field_count],
            generation: 0,
            reuse: None,
            whitelisted: false,
            whitelist_reason: None,
            memo: std::cell::Cell::new(0),
        }
    }

    /// An empty string to build a computed value in, reusing a spare one when there is.
    pub fn take_buffer(&mut self) -> String {
        self.reuse
            .as_mut()
            .and_then(|r| r.spare.pop())
            .unwrap_or_default()
    }

    /// Keeps `s`'s allocation for [`Event::take_buffer`] (on a reused event).
    pub fn recycle(&mut self, s: String) {
        if let Some(r) = &mut self.reuse {
            keep_spare(&mut r.spare, s);
        }
    }

    /// Reuses this event for another line, keeping its allocations. The fields of the
    /// last line become stale at once; a computed value's buffer is reused when its slot
    /// is next written.
    pub fn reset(&mut self, line: &str, time: Timestamp) {
        self.line.clear();
        self.line.push_str(line);
        self.time = time;
        self.has_line_time = false;
        if self.reuse.is_none() {
            self.reuse = Some(Box::default());
        }
        match self.generation.checked_add(1) {
            Some(g) => self.generation = g,
            // After four billion lines: every slot back to generation 0, which no reset
            // makes current again.
            None => {
                for slot in &mut self.fields {
                    let old = std::mem::take(slot);
                    if let FieldValue::Owned(s) = old.value
                        && let Some(r) = &mut self.reuse
                    {
                        keep_spare(&mut r.spare, s);
                    }
                }
                self.generation = 1;
            }
        }
        self.whitelisted = false;
        self.whitelist_reason = None;
        self.memo.set(0);
    }

    /// The value of a field; `""` when unset (CrowdSec semantics for a missing map key).
    pub fn get(&self, id: FieldId) -> &str {
        match self.slot(id) {
            None | Some(FieldValue::Unset) => "",
            Some(FieldValue::Line { start, end }) => {
                self.line.get(*start as usize..*end as usize).unwrap_or("")
            }
            Some(FieldValue::Static(s)) => s,
            Some(FieldValue::Owned(s)) => s,
        }
    }

    /// The bytes of a field's value ([`Event::get`] without the check that a range of
    /// the line starts and ends on character boundaries, for callers that hash or compare
    /// values): `b""` when unset.
    #[inline]
    pub fn get_bytes(&self, id: FieldId) -> &[u8] {
        match self.slot(id) {
            None | Some(FieldValue::Unset) => b"",
            Some(FieldValue::Line { start, end }) => self
                .line
                .as_bytes()
                .get(*start as usize..*end as usize)
                .unwrap_or_default(),
            Some(FieldValue::Static(s)) => s.as_bytes(),
            Some(FieldValue::Owned(s)) => s.as_bytes(),
        }
    }

    /// The values of `fields` as one key: the value itself for one field; for several,
    /// each one's length then its bytes, written into `joined` (so that `a|b` and `ab|`
    /// differ). Inlined: the scenario verdict caches ask for six keys an nginx line, and
    /// the call cost a fifth of each.
    #[inline(always)]
    pub fn values_key<'a>(&'a self, fields: &[FieldId], joined: &'a mut Vec<u8>) -> &'a [u8] {
        match fields {
            [one] => self.get_bytes(*one),
            fields => {
                joined.clear();
                for &id in fields {
                    let v = self.get_bytes(id);
                    joined.extend_from_slice(&(v.len() as u32).to_le_bytes());
                    joined.extend_from_slice(v);
                }
                joined
            }
        }
    }

    /// The slot of a field as stored (`None` past the last slot).
    #[inline]
    pub fn slot(&self, id: FieldId) -> Option<&FieldValue> {
        let slot = self.fields.get(usize::from(id.0))?;
        Some(if slot.generation == self.generation {
            &slot.value
        } else {
            &UNSET
        })
    }

    /// Takes every slot out, leaving the event without fields (to renumber them after a
    /// reload renumbered the registry; set them back with [`Event::set`]).
    pub fn take_slots(&mut self) -> Vec<FieldValue> {
        let generation = self.generation;
        std::mem::take(&mut self.fields)
            .into_iter()
            .map(|s| {
                if s.generation == generation {
                    s.value
                } else {
                    FieldValue::Unset
                }
            })
            .collect()
    }

    /// True when the field holds a non-empty value.
    pub fn is_set(&self, id: FieldId) -> bool {
        !self.get(id).is_empty()
    }

    /// Sets a field.
    #[inline]
    pub fn set(&mut self, id: FieldId, value: FieldValue) {
        let generation = self.generation;
        // The common case, inlined: the slot holds no computed value (most hold ranges of
        // the line or nothing), so there is nothing to drop or keep.
        if let Some(slot) = self.fields.get_mut(usize::from(id.0))
            && !matches!(slot.value, FieldValue::Owned(_))
        {
            // Not a computed value: forgetting it drops nothing.
            std::mem::forget(std::mem::replace(&mut slot.value, value));
            slot.generation = generation;
            // Memoised verdicts were about the old value.
            self.memo.set(0);
            return;
        }
        self.set_any(id, value);
    }

    /// [`Event::set`] in every case: a slot past the end, or one holding a computed value
    /// to keep the buffer of.
    #[inline(never)]
    fn set_any(&mut self, id: FieldId, value: FieldValue) {
        let i = usize::from(id.0);
        if i >= self.fields.len() {
            self.fields.resize(i + 1, Slot::default());
        }
        let generation = self.generation;
        let slot = &mut self.fields[i];
        let old = std::mem::replace(&mut slot.value, value);
        slot.generation = generation;
        if let FieldValue::Owned(s) = old {
            self.recycle(s);
        }
        self.memo.set(0);
    }

    /// Sets fields to byte ranges of the line (`(field, start, end)`), as a pattern match
    /// does: most of the fields a line gets.
    pub fn set_ranges(&mut self, ranges: impl IntoIterator<Item = (FieldId, u32, u32)>) {
        for (id, start, end) in ranges {
            self.set(id, FieldValue::Line { start, end });
        }
    }

    /// Sets a field to a computed string.
    pub fn set_owned(&mut self, id: FieldId, value: String) {
        self.set(id, FieldValue::Owned(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_keeps_one_copy_per_text() {
        let owned = String::from("http_access-log");
        let a = intern(&owned);
        let b = intern("http_access-log");
        assert_eq!(a, "http_access-log");
        assert!(std::ptr::eq(a, b), "equal texts share one copy");
        assert!(!std::ptr::eq(a, intern("http_error-log")));
    }

    /// Whether every slot of `e` reads as unset.
    fn all_unset(e: &Event) -> bool {
        (0..e.fields.len()).all(|i| e.slot(FieldId(i as u16)) == Some(&FieldValue::Unset))
    }

    #[test]
    fn reset_clears_every_field_written_before_and_after_the_first_reset() {
        let mut e = Event::new("a b".into(), Timestamp::UNIX_EPOCH, 4);
        e.set(FieldId(0), FieldValue::Static("x"));
        e.set(FieldId(6), FieldValue::Owned("grown".into()));
        assert_eq!(e.get(FieldId(6)), "grown");
        e.reset("c d", Timestamp::UNIX_EPOCH);
        assert!(all_unset(&e));
        for _ in 0..3 {
            e.set(FieldId(2), FieldValue::Line { start: 0, end: 1 });
            e.set(FieldId(2), FieldValue::Owned("again".into()));
            e.set(FieldId(5), FieldValue::Static("y"));
            assert_eq!(e.get(FieldId(2)), "again");
            assert_eq!(e.get(FieldId(5)), "y");
            e.reset("e f", Timestamp::UNIX_EPOCH);
            assert!(all_unset(&e));
            assert_eq!(e.line, "e f");
        }
        for round in 0..2 {
            for i in 0..200u16 {
                e.set(FieldId(i % 40), FieldValue::Static("z"));
            }
            assert_eq!(e.get(FieldId(39)), "z", "round {round}");
            e.reset("g", Timestamp::UNIX_EPOCH);
            assert!(all_unset(&e));
        }
        // Slots renumbered after a reload come out as the line left them.
        e.set(FieldId(1), FieldValue::Static("kept"));
        let slots = e.take_slots();
        assert_eq!(slots.len(), 40);
        assert_eq!(slots[1], FieldValue::Static("kept"));
        assert!(
            slots
                .iter()
                .enumerate()
                .all(|(i, v)| i == 1 || *v == FieldValue::Unset)
        );
    }

    #[test]
    fn fields_of_the_last_generation_stay_stale_when_the_count_wraps() {
        let mut e = Event::new("a b".into(), Timestamp::UNIX_EPOCH, 4);
        e.reset("a b", Timestamp::UNIX_EPOCH);
        // Written at generation 1 and never again: after the wrap, generation 1 comes back.
        e.set(FieldId(3), FieldValue::Static("ancient"));
        e.generation = u32::MAX - 1;
        e.set(FieldId(0), FieldValue::Static("old"));
        e.set(FieldId(1), FieldValue::Owned("computed".into()));
        e.reset("a b", Timestamp::UNIX_EPOCH);
        assert_eq!(e.generation, u32::MAX);
        assert!(all_unset(&e));
        e.set(FieldId(2), FieldValue::Line { start: 0, end: 1 });
        e.reset("c d", Timestamp::UNIX_EPOCH);
        assert_eq!(e.generation, 1);
        assert!(
            all_unset(&e),
            "no slot of an earlier generation reads as current"
        );
        e.set(FieldId(0), FieldValue::Line { start: 2, end: 3 });
        assert_eq!(e.get(FieldId(0)), "d");
        assert!(
            e.reuse.as_ref().is_some_and(|r| !r.spare.is_empty()),
            "the computed value's buffer is kept"
        );
    }

    #[test]
    fn ranges_set_in_one_call_are_cleared_and_recycled_like_single_sets() {
        let mut e = Event::new("alpha beta gamma".into(), Timestamp::UNIX_EPOCH, 4);
        // Before the first reset, then on a reused event.
        e.set_ranges([(FieldId(0), 0, 5)]);
        assert_eq!(e.get(FieldId(0)), "alpha");
        e.reset("alpha beta gamma", Timestamp::UNIX_EPOCH);
        let mut owned = e.take_buffer();
        owned.push_str("computed");
        let ptr = owned.as_ptr();
        e.set_owned(FieldId(1), owned);
        e.set(FieldId(2), FieldValue::Static("s"));
        e.memo.set(3);
        // Over an owned value (kept for reuse), a static, an empty slot and past the end.
        e.set_ranges([
            (FieldId(1), 6, 10),
            (FieldId(2), 11, 16),
            (FieldId(3), 0, 5),
            (FieldId(9), 6, 10),
        ]);
        let got: Vec<&str> = [1, 2, 3, 9].map(|i| e.get(FieldId(i))).to_vec();
        assert_eq!(got, ["beta", "gamma", "alpha", "beta"]);
        assert_eq!(e.memo.get(), 0, "verdicts were about the old values");
        let reused = e.take_buffer();
        assert_eq!(reused.as_ptr(), ptr, "the overwritten buffer is reused");
        e.reset("x", Timestamp::UNIX_EPOCH);
        assert!(all_unset(&e));
    }

    #[test]
    fn computed_values_reuse_the_buffers_of_stale_ones() {
        let mut e = Event::new("a".into(), Timestamp::UNIX_EPOCH, 4);
        e.reset("b", Timestamp::UNIX_EPOCH);
        let mut first = e.take_buffer();
        first.push_str("a computed value");
        let ptr = first.as_ptr();
        e.set(FieldId(1), FieldValue::Owned(first));
        e.reset("c", Timestamp::UNIX_EPOCH);
        assert_eq!(e.get(FieldId(1)), "");
        // The next line's value of the same field lets the stale one's buffer go.
        let mut second = e.take_buffer();
        second.push_str("another");
        e.set(FieldId(1), FieldValue::Owned(second));
        assert_eq!(e.get(FieldId(1)), "another");
        let again = e.take_buffer();
        assert!(again.is_empty());
        assert_eq!(again.as_ptr(), ptr, "the same allocation");
        // An overwritten computed value is kept too; spares are bounded.
        e.set(FieldId(2), FieldValue::Owned(again));
        e.set(FieldId(2), FieldValue::Static("s"));
        let third = e.take_buffer();
        assert_eq!(third.as_ptr(), ptr);
        for _ in 0..100 {
            e.recycle(String::from("x"));
        }
        assert_eq!(e.reuse.as_ref().map(|r| r.spare.len()), Some(SPARE_BUFFERS));
    }
}
