//! The lowered tree and its evaluator.
//!
//! Variables (`let`) and closure elements (`#`) live in a linked list of frames on the Rust
//! stack, addressed by depth, so evaluation never allocates for them.

use super::funcs::{self, go_lower, go_sprint, go_upper};
use super::matcher::StrMatcher;
use super::{EvalCtx, EvalError, List, SignedDuration, Value};
use crate::event::{Event, FieldId, Timestamp};
use std::borrow::Cow;
use std::cell::RefCell;
use std::cmp::Ordering;
use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;

/// A constant.
#[derive(Debug, Clone)]
pub(crate) enum Lit {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Box<str>),
    Duration(SignedDuration),
    Time(Timestamp),
}

impl Lit {
    pub(crate) fn value(&self) -> Value<'_> {
        match self {
            Lit::Nil => Value::Nil,
            Lit::Bool(b) => Value::Bool(*b),
            Lit::Int(i) => Value::Int(*i),
            Lit::Float(f) => Value::Float(*f),
            Lit::Str(s) => Value::Str(Cow::Borrowed(s)),
            Lit::Duration(d) => Value::Duration(*d),
            Lit::Time(t) => Value::Time(*t),
        }
    }

    pub(crate) fn from_value(v: &Value<'_>) -> Option<Lit> {
        Some(match v {
            Value::Nil => Lit::Nil,
            Value::Bool(b) => Lit::Bool(*b),
            Value::Int(i) => Lit::Int(*i),
            Value::Float(f) => Lit::Float(*f),
            Value::Str(s) => Lit::Str(Box::from(&**s)),
            Value::Duration(d) => Lit::Duration(*d),
            Value::Time(t) => Lit::Time(*t),
            _ => return None,
        })
    }
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// Arithmetic operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
}

/// String predicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StrOp {
    Contains,
    StartsWith,
    EndsWith,
}

/// Closure builtins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Quant {
    Any,
    All,
    None,
    One,
    Filter,
    Map,
    Count,
    Find,
    FindIndex,
}

/// Properties of an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AlertProp {
    Remediation,
    Scenario,
    Scope,
    Value,
    EventsCount,
    Events,
    Message,
}

/// Plain functions (arguments evaluated first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Func {
    Upper,
    Lower,
    Len,
    IpInRange,
    IsIpv4,
    IsIpv6,
    IsIp,
    IpToRange,
    JsonExtract,
    Atof,
    ToString,
    Split,
    Join,
    Trim,
    TrimSpace,
    TrimLeft,
    TrimRight,
    TrimPrefix,
    TrimSuffix,
    Replace,
    ReplaceAll,
    Duration,
    MedianInterval,
    GetDecisionsCount,
    GetActiveDecisionsCount,
    Sprintf,
    ParseUnix,
    TimeNow,
    Now,
    Date,
    Int,
    Float,
    IndexOf,
    LastIndexOf,
    HasPrefix,
    HasSuffix,
    Abs,
    First,
    Last,
    PathUnescape,
    QueryUnescape,
}

impl Func {
    /// Pure functions may be folded at compile time over constant arguments.
    pub(crate) fn is_pure(self) -> bool {
        !matches!(
            self,
            Func::GetDecisionsCount | Func::GetActiveDecisionsCount | Func::TimeNow | Func::Now
        )
    }
}

/// A lowered node with its source span (for run-time errors).
#[derive(Debug)]
pub(crate) struct Node {
    pub k: K,
    pub span: Range<usize>,
}

/// Node kinds.
#[derive(Debug)]
pub(crate) enum K {
    Lit(Lit),
    ListLit(Vec<Node>),
    /// `File(L)`: the list's strings, copied at compile time.
    Data(Box<[Box<str>]>),
    /// The root `evt`.
    Evt,
    /// A field of the root `evt`.
    EvtField(FieldId),
    /// A field of an event-valued expression (`#.Meta.x`).
    EvField(Box<Node>, FieldId),
    EvRaw(Box<Node>),
    EvTime(Box<Node>),
    EvWhitelisted(Box<Node>),
    /// `evt.SetMeta(k, v)`.
    SetMeta(FieldId, Box<Node>),
    Alert,
    AlertProp(Box<Node>, AlertProp),
    /// `Alert.GetMeta(k)`: the first non-empty value among the alert's events.
    AlertMeta(Box<Node>, FieldId),
    /// `queue` (only `queue.Queue` is meaningful).
    Queue,
    QueueList,
    /// A `let` variable, by frame depth.
    Var(u32),
    /// A closure element `#`, by frame depth.
    Elem(u32),
    /// A value precomputed per element of a constant list, by frame depth.
    Column(u32, Box<[Lit]>),
    Index(Box<Node>, Box<Node>),
    Slice(Box<Node>, Option<Box<Node>>, Option<Box<Node>>),
    Not(Box<Node>),
    Neg(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Cmp(Cmp, Box<Node>, Box<Node>),
    Arith(Arith, Box<Node>, Box<Node>),
    Range(Box<Node>, Box<Node>),
    In(Box<Node>, Box<Node>),
    /// A string against prebuilt patterns.
    Match(Box<Node>, StrMatcher),
    StrOp(StrOp, Box<Node>, Box<Node>),
    MatchesLit(Box<Node>, regex::Regex),
    Matches(Box<Node>, Box<Node>),
    RegexpInFile(Box<Node>, super::matcher::RegexList),
    /// `any(File(L), {IpInRange(X, #)})`.
    IpInNets(Box<Node>, Box<[ipnet::IpNet]>),
    Ternary(Box<Node>, Box<Node>, Box<Node>),
    /// `a + b + ...` where every operand is a string: one buffer for the whole chain,
    /// instead of a new string per `+`.
    Concat(Vec<Node>),
    Coalesce(Box<Node>, Box<Node>),
    Let(Box<Node>, Box<Node>),
    Quant(Quant, Box<Node>, Box<Node>),
    /// A closure predicate that reads only its element, with its memo slot: over a list
    /// of events its verdict is cached on each event.
    Memo(u8, Box<Node>),
    /// `filter(queue.Queue, P)` where `P` reads only its element: the queue list node and
    /// `P`, shared with [`super::Program`] so a bucket can test events as it queues them.
    /// Over a queue the caller already filtered with `P` ([`EvalCtx::queue_prefiltered`]),
    /// it is the queue itself.
    QueueFilter(Box<Node>, Arc<Node>),
    /// A node that can only be true when the root event's field contains one of the
    /// matcher's strings (see [`gate_of_any`]): that one pass runs first.
    ContainsGate(FieldId, StrMatcher, Box<Node>),
    Call(Func, Vec<Node>),
}

impl Node {
    /// Whether `test` finds what it looks for at this node or under it: at each node it
    /// answers `Some` (found or not, without looking further down) or `None` (look at the
    /// node's children).
    pub(crate) fn any(&self, test: &impl Fn(&Node) -> Option<bool>) -> bool {
        test(self).unwrap_or_else(|| {
            let mut found = false;
            self.for_each_child(&mut |c| found = found || c.any(test));
            found
        })
    }

    /// Calls `f` on each direct child. Exhaustive, so a new node kind must say what it
    /// contains.
    pub(crate) fn for_each_child<'n>(&'n self, f: &mut impl FnMut(&'n Node)) {
        match &self.k {
            K::Lit(_)
            | K::Data(_)
            | K::Evt
            | K::EvtField(_)
            | K::Alert
            | K::Queue
            | K::QueueList
            | K::Var(_)
            | K::Elem(_)
            | K::Column(..) => {}
            K::ListLit(items) | K::Call(_, items) | K::Concat(items) => items.iter().for_each(f),
            K::EvField(a, _)
            | K::EvRaw(a)
            | K::EvTime(a)
            | K::EvWhitelisted(a)
            | K::SetMeta(_, a)
            | K::AlertProp(a, _)
            | K::AlertMeta(a, _)
            | K::Not(a)
            | K::Neg(a)
            | K::Match(a, _)
            | K::MatchesLit(a, _)
            | K::RegexpInFile(a, _)
            | K::IpInNets(a, _)
            | K::ContainsGate(_, _, a)
            | K::Memo(_, a) => f(a),
            K::Index(a, b)
            | K::And(a, b)
            | K::Or(a, b)
            | K::Cmp(_, a, b)
            | K::Arith(_, a, b)
            | K::Range(a, b)
            | K::In(a, b)
            | K::StrOp(_, a, b)
            | K::Matches(a, b)
            | K::Coalesce(a, b)
            | K::Let(a, b)
            | K::Quant(_, a, b) => {
                f(a);
                f(b);
            }
            K::QueueFilter(a, b) => {
                f(a);
                f(b);
            }
            K::Slice(a, b, c) => {
                f(a);
                if let Some(b) = b {
                    f(b);
                }
                if let Some(c) = c {
                    f(c);
                }
            }
            K::Ternary(a, b, c) => {
                f(a);
                f(b);
                f(c);
            }
        }
    }
}

/// A predicate without its [`K::Memo`] wrapper: run once per event outside a list (a queue
/// filter's predicate tested as the event is queued), the memo slot would only cost.
pub(crate) fn unmemoized(body: &Node) -> &Node {
    match &body.k {
        K::Memo(_, inner) => inner,
        _ => body,
    }
}

/// `P`'s verdict for `event`, where `P` is the predicate of a [`K::QueueFilter`]: it reads
/// only its element, so it runs with `event` as the element and nothing else in scope.
pub(crate) fn element_verdict(body: &Node, event: &Event, ctx: &EvalCtx<'_>) -> R<bool> {
    let inner = unmemoized(body);
    let f = Frame {
        val: Value::Event(event),
        idx: 0,
        parent: None,
    };
    eval_bool(inner, ctx, Some(&f))
}

/// Memo slots per event: two bits each in [`Event::memo`].
pub(crate) const MEMO_SLOTS: u8 = 32;

/// Whether `n`, the body of a closure, depends only on the closure's element (`#` at frame
/// `depth`) and constants: then its value for a given event never changes.
pub(crate) fn element_pure(n: &Node, depth: u32) -> bool {
    let children_pure = || {
        let mut pure = true;
        n.for_each_child(&mut |c| pure = pure && element_pure(c, depth));
        pure
    };
    match &n.k {
        K::Lit(_) | K::Data(_) => true,
        K::Elem(d) => *d == depth,
        K::EvField(..)
        | K::EvRaw(_)
        | K::EvTime(_)
        | K::EvWhitelisted(_)
        | K::Not(_)
        | K::Neg(_)
        | K::Match(..)
        | K::MatchesLit(..)
        | K::RegexpInFile(..)
        | K::IpInNets(..)
        | K::And(..)
        | K::Or(..)
        | K::Cmp(..)
        | K::Arith(..)
        | K::Range(..)
        | K::In(..)
        | K::StrOp(..)
        | K::Matches(..)
        | K::Coalesce(..)
        | K::Index(..)
        | K::Ternary(..)
        | K::Slice(..)
        | K::Concat(_)
        | K::ListLit(_) => children_pure(),
        K::Call(f, _) => f.is_pure() && children_pure(),
        // The root event, variables, outer elements, nested closures, the queue, alerts,
        // writes: anything else may differ between two evaluations.
        _ => false,
    }
}

/// The values the root event's `field` must hold for the boolean `n` to be true:
/// `Some(values)` when `n` implies `evt.<field> ∈ values` (`==` a string literal, `in` a
/// literal list, through `&&` and `||`), `None` when it implies nothing about it. The
/// detector uses it to skip, with one comparison, filters that cannot match an event.
pub(crate) fn implied_values(n: &Node, field: FieldId) -> Option<Vec<Box<str>>> {
    let is_field = |x: &Node| matches!(x.k, K::EvtField(f) if f == field);
    match &n.k {
        K::And(a, b) => match (implied_values(a, field), implied_values(b, field)) {
            (Some(x), Some(y)) => Some(x.into_iter().filter(|v| y.contains(v)).collect()),
            (x, y) => x.or(y),
        },
        K::Or(a, b) => {
            let mut x = implied_values(a, field)?;
            x.extend(implied_values(b, field)?);
            x.sort();
            x.dedup();
            Some(x)
        }
        K::Cmp(Cmp::Eq, a, b) => match (&a.k, &b.k) {
            (_, K::Lit(Lit::Str(s))) if is_field(a) => Some(vec![s.clone()]),
            (K::Lit(Lit::Str(s)), _) if is_field(b) => Some(vec![s.clone()]),
            _ => None,
        },
        K::Match(x, m) if is_field(x) => m.exact_values(),
        _ => None,
    }
}

/// A boolean combination of tests of root fields against string literals
/// (`evt.A == 'x' || evt.B in ['y', 'z'] && evt.C != 'w'`): its value depends only on
/// whether each field's value is among each test's literals, so it is known from the
/// class of each field's value among every literal it is compared with.
#[derive(Debug)]
pub(crate) enum FieldLogic {
    /// The field, the literals, and whether the test holds when the value is among them
    /// (`==`, `in`) or when it is not (`!=`, `not in`).
    Test(FieldId, Vec<Box<str>>, bool),
    And(Box<FieldLogic>, Box<FieldLogic>),
    Or(Box<FieldLogic>, Box<FieldLogic>),
    Not(Box<FieldLogic>),
}

/// `n` as a [`FieldLogic`], when it is one.
fn field_logic(n: &Node) -> Option<FieldLogic> {
    let both = |a: &Node, b: &Node| Some((Box::new(field_logic(a)?), Box::new(field_logic(b)?)));
    Some(match &n.k {
        K::And(a, b) => {
            let (a, b) = both(a, b)?;
            FieldLogic::And(a, b)
        }
        K::Or(a, b) => {
            let (a, b) = both(a, b)?;
            FieldLogic::Or(a, b)
        }
        K::Not(a) => FieldLogic::Not(Box::new(field_logic(a)?)),
        _ => {
            let (f, literals, member) = field_comparison(n, Subject::Root)?;
            let values = match literals {
                Literals::One(s) => vec![Box::from(s)],
                Literals::Exact(m) => m.exact_values()?,
            };
            FieldLogic::Test(f, values, member)
        }
    })
}

/// Each top-level conjunct of `n` (`a && b && ...`, left to right, numbered as in
/// [`checked_conjuncts`]) as a [`FieldLogic`], when it is one.
pub(crate) fn conjunct_logic(n: &Node) -> Vec<Option<FieldLogic>> {
    fn walk(n: &Node, out: &mut Vec<Option<FieldLogic>>) {
        match &n.k {
            K::And(a, b) => {
                walk(a, out);
                walk(b, out);
            }
            _ => out.push(field_logic(n)),
        }
    }
    let mut out = Vec::new();
    walk(n, &mut out);
    out
}

/// The string literals a [`field_comparison`] compares with, borrowed from the tree.
enum Literals<'n> {
    /// `evt.F == 'x'` or `evt.F != 'x'`.
    One(&'n str),
    /// `evt.F in [...]`: an exact, case-sensitive matcher ([`StrMatcher::is_exact`]).
    Exact(&'n StrMatcher),
}

/// `n` as a comparison of a field of `subject` with string literals, without allocating: the
/// field, the literals, and whether `n` holds when the value is among them (`==`, `in`) or
/// when it is not (`!=`). Negations (`!`, `not in`) are left to [`membership_test`].
fn field_comparison(n: &Node, subject: Subject) -> Option<(FieldId, Literals<'_>, bool)> {
    match &n.k {
        K::Cmp(op @ (Cmp::Eq | Cmp::Ne), a, b) => match (&a.k, &b.k) {
            (x, K::Lit(Lit::Str(s))) | (K::Lit(Lit::Str(s)), x) => {
                Some((subject.field(x)?, Literals::One(s), *op == Cmp::Eq))
            }
            _ => None,
        },
        K::Match(x, m) if m.is_exact() => Some((subject.field(&x.k)?, Literals::Exact(m), true)),
        _ => None,
    }
}

/// Whose fields a [`FieldTest`] reads.
#[derive(Clone, Copy)]
pub(crate) enum Subject {
    /// The root event (`evt.F`).
    Root,
    /// The element of the innermost closure (`#.F`), an event.
    Element,
}

impl Subject {
    /// The field `k` reads, when it is a field of this subject.
    fn field(self, k: &K) -> Option<FieldId> {
        match (self, k) {
            (Subject::Root, K::EvtField(f)) => Some(*f),
            (Subject::Element, K::EvField(e, f)) if matches!(e.k, K::Elem(0)) => Some(*f),
            _ => None,
        }
    }
}

/// The root event field `n` tests, when `n` is exactly a test of it against string
/// literals (`evt.F == 'x'`, `evt.F in ['x', 'y']`): `n` then holds exactly when the field's
/// value is among [`implied_values`]`(n, F)`.
fn field_test(n: &Node) -> Option<FieldId> {
    match field_comparison(n, Subject::Root)? {
        (f, _, true) => Some(f),
        (_, _, false) => None,
    }
}

/// The top-level conjuncts of `n` (`a && b && ...`, left to right) that are field tests
/// ([`field_test`]) of a field `checked` admits, as a mask: bit `i` for conjunct `i`
/// (conjuncts past the 64th are never in it).
pub(crate) fn checked_conjuncts(n: &Node, checked: &dyn Fn(FieldId) -> bool) -> u64 {
    fn walk(n: &Node, checked: &dyn Fn(FieldId) -> bool, i: &mut u32, mask: &mut u64) {
        match &n.k {
            K::And(a, b) => {
                walk(a, checked, i, mask);
                walk(b, checked, i, mask);
            }
            _ => {
                if *i < 64 && field_test(n).is_some_and(checked) {
                    *mask |= 1 << *i;
                }
                *i += 1;
            }
        }
    }
    let mut mask = 0;
    walk(n, checked, &mut 0, &mut mask);
    mask
}

/// The fields of the root event that the top-level conjuncts outside `skip` read (sorted,
/// at least one), when they read nothing else that can change between two events with the
/// same values of them: no whole event, queue, alert or decision count, no clock, no
/// write. Their verdict is then a function of those values (see
/// [`super::Program::value_fields`]). Node kinds this does not know make it `None`.
pub(crate) fn value_fields(n: &Node, skip: u64) -> Option<Vec<FieldId>> {
    fn reads(n: &Node, fields: &mut Vec<FieldId>) -> bool {
        let this = match &n.k {
            K::EvtField(id) | K::ContainsGate(id, ..) => Some(*id),
            K::Call(f, _) if !f.is_pure() => return false,
            K::Lit(_)
            | K::ListLit(_)
            | K::Data(_)
            | K::Var(_)
            | K::Elem(_)
            | K::Column(..)
            | K::Index(..)
            | K::Slice(..)
            | K::Not(_)
            | K::Neg(_)
            | K::And(..)
            | K::Or(..)
            | K::Cmp(..)
            | K::Arith(..)
            | K::Range(..)
            | K::In(..)
            | K::Match(..)
            | K::StrOp(..)
            | K::MatchesLit(..)
            | K::Matches(..)
            | K::RegexpInFile(..)
            | K::IpInNets(..)
            | K::Ternary(..)
            | K::Concat(_)
            | K::Coalesce(..)
            | K::Let(..)
            | K::Quant(..)
            | K::Memo(..)
            | K::Call(..) => None,
            K::Evt
            | K::EvField(..)
            | K::EvRaw(_)
            | K::EvTime(_)
            | K::EvWhitelisted(_)
            | K::SetMeta(..)
            | K::Alert
            | K::AlertProp(..)
            | K::AlertMeta(..)
            | K::Queue
            | K::QueueList
            | K::QueueFilter(..) => return false,
        };
        if let Some(id) = this
            && !fields.contains(&id)
        {
            fields.push(id);
        }
        let mut ok = true;
        n.for_each_child(&mut |c| ok = ok && reads(c, fields));
        ok
    }
    fn walk(n: &Node, skip: u64, i: &mut u32, fields: &mut Vec<FieldId>) -> bool {
        match &n.k {
            K::And(a, b) => walk(a, skip, i, fields) && walk(b, skip, i, fields),
            _ => {
                let skipped = *i < 64 && skip >> *i & 1 == 1;
                *i += 1;
                skipped || reads(n, fields)
            }
        }
    }
    let mut fields = Vec::new();
    if walk(n, skip, &mut 0, &mut fields) && !fields.is_empty() {
        fields.sort_unstable();
        Some(fields)
    } else {
        None
    }
}

/// `n` as a condition, taking as true the top-level conjuncts in `skip` (a mask from
/// [`checked_conjuncts`]): the caller has already checked those fields against their
/// implied values.
pub(crate) fn eval_bool_skipping<'a>(n: &'a Node, ctx: &EvalCtx<'a>, skip: u64) -> R<bool> {
    fn walk<'a>(n: &'a Node, ctx: &EvalCtx<'a>, skip: u64, i: &mut u32) -> R<bool> {
        match &n.k {
            K::And(a, b) => Ok(walk(a, ctx, skip, i)? && walk(b, ctx, skip, i)?),
            _ => {
                let this = *i;
                *i += 1;
                if this < 64 && skip >> this & 1 == 1 {
                    Ok(true)
                } else {
                    eval_bool(n, ctx, None)
                }
            }
        }
    }
    walk(n, ctx, skip, &mut 0)
}

/// A field (of the root event or of a closure's element, see [`Subject`]), values, and
/// whether the test holds when the field's value is among them (`==`, `in`) or when it is
/// not (`!=`, `not in`).
pub(crate) type FieldTest = (FieldId, Box<[Box<str>]>, bool);

/// The most values a [`FieldTest`] compares with one by one.
const MAX_FIELD_TEST_VALUES: usize = 8;

/// `n` as a membership test of a field of `subject` against string literals, possibly
/// negated (`evt.F == 'x'`, `evt.F != 'x'`, `evt.F in [...]`, `evt.F not in [...]`).
fn membership_test(n: &Node, subject: Subject) -> Option<FieldTest> {
    if let K::Not(a) = &n.k {
        return membership_test(a, subject).map(|(f, v, member)| (f, v, !member));
    }
    let (f, literals, member) = field_comparison(n, subject)?;
    let values = match literals {
        Literals::One(s) => Box::new([Box::<str>::from(s)]) as Box<[Box<str>]>,
        // A test compares with each value in turn: a long list (`in File('backdoors.txt')`,
        // 200 names) keeps its matcher's hash set.
        Literals::Exact(m) => match m.exact_values()? {
            v if v.len() <= MAX_FIELD_TEST_VALUES => v.into_boxed_slice(),
            _ => return None,
        },
    };
    Some((f, values, member))
}

/// When every top-level conjunct of `n` is a membership test ([`membership_test`]):
/// those tests. `n` is then true exactly when each holds.
pub(crate) fn as_field_tests(n: &Node, subject: Subject) -> Option<Vec<FieldTest>> {
    match &n.k {
        K::And(a, b) => {
            let mut tests = as_field_tests(a, subject)?;
            tests.extend(as_field_tests(b, subject)?);
            Some(tests)
        }
        _ => Some(vec![membership_test(n, subject)?]),
    }
}

/// Whether every top-level conjunct of `n` is a field test of a field `checked` admits:
/// then [`eval_bool_skipping`] with their mask is `true` without evaluating anything.
pub(crate) fn only_field_tests(n: &Node, checked: &dyn Fn(FieldId) -> bool) -> bool {
    match &n.k {
        K::And(a, b) => only_field_tests(a, checked) && only_field_tests(b, checked),
        _ => field_test(n).is_some_and(checked),
    }
}

/// For the body of `any(L, {...})` over a constant list: the root event field `F` and
/// the column `C` (per element of `L`) when, for every element, the first thing the body
/// evaluates is `evt.F contains C[i]` and the body is false without error when that is
/// false (`evt.F contains C ? ... : false`, `evt.F contains C && ...`). The `any` is then
/// false unless `evt.F` contains some string of `C`, which one Aho-Corasick pass tells;
/// the hub's CVE scenario runs such a body over a list of URIs on every 404.
pub(crate) fn gate_of_any(body: &Node) -> Option<(FieldId, &[Lit])> {
    match &body.k {
        K::Memo(_, a) | K::And(a, _) => gate_of_any(a),
        K::Ternary(c, _, f) if matches!(f.k, K::Lit(Lit::Bool(false))) => gate_of_any(c),
        K::StrOp(StrOp::Contains, x, c) => match (&x.k, &c.k) {
            (K::EvtField(f), K::Column(0, col)) => Some((*f, col)),
            _ => None,
        },
        _ => None,
    }
}

/// The memoised verdict of `slot` for `e`, if computed.
fn memo_get(e: &Event, slot: u8) -> Option<bool> {
    let bits = e.memo.get() >> (2 * u32::from(slot));
    (bits & 1 == 1).then_some(bits & 2 == 2)
}

fn memo_set(e: &Event, slot: u8, v: bool) {
    let shift = 2 * u32::from(slot);
    e.memo
        .set(e.memo.get() | (1 | (u64::from(v) << 1)) << shift);
}

/// A closure predicate's verdict for element `idx` of `list` (`val`), through the event's
/// memo when the body is memoisable and the element an event.
fn predicate<'a>(
    body: &'a Node,
    val: Value<'a>,
    idx: usize,
    ctx: &EvalCtx<'a>,
    fr: Option<&Frame<'_, 'a>>,
) -> R<bool> {
    if let K::Memo(slot, inner) = &body.k {
        let ev = match &val {
            Value::Event(e) => Some(*e),
            _ => None,
        };
        if let Some(b) = ev.and_then(|e| memo_get(e, *slot)) {
            return Ok(b);
        }
        let f = Frame {
            val,
            idx,
            parent: fr,
        };
        let b = eval_bool(inner, ctx, Some(&f))?;
        if let Some(e) = ev {
            memo_set(e, *slot, b);
        }
        return Ok(b);
    }
    let f = Frame {
        val,
        idx,
        parent: fr,
    };
    eval_bool(body, ctx, Some(&f))
}

impl Node {
    pub(crate) fn new(k: K, span: Range<usize>) -> Self {
        Node { k, span }
    }
}

/// One frame: a `let` value or a closure element (with its index in the list).
pub(crate) struct Frame<'f, 'a> {
    val: Value<'a>,
    idx: usize,
    parent: Option<&'f Frame<'f, 'a>>,
}

fn frame_at<'f, 'a>(mut fr: Option<&'f Frame<'f, 'a>>, depth: u32) -> Option<&'f Frame<'f, 'a>> {
    for _ in 0..depth {
        fr = fr?.parent;
    }
    fr
}

/// An evaluation result. The error is boxed: errors are rare, and a small result (a
/// `bool` and a pointer) comes back in registers from every node of every filter.
pub(crate) type R<T> = Result<T, Box<EvalError>>;

fn err<T>(n: &Node, msg: impl Into<String>) -> R<T> {
    Err(Box::new(EvalError {
        span: n.span.clone(),
        message: msg.into(),
    }))
}

fn type_err<T>(n: &Node, want: &str, got: &Value<'_>) -> R<T> {
    err(n, format!("expected {want}, found {}", got.type_of()))
}

fn event<'a>(n: &'a Node, ctx: &EvalCtx<'a>, fr: Option<&Frame<'_, 'a>>) -> R<&'a Event> {
    match eval(n, ctx, fr)? {
        Value::Event(e) => Ok(e),
        v => type_err(n, "an event", &v),
    }
}

fn root_event<'a>(n: &Node, ctx: &EvalCtx<'a>) -> R<&'a Event> {
    match ctx.event {
        Some(e) => Ok(e),
        None => err(n, "no event in this evaluation context"),
    }
}

/// Evaluates to a boolean (fast path for conditions).
///
/// The connectives and the tests of root fields and literals, which are most of what
/// filters run (two dozen calls an nginx line), are handled here, in a function with
/// nothing on its stack; everything else goes to [`eval_bool_other`], whose values and
/// `Cow`s would otherwise make every call pay for a large frame.
pub(crate) fn eval_bool<'a>(n: &'a Node, ctx: &EvalCtx<'a>, fr: Option<&Frame<'_, 'a>>) -> R<bool> {
    match &n.k {
        K::Lit(Lit::Bool(b)) => Ok(*b),
        K::Not(a) => Ok(!eval_bool(a, ctx, fr)?),
        K::And(a, b) => Ok(eval_bool(a, ctx, fr)? && eval_bool(b, ctx, fr)?),
        K::Or(a, b) => Ok(eval_bool(a, ctx, fr)? || eval_bool(b, ctx, fr)?),
        K::Cmp(op @ (Cmp::Eq | Cmp::Ne), a, b) => match (leaf_str(a, ctx), leaf_str(b, ctx)) {
            (Some(x), Some(y)) => Ok((x == y) == (*op == Cmp::Eq)),
            _ => eval_bool_other(n, ctx, fr),
        },
        K::Match(a, m) => match leaf_str(a, ctx) {
            Some(x) => Ok(m.is_match(x)),
            None => eval_bool_other(n, ctx, fr),
        },
        K::StrOp(op, a, b) => match (leaf_str(a, ctx), leaf_str(b, ctx)) {
            (Some(x), Some(y)) => Ok(match op {
                StrOp::Contains => x.contains(y),
                StrOp::StartsWith => x.starts_with(y),
                StrOp::EndsWith => x.ends_with(y),
            }),
            _ => eval_bool_other(n, ctx, fr),
        },
        K::ContainsGate(f, m, inner) => match ctx.event {
            Some(e) if !m.is_match(e.get(*f)) => Ok(false),
            _ => eval_bool(inner, ctx, fr),
        },
        _ => eval_bool_other(n, ctx, fr),
    }
}

/// [`eval_bool`] for the nodes it does not handle itself.
#[inline(never)]
fn eval_bool_other<'a>(n: &'a Node, ctx: &EvalCtx<'a>, fr: Option<&Frame<'_, 'a>>) -> R<bool> {
    match &n.k {
        K::Cmp(op @ (Cmp::Eq | Cmp::Ne), a, b) if is_stringy(a) && is_stringy(b) => {
            Ok((eval_str(a, ctx, fr)? == eval_str(b, ctx, fr)?) == (*op == Cmp::Eq))
        }
        K::Cmp(op, a, b) => {
            let (x, y) = (eval(a, ctx, fr)?, eval(b, ctx, fr)?);
            compare(n, *op, &x, &y)
        }
        K::Match(a, m) => Ok(m.is_match(&eval_str(a, ctx, fr)?)),
        K::StrOp(op, a, b) => {
            let (x, y) = (eval_str(a, ctx, fr)?, eval_str(b, ctx, fr)?);
            Ok(match op {
                StrOp::Contains => x.contains(&*y),
                StrOp::StartsWith => x.starts_with(&*y),
                StrOp::EndsWith => x.ends_with(&*y),
            })
        }
        K::MatchesLit(a, re) => Ok(re.is_match(&eval_str(a, ctx, fr)?)),
        K::RegexpInFile(a, list) => Ok(list.is_match(&eval_str(a, ctx, fr)?)),
        K::IpInNets(a, nets) => {
            let s = eval_str(a, ctx, fr)?;
            Ok(funcs::parse_ip(&s)
                .is_some_and(|ip| nets.iter().any(|n| funcs::net_contains(n, ip))))
        }
        K::Ternary(c, a, b) => {
            if eval_bool(c, ctx, fr)? {
                eval_bool(a, ctx, fr)
            } else {
                eval_bool(b, ctx, fr)
            }
        }
        K::Quant(q @ (Quant::Any | Quant::All | Quant::None | Quant::One), l, body) => {
            quant_bool(n, *q, l, body, ctx, fr)
        }
        _ => match eval(n, ctx, fr)? {
            Value::Bool(b) => Ok(b),
            v => type_err(n, "a boolean", &v),
        },
    }
}

/// The string of a leaf read in place: a field of the root event or a string literal
/// (`None` for anything else, and for a root field with no event, which [`eval_str`]
/// reports). Most filter tests compare such leaves; this spares them a call of
/// [`eval_str`] and its result.
#[inline(always)]
fn leaf_str<'a>(n: &'a Node, ctx: &EvalCtx<'a>) -> Option<&'a str> {
    match &n.k {
        K::EvtField(id) => ctx.event.map(|e| e.get(*id)),
        K::Lit(Lit::Str(s)) => Some(s),
        _ => None,
    }
}

fn is_stringy(n: &Node) -> bool {
    matches!(
        n.k,
        K::Lit(Lit::Str(_)) | K::EvtField(_) | K::EvField(..) | K::EvRaw(_)
    )
}

/// Evaluates to a string, borrowing when possible.
pub(crate) fn eval_str<'a>(
    n: &'a Node,
    ctx: &EvalCtx<'a>,
    fr: Option<&Frame<'_, 'a>>,
) -> R<Cow<'a, str>> {
    match &n.k {
        K::Lit(Lit::Str(s)) => Ok(Cow::Borrowed(s)),
        K::EvtField(id) => Ok(Cow::Borrowed(root_event(n, ctx)?.get(*id))),
        K::EvField(e, id) => Ok(Cow::Borrowed(event(e, ctx, fr)?.get(*id))),
        _ => match eval(n, ctx, fr)? {
            Value::Str(s) => Ok(s),
            v => type_err(n, "a string", &v),
        },
    }
}

/// Appends `n`'s value as a string to `out` (see [`super::Program::eval_string_into`]):
/// string chains, ternaries, string leaves and integers are written in place, without a
/// [`Value`] or a formatter; anything else goes through [`eval`]. `Ok(false)` for `nil`.
pub(crate) fn string_into<'a>(n: &'a Node, ctx: &EvalCtx<'a>, out: &mut String) -> R<bool> {
    match &n.k {
        K::Concat(parts) => {
            concat_into(parts, ctx, None, out)?;
            Ok(true)
        }
        K::Ternary(c, a, b) => string_into(if eval_bool(c, ctx, None)? { a } else { b }, ctx, out),
        K::Lit(Lit::Str(_)) | K::EvtField(_) => {
            match leaf_str(n, ctx) {
                Some(s) => out.push_str(s),
                None => out.push_str(&eval_str(n, ctx, None)?),
            }
            Ok(true)
        }
        _ => match eval(n, ctx, None)? {
            Value::Nil => Ok(false),
            Value::Str(s) => {
                out.push_str(&s);
                Ok(true)
            }
            Value::Int(i) => {
                push_int(out, i);
                Ok(true)
            }
            v => {
                out.push_str(&funcs::go_sprint(&v));
                Ok(true)
            }
        },
    }
}

/// Appends `i` in decimal (as `{i}` formats it).
pub(crate) fn push_int(out: &mut String, i: i64) {
    if i < 0 {
        out.push('-');
    }
    out.push_str(crate::decimal(i.unsigned_abs(), &mut [0; 20]));
}

/// Appends the string operands of a [`K::Concat`] to `out` (the checker flattens chains,
/// so no operand is itself a chain).
pub(crate) fn concat_into<'a>(
    parts: &'a [Node],
    ctx: &EvalCtx<'a>,
    fr: Option<&Frame<'_, 'a>>,
    out: &mut String,
) -> R<()> {
    for p in parts {
        match leaf_str(p, ctx) {
            Some(s) => out.push_str(s),
            None => out.push_str(&eval_str(p, ctx, fr)?),
        }
    }
    Ok(())
}

fn eval_int<'a>(n: &'a Node, ctx: &EvalCtx<'a>, fr: Option<&Frame<'_, 'a>>) -> R<i64> {
    match eval(n, ctx, fr)? {
        Value::Int(i) => Ok(i),
        v => type_err(n, "an integer", &v),
    }
}

fn eval_list<'a>(n: &'a Node, ctx: &EvalCtx<'a>, fr: Option<&Frame<'_, 'a>>) -> R<List<'a>> {
    match eval(n, ctx, fr)? {
        Value::List(l) => Ok(l),
        Value::Nil => Ok(List::Strs(&[])),
        v => type_err(n, "a list", &v),
    }
}

fn quant_bool<'a>(
    n: &'a Node,
    q: Quant,
    l: &'a Node,
    body: &'a Node,
    ctx: &EvalCtx<'a>,
    fr: Option<&Frame<'_, 'a>>,
) -> R<bool> {
    let list = eval_list(l, ctx, fr)?;
    let mut count = 0usize;
    for idx in 0..list.len() {
        let Some(val) = list.get(idx) else { break };
        let b = predicate(body, val, idx, ctx, fr)?;
        match (q, b) {
            (Quant::Any, true) => return Ok(true),
            (Quant::All, false) | (Quant::None, true) => return Ok(false),
            (Quant::One, true) => {
                count += 1;
                if count > 1 {
                    return Ok(false);
                }
            }
            _ => {}
        }
    }
    Ok(match q {
        Quant::Any => false,
        Quant::All | Quant::None => true,
        Quant::One => count == 1,
        _ => return err(n, "not a boolean builtin"),
    })
}

/// Evaluates any node.
pub(crate) fn eval<'a>(n: &'a Node, ctx: &EvalCtx<'a>, fr: Option<&Frame<'_, 'a>>) -> R<Value<'a>> {
    Ok(match &n.k {
        K::Lit(l) => l.value(),
        K::Concat(parts) => {
            let mut s = String::new();
            concat_into(parts, ctx, fr, &mut s)?;
            Value::Str(Cow::Owned(s))
        }
        K::ListLit(items) => {
            let mut v = Vec::with_capacity(items.len());
            for i in items {
                v.push(eval(i, ctx, fr)?);
            }
            Value::List(List::Values(Rc::new(v)))
        }
        K::Data(d) => Value::List(List::Strs(d)),
        K::Evt => Value::Event(root_event(n, ctx)?),
        K::EvtField(_) | K::EvField(..) => Value::Str(eval_str(n, ctx, fr)?),
        K::EvRaw(e) => Value::Str(Cow::Borrowed(&event(e, ctx, fr)?.line)),
        K::EvTime(e) => Value::Time(event(e, ctx, fr)?.time),
        K::EvWhitelisted(e) => Value::Bool(event(e, ctx, fr)?.whitelisted),
        K::SetMeta(id, v) => {
            let s = match eval(v, ctx, fr)? {
                Value::Str(s) => s.into_owned(),
                Value::Nil => String::new(),
                other => go_sprint(&other),
            };
            push_write(&ctx.writes, *id, s);
            Value::Bool(true)
        }
        K::Alert => match ctx.alert {
            Some(a) => Value::Alert(a),
            None => return err(n, "no alert in this evaluation context"),
        },
        K::AlertProp(a, p) => {
            let Value::Alert(al) = eval(a, ctx, fr)? else {
                return err(n, "expected an alert");
            };
            match p {
                AlertProp::Remediation => Value::Bool(al.remediation),
                AlertProp::Scenario => Value::Str(Cow::Borrowed(&al.scenario)),
                AlertProp::Scope => Value::Str(Cow::Borrowed(al.scope.as_str())),
                AlertProp::Value => Value::Str(Cow::Borrowed(&al.value)),
                AlertProp::EventsCount => {
                    Value::Int(i64::try_from(al.events_count).unwrap_or(i64::MAX))
                }
                AlertProp::Events => Value::List(List::Events(al.events.as_slice())),
                AlertProp::Message => Value::Str(al.message()),
            }
        }
        K::AlertMeta(a, id) => {
            let Value::Alert(al) = eval(a, ctx, fr)? else {
                return err(n, "expected an alert");
            };
            Value::Str(Cow::Borrowed(al.events.first_value(*id)))
        }
        K::Queue => match ctx.queue {
            Some(_) => Value::Nil,
            None => return err(n, "no queue in this evaluation context"),
        },
        K::QueueList => match ctx.queue {
            Some(q) => Value::List(List::Events(q)),
            None => return err(n, "no queue in this evaluation context"),
        },
        K::Var(d) | K::Elem(d) => match frame_at(fr, *d) {
            Some(f) => f.val.clone(),
            None => return err(n, "variable out of scope"),
        },
        K::Column(d, col) => match frame_at(fr, *d).and_then(|f| col.get(f.idx)) {
            Some(l) => l.value(),
            None => return err(n, "element out of scope"),
        },
        K::Index(obj, idx) => index(n, eval(obj, ctx, fr)?, eval(idx, ctx, fr)?)?,
        K::Slice(obj, from, to) => {
            let v = eval(obj, ctx, fr)?;
            let from = match from {
                Some(f) => Some(eval_int(f, ctx, fr)?),
                None => None,
            };
            let to = match to {
                Some(t) => Some(eval_int(t, ctx, fr)?),
                None => None,
            };
            slice(n, v, from, to)?
        }
        K::Not(_)
        | K::And(..)
        | K::Or(..)
        | K::Cmp(..)
        | K::Match(..)
        | K::StrOp(..)
        | K::MatchesLit(..)
        | K::RegexpInFile(..)
        | K::IpInNets(..) => Value::Bool(eval_bool(n, ctx, fr)?),
        K::Neg(a) => match eval(a, ctx, fr)? {
            Value::Int(i) => Value::Int(i.wrapping_neg()),
            Value::Float(f) => Value::Float(-f),
            Value::Duration(d) => Value::Duration(d.checked_neg().unwrap_or(SignedDuration::MAX)),
            v => return type_err(n, "a number", &v),
        },
        K::Arith(op, a, b) => arith(n, *op, eval(a, ctx, fr)?, eval(b, ctx, fr)?)?,
        K::Range(a, b) => {
            let (x, y) = (eval_int(a, ctx, fr)?, eval_int(b, ctx, fr)?);
            if y.saturating_sub(x) > 1_000_000 {
                return err(n, "range too large");
            }
            Value::List(List::Values(Rc::new((x..=y).map(Value::Int).collect())))
        }
        K::In(a, b) => {
            let x = eval(a, ctx, fr)?;
            let l = eval_list(b, ctx, fr)?;
            let mut found = false;
            for i in 0..l.len() {
                if let Some(y) = l.get(i)
                    && values_eq(&x, &y)
                {
                    found = true;
                    break;
                }
            }
            Value::Bool(found)
        }
        K::Matches(a, b) => {
            let s = eval_str(a, ctx, fr)?;
            let p = eval_str(b, ctx, fr)?;
            Value::Bool(dynamic_regex_match(n, &p, &s)?)
        }
        K::Ternary(c, a, b) => {
            if eval_bool(c, ctx, fr)? {
                eval(a, ctx, fr)?
            } else {
                eval(b, ctx, fr)?
            }
        }
        K::Coalesce(a, b) => match eval(a, ctx, fr) {
            Ok(Value::Nil) | Err(_) => eval(b, ctx, fr)?,
            Ok(v) => v,
        },
        K::Let(v, body) => {
            let f = Frame {
                val: eval(v, ctx, fr)?,
                idx: 0,
                parent: fr,
            };
            eval(body, ctx, Some(&f))?
        }
        K::Quant(q, l, body) => match q {
            Quant::Any | Quant::All | Quant::None | Quant::One => {
                Value::Bool(quant_bool(n, *q, l, body, ctx, fr)?)
            }
            _ => quant_collect(*q, l, body, ctx, fr)?,
        },
        K::Call(f, args) => call(n, *f, args, ctx, fr)?,
        K::Memo(_, inner) => eval(inner, ctx, fr)?,
        K::ContainsGate(..) => Value::Bool(eval_bool(n, ctx, fr)?),
        K::QueueFilter(list, body) => match (ctx.queue_prefiltered, ctx.queue) {
            (true, Some(q)) => Value::List(List::Events(q)),
            _ => quant_collect(Quant::Filter, list, body, ctx, fr)?,
        },
    })
}

fn push_write(w: &RefCell<Vec<(FieldId, String)>>, id: FieldId, s: String) {
    if let Ok(mut w) = w.try_borrow_mut() {
        w.push((id, s));
    }
}

fn quant_collect<'a>(
    q: Quant,
    l: &'a Node,
    body: &'a Node,
    ctx: &EvalCtx<'a>,
    fr: Option<&Frame<'_, 'a>>,
) -> R<Value<'a>> {
    let list = eval_list(l, ctx, fr)?;
    // A conditional bucket filters its queue with a memoised predicate at every pour
    // (`filter(queue.Queue, {#.Meta.log_type == 'x'})`): a tight loop over the events'
    // memo bits, evaluating only events not seen before.
    if let (Quant::Filter, K::Memo(slot, inner), List::Events(events)) = (q, &body.k, &list) {
        let mut out = Vec::with_capacity(events.len());
        for (idx, e) in events.iter().enumerate() {
            let keep = match memo_get(e, *slot) {
                Some(b) => b,
                None => {
                    let f = Frame {
                        val: Value::Event(e),
                        idx,
                        parent: fr,
                    };
                    let b = eval_bool(inner, ctx, Some(&f))?;
                    memo_set(e, *slot, b);
                    b
                }
            };
            if keep {
                out.push(Value::Event(e));
            }
        }
        return Ok(Value::List(List::Values(Rc::new(out))));
    }
    // One allocation: a filter keeps at most every element.
    let mut out = Vec::with_capacity(if matches!(q, Quant::Map | Quant::Filter) {
        list.len()
    } else {
        0
    });
    let mut count = 0i64;
    for idx in 0..list.len() {
        let Some(val) = list.get(idx) else { break };
        if q == Quant::Map {
            let f = Frame {
                val,
                idx,
                parent: fr,
            };
            out.push(eval(body, ctx, Some(&f))?);
            continue;
        }
        if !predicate(body, val.clone(), idx, ctx, fr)? {
            continue;
        }
        match q {
            Quant::Filter => out.push(val),
            Quant::Count => count += 1,
            Quant::Find => return Ok(val),
            Quant::FindIndex => return Ok(Value::Int(idx as i64)),
            _ => {}
        }
    }
    Ok(match q {
        Quant::Count => Value::Int(count),
        Quant::Find => Value::Nil,
        Quant::FindIndex => Value::Int(-1),
        _ => Value::List(List::Values(Rc::new(out))),
    })
}

thread_local! {
    static REGEX_CACHE: RefCell<Vec<(String, Option<regex::Regex>)>> = const { RefCell::new(Vec::new()) };
}

/// `x matches p` with a computed pattern: compiled through a small per-thread cache.
fn dynamic_regex_match(n: &Node, pattern: &str, s: &str) -> R<bool> {
    const CAP: usize = 32;
    let res = REGEX_CACHE.with(|c| {
        let mut c = c.try_borrow_mut().ok()?;
        if let Some(pos) = c.iter().position(|(p, _)| p == pattern) {
            let hit = c.remove(pos);
            let r = hit.1.as_ref().map(|re| re.is_match(s));
            c.push(hit);
            return Some(r);
        }
        let re = regex::RegexBuilder::new(pattern)
            .size_limit(1 << 20)
            .build()
            .ok();
        let r = re.as_ref().map(|re| re.is_match(s));
        if c.len() >= CAP {
            c.remove(0);
        }
        c.push((pattern.to_owned(), re));
        Some(r)
    });
    match res {
        Some(Some(b)) => Ok(b),
        Some(None) => err(n, format!("invalid regular expression {pattern:?}")),
        None => {
            let re = regex::Regex::new(pattern);
            match re {
                Ok(re) => Ok(re.is_match(s)),
                Err(_) => err(n, format!("invalid regular expression {pattern:?}")),
            }
        }
    }
}

fn norm_index(i: i64, len: usize) -> Option<usize> {
    let len = i64::try_from(len).ok()?;
    let j = if i < 0 { i.checked_add(len)? } else { i };
    (0..len).contains(&j).then_some(j as usize)
}

pub(crate) fn clamp_bound(i: i64, len: usize) -> usize {
    let l = i64::try_from(len).unwrap_or(i64::MAX);
    let j = if i < 0 { i.saturating_add(l) } else { i };
    j.clamp(0, l) as usize
}

fn index<'a>(n: &Node, v: Value<'a>, i: Value<'a>) -> R<Value<'a>> {
    let Value::Int(i) = i else {
        return type_err(n, "an integer index", &i);
    };
    match v {
        Value::List(l) => match norm_index(i, l.len()).and_then(|j| l.get(j)) {
            Some(v) => Ok(v),
            None => err(n, format!("index {i} out of range (length {})", l.len())),
        },
        Value::Str(s) => match norm_index(i, s.len()) {
            Some(j) => match s.get(j..).and_then(|r| r.chars().next()) {
                Some(c) => Ok(Value::Str(Cow::Owned(c.to_string()))),
                None => err(n, "index is not on a character boundary"),
            },
            None => err(n, format!("index {i} out of range (length {})", s.len())),
        },
        Value::Nil => Ok(Value::Nil),
        other => type_err(n, "a list or string", &other),
    }
}

fn slice<'a>(n: &Node, v: Value<'a>, from: Option<i64>, to: Option<i64>) -> R<Value<'a>> {
    match v {
        Value::List(l) => {
            let len = l.len();
            let a = from.map_or(0, |f| clamp_bound(f, len));
            let b = to.map_or(len, |t| clamp_bound(t, len));
            Ok(Value::List(l.slice(a, b.max(a))))
        }
        Value::Str(s) => {
            let len = s.len();
            let a = from.map_or(0, |f| clamp_bound(f, len));
            let b = to.map_or(len, |t| clamp_bound(t, len)).max(a);
            let sub = match &s {
                Cow::Borrowed(b0) => b0.get(a..b).map(Cow::Borrowed),
                Cow::Owned(o) => o.get(a..b).map(|x| Cow::Owned(x.to_owned())),
            };
            match sub {
                Some(x) => Ok(Value::Str(x)),
                None => err(n, "slice bounds are not on character boundaries"),
            }
        }
        Value::Nil => Ok(Value::Nil),
        other => type_err(n, "a list or string", &other),
    }
}

/// Equality with numeric promotion; values of different types are unequal.
pub(crate) fn values_eq(a: &Value<'_>, b: &Value<'_>) -> bool {
    match (a, b) {
        (Value::Nil, Value::Nil) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Int(x), Value::Float(y)) | (Value::Float(y), Value::Int(x)) => (*x as f64) == *y,
        (Value::Float(x), Value::Float(y)) => x == y,
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::Duration(x), Value::Duration(y)) => x == y,
        (Value::Time(x), Value::Time(y)) => x == y,
        (Value::Event(x), Value::Event(y)) => std::ptr::eq(*x, *y),
        (Value::Alert(x), Value::Alert(y)) => std::ptr::eq(*x, *y),
        (Value::List(x), Value::List(y)) => {
            x.len() == y.len()
                && (0..x.len()).all(|i| match (x.get(i), y.get(i)) {
                    (Some(p), Some(q)) => values_eq(&p, &q),
                    _ => false,
                })
        }
        _ => false,
    }
}

fn order(a: &Value<'_>, b: &Value<'_>) -> Option<Ordering> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::Int(x), Value::Float(y)) => (*x as f64).partial_cmp(y),
        (Value::Float(x), Value::Int(y)) => x.partial_cmp(&(*y as f64)),
        (Value::Float(x), Value::Float(y)) => x.partial_cmp(y),
        (Value::Str(x), Value::Str(y)) => Some(x.cmp(y)),
        (Value::Duration(x), Value::Duration(y)) => Some(x.cmp(y)),
        (Value::Time(x), Value::Time(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn compare(n: &Node, op: Cmp, x: &Value<'_>, y: &Value<'_>) -> R<bool> {
    match op {
        Cmp::Eq => Ok(values_eq(x, y)),
        Cmp::Ne => Ok(!values_eq(x, y)),
        _ => {
            let Some(o) = order(x, y) else {
                // NaN compares false; other mismatches are errors.
                if matches!((x, y), (Value::Float(_), _) | (_, Value::Float(_))) {
                    return Ok(false);
                }
                return err(
                    n,
                    format!("cannot compare {} with {}", x.type_of(), y.type_of()),
                );
            };
            Ok(match op {
                Cmp::Lt => o == Ordering::Less,
                Cmp::Le => o != Ordering::Greater,
                Cmp::Gt => o == Ordering::Greater,
                _ => o != Ordering::Less,
            })
        }
    }
}

fn arith<'a>(n: &Node, op: Arith, x: Value<'a>, y: Value<'a>) -> R<Value<'a>> {
    use Value as V;
    let float = |a: f64, b: f64| -> V<'a> {
        V::Float(match op {
            Arith::Add => a + b,
            Arith::Sub => a - b,
            Arith::Mul => a * b,
            Arith::Div => a / b,
            Arith::Mod => a % b,
            Arith::Pow => a.powf(b),
        })
    };
    Ok(match (op, x, y) {
        (Arith::Div, V::Int(a), V::Int(b)) => V::Float(a as f64 / b as f64),
        (Arith::Pow, V::Int(a), V::Int(b)) => V::Float((a as f64).powf(b as f64)),
        (Arith::Mod, V::Int(_), V::Int(0)) => return err(n, "integer divide by zero"),
        (_, V::Int(a), V::Int(b)) => V::Int(match op {
            Arith::Add => a.wrapping_add(b),
            Arith::Sub => a.wrapping_sub(b),
            Arith::Mul => a.wrapping_mul(b),
            _ => a.wrapping_rem(b),
        }),
        (_, V::Int(a), V::Float(b)) => float(a as f64, b),
        (_, V::Float(a), V::Int(b)) => float(a, b as f64),
        (_, V::Float(a), V::Float(b)) => float(a, b),
        (Arith::Add, V::Str(a), V::Str(b)) => {
            let mut s = String::with_capacity(a.len() + b.len());
            s.push_str(&a);
            s.push_str(&b);
            V::Str(Cow::Owned(s))
        }
        (Arith::Add, V::Time(t), V::Duration(d)) | (Arith::Add, V::Duration(d), V::Time(t)) => {
            match t.checked_add(d) {
                Ok(t) => V::Time(t),
                Err(_) => return err(n, "time out of range"),
            }
        }
        (Arith::Sub, V::Time(t), V::Duration(d)) => match t.checked_sub(d) {
            Ok(t) => V::Time(t),
            Err(_) => return err(n, "time out of range"),
        },
        (Arith::Sub, V::Time(a), V::Time(b)) => V::Duration(a.duration_since(b)),
        (Arith::Add, V::Duration(a), V::Duration(b)) => {
            V::Duration(a.checked_add(b).unwrap_or(SignedDuration::MAX))
        }
        (Arith::Sub, V::Duration(a), V::Duration(b)) => {
            V::Duration(a.checked_sub(b).unwrap_or(SignedDuration::MIN))
        }
        (Arith::Mul, V::Duration(d), V::Int(k)) | (Arith::Mul, V::Int(k), V::Duration(d)) => {
            V::Duration(
                i32::try_from(k)
                    .ok()
                    .and_then(|k| d.checked_mul(k))
                    .unwrap_or(SignedDuration::MAX),
            )
        }
        (_, x, y) => {
            return err(
                n,
                format!(
                    "operator {op:?} is not defined on {} and {}",
                    x.type_of(),
                    y.type_of()
                ),
            );
        }
    })
}

fn str_arg<'a>(
    args: &'a [Node],
    i: usize,
    ctx: &EvalCtx<'a>,
    fr: Option<&Frame<'_, 'a>>,
) -> R<Cow<'a, str>> {
    match args.get(i) {
        Some(a) => eval_str(a, ctx, fr),
        None => Err(Box::new(EvalError {
            span: 0..0,
            message: "missing argument".to_owned(),
        })),
    }
}

fn arg<'a>(
    n: &Node,
    args: &'a [Node],
    i: usize,
    ctx: &EvalCtx<'a>,
    fr: Option<&Frame<'_, 'a>>,
) -> R<Value<'a>> {
    match args.get(i) {
        Some(a) => eval(a, ctx, fr),
        None => err(n, "missing argument"),
    }
}

fn owned<'a>(s: String) -> Value<'a> {
    Value::Str(Cow::Owned(s))
}

fn map_cow<'a>(s: Cow<'a, str>, f: impl FnOnce(&str) -> &str) -> Cow<'a, str> {
    match s {
        Cow::Borrowed(b) => Cow::Borrowed(f(b)),
        Cow::Owned(o) => Cow::Owned(f(&o).to_owned()),
    }
}

fn call<'a>(
    n: &'a Node,
    f: Func,
    args: &'a [Node],
    ctx: &EvalCtx<'a>,
    fr: Option<&Frame<'_, 'a>>,
) -> R<Value<'a>> {
    let s = |i: usize| str_arg(args, i, ctx, fr);
    Ok(match f {
        Func::Upper => owned(go_upper(&s(0)?)),
        Func::Lower => owned(go_lower(&s(0)?)),
        Func::Len => match arg(n, args, 0, ctx, fr)? {
            Value::Str(x) => Value::Int(x.len() as i64),
            Value::List(l) => Value::Int(l.len() as i64),
            Value::Nil => Value::Int(0),
            v => return type_err(n, "a string or list", &v),
        },
        Func::IpInRange => Value::Bool(funcs::ip_in_range(&s(0)?, &s(1)?)),
        Func::IsIpv4 => Value::Bool(s(0)?.parse::<std::net::Ipv4Addr>().is_ok()),
        Func::IsIpv6 => Value::Bool(
            s(0)?
                .parse::<std::net::Ipv6Addr>()
                .is_ok_and(|v6| v6.to_ipv4_mapped().is_none()),
        ),
        Func::IsIp => Value::Bool(funcs::parse_ip(&s(0)?).is_some()),
        Func::IpToRange => owned(funcs::ip_to_range(&s(0)?, &s(1)?)),
        Func::JsonExtract => owned(funcs::json_extract(&s(0)?, &s(1)?)),
        Func::Atof => Value::Float(funcs::atof(&s(0)?)),
        Func::ToString => match arg(n, args, 0, ctx, fr)? {
            Value::Str(x) => Value::Str(x),
            v => owned(go_sprint(&v)),
        },
        Func::Split => {
            let parts = funcs::go_split(&s(0)?, &s(1)?);
            Value::List(List::Values(Rc::new(
                parts.into_iter().map(owned).collect(),
            )))
        }
        Func::Join => {
            let l = match arg(n, args, 0, ctx, fr)? {
                Value::List(l) => l,
                v => return type_err(n, "a list", &v),
            };
            let sep = s(1)?;
            let mut out = String::new();
            for i in 0..l.len() {
                if i > 0 {
                    out.push_str(&sep);
                }
                match l.get(i) {
                    Some(Value::Str(x)) => out.push_str(&x),
                    Some(v) => out.push_str(&go_sprint(&v)),
                    None => {}
                }
            }
            owned(out)
        }
        Func::Trim => {
            if args.len() > 1 {
                let set = s(1)?;
                Value::Str(map_cow(s(0)?, |x| funcs::trim_set(x, &set, true, true)))
            } else {
                Value::Str(map_cow(s(0)?, str::trim))
            }
        }
        Func::TrimSpace => Value::Str(map_cow(s(0)?, str::trim)),
        Func::TrimLeft => {
            let set = s(1)?;
            Value::Str(map_cow(s(0)?, |x| funcs::trim_set(x, &set, true, false)))
        }
        Func::TrimRight => {
            let set = s(1)?;
            Value::Str(map_cow(s(0)?, |x| funcs::trim_set(x, &set, false, true)))
        }
        Func::TrimPrefix => {
            let p = s(1)?;
            Value::Str(map_cow(s(0)?, |x| x.strip_prefix(&*p).unwrap_or(x)))
        }
        Func::TrimSuffix => {
            let p = s(1)?;
            Value::Str(map_cow(s(0)?, |x| x.strip_suffix(&*p).unwrap_or(x)))
        }
        Func::Replace => {
            let (x, old, new) = (s(0)?, s(1)?, s(2)?);
            let count = match args.get(3) {
                Some(a) => eval_int(a, ctx, fr)?,
                None => -1,
            };
            if count < 0 {
                owned(x.replace(&*old, &new))
            } else {
                owned(x.replacen(&*old, &new, usize::try_from(count).unwrap_or(usize::MAX)))
            }
        }
        Func::ReplaceAll => {
            let (x, old, new) = (s(0)?, s(1)?, s(2)?);
            owned(x.replace(&*old, &new))
        }
        Func::Duration => match funcs::parse_go_duration(&s(0)?) {
            Some(d) => Value::Duration(d),
            None => return err(n, format!("invalid duration {:?}", s(0)?)),
        },
        Func::MedianInterval => {
            let l = match arg(n, args, 0, ctx, fr)? {
                Value::List(l) => l,
                v => return type_err(n, "a list of times", &v),
            };
            match funcs::median_interval_of(&l) {
                Some(d) => Value::Duration(d),
                None => return err(n, "MedianInterval expects a list of times"),
            }
        }
        Func::GetDecisionsCount => {
            let v = s(0)?;
            Value::Int(ctx.decisions.map_or(0, |d| d.decisions_count(&v)))
        }
        Func::GetActiveDecisionsCount => {
            let v = s(0)?;
            Value::Int(ctx.decisions.map_or(0, |d| d.active_decisions_count(&v)))
        }
        Func::Sprintf => {
            let fmt = s(0)?;
            let mut vals = Vec::with_capacity(args.len().saturating_sub(1));
            for a in args.iter().skip(1) {
                vals.push(eval(a, ctx, fr)?);
            }
            owned(funcs::sprintf(&fmt, &vals))
        }
        Func::ParseUnix => owned(funcs::parse_unix(&s(0)?)),
        Func::TimeNow => owned(funcs::rfc3339(Timestamp::now())),
        Func::Now => Value::Time(Timestamp::now()),
        Func::Date => match s(0)?.parse::<Timestamp>() {
            Ok(t) => Value::Time(t),
            Err(e) => return err(n, format!("invalid date: {e}")),
        },
        Func::Int => match arg(n, args, 0, ctx, fr)? {
            Value::Int(i) => Value::Int(i),
            Value::Float(f) if f.is_finite() => Value::Int(f as i64),
            Value::Str(x) => match x.trim().parse::<i64>() {
                Ok(i) => Value::Int(i),
                Err(_) => return err(n, format!("invalid integer {x:?}")),
            },
            Value::Duration(d) => Value::Int(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
            v => return type_err(n, "a number or string", &v),
        },
        Func::Float => match arg(n, args, 0, ctx, fr)? {
            Value::Int(i) => Value::Float(i as f64),
            Value::Float(f) => Value::Float(f),
            Value::Str(x) => match x.trim().parse::<f64>() {
                Ok(f) => Value::Float(f),
                Err(_) => return err(n, format!("invalid number {x:?}")),
            },
            v => return type_err(n, "a number or string", &v),
        },
        Func::IndexOf => Value::Int(s(0)?.find(&*s(1)?).map_or(-1, |i| i as i64)),
        Func::LastIndexOf => Value::Int(s(0)?.rfind(&*s(1)?).map_or(-1, |i| i as i64)),
        Func::HasPrefix => Value::Bool(s(0)?.starts_with(&*s(1)?)),
        Func::HasSuffix => Value::Bool(s(0)?.ends_with(&*s(1)?)),
        Func::Abs => match arg(n, args, 0, ctx, fr)? {
            Value::Int(i) => Value::Int(i.wrapping_abs()),
            Value::Float(f) => Value::Float(f.abs()),
            v => return type_err(n, "a number", &v),
        },
        Func::First | Func::Last => match arg(n, args, 0, ctx, fr)? {
            Value::List(l) if l.is_empty() => Value::Nil,
            Value::List(l) => {
                let i = if f == Func::First { 0 } else { l.len() - 1 };
                l.get(i).unwrap_or(Value::Nil)
            }
            Value::Nil => Value::Nil,
            v => return type_err(n, "a list", &v),
        },
        Func::PathUnescape => match funcs::unescape(&s(0)?, false) {
            Some(x) => owned(x),
            None => return err(n, "invalid percent-encoding"),
        },
        Func::QueryUnescape => match funcs::unescape(&s(0)?, true) {
            Some(x) => owned(x),
            None => return err(n, "invalid percent-encoding"),
        },
    })
}

/// Evaluates a pure node with only constants (and optionally one frame); used for folding.
pub(crate) fn fold_with_elem(
    node: &Node,
    data: &crate::data::DataLists,
    elem: Option<(&str, usize)>,
) -> Option<Lit> {
    let ctx = EvalCtx::new(data);
    let v = match elem {
        Some((s, idx)) => {
            let f = Frame {
                val: Value::Str(Cow::Borrowed(s)),
                idx,
                parent: None,
            };
            eval(node, &ctx, Some(&f)).ok()?
        }
        None => eval(node, &ctx, None).ok()?,
    };
    Lit::from_value(&v)
}
