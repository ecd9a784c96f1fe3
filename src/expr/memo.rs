//! Verdicts of conditions remembered by the values of the fields that decide them.

use super::Program;
use crate::event::{Event, FieldId, FieldValue};

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
