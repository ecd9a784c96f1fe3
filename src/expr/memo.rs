//! Verdicts of conditions remembered by the values of the fields that decide them.

use super::{DataLists, EvalCtx, Program};
use crate::event::{Event, FieldId, FieldValue};
use std::hash::BuildHasher;

/// The last verdict of a condition whose verdict is a function of a few fields' values
/// ([`Program::value_fields`]), with the values it was given for. Such conditions (parser
/// filters such as `evt.Line.Labels.type not in [...]`, `evt.Parsed.program startsWith
/// 'nginx'`, `evt.Meta.service == 'http' && evt.Meta.log_type in [...]`, a scenario's
/// `cancel-on` such as `evt.Meta.log_type == 'auth_success'`) see the same values line
/// after line: the acquisition's type, the program most lines come from, the constants a
/// parser set.
#[derive(Debug)]
pub(crate) struct VerdictMemo {
    /// The fields, each with the value last judged.
    last: Box<[(FieldId, MemoValue)]>,
    /// The verdict; `None` before the first line.
    verdict: Option<bool>,
}

/// A value a [`VerdictMemo`] judged.
#[derive(Debug)]
enum MemoValue {
    /// Rule-constant text, by [`FieldValue::static_key`].
    Static((usize, usize)),
    /// Any other value, copied.
    Text(String),
}

impl MemoValue {
    /// Whether `event`'s value of `id` is this one.
    #[inline]
    fn holds(&self, event: &Event, id: FieldId) -> bool {
        match self {
            MemoValue::Static(key) => event.slot(id).and_then(FieldValue::static_key) == Some(*key),
            MemoValue::Text(t) => crate::same_text(t, event.get(id)),
        }
    }
}

/// Fields a [`VerdictMemo`] keeps values of at most: more make a poor key.
const MEMO_FIELDS: usize = 4;

impl VerdictMemo {
    /// A memo for `program`, when a few fields' values decide its verdict.
    pub(crate) fn of(program: &Program) -> Option<Self> {
        program.value_fields(0).and_then(Self::new)
    }

    /// A memo for a condition whose verdict only `fields` decide.
    fn new(fields: Vec<FieldId>) -> Option<Self> {
        (!fields.is_empty() && fields.len() <= MEMO_FIELDS).then(|| VerdictMemo {
            last: fields
                .into_iter()
                .map(|id| (id, MemoValue::Text(String::new())))
                .collect(),
            verdict: None,
        })
    }

    /// The verdict on `event`: the memo's when the fields hold the values it judged
    /// last, else `judge`'s, remembered.
    #[inline]
    pub(crate) fn verdict(&mut self, event: &Event, judge: impl FnOnce() -> bool) -> bool {
        match self.verdict {
            Some(v) if self.last.iter().all(|(id, last)| last.holds(event, *id)) => v,
            _ => {
                let v = judge();
                self.verdict = Some(v);
                self.remember(event);
                v
            }
        }
    }

    /// Keeps `event`'s values of the fields, reusing the copies' buffers.
    #[inline(never)]
    fn remember(&mut self, event: &Event) {
        for (id, v) in self.last.iter_mut() {
            match event.slot(*id).and_then(FieldValue::static_key) {
                Some(key) => *v = MemoValue::Static(key),
                None => {
                    let text = event.get(*id);
                    match v {
                        MemoValue::Text(t) => {
                            t.clear();
                            t.push_str(text);
                        }
                        MemoValue::Static(..) => *v = MemoValue::Text(text.to_owned()),
                    }
                }
            }
        }
    }
}

/// The values of a string expression that a few fields' values decide
/// ([`Program::value_fields`]), by those values: a parser static such as the hub's
/// `Upper(evt.Parsed.file_ext) in ['.JPG', ...] ? 'true' : 'false'` runs on every HTTP
/// line (~300 instructions) over the few values a site's file extensions take.
/// Direct-mapped by a seeded hash, fixed size: new values (an attacker's) only evict.
#[derive(Debug)]
pub(crate) struct ValueMemo {
    fields: Box<[FieldId]>,
    /// The expression's string literals, interned: a value equal to one (`'true'`) is
    /// given as rule-constant text, which later look-ups compare by address.
    literals: Box<[&'static str]>,
    /// Per slot: whether it is filled, the values (of several fields: each one's length,
    /// then its bytes) and the expression's value on them (empty for `nil`).
    entries: Vec<MemoSlot>,
    keys: crate::FastState,
    joined: Vec<u8>,
}

/// A [`ValueMemo`] slot.
#[derive(Debug, Clone, Default)]
struct MemoSlot {
    filled: bool,
    values: Vec<u8>,
    /// The value, when it is one of the literals.
    literal: Option<&'static str>,
    /// The value otherwise.
    text: String,
}

/// A value a [`ValueMemo`] gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MemoText<'a> {
    /// One of the expression's literals (interned).
    Literal(&'static str),
    /// Any other text (empty for `nil`).
    Text(&'a str),
}

impl ValueMemo {
    /// Slots (a power of two).
    const SLOTS: usize = 64;
    /// Longer values are not kept (they are evaluated each time).
    const MAX_LEN: usize = 64;

    /// A memo for `program`, when a few fields' values decide its value.
    pub(crate) fn of(program: &Program) -> Option<Self> {
        let fields = program.value_fields(0)?;
        (!fields.is_empty() && fields.len() <= MEMO_FIELDS).then(|| ValueMemo {
            fields: fields.into_boxed_slice(),
            literals: program
                .string_literals()
                .into_iter()
                .map(crate::event::intern)
                .collect(),
            entries: Vec::new(),
            keys: crate::FastState::default(),
            joined: Vec::new(),
        })
    }

    /// `program`'s value on `event`, as [`Program::eval_string_into`] gives it (empty for
    /// `nil`); `program` must be the one the memo was made for. `None` when the values are
    /// too long to keep: the caller evaluates it.
    pub(crate) fn value(
        &mut self,
        program: &Program,
        event: &Event,
        data: &DataLists,
    ) -> Option<MemoText<'_>> {
        let ValueMemo {
            fields,
            literals,
            entries,
            keys,
            joined,
        } = self;
        let key = event.values_key(fields, joined);
        if key.len() > Self::MAX_LEN {
            return None;
        }
        if entries.is_empty() {
            entries.resize(Self::SLOTS, MemoSlot::default());
        }
        let at = keys.hash_one(key) as usize & (Self::SLOTS - 1);
        let slot = entries.get_mut(at)?;
        if !slot.filled || !crate::same_bytes(&slot.values, key) {
            slot.text.clear();
            program.eval_string_into(&EvalCtx::for_event(event, data), &mut slot.text);
            slot.literal = literals.iter().copied().find(|l| *l == slot.text);
            slot.values.clear();
            slot.values.extend_from_slice(key);
            slot.filled = true;
        }
        Some(match slot.literal {
            Some(l) => MemoText::Literal(l),
            None => MemoText::Text(&slot.text),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Timestamp;

    #[test]
    fn memos_judge_again_when_any_of_their_values_changes() {
        let (a, b) = (FieldId(0), FieldId(1));
        let mut memo = VerdictMemo::new(vec![a, b]).expect("two fields");
        let mut e = Event::new("http ssh".into(), Timestamp::UNIX_EPOCH, 2);
        let http: &'static str = "http";
        let judged = std::cell::Cell::new(0);
        let line = |start, end| FieldValue::Line { start, end };
        // (a, b, whether the memo must judge again)
        let steps = [
            (FieldValue::Static(http), FieldValue::Static("x"), true),
            (FieldValue::Static(http), FieldValue::Static("x"), false),
            // The same text from the line: judged once more, then remembered as text.
            (line(0, 4), FieldValue::Static("x"), true),
            (line(0, 4), FieldValue::Static("x"), false),
            (line(0, 4), FieldValue::Static("y"), true),
            (line(5, 8), FieldValue::Static("y"), true),
            (FieldValue::Unset, FieldValue::Static("y"), true),
            (FieldValue::Unset, FieldValue::Static("y"), false),
            // A prefix of known static text, at its address.
            (FieldValue::Static(http), FieldValue::Static("y"), true),
            (
                FieldValue::Static(&http[..2]),
                FieldValue::Static("y"),
                true,
            ),
            (FieldValue::Static(http), FieldValue::Static("x"), true),
        ];
        for (i, (va, vb, again)) in steps.into_iter().enumerate() {
            e.reset("http ssh", Timestamp::UNIX_EPOCH);
            e.set(a, va);
            e.set(b, vb);
            let before = judged.get();
            let verdict = memo.verdict(&e, || {
                judged.set(judged.get() + 1);
                e.get(a) == "http" && e.get(b) == "x"
            });
            assert_eq!(verdict, e.get(a) == "http" && e.get(b) == "x", "step {i}");
            assert_eq!(judged.get() > before, again, "step {i}");
        }
        assert!(VerdictMemo::new(Vec::new()).is_none());
        assert!(VerdictMemo::new((0..5).map(FieldId).collect()).is_none());
    }
}
