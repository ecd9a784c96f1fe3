//! Compact copies of events for bucket queues.
//!
//! An [`Event`] has a slot for every field any rule produces (70 with the default
//! collections) and owns its raw line. A bucket keeps up to `capacity + 1` events for the
//! alert it may emit, so copying whole events made memory grow with every attacker. A
//! [`Sample`] keeps only what an alert can show or a profile can read: the `Meta` fields,
//! the fields profiles and range-scope expressions read, the raw line only if one of them
//! reads `Line.Raw`, and the time. One sample is shared by every bucket the event pours into.

use crate::compile::Ruleset;
use crate::event::{Event, FieldId, FieldValue, Namespace, Timestamp};

/// What samples keep, decided once per ruleset.
#[derive(Debug)]
pub(super) struct SampleSpec {
    fields: Vec<FieldId>,
    raw: bool,
}

impl SampleSpec {
    pub(super) fn new(rs: &Ruleset) -> Self {
        let mut fields: Vec<FieldId> = rs
            .fields
            .names_in(Namespace::Meta)
            .filter_map(|n| rs.fields.get(Namespace::Meta, n))
            .collect();
        let mut raw = false;
        let programs = rs.profiles.iter().flat_map(|p| p.filters.iter()).chain(
            rs.scenarios
                .iter()
                .filter_map(|s| s.scope_expression.as_ref()),
        );
        for p in programs {
            fields.extend(p.referenced_fields());
            raw |= super::reads_raw_line(p);
        }
        fields.sort();
        fields.dedup();
        SampleSpec { fields, raw }
    }

    /// The sample of `event`.
    pub(super) fn sample(&self, event: &Event) -> Sample {
        // Sized exactly up front: the boxed text and slots then need no shrinking copy.
        let mut text_len = if self.raw { event.line.len() } else { 0 };
        let mut kept = 0;
        for &id in &self.fields {
            match event.slot(id) {
                None | Some(FieldValue::Unset) => {}
                Some(FieldValue::Line { .. }) if self.raw => kept += 1,
                Some(_) => {
                    let n = event.get(id).len();
                    if n > 0 {
                        text_len += n;
                        kept += 1;
                    }
                }
            }
        }
        let mut text = String::with_capacity(text_len);
        let raw_len = if self.raw {
            text.push_str(&event.line);
            event.line.len() as u32
        } else {
            0
        };
        let mut slots = Vec::with_capacity(kept);
        for &id in &self.fields {
            let range = match event.slot(id) {
                None | Some(FieldValue::Unset) => continue,
                Some(FieldValue::Line { start, end }) if self.raw => (*start, *end),
                Some(_) => {
                    let v = event.get(id);
                    if v.is_empty() {
                        continue;
                    }
                    let start = text.len() as u32;
                    text.push_str(v);
                    (start, text.len() as u32)
                }
            };
            slots.push((id, range.0, range.1));
        }
        Sample {
            time: event.time,
            raw_len,
            text: text.into_boxed_str(),
            slots: slots.into_boxed_slice(),
        }
    }
}

/// A compact copy of a poured event (see the module documentation); an alert's events are
/// its bucket's samples until read.
#[derive(Debug)]
pub(crate) struct Sample {
    time: Timestamp,
    /// `text[..raw_len]` is the raw line (when kept); values are ranges of `text`.
    raw_len: u32,
    text: Box<str>,
    slots: Box<[(FieldId, u32, u32)]>,
}

impl Sample {
    /// A kept field's value (`""` when unset or not kept).
    pub(crate) fn get(&self, id: FieldId) -> &str {
        self.slots
            .iter()
            .find(|(f, _, _)| *f == id)
            .and_then(|&(_, s, e)| self.text.get(s as usize..e as usize))
            .unwrap_or("")
    }

    /// The sample with its field ids translated by `map` (after a reload renumbered
    /// fields); fields the map drops are dropped.
    pub(super) fn remapped(&self, map: impl Fn(FieldId) -> Option<FieldId>) -> Sample {
        Sample {
            time: self.time,
            raw_len: self.raw_len,
            text: self.text.clone(),
            slots: self
                .slots
                .iter()
                .filter_map(|&(id, s, e)| Some((map(id)?, s, e)))
                .collect(),
        }
    }

    /// The sample as an event (for alerts): the kept fields and the time; the raw line
    /// only when a rule reads it, else empty.
    pub(crate) fn to_event(&self) -> Event {
        let len = self
            .slots
            .iter()
            .map(|(f, _, _)| usize::from(f.0) + 1)
            .max()
            .unwrap_or(0);
        let line = self.text.get(..self.raw_len as usize).unwrap_or("");
        let mut e = Event::new(line.to_owned(), self.time, len);
        e.has_line_time = true;
        for &(id, start, end) in self.slots.iter() {
            let v = if end <= self.raw_len {
                FieldValue::Line { start, end }
            } else {
                FieldValue::Owned(
                    self.text
                        .get(start as usize..end as usize)
                        .unwrap_or("")
                        .to_owned(),
                )
            };
            e.set(id, v);
        }
        e
    }
}

/// An event holding only `fields` (and the raw line when `raw`), for a conditional
/// scenario's queue: its condition reads nothing else.
pub(super) fn condition_event(event: &Event, fields: &[FieldId], raw: bool) -> Event {
    let len = fields
        .iter()
        .map(|f| usize::from(f.0) + 1)
        .max()
        .unwrap_or(0);
    let line = if raw {
        event.line.clone()
    } else {
        String::new()
    };
    let mut e = Event::new(line, event.time, len);
    e.has_line_time = event.has_line_time;
    for &id in fields {
        let v = match event.slot(id) {
            None | Some(FieldValue::Unset) => continue,
            Some(FieldValue::Line { start, end }) if raw => FieldValue::Line {
                start: *start,
                end: *end,
            },
            Some(FieldValue::Static(s)) => FieldValue::Static(s.clone()),
            Some(FieldValue::Owned(s)) if raw => FieldValue::Owned(s.clone()),
            Some(_) => {
                let v = event.get(id);
                let start = e.line.len() as u32;
                e.line.push_str(v);
                FieldValue::Line {
                    start,
                    end: e.line.len() as u32,
                }
            }
        };
        e.set(id, v);
    }
    e
}
