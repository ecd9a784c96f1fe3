//! Scenario filter verdicts cached by the values of the fields a filter reads.
//!
//! Once the route has checked a filter's `log_type`-style conjuncts, most HTTP filters
//! left test one field against a data list: the path for traversal patterns, the query
//! string for SQL injection and XSS probes, the file name for backdoors, the user agent for
//! bad bots. Those values repeat from line to line (a site has a bounded set of pages, a
//! crawler one user agent), and each test costs hundreds of instructions of automaton and
//! interpreter work. Here the verdicts of every filter reading the same field share one
//! entry per value: one hash and one comparison a field and line, then a bit a filter.
//! A filter reading a few fields (`sub_type == 'shellshock' || log_type == 'x' &&
//! http_user_agent contains '() {'`) has its verdicts kept by the values of all of them.
//!
//! Each field's table is direct-mapped: a fixed number of entries chosen by a seeded hash
//! of the value, so new values (an attacker's) only evict, each test then costing what it
//! did without the cache; the table never grows. Long values are not cached.

use crate::FastState;
use crate::event::{Event, FieldId};
use crate::expr::Program;
use std::hash::BuildHasher;

/// Entries per field (a power of two).
const ENTRIES: usize = 2048;
/// Longest value whose verdicts are cached.
const MAX_LEN: usize = 256;
/// Filters one field's entry holds verdicts for.
const MAX_FILTERS: usize = 64;
/// Most fields a cached filter reads.
const MAX_FIELDS: usize = 4;

/// The verdict caches of a detector's distinct filters.
#[derive(Debug)]
pub(super) struct FieldVerdicts {
    /// Per distinct filter: its field's table and its bit in that table's entries.
    of_filter: Vec<Option<(usize, u8)>>,
    tables: Vec<Table>,
    keys: FastState,
    /// Counts lines: a table's `line_entry` belongs to the line it was looked up on.
    line: u64,
    /// Where the values of a table of several fields are joined into its key.
    joined: Vec<u8>,
}

/// The entries of one field, or of one set of fields.
#[derive(Debug)]
struct Table {
    /// Sorted.
    fields: Box<[FieldId]>,
    entries: Vec<Entry>,
    /// The entry of the value of line `looked_up` (`SKIP`: the value is not cached).
    line_entry: usize,
    looked_up: u64,
}

#[derive(Debug, Default, Clone)]
struct Entry {
    /// The value (of several fields: each one's length, then its bytes).
    value: Vec<u8>,
    /// Filters whose verdict on `value` is known, and those verdicts, by bit.
    known: u64,
    verdicts: u64,
}

const SKIP: usize = usize::MAX;

impl FieldVerdicts {
    /// Caches for `filters` (the distinct ones), each run with its skip mask: those that
    /// run (`runs`) and whose conjuncts left are decided by the values of a few fields
    /// ([`Program::value_fields`]).
    pub(super) fn new(filters: &[&Program], skips: &[u64], runs: &[bool]) -> Self {
        let mut tables: Vec<Table> = Vec::new();
        let mut bits: Vec<u8> = Vec::new();
        let of_filter = filters
            .iter()
            .zip(skips)
            .zip(runs)
            .map(|((f, &skip), &runs)| {
                let fields = f
                    .value_fields(skip)
                    .filter(|fields| runs && fields.len() <= MAX_FIELDS)?;
                let t = match tables.iter().position(|t| *t.fields == *fields) {
                    Some(t) => t,
                    None => {
                        tables.push(Table {
                            fields: fields.into(),
                            entries: Vec::new(),
                            line_entry: SKIP,
                            looked_up: 0,
                        });
                        bits.push(0);
                        tables.len() - 1
                    }
                };
                let bit = bits[t];
                if usize::from(bit) >= MAX_FILTERS {
                    return None;
                }
                bits[t] += 1;
                Some((t, bit))
            })
            .collect();
        FieldVerdicts {
            of_filter,
            tables,
            keys: FastState::default(),
            line: 1,
            joined: Vec::new(),
        }
    }

    /// Forgets which entries the previous line looked up.
    pub(super) fn start_line(&mut self) {
        self.line += 1;
    }

    /// Filter `filter`'s verdict on `event`: cached, or `run()` (then kept).
    pub(super) fn verdict(
        &mut self,
        filter: usize,
        event: &Event,
        run: impl FnOnce() -> bool,
    ) -> bool {
        let Some(&Some((t, bit))) = self.of_filter.get(filter) else {
            return run();
        };
        let table = &mut self.tables[t];
        if table.looked_up != self.line {
            table.looked_up = self.line;
            let value = event.values_key(&table.fields, &mut self.joined);
            table.line_entry = if value.len() > MAX_LEN {
                SKIP
            } else {
                if table.entries.is_empty() {
                    table.entries.resize(ENTRIES, Entry::default());
                }
                let at = self.keys.hash_one(value) as usize & (ENTRIES - 1);
                let entry = &mut table.entries[at];
                if entry.value != value {
                    entry.value.clear();
                    entry.value.extend_from_slice(value);
                    entry.known = 0;
                }
                at
            };
        }
        let Some(entry) = table.entries.get_mut(table.line_entry) else {
            return run();
        };
        let mask = 1u64 << bit;
        if entry.known & mask != 0 {
            return entry.verdicts & mask != 0;
        }
        let verdict = run();
        entry.known |= mask;
        if verdict {
            entry.verdicts |= mask;
        } else {
            entry.verdicts &= !mask;
        }
        verdict
    }

    /// Whether distinct filter `filter` has a cache (for tests).
    #[cfg(test)]
    pub(super) fn is_cached(&self, filter: usize) -> bool {
        matches!(self.of_filter.get(filter), Some(Some(_)))
    }

    /// How many distinct filters have a cache (for tests).
    #[cfg(test)]
    pub(super) fn cached_filters(&self) -> usize {
        self.of_filter.iter().flatten().count()
    }
}
