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
use std::rc::Rc;
use std::sync::Arc;

/// What samples keep, decided once per ruleset.
#[derive(Debug)]
pub(super) struct SampleSpec {
    fields: Vec<FieldId>,
    raw: bool,
    /// Where a sample's text is written, then the whole sample, before it is copied into
    /// its one allocation.
    scratch: Vec<u8>,
    assembled: Vec<u8>,
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
        SampleSpec {
            fields,
            raw,
            scratch: Vec::new(),
            assembled: Vec::new(),
        }
    }

    /// The sample of `event`.
    pub(super) fn sample(&mut self, event: &Event) -> QueuedSample {
        // One pass writes the slots and the text into scratch space, and one allocation
        // takes a copy: a sample used to cost three allocations and two passes over the
        // fields, for every line that pours.
        let raw_len = if self.raw { event.line.len() } else { 0 };
        let data = &mut self.assembled;
        data.clear();
        push_header(data, event.time, offset(raw_len), 0);
        let text = &mut self.scratch;
        text.clear();
        if self.raw {
            text.extend_from_slice(event.line.as_bytes());
        }
        let mut n = 0u32;
        for &id in &self.fields {
            let (start, end) = match event.slot(id) {
                None | Some(FieldValue::Unset) => continue,
                Some(FieldValue::Line { start, end }) if self.raw => (*start, *end),
                Some(_) => {
                    let v = event.get(id);
                    if v.is_empty() {
                        continue;
                    }
                    let start = text.len();
                    text.extend_from_slice(v.as_bytes());
                    (offset(start), offset(text.len()))
                }
            };
            push_slot(data, id, start, end);
            n += 1;
        }
        if let Some(count) = data.get_mut(16..HEADER) {
            count.copy_from_slice(&n.to_le_bytes());
        }
        data.extend_from_slice(text);
        Sample(Rc::from(&data[..]))
    }
}

/// A sample's header: the time (seconds, nanoseconds), the raw line's length and the
/// number of slots.
const HEADER: usize = 8 + 4 + 4 + 4;
/// A slot: the field id and its value's range of the text.
const SLOT: usize = 2 + 4 + 4;

/// A length or offset in a sample, which holds one line and copies of its fields.
fn offset(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Writes a sample's header (the slot count may be patched in afterwards, at 16..20).
fn push_header(data: &mut Vec<u8>, time: Timestamp, raw_len: u32, slots: u32) {
    data.extend_from_slice(&time.as_second().to_le_bytes());
    data.extend_from_slice(&time.subsec_nanosecond().to_le_bytes());
    data.extend_from_slice(&raw_len.to_le_bytes());
    data.extend_from_slice(&slots.to_le_bytes());
}

/// Writes one slot: the field id and its value's range of the text.
fn push_slot(data: &mut Vec<u8>, id: FieldId, start: u32, end: u32) {
    data.extend_from_slice(&id.0.to_le_bytes());
    data.extend_from_slice(&start.to_le_bytes());
    data.extend_from_slice(&end.to_le_bytes());
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

/// A compact copy of a poured event (see the module documentation); an alert's events are
/// its bucket's samples until read. One allocation: the header, the slots (field id,
/// range of the text), then the text, which starts with the raw line when it is kept.
///
/// In the buckets it is a [`QueuedSample`], shared by every bucket the event poured into
/// with a plain reference count; an alert takes copies that may cross threads.
#[derive(Debug, Clone)]
pub(crate) struct Sample<B = Arc<[u8]>>(B);

/// A sample in bucket queues. The reference count is not atomic: an event pours into
/// four to six buckets of an sshd attack, and an atomic count cost two locked instructions
/// a bucket (a clone, then a drop when the queue moves on). Queued samples never leave
/// the detector ([`QueuedSample::shared`] copies them into alerts), which makes the
/// detector single-threaded: it lives and dies on the thread that runs its engine.
pub(crate) type QueuedSample = Sample<Rc<[u8]>>;

impl QueuedSample {
    /// A copy that alerts can carry to other threads.
    pub(crate) fn shared(&self) -> Sample {
        Sample(Arc::from(&self.0[..]))
    }
}

impl<B: std::ops::Deref<Target = [u8]>> Sample<B> {
    /// The event time.
    fn time(&self) -> Timestamp {
        let b = &self.0;
        let secs = b
            .get(..8)
            .and_then(|s| s.try_into().ok())
            .map_or(0, i64::from_le_bytes);
        let nanos = le_u32(b, 8) as i32;
        Timestamp::new(secs, nanos).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn raw_len(&self) -> u32 {
        le_u32(&self.0, 12)
    }

    /// The slots: field id and range of [`Self::text`].
    fn slots(&self) -> impl Iterator<Item = (FieldId, u32, u32)> + '_ {
        let n = le_u32(&self.0, 16) as usize;
        self.0
            .get(HEADER..HEADER + n * SLOT)
            .unwrap_or_default()
            .chunks_exact(SLOT)
            .map(|c| {
                let id = u16::from_le_bytes([c[0], c[1]]);
                (FieldId(id), le_u32(c, 2), le_u32(c, 6))
            })
    }

    fn text(&self) -> &str {
        let n = le_u32(&self.0, 16) as usize;
        self.0
            .get(HEADER + n * SLOT..)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("")
    }

    /// A kept field's value (`""` when unset or not kept).
    pub(crate) fn get(&self, id: FieldId) -> &str {
        self.slots()
            .find(|(f, _, _)| *f == id)
            .and_then(|(_, s, e)| self.text().get(s as usize..e as usize))
            .unwrap_or("")
    }

    /// The sample with its field ids translated by `map` (after a reload renumbered
    /// fields); fields the map drops are dropped.
    pub(super) fn remapped(&self, map: impl Fn(FieldId) -> Option<FieldId>) -> Sample<B>
    where
        B: From<Vec<u8>>,
    {
        let slots: Vec<(FieldId, u32, u32)> = self
            .slots()
            .filter_map(|(id, s, e)| Some((map(id)?, s, e)))
            .collect();
        let text = self.text().as_bytes();
        let mut data = Vec::with_capacity(HEADER + slots.len() * SLOT + text.len());
        push_header(&mut data, self.time(), self.raw_len(), offset(slots.len()));
        for (id, start, end) in slots {
            push_slot(&mut data, id, start, end);
        }
        data.extend_from_slice(text);
        Sample(B::from(data))
    }

    /// The sample as an event (for alerts): the kept fields and the time; the raw line
    /// only when a rule reads it, else empty.
    pub(crate) fn to_event(&self) -> Event {
        let len = self
            .slots()
            .map(|(f, _, _)| usize::from(f.0) + 1)
            .max()
            .unwrap_or(0);
        let raw_len = self.raw_len();
        let text = self.text();
        let line = text.get(..raw_len as usize).unwrap_or("");
        let mut e = Event::new(line.to_owned(), self.time(), len);
        e.has_line_time = true;
        for (id, start, end) in self.slots() {
            let v = if end <= raw_len {
                FieldValue::Line { start, end }
            } else {
                FieldValue::Owned(
                    text.get(start as usize..end as usize)
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
            Some(FieldValue::Static(s)) => FieldValue::Static(s),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_keeps_meta_values_time_and_the_raw_line_when_read() {
        let rs = crate::compile::compile_path(None)
            .expect("the default configuration compiles")
            .ruleset;
        let meta = |n: &str| rs.fields.get(Namespace::Meta, n).expect("a Meta field");
        let parsed = rs
            .fields
            .get(Namespace::Parsed, "message")
            .expect("a Parsed field");
        let line = "Nov 18 09:46:40 web01 sshd[1]: Invalid user é from 1.2.3.4";
        let at: Timestamp = "2026-11-18T09:46:40.123456789Z".parse().expect("a time");
        let mut event = Event::new(line.into(), at, rs.fields.len());
        event.set(meta("source_ip"), FieldValue::Line { start: 52, end: 59 });
        event.set(meta("service"), FieldValue::Static("ssh"));
        event.set(meta("target_user"), FieldValue::Owned("é".into()));
        event.set(meta("log_type"), FieldValue::Owned(String::new()));
        event.set(parsed, FieldValue::Line { start: 31, end: 59 });
        for raw in [false, true] {
            let mut spec = SampleSpec::new(&rs);
            spec.raw = raw;
            let s = spec.sample(&event);
            assert_eq!(s.time(), at);
            assert_eq!(s.get(meta("source_ip")), "1.2.3.4");
            assert_eq!(s.get(meta("service")), "ssh");
            assert_eq!(s.get(meta("target_user")), "é");
            // Empty and non-Meta values are not kept.
            assert_eq!(s.slots().count(), 3);
            assert_eq!(s.get(parsed), "");
            let e = s.to_event();
            assert_eq!(e.time, at);
            assert_eq!(e.line, if raw { line } else { "" });
            assert_eq!(e.get(meta("target_user")), "é");
            assert_eq!(e.get(meta("source_ip")), "1.2.3.4");
            // A reload renumbering fields: moved ones follow, dropped ones go.
            let moved = s.remapped(|id| (id != meta("service")).then_some(FieldId(id.0 + 100)));
            assert_eq!(moved.time(), at);
            assert_eq!(moved.get(FieldId(meta("source_ip").0 + 100)), "1.2.3.4");
            assert_eq!(moved.get(meta("source_ip")), "");
            assert_eq!(moved.slots().count(), 2);
            assert_eq!(moved.to_event().line, e.line);
        }
    }
}
