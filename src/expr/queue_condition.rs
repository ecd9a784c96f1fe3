//! A conditional scenario's condition as arithmetic on its queue, without the interpreter.
//!
//! The hub's time-based conditions read the queue only through its length and the median
//! interval of its most recent times:
//!
//! ```text
//! let failedAuths = filter(queue.Queue, {#.Meta.log_type == 'ssh_failed-auth'});
//! len(failedAuths) >= 4 && MedianInterval(map(failedAuths[-4:], {#.Time})) > duration("10m")
//! ```
//!
//! A bucket evaluates its condition at every pour. Through the interpreter that is a frame
//! for the `let`, a list value, a slice and two comparisons of dynamically typed values:
//! about 2,000 instructions, for what is a length test and the median of three
//! differences. [`QueueCondition::of`] recognises a condition that is a conjunction of such
//! tests over one queue (the whole queue, or the queue a bucket prefiltered with the
//! condition's `filter` predicate) against literals; [`QueueCondition::holds`] then answers
//! with the interpreter's exact semantics (slice bounds clamped like `xs[a:b]`, the same
//! median). Anything else stays with the interpreter.

use super::eval::{Cmp, K, Lit, Node, clamp_bound};
use super::funcs::median_interval_by;
use crate::event::Event;
use jiff::SignedDuration;
use std::cmp::Ordering;

/// A condition compiled to tests of its queue's length and median interval.
#[derive(Debug)]
pub(crate) struct QueueCondition {
    /// Every one must hold, tested left to right.
    tests: Box<[QueueTest]>,
    /// The queue the tests read is `filter(queue.Queue, P)`: the answer is right only
    /// over a queue the bucket filtered with `P`. Otherwise it is `queue.Queue` itself.
    filtered: bool,
}

/// One conjunct: a measure of the queue against a literal.
#[derive(Debug)]
struct QueueTest {
    measure: Measure,
    op: Cmp,
    against: Against,
}

/// What a test measures.
#[derive(Debug)]
enum Measure {
    /// `len(Q)`.
    Len,
    /// `MedianInterval(map(Q[from:to], {#.Time}))` (without bounds: the whole queue).
    MedianInterval { from: Option<i64>, to: Option<i64> },
}

/// The literal a measure is compared with; the types match the measure's.
#[derive(Debug)]
enum Against {
    Int(i64),
    Duration(SignedDuration),
}

impl QueueCondition {
    /// The compiled form of `root`, when it is one.
    pub(crate) fn of(root: &Node) -> Option<QueueCondition> {
        // `let Q = <queue>; tests over Q` or the tests over `<queue>` written out.
        let (queue, body, depth_var) = match &root.k {
            K::Let(value, body) => (&**value, &**body, true),
            _ => (root, root, false),
        };
        let mut tests = Vec::new();
        let mut filtered = None;
        let mut is_queue = |n: &Node| -> bool {
            let q = if depth_var {
                if !matches!(n.k, K::Var(0)) {
                    return false;
                }
                queue
            } else {
                n
            };
            let this = match &q.k {
                K::QueueList => false,
                K::QueueFilter(list, _) if matches!(list.k, K::QueueList) => true,
                _ => return false,
            };
            // Every test must read the same queue.
            *filtered.get_or_insert(this) == this
        };
        conjuncts(body, &mut |n| {
            tests.push(test_of(n, &mut is_queue)?);
            Some(())
        })?;
        Some(QueueCondition {
            tests: tests.into_boxed_slice(),
            filtered: filtered?,
        })
    }

    /// Whether the answer of [`Self::holds`] needs a queue the bucket prefiltered (the
    /// program's `filter` predicate), rather than the whole queue.
    pub(crate) fn wants_prefiltered(&self) -> bool {
        self.filtered
    }

    /// How many of the queue's most recent times decide the answer, when that is bounded:
    /// a queue cut to its last this many (or fewer, all it has) answers as the whole
    /// queue does. `len(Q) >= 4` needs 5 (to tell 4 from more), `Q[-4:]` the last 4;
    /// `None` when a test reads the queue from its start (no bound, `Q[1:]`, `Q[:3]`).
    /// The hub's time-based condition needs 5 of the 65 events its buckets keep.
    pub(crate) fn times_read(&self) -> Option<usize> {
        self.tests.iter().try_fold(0usize, |most, t| {
            let read = match (&t.measure, &t.against) {
                (Measure::Len, Against::Int(n)) => {
                    usize::try_from(n.saturating_add(1)).unwrap_or(0)
                }
                (
                    Measure::MedianInterval {
                        from: Some(f),
                        to: None,
                    },
                    _,
                ) if *f < 0 => usize::try_from(f.unsigned_abs()).ok()?,
                _ => return None,
            };
            Some(most.max(read))
        })
    }

    /// The condition's value over `queue`.
    pub(crate) fn holds(&self, queue: &[Event]) -> bool {
        self.holds_by(queue.len(), |i| {
            queue.get(i).map(|e| e.time.as_nanosecond())
        })
    }

    /// The condition's value over a queue of `len` events whose times `nanos` reads by
    /// index (Unix nanoseconds): all it reads of them.
    pub(crate) fn holds_by(&self, len: usize, nanos: impl Fn(usize) -> Option<i128>) -> bool {
        self.tests.iter().all(|t| t.holds(len, &nanos))
    }
}

/// Calls `f` on each top-level conjunct of `n`, left to right.
fn conjuncts<'n>(n: &'n Node, f: &mut impl FnMut(&'n Node) -> Option<()>) -> Option<()> {
    match &n.k {
        K::And(a, b) => {
            conjuncts(a, f)?;
            conjuncts(b, f)
        }
        _ => f(n),
    }
}

/// `n` as a measure of the queue compared with a literal, in either order.
fn test_of(n: &Node, is_queue: &mut impl FnMut(&Node) -> bool) -> Option<QueueTest> {
    let K::Cmp(op, a, b) = &n.k else {
        return None;
    };
    let (measure, literal, op) = match (measure_of(a, is_queue), measure_of(b, is_queue)) {
        (Some(m), None) => (m, &**b, *op),
        (None, Some(m)) => (m, &**a, flipped(*op)),
        _ => return None,
    };
    let against = match (&measure, &literal.k) {
        (Measure::Len, K::Lit(Lit::Int(i))) => Against::Int(*i),
        (Measure::MedianInterval { .. }, K::Lit(Lit::Duration(d))) => Against::Duration(*d),
        _ => return None,
    };
    Some(QueueTest {
        measure,
        op,
        against,
    })
}

/// `a op b` as `b op' a`.
fn flipped(op: Cmp) -> Cmp {
    match op {
        Cmp::Lt => Cmp::Gt,
        Cmp::Le => Cmp::Ge,
        Cmp::Gt => Cmp::Lt,
        Cmp::Ge => Cmp::Le,
        Cmp::Eq | Cmp::Ne => op,
    }
}

fn measure_of(n: &Node, is_queue: &mut impl FnMut(&Node) -> bool) -> Option<Measure> {
    let K::Call(f, args) = &n.k else {
        return None;
    };
    let [arg] = args.as_slice() else {
        return None;
    };
    match f {
        super::eval::Func::Len if is_queue(arg) => Some(Measure::Len),
        // The checker already dropped the `map(_, {#.Time})`: the function reads the
        // events' times itself.
        super::eval::Func::MedianInterval => match &arg.k {
            K::Slice(list, from, to) if is_queue(list) => Some(Measure::MedianInterval {
                from: int_literal(from.as_deref())?,
                to: int_literal(to.as_deref())?,
            }),
            _ if is_queue(arg) => Some(Measure::MedianInterval {
                from: None,
                to: None,
            }),
            _ => None,
        },
        _ => None,
    }
}

/// An optional slice bound: `Some(None)` when absent, `None` when it is not an integer
/// literal (`-4` may arrive as a negated literal).
fn int_literal(n: Option<&Node>) -> Option<Option<i64>> {
    let Some(n) = n else {
        return Some(None);
    };
    match &n.k {
        K::Lit(Lit::Int(i)) => Some(Some(*i)),
        K::Neg(x) => match x.k {
            K::Lit(Lit::Int(i)) => Some(Some(i.checked_neg()?)),
            _ => None,
        },
        _ => None,
    }
}

impl QueueTest {
    fn holds(&self, len: usize, nanos: &impl Fn(usize) -> Option<i128>) -> bool {
        let order = match (&self.measure, &self.against) {
            (Measure::Len, Against::Int(i)) => i64::try_from(len).unwrap_or(i64::MAX).cmp(i),
            (Measure::MedianInterval { from, to }, Against::Duration(d)) => {
                let a = from.map_or(0, |f| clamp_bound(f, len));
                let b = to.map_or(len, |t| clamp_bound(t, len)).max(a);
                median_interval_by(b - a, |i| nanos(a + i))
                    .unwrap_or_default()
                    .cmp(d)
            }
            // `test_of` pairs each measure with its literal's type.
            _ => return false,
        };
        match self.op {
            Cmp::Eq => order == Ordering::Equal,
            Cmp::Ne => order != Ordering::Equal,
            Cmp::Lt => order == Ordering::Less,
            Cmp::Le => order != Ordering::Greater,
            Cmp::Gt => order == Ordering::Greater,
            Cmp::Ge => order != Ordering::Less,
        }
    }
}
