//! The filter expression language: a statically typed, expr-lang compatible subset.
//!
//! Hub rules (CrowdSec scenarios, parsers and profiles) carry [expr-lang] expressions such as
//! `evt.Meta.log_type == 'ssh_failed-auth'` or
//! `any(File('sqli_probe_patterns.txt'), {Upper(evt.Parsed.http_args) contains Upper(#)})`.
//! [`compile`] parses one such expression once, checks it against the [`FieldRegistry`] and
//! the loaded [`DataLists`], and lowers it to a tree with resolved slots: field reads are
//! [`FieldId`] lookups, list membership tests are prebuilt sets, automata or tries, and literal
//! regexes are compiled up front. [`Program::eval`] then runs it per event without string
//! lookups; a typical filter evaluates without allocating.
//!
//! Static checking rejects, with a span into the source and a hint where one helps: unknown
//! fields (`evt.Meta.nope`), functions and data lists (each with the closest known name),
//! wrong arity, comparisons between strings and numbers, roots not in scope (`Alert` in a
//! scenario filter) and filters that do not return the expected type.
//!
//! Run-time failures (a type surprise on a dynamically typed value, an invalid regex built
//! at run time, an out-of-range index) are reported by [`Program::eval`] as [`EvalError`]; the
//! convenience [`Program::eval_bool`] maps them to `false`, as CrowdSec does for filters.
//!
//! `matches` with a literal pattern compiles the regex at compile time (an invalid one is a
//! compile error); with a computed pattern, the regex is compiled at run time through a small
//! per-thread cache (an invalid one is a run-time error, so the filter is false).
//!
//! [expr-lang]: https://expr-lang.org

mod check;
mod eval;
mod funcs;
mod lexer;
mod matcher;
mod memo;
mod parser;
mod queue_condition;
#[cfg(test)]
mod tests;

use crate::alert::Alert;
use crate::data::DataLists;
use crate::event::{Event, FieldId, FieldRegistry, Timestamp};
pub(crate) use eval::FieldLogic;
pub(crate) use memo::{MemoText, ValueMemo, VerdictMemo};
use queue_condition::QueueCondition;
use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;

pub use jiff::SignedDuration;

/// The static type of an expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Type {
    /// Unknown until run time (checked dynamically).
    Any,
    /// The type of `nil`.
    Nil,
    /// `true` / `false`.
    Bool,
    /// A 64-bit signed integer.
    Int,
    /// A 64-bit float.
    Float,
    /// A string (every event field is one).
    Str,
    /// A signed duration (`duration("10m")`).
    Duration,
    /// An instant (`evt.Time`).
    Time,
    /// A list of values of one type.
    List(Box<Type>),
    /// An event (`evt`, elements of `queue.Queue`).
    Event,
    /// An alert (`Alert` in profiles).
    Alert,
    /// A queue of events (`queue`; its `Queue` member is the list).
    Queue,
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::Any => f.write_str("any"),
            Type::Nil => f.write_str("nil"),
            Type::Bool => f.write_str("bool"),
            Type::Int => f.write_str("int"),
            Type::Float => f.write_str("float"),
            Type::Str => f.write_str("string"),
            Type::Duration => f.write_str("duration"),
            Type::Time => f.write_str("time"),
            Type::List(t) => write!(f, "list of {t}"),
            Type::Event => f.write_str("event"),
            Type::Alert => f.write_str("alert"),
            Type::Queue => f.write_str("queue"),
        }
    }
}

/// Which root variables an expression may use (a small bit set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Roots(u8);

impl Roots {
    /// No root at all (constant expressions only).
    pub const NONE: Roots = Roots(0);
    /// `evt`: the event being parsed or poured.
    pub const EVT: Roots = Roots(1);
    /// `Alert`: the alert a profile looks at.
    pub const ALERT: Roots = Roots(2);
    /// `queue`: the bucket's queue (`queue.Queue`), for conditions.
    pub const QUEUE: Roots = Roots(4);

    /// True when every root of `other` is in `self`.
    pub fn contains(self, other: Roots) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for Roots {
    type Output = Roots;
    fn bitor(self, rhs: Roots) -> Roots {
        Roots(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for Roots {
    fn bitor_assign(&mut self, rhs: Roots) {
        self.0 |= rhs.0;
    }
}

/// What an expression is compiled against.
pub struct CompileEnv<'a> {
    /// Known fields; `evt.SetMeta("k", ..)` interns `Meta.k`.
    pub fields: &'a mut FieldRegistry,
    /// Loaded data lists (`File`, `RegexpInFile`); their contents are copied into the program.
    pub data: &'a DataLists,
    /// Root variables in scope.
    pub roots: Roots,
}

/// A compile error: a byte range of the source text, a message and an optional hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    /// Byte offsets into the source text.
    pub span: Range<usize>,
    /// What is wrong.
    pub message: String,
    /// How to fix it (e.g. "did you mean `source_ip`?").
    pub hint: Option<String>,
}

impl ExprError {
    /// An error without a hint.
    pub fn new(span: Range<usize>, message: impl Into<String>) -> Self {
        ExprError {
            span,
            message: message.into(),
            hint: None,
        }
    }

    /// Adds a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (at {}..{})",
            self.message, self.span.start, self.span.end
        )?;
        if let Some(h) = &self.hint {
            write!(f, "; hint: {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ExprError {}

/// A run-time error: what failed and where in the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError {
    /// Byte offsets into the source text of the failing sub-expression.
    pub span: Range<usize>,
    /// What went wrong.
    pub message: String,
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (at {}..{})",
            self.message, self.span.start, self.span.end
        )
    }
}

impl std::error::Error for EvalError {}

/// Answers `GetDecisionsCount(value)` and friends from the decision store.
pub trait DecisionHistory {
    /// How many decisions (active or expired) were ever taken for `value`.
    fn decisions_count(&self, value: &str) -> i64;

    /// How many decisions are active for `value` (defaults to [`Self::decisions_count`]).
    fn active_decisions_count(&self, value: &str) -> i64 {
        self.decisions_count(value)
    }
}

/// Everything an evaluation can see.
pub struct EvalCtx<'a> {
    /// `evt`, when in scope.
    pub event: Option<&'a Event>,
    /// `Alert`, when in scope.
    pub alert: Option<&'a Alert>,
    /// `queue.Queue`, when in scope.
    pub queue: Option<&'a [Event]>,
    /// The data lists (kept for callers; programs carry what they need).
    pub data: &'a DataLists,
    /// Answers `GetDecisionsCount`; `None` means every count is 0.
    pub decisions: Option<&'a dyn DecisionHistory>,
    /// `evt.SetMeta` writes, buffered for the caller to apply after evaluation.
    pub writes: RefCell<Vec<(FieldId, String)>>,
    /// `queue` holds only the events the program's queue filter admits
    /// ([`Program::queue_filter_admits`]), so that filter returns it as it is.
    pub queue_prefiltered: bool,
}

impl<'a> EvalCtx<'a> {
    /// A context with nothing in scope.
    pub fn new(data: &'a DataLists) -> Self {
        EvalCtx {
            event: None,
            alert: None,
            queue: None,
            data,
            decisions: None,
            writes: RefCell::new(Vec::new()),
            queue_prefiltered: false,
        }
    }

    /// A context for an event filter.
    pub fn for_event(event: &'a Event, data: &'a DataLists) -> Self {
        EvalCtx {
            event: Some(event),
            ..EvalCtx::new(data)
        }
    }

    /// Sets `evt`.
    pub fn with_event(mut self, event: &'a Event) -> Self {
        self.event = Some(event);
        self
    }

    /// Sets `Alert`.
    pub fn with_alert(mut self, alert: &'a Alert) -> Self {
        self.alert = Some(alert);
        self
    }

    /// Sets `queue.Queue`.
    pub fn with_queue(mut self, queue: &'a [Event]) -> Self {
        self.queue = Some(queue);
        self
    }

    /// Sets the decision history.
    pub fn with_decisions(mut self, decisions: &'a dyn DecisionHistory) -> Self {
        self.decisions = Some(decisions);
        self
    }

    /// Takes the buffered `SetMeta` writes.
    pub fn take_writes(&self) -> Vec<(FieldId, String)> {
        std::mem::take(&mut *self.writes.borrow_mut())
    }
}

/// A run-time value; strings borrow from the event or the program when they can.
#[derive(Debug, Clone)]
pub enum Value<'a> {
    /// `nil`.
    Nil,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(Cow<'a, str>),
    /// A duration.
    Duration(SignedDuration),
    /// An instant.
    Time(Timestamp),
    /// A list.
    List(List<'a>),
    /// An event.
    Event(&'a Event),
    /// An alert.
    Alert(&'a Alert),
}

/// A list value: either borrowed (queue, data list) or built at run time.
#[derive(Debug, Clone)]
pub enum List<'a> {
    /// Values built at run time.
    Values(Rc<Vec<Value<'a>>>),
    /// Strings of a data list.
    Strs(&'a [Box<str>]),
    /// Events (`queue.Queue`, `Alert.Events`).
    Events(&'a [Event]),
}

impl<'a> List<'a> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            List::Values(v) => v.len(),
            List::Strs(s) => s.len(),
            List::Events(e) => e.len(),
        }
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element at `i`, if any.
    pub fn get(&self, i: usize) -> Option<Value<'a>> {
        match self {
            List::Values(v) => v.get(i).cloned(),
            List::Strs(s) => s.get(i).map(|s| Value::Str(Cow::Borrowed(&**s))),
            List::Events(e) => e.get(i).map(Value::Event),
        }
    }

    /// The sub-list `from..to` (bounds already clamped by the caller).
    pub fn slice(&self, from: usize, to: usize) -> List<'a> {
        let to = to.min(self.len());
        let from = from.min(to);
        match self {
            List::Values(v) => List::Values(Rc::new(v.get(from..to).unwrap_or(&[]).to_vec())),
            List::Strs(s) => List::Strs(s.get(from..to).unwrap_or(&[])),
            List::Events(e) => List::Events(e.get(from..to).unwrap_or(&[])),
        }
    }
}

impl Value<'_> {
    /// The type of this value.
    pub fn type_of(&self) -> Type {
        match self {
            Value::Nil => Type::Nil,
            Value::Bool(_) => Type::Bool,
            Value::Int(_) => Type::Int,
            Value::Float(_) => Type::Float,
            Value::Str(_) => Type::Str,
            Value::Duration(_) => Type::Duration,
            Value::Time(_) => Type::Time,
            Value::List(List::Strs(_)) => Type::List(Box::new(Type::Str)),
            Value::List(List::Events(_)) => Type::List(Box::new(Type::Event)),
            Value::List(List::Values(_)) => Type::List(Box::new(Type::Any)),
            Value::Event(_) => Type::Event,
            Value::Alert(_) => Type::Alert,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Formats like Go's `fmt.Sprint` (`nil` → `<nil>`).
    pub fn to_go_string(&self) -> String {
        funcs::go_sprint(self)
    }
}

/// A compiled expression.
pub struct Program {
    root: eval::Node,
    ty: Type,
    fields: Vec<FieldId>,
    src: Box<str>,
    /// `P` when the program reads `queue.Queue` only as `filter(queue.Queue, P)`, with `P`
    /// reading only its element.
    queue_filter: Option<Arc<eval::Node>>,
    /// That predicate as field tests of its element, when it is only such tests
    /// (`{#.Meta.log_type == 'x'}`): [`Program::queue_filter_admits`] runs them directly.
    queue_filter_tests: Option<Box<[eval::FieldTest]>>,
    /// The condition as tests of its queue's length and median interval, when it is only
    /// such tests ([`QueueCondition`]): [`Program::eval_bool`] answers without the
    /// interpreter.
    queue_condition: Option<QueueCondition>,
    /// When the program is only tests of event fields against string literals
    /// (`evt.Meta.log_type == 'x' && evt.Parsed.verb not in ['GET', 'HEAD']`): those tests,
    /// which [`Program::eval_bool`] runs directly.
    field_tests: Option<Box<[eval::FieldTest]>>,
}

impl fmt::Debug for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Program")
            .field("src", &self.src)
            .field("type", &self.ty)
            .finish_non_exhaustive()
    }
}

/// Compiles `src`; with `expect`, the result must have that type (or be dynamically typed).
pub fn compile(
    src: &str,
    env: &mut CompileEnv<'_>,
    expect: Option<Type>,
) -> Result<Program, ExprError> {
    let ast = parser::parse(src)?;
    let mut ck = check::Checker::new(env);
    let (root, ty) = ck.lower(&ast)?;
    if let Some(want) = &expect
        && !check::assignable(&ty, want)
    {
        return Err(ExprError::new(
            ast.span.clone(),
            format!("expression returns {ty}, expected {want}"),
        )
        .with_hint(match want {
            Type::Bool => "a filter must be a condition, e.g. `evt.Meta.log_type == 'x'`",
            Type::Str => "convert with ToString(...) or build a string with +",
            _ => "change the expression's result type",
        }));
    }
    let mut fields = ck.take_fields();
    fields.sort();
    fields.dedup();
    let queue_filter = sole_queue_filter(&root);
    let queue_filter_tests = queue_filter.as_deref().and_then(|p| {
        eval::as_field_tests(eval::unmemoized(p), eval::Subject::Element).map(Vec::into_boxed_slice)
    });
    let queue_condition = QueueCondition::of(&root);
    let field_tests = eval::as_field_tests(&root, eval::Subject::Root).map(Vec::into_boxed_slice);
    Ok(Program {
        root,
        ty,
        fields,
        src: Box::from(src),
        queue_filter,
        queue_filter_tests,
        queue_condition,
        field_tests,
    })
}

/// The predicate `P` when `root` reads the queue exactly once, as `filter(queue.Queue, P)`
/// with `P` reading only its element: then a queue holding only the events `P` admits gives
/// the same result, with the filter a no-op.
fn sole_queue_filter(root: &eval::Node) -> Option<Arc<eval::Node>> {
    fn walk<'n>(n: &'n eval::Node, lists: &mut usize, filters: &mut Vec<&'n Arc<eval::Node>>) {
        match &n.k {
            eval::K::QueueList => *lists += 1,
            eval::K::QueueFilter(_, p) => filters.push(p),
            _ => {}
        }
        n.for_each_child(&mut |c| walk(c, lists, filters));
    }
    let mut lists = 0;
    let mut filters = Vec::new();
    walk(root, &mut lists, &mut filters);
    match (lists, filters.as_slice()) {
        (1, [p]) => Some(Arc::clone(p)),
        _ => None,
    }
}

/// Whether `event` passes every one of `tests`.
#[inline(always)]
fn field_tests_hold(tests: &[eval::FieldTest], event: &Event) -> bool {
    // Plain loops: as `all`/`any` closures, LLVM kept a call per test (parser filters,
    // cancel-on tests and queue filters run this on every line).
    for (field, values, member) in tests {
        let v = event.get(*field);
        let mut found = false;
        for x in values.iter() {
            if crate::same_text(x, v) {
                found = true;
                break;
            }
        }
        if found != *member {
            return false;
        }
    }
    true
}

impl Program {
    /// The static type of the result.
    pub fn result_type(&self) -> &Type {
        &self.ty
    }

    /// The source text this was compiled from.
    pub fn source(&self) -> &str {
        &self.src
    }

    /// Evaluates the expression.
    pub fn eval<'a>(&'a self, ctx: &EvalCtx<'a>) -> Result<Value<'a>, EvalError> {
        eval::eval(&self.root, ctx, None).map_err(|e| *e)
    }

    /// Evaluates a condition; errors and non-boolean results are `false`.
    pub fn eval_bool(&self, ctx: &EvalCtx<'_>) -> bool {
        if let (Some(tests), Some(event)) = (&self.field_tests, ctx.event) {
            return field_tests_hold(tests, event);
        }
        if let (Some(condition), Some(queue)) = (&self.queue_condition, ctx.queue)
            && (ctx.queue_prefiltered || !condition.wants_prefiltered())
        {
            return condition.holds(queue);
        }
        eval::eval_bool(&self.root, ctx, None).unwrap_or(false)
    }

    /// The top-level conjuncts (`a && b && ...`) that only test a field `checked` admits
    /// against string literals (`evt.F == 'x'`, `evt.F in ['x', 'y']`), as a mask for
    /// [`Self::eval_bool_skipping`]. Worked out once, by a caller that will have checked
    /// the event's value of each such field against [`Self::implied_values`]: for those
    /// fields that check is exactly what the conjuncts test.
    pub fn checked_conjuncts(&self, checked: &dyn Fn(FieldId) -> bool) -> u64 {
        eval::checked_conjuncts(&self.root, checked)
    }

    /// Each top-level conjunct (numbered as in [`Self::checked_conjuncts`]) as a boolean
    /// combination of field tests against string literals, when it is one: a caller that
    /// knows which literals each field's value equals knows its value.
    pub(crate) fn conjunct_logic(&self) -> Vec<Option<FieldLogic>> {
        eval::conjunct_logic(&self.root)
    }

    /// Evaluates a condition like [`Self::eval_bool`], taking as true the conjuncts in
    /// `skip` ([`Self::checked_conjuncts`]).
    pub fn eval_bool_skipping(&self, ctx: &EvalCtx<'_>, skip: u64) -> bool {
        eval::eval_bool_skipping(&self.root, ctx, skip).unwrap_or(false)
    }

    /// The fields of `evt` (sorted) whose values alone decide the conjuncts outside
    /// `skip`, when they read nothing else that varies between events (the whole event,
    /// the queue, the alert, decisions, the clock) and write nothing: their verdict is
    /// then a function of those values, which a caller may cache by value. `None`
    /// otherwise.
    pub fn value_fields(&self, skip: u64) -> Option<Vec<FieldId>> {
        eval::value_fields(&self.root, skip)
    }

    /// Whether the condition is nothing but such field tests of fields `checked` admits:
    /// then [`Self::eval_bool_skipping`] with their mask is `true`.
    pub fn only_field_tests(&self, checked: &dyn Fn(FieldId) -> bool) -> bool {
        eval::only_field_tests(&self.root, checked)
    }

    /// [`Self::eval_string`] appended to `out`, for a caller that keeps the value in a
    /// buffer it reuses: string chains (`a + b`) and integers are written straight into
    /// it. Returns `false` (and leaves `out` as it was) for `nil` and errors.
    pub fn eval_string_into(&self, ctx: &EvalCtx<'_>, out: &mut String) -> bool {
        let start = out.len();
        let ok = eval::string_into(&self.root, ctx, out).unwrap_or(false);
        if !ok {
            out.truncate(start);
        }
        ok
    }

    /// Evaluates to a string: numbers formatted like Go's `fmt.Sprint`; `nil` (and errors) → `None`.
    pub fn eval_string<'a>(&'a self, ctx: &EvalCtx<'a>) -> Option<Cow<'a, str>> {
        match self.eval(ctx).ok()? {
            Value::Nil => None,
            Value::Str(s) => Some(s),
            v => Some(Cow::Owned(funcs::go_sprint(&v))),
        }
    }

    /// For a condition: the values `evt.<field>` must hold for it to be true, when the
    /// expression implies any (`evt.Meta.log_type == 'x' && ...` implies `["x"]`); `None`
    /// when any value might do.
    pub fn implied_values(&self, field: FieldId) -> Option<Vec<Box<str>>> {
        eval::implied_values(&self.root, field)
    }

    /// Whether the program reads `queue.Queue` only through a filter whose predicate reads
    /// only its element (`filter(queue.Queue, {#.Meta.log_type == 'x'})`). A bucket may then
    /// queue only the events [`Self::queue_filter_admits`] admits and evaluate with
    /// [`EvalCtx::queue_prefiltered`]: the filter costs nothing, however long the queue.
    pub fn has_queue_filter(&self) -> bool {
        self.queue_filter.is_some()
    }

    /// The predicate of [`Self::has_queue_filter`] as tests of the element's fields against
    /// literals, when it is only such tests (all must hold): [`Self::queue_filter_admits`]
    /// is then their verdict, which a route that knows those fields' classes can know.
    pub(crate) fn queue_filter_tests(&self) -> Option<&[eval::FieldTest]> {
        self.queue_filter_tests.as_deref()
    }

    /// Whether the condition reads its queue only for the number and times of the events
    /// in it ([`QueueCondition`]), the queue being the one its bucket keeps: the whole
    /// queue, or the events [`Self::queue_filter_admits`] admits when it filters one. A
    /// bucket may then keep only times and ask [`Self::holds_over_times`].
    pub fn reads_queue_times_only(&self) -> bool {
        self.queue_condition
            .as_ref()
            .is_some_and(|c| !c.wants_prefiltered() || self.queue_filter.is_some())
    }

    /// How many of the most recent queued times the condition reads at most, when
    /// [`Self::reads_queue_times_only`] and that is bounded: a bucket need keep no more.
    pub fn queue_times_read(&self) -> Option<usize> {
        self.queue_condition.as_ref()?.times_read()
    }

    /// The condition over a queue whose events' times are `times` (Unix nanoseconds, in
    /// queue order), when [`Self::reads_queue_times_only`]; `false` otherwise.
    pub fn holds_over_times(&self, times: &[i128]) -> bool {
        self.queue_condition
            .as_ref()
            .is_some_and(|c| c.holds_by(times.len(), |i| times.get(i).copied()))
    }

    /// That filter's verdict on `event` (`true` when there is no such filter). A predicate
    /// that fails at run time admits nothing: over the whole queue it would make the
    /// filter, and so the condition, fail at every evaluation.
    pub fn queue_filter_admits(&self, event: &Event, data: &DataLists) -> bool {
        match (&self.queue_filter_tests, &self.queue_filter) {
            (Some(tests), _) => field_tests_hold(tests, event),
            (None, None) => true,
            (None, Some(p)) => {
                eval::element_verdict(p, event, &EvalCtx::new(data)).unwrap_or(false)
            }
        }
    }

    /// The string literals the expression holds, in order of appearance (with repeats).
    pub(crate) fn string_literals(&self) -> Vec<&str> {
        fn walk<'n>(n: &'n eval::Node, out: &mut Vec<&'n str>) {
            if let eval::K::Lit(eval::Lit::Str(s)) = &n.k {
                out.push(s);
            }
            n.for_each_child(&mut |c| walk(c, out));
        }
        let mut out = Vec::new();
        walk(&self.root, &mut out);
        out
    }

    /// Whether the expression may read the events of the alert it runs on (`Alert.Events`,
    /// `Alert.Meta.<name>`, or the alert handed whole to something else). Reading its
    /// summary (`Alert.Remediation`, `Alert.GetScope()`, ...) does not count.
    pub fn reads_alert_events(&self) -> bool {
        self.root.any(&|n| match &n.k {
            eval::K::AlertProp(_, eval::AlertProp::Events) => Some(true),
            // A property of the alert the program runs on: its summary.
            eval::K::AlertProp(a, _) if matches!(a.k, eval::K::Alert) => Some(false),
            eval::K::AlertMeta(..) | eval::K::Alert => Some(true),
            _ => None,
        })
    }

    /// Whether the expression may read an event other than field by field (`evt` handed
    /// whole to a function or compared): then [`Self::referenced_fields`] does not say
    /// all it reads. `evt.Meta.x`, `evt.Line.Raw`, `evt.Time` and queued events' fields
    /// are read field by field.
    pub fn reads_whole_event(&self) -> bool {
        self.root.any(&|n| match &n.k {
            eval::K::EvField(a, _)
            | eval::K::EvRaw(a)
            | eval::K::EvTime(a)
            | eval::K::EvWhitelisted(a)
                if matches!(a.k, eval::K::Evt) =>
            {
                Some(false)
            }
            eval::K::Evt => Some(true),
            _ => None,
        })
    }

    /// Every field the expression reads or writes, sorted.
    pub fn referenced_fields(&self) -> Vec<FieldId> {
        self.fields.clone()
    }

    /// The fields a conditional bucket's queued events must keep for this condition:
    /// every field it references, less those only its queue filter's predicate reads
    /// ([`Self::has_queue_filter`]): the bucket tests that predicate as it queues an event
    /// and never runs it over the queue. Sorted.
    pub fn queued_event_fields(&self) -> Vec<FieldId> {
        let Some(predicate) = &self.queue_filter else {
            return self.fields.clone();
        };
        /// The fields the nodes under `n` name, except under `skip`.
        fn walk(n: &eval::Node, skip: Option<&eval::Node>, out: &mut Vec<FieldId>) {
            if skip.is_some_and(|s| std::ptr::eq(n, s)) {
                return;
            }
            match &n.k {
                eval::K::EvtField(id)
                | eval::K::EvField(_, id)
                | eval::K::SetMeta(id, _)
                | eval::K::AlertMeta(_, id)
                | eval::K::ContainsGate(id, ..) => out.push(*id),
                _ => {}
            }
            n.for_each_child(&mut |c| walk(c, skip, out));
        }
        // Only the fields seen inside the predicate and nowhere else are dropped: a field
        // this walk does not recognise stays, so a node kind it misses costs memory, never
        // a wrong verdict.
        let (mut inside, mut outside) = (Vec::new(), Vec::new());
        walk(predicate, None, &mut inside);
        walk(&self.root, Some(predicate), &mut outside);
        self.fields
            .iter()
            .copied()
            .filter(|f| !inside.contains(f) || outside.contains(f))
            .collect()
    }
}
