//! Type checking and lowering: syntax tree → typed, slot-resolved [`Node`] tree.

use super::eval::{self, AlertProp, Arith, Cmp, Func, K, Lit, Node, Quant, StrOp};
use super::matcher::{Fold, MatchOp, StrMatcher};
use super::parser::{Ast, AstKind, BinOp, UnOp};
use super::{CompileEnv, ExprError, Roots, Type};
use crate::data::DataKind;
use crate::event::{FieldId, Namespace};
use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;

/// Whether a value of type `have` may be used where `want` is expected.
pub(crate) fn assignable(have: &Type, want: &Type) -> bool {
    match (have, want) {
        (Type::Any, _) | (_, Type::Any) => true,
        (Type::Nil, Type::Str) => true,
        (Type::List(a), Type::List(b)) => assignable(a, b),
        (a, b) => a == b,
    }
}

fn numeric(t: &Type) -> bool {
    matches!(t, Type::Int | Type::Float)
}

fn unify(a: &Type, b: &Type) -> Type {
    match (a, b) {
        (x, y) if x == y => x.clone(),
        (Type::Nil, x) | (x, Type::Nil) => x.clone(),
        (Type::Int, Type::Float) | (Type::Float, Type::Int) => Type::Float,
        (Type::List(x), Type::List(y)) => Type::List(Box::new(unify(x, y))),
        _ => Type::Any,
    }
}

/// The closest candidate to `name`, if reasonably close.
pub(crate) fn closest<'c>(
    name: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    let mut best: Option<(f64, &str)> = None;
    let lname = name.to_ascii_lowercase();
    for c in candidates {
        let score = strsim::jaro_winkler(&lname, &c.to_ascii_lowercase());
        if best.is_none_or(|(s, _)| score > s) {
            best = Some((score, c));
        }
    }
    best.filter(|(s, _)| *s >= 0.7).map(|(_, c)| c)
}

enum Scope {
    Let {
        name: String,
        ty: Type,
    },
    Closure {
        elem: Type,
        data: Option<Rc<[Box<str>]>>,
    },
}

/// A lowered expression that may still be a path prefix (`evt.Meta`, `evt.Line`, `Alert.Source`).
enum L {
    V(Node, Type),
    Ns(Node, Namespace, Range<usize>),
    Line(Node, Range<usize>),
    Source(Node, Range<usize>),
}

/// The checker's state for one expression.
pub(crate) struct Checker<'e, 'a> {
    env: &'e mut CompileEnv<'a>,
    scopes: Vec<Scope>,
    fields: Vec<FieldId>,
    /// The next free per-event memo slot (see [`eval::MEMO_SLOTS`]).
    memo_next: u8,
}

struct Sig {
    name: &'static str,
    f: Func,
    params: &'static [P],
    optional: usize,
    variadic: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum P {
    S,
    A,
    L,
    I,
    N,
}

const fn sig(name: &'static str, f: Func, params: &'static [P], optional: usize) -> Sig {
    Sig {
        name,
        f,
        params,
        optional,
        variadic: false,
    }
}

const SIGS: &[Sig] = &[
    sig("Upper", Func::Upper, &[P::S], 0),
    sig("upper", Func::Upper, &[P::S], 0),
    sig("Lower", Func::Lower, &[P::S], 0),
    sig("lower", Func::Lower, &[P::S], 0),
    sig("len", Func::Len, &[P::A], 0),
    sig("IpInRange", Func::IpInRange, &[P::S, P::S], 0),
    sig("IsIPV4", Func::IsIpv4, &[P::S], 0),
    sig("IsIPV6", Func::IsIpv6, &[P::S], 0),
    sig("IsIP", Func::IsIp, &[P::S], 0),
    sig("IpToRange", Func::IpToRange, &[P::S, P::S], 0),
    sig("JsonExtract", Func::JsonExtract, &[P::S, P::S], 0),
    sig("JsonExtractUnescape", Func::JsonExtract, &[P::S, P::S], 0),
    sig("Atof", Func::Atof, &[P::S], 0),
    sig("ToString", Func::ToString, &[P::A], 0),
    sig("string", Func::ToString, &[P::A], 0),
    sig("Split", Func::Split, &[P::S, P::S], 0),
    sig("split", Func::Split, &[P::S, P::S], 0),
    sig("Join", Func::Join, &[P::L, P::S], 0),
    sig("join", Func::Join, &[P::L, P::S], 1),
    sig("Trim", Func::Trim, &[P::S, P::S], 0),
    sig("trim", Func::Trim, &[P::S, P::S], 1),
    sig("TrimSpace", Func::TrimSpace, &[P::S], 0),
    sig("TrimLeft", Func::TrimLeft, &[P::S, P::S], 0),
    sig("TrimRight", Func::TrimRight, &[P::S, P::S], 0),
    sig("TrimPrefix", Func::TrimPrefix, &[P::S, P::S], 0),
    sig("trimPrefix", Func::TrimPrefix, &[P::S, P::S], 0),
    sig("TrimSuffix", Func::TrimSuffix, &[P::S, P::S], 0),
    sig("trimSuffix", Func::TrimSuffix, &[P::S, P::S], 0),
    sig("Replace", Func::Replace, &[P::S, P::S, P::S, P::I], 1),
    sig("ReplaceAll", Func::ReplaceAll, &[P::S, P::S, P::S], 0),
    sig("replace", Func::ReplaceAll, &[P::S, P::S, P::S], 0),
    sig("duration", Func::Duration, &[P::S], 0),
    sig("MedianInterval", Func::MedianInterval, &[P::L], 0),
    sig("GetDecisionsCount", Func::GetDecisionsCount, &[P::S], 0),
    sig(
        "GetActiveDecisionsCount",
        Func::GetActiveDecisionsCount,
        &[P::S],
        0,
    ),
    Sig {
        name: "Sprintf",
        f: Func::Sprintf,
        params: &[P::S],
        optional: 0,
        variadic: true,
    },
    sig("ParseUnix", Func::ParseUnix, &[P::S], 0),
    sig("TimeNow", Func::TimeNow, &[], 0),
    sig("now", Func::Now, &[], 0),
    sig("date", Func::Date, &[P::S], 0),
    sig("int", Func::Int, &[P::A], 0),
    sig("float", Func::Float, &[P::A], 0),
    sig("indexOf", Func::IndexOf, &[P::S, P::S], 0),
    sig("lastIndexOf", Func::LastIndexOf, &[P::S, P::S], 0),
    sig("hasPrefix", Func::HasPrefix, &[P::S, P::S], 0),
    sig("hasSuffix", Func::HasSuffix, &[P::S, P::S], 0),
    sig("abs", Func::Abs, &[P::N], 0),
    sig("first", Func::First, &[P::L], 0),
    sig("last", Func::Last, &[P::L], 0),
    sig("PathUnescape", Func::PathUnescape, &[P::S], 0),
    sig("QueryUnescape", Func::QueryUnescape, &[P::S], 0),
];

/// Names handled specially (closures, data lists).
const SPECIAL: &[&str] = &[
    "File",
    "RegexpInFile",
    "any",
    "all",
    "none",
    "one",
    "filter",
    "map",
    "count",
    "find",
    "findIndex",
];

fn all_function_names() -> impl Iterator<Item = &'static str> {
    SIGS.iter().map(|s| s.name).chain(SPECIAL.iter().copied())
}

fn mentions_pointer(a: &Ast) -> bool {
    match &a.kind {
        AstKind::Pointer => true,
        AstKind::Closure(_) => false,
        AstKind::Nil
        | AstKind::Bool(_)
        | AstKind::Int(_)
        | AstKind::Float(_)
        | AstKind::Str(_)
        | AstKind::Ident(_) => false,
        AstKind::List(v) => v.iter().any(mentions_pointer),
        AstKind::Member { obj, .. } => mentions_pointer(obj),
        AstKind::Index { obj, index } => mentions_pointer(obj) || mentions_pointer(index),
        AstKind::Slice { obj, from, to } => {
            mentions_pointer(obj)
                || from.as_deref().is_some_and(mentions_pointer)
                || to.as_deref().is_some_and(mentions_pointer)
        }
        AstKind::Call { args, .. } => args.iter().any(mentions_pointer),
        AstKind::Method { obj, args, .. } => {
            mentions_pointer(obj) || args.iter().any(mentions_pointer)
        }
        AstKind::Unary(_, e) => mentions_pointer(e),
        AstKind::Binary { lhs, rhs, .. } => mentions_pointer(lhs) || mentions_pointer(rhs),
        AstKind::Ternary(a, b, c) => {
            mentions_pointer(a) || mentions_pointer(b) || mentions_pointer(c)
        }
        AstKind::Let { value, body, .. } => mentions_pointer(value) || mentions_pointer(body),
    }
}

/// `Upper(x)` / `Lower(x)` → (fold, x).
fn case_call(a: &Ast) -> Option<(Fold, &Ast)> {
    if let AstKind::Call { name, args, .. } = &a.kind
        && args.len() == 1
    {
        match name.as_str() {
            "Upper" | "upper" => return Some((Fold::Upper, &args[0])),
            "Lower" | "lower" => return Some((Fold::Lower, &args[0])),
            _ => {}
        }
    }
    None
}

/// `#`, `Upper(#)` or `Lower(#)` → the transform applied to each element.
fn pointer_form(a: &Ast) -> Option<Fold> {
    match &a.kind {
        AstKind::Pointer => Some(Fold::None),
        _ => match case_call(a) {
            Some((f, inner)) if matches!(inner.kind, AstKind::Pointer) => Some(f),
            _ => None,
        },
    }
}

fn apply_fold(f: Fold, s: &str) -> String {
    match f {
        Fold::None => s.to_owned(),
        Fold::Upper => super::funcs::go_upper(s),
        Fold::Lower => super::funcs::go_lower(s),
    }
}

fn type_name_article(t: &Type) -> String {
    format!("{t}")
}

impl<'e, 'a> Checker<'e, 'a> {
    /// A checker over `env`.
    pub(crate) fn new(env: &'e mut CompileEnv<'a>) -> Self {
        Checker {
            env,
            scopes: Vec::new(),
            fields: Vec::new(),
            memo_next: 0,
        }
    }

    /// The fields referenced so far.
    pub(crate) fn take_fields(&mut self) -> Vec<FieldId> {
        std::mem::take(&mut self.fields)
    }

    /// Lowers a whole expression to a value.
    pub(crate) fn lower(&mut self, a: &Ast) -> Result<(Node, Type), ExprError> {
        match self.lower_l(a)? {
            L::V(n, t) => Ok((n, t)),
            L::Ns(_, ns, span) => {
                let prefix = if ns == Namespace::Labels {
                    "evt.Line.Labels".to_owned()
                } else {
                    format!("evt.{}", ns.as_str())
                };
                let ex = self.env.fields.names_in(ns).next().unwrap_or("source_ip");
                Err(
                    ExprError::new(span, format!("`{prefix}` is a map, not a value"))
                        .with_hint(format!("pick a key, e.g. `{prefix}.{ex}`")),
                )
            }
            L::Line(_, span) => Err(ExprError::new(span, "`evt.Line` is not a value")
                .with_hint("use `evt.Line.Raw` or `evt.Line.Labels.<name>`")),
            L::Source(_, span) => Err(ExprError::new(span, "`Alert.Source` is not a value")
                .with_hint("use `Alert.Source.IP`, `Alert.Source.Value` or `Alert.Source.Scope`")),
        }
    }

    fn lower_typed(&mut self, a: &Ast, want: &Type, what: &str) -> Result<Node, ExprError> {
        let (n, t) = self.lower(a)?;
        if !assignable(&t, want) {
            return Err(ExprError::new(
                a.span.clone(),
                format!("{what} must be {want}, found {}", type_name_article(&t)),
            ));
        }
        Ok(n)
    }

    fn record(&mut self, id: FieldId) {
        self.fields.push(id);
    }

    fn root(&mut self, name: &str, span: &Range<usize>) -> Result<Option<(Node, Type)>, ExprError> {
        let (flag, k, ty) = match name {
            "evt" => (Roots::EVT, K::Evt, Type::Event),
            "Alert" => (Roots::ALERT, K::Alert, Type::Alert),
            "queue" => (Roots::QUEUE, K::Queue, Type::Queue),
            _ => return Ok(None),
        };
        if !self.env.roots.contains(flag) {
            let avail = self.available_roots();
            let hint = if avail.is_empty() {
                "this expression cannot refer to any variable".to_owned()
            } else {
                format!("available here: {}", avail.join(", "))
            };
            return Err(ExprError::new(
                span.clone(),
                format!("`{name}` is not available in this expression"),
            )
            .with_hint(hint));
        }
        Ok(Some((Node::new(k, span.clone()), ty)))
    }

    fn available_roots(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.env.roots.contains(Roots::EVT) {
            v.push("evt");
        }
        if self.env.roots.contains(Roots::ALERT) {
            v.push("Alert");
        }
        if self.env.roots.contains(Roots::QUEUE) {
            v.push("queue");
        }
        v
    }

    fn lower_l(&mut self, a: &Ast) -> Result<L, ExprError> {
        let span = a.span.clone();
        let v = |k: K, t: Type| Ok(L::V(Node::new(k, span.clone()), t));
        match &a.kind {
            AstKind::Nil => v(K::Lit(Lit::Nil), Type::Nil),
            AstKind::Bool(b) => v(K::Lit(Lit::Bool(*b)), Type::Bool),
            AstKind::Int(i) => v(K::Lit(Lit::Int(*i)), Type::Int),
            AstKind::Float(f) => v(K::Lit(Lit::Float(*f)), Type::Float),
            AstKind::Str(s) => v(K::Lit(Lit::Str(Box::from(s.as_str()))), Type::Str),
            AstKind::List(items) => {
                let mut nodes = Vec::with_capacity(items.len());
                let mut ty: Option<Type> = None;
                for i in items {
                    let (n, t) = self.lower(i)?;
                    ty = Some(match ty {
                        None => t,
                        Some(p) => unify(&p, &t),
                    });
                    nodes.push(n);
                }
                v(
                    K::ListLit(nodes),
                    Type::List(Box::new(ty.unwrap_or(Type::Any))),
                )
            }
            AstKind::Ident(name) => self.ident(name, &span),
            AstKind::Pointer => {
                for (depth, s) in self.scopes.iter().rev().enumerate() {
                    if let Scope::Closure { elem, .. } = s {
                        return v(K::Elem(depth as u32), elem.clone());
                    }
                }
                Err(ExprError::new(span, "`#` is only valid inside a closure")
                    .with_hint("use it in the predicate of any(), all(), filter(), map(), ..."))
            }
            AstKind::Member {
                obj,
                name,
                name_span,
            } => {
                let base = self.lower_l(obj)?;
                self.member(base, name, name_span, &span)
            }
            AstKind::Index { obj, index } => {
                let base = self.lower_l(obj)?;
                match base {
                    L::Ns(n, ns, _) => match &index.kind {
                        AstKind::Str(key) => self.field(n, ns, key, &index.span, &span),
                        _ => Err(ExprError::new(
                            index.span.clone(),
                            "a map key must be a string literal",
                        )
                        .with_hint("event fields are resolved at compile time")),
                    },
                    other => {
                        let (n, t) = self.value_of(other)?;
                        let (i, it) = self.lower(index)?;
                        if !assignable(&it, &Type::Int) {
                            return Err(ExprError::new(
                                index.span.clone(),
                                format!("an index must be int, found {it}"),
                            ));
                        }
                        let rt = match &t {
                            Type::List(e) => (**e).clone(),
                            Type::Str => Type::Str,
                            Type::Any | Type::Nil => Type::Any,
                            _ => {
                                return Err(ExprError::new(
                                    obj.span.clone(),
                                    format!("cannot index a value of type {t}"),
                                ));
                            }
                        };
                        v(K::Index(Box::new(n), Box::new(i)), rt)
                    }
                }
            }
            AstKind::Slice { obj, from, to } => {
                let (n, t) = self.lower(obj)?;
                if !matches!(t, Type::List(_) | Type::Str | Type::Any) {
                    return Err(ExprError::new(
                        obj.span.clone(),
                        format!("cannot slice a value of type {t}"),
                    ));
                }
                let mut bound = |b: &Option<Box<Ast>>| -> Result<Option<Box<Node>>, ExprError> {
                    match b {
                        Some(b) => Ok(Some(Box::new(self.lower_typed(
                            b,
                            &Type::Int,
                            "a slice bound",
                        )?))),
                        None => Ok(None),
                    }
                };
                let f = bound(from)?;
                let tt = bound(to)?;
                v(K::Slice(Box::new(n), f, tt), t)
            }
            AstKind::Call {
                name,
                name_span,
                args,
            } => self
                .call(name, name_span, args, &span)
                .map(|(n, t)| L::V(n, t)),
            AstKind::Method {
                obj,
                name,
                name_span,
                args,
            } => {
                let base = self.lower_l(obj)?;
                self.method(base, name, name_span, args, &span)
                    .map(|(n, t)| L::V(n, t))
            }
            AstKind::Unary(op, e) => {
                let (n, t) = self.lower(e)?;
                match op {
                    UnOp::Not => {
                        if !assignable(&t, &Type::Bool) {
                            return Err(ExprError::new(
                                e.span.clone(),
                                format!("`not` needs a bool, found {t}"),
                            ));
                        }
                        v(K::Not(Box::new(n)), Type::Bool)
                    }
                    UnOp::Neg | UnOp::Plus => {
                        if !matches!(t, Type::Int | Type::Float | Type::Duration | Type::Any) {
                            return Err(ExprError::new(
                                e.span.clone(),
                                format!("unary minus needs a number, found {t}"),
                            ));
                        }
                        if *op == UnOp::Plus {
                            return Ok(L::V(n, t));
                        }
                        if let K::Lit(l) = &n.k {
                            let folded = match l {
                                Lit::Int(i) => Some(Lit::Int(i.wrapping_neg())),
                                Lit::Float(f) => Some(Lit::Float(-f)),
                                _ => None,
                            };
                            if let Some(l) = folded {
                                return v(K::Lit(l), t);
                            }
                        }
                        v(K::Neg(Box::new(n)), t)
                    }
                }
            }
            AstKind::Binary {
                op,
                op_span,
                negated,
                lhs,
                rhs,
            } => {
                let (n, t) = self.binary(*op, op_span, lhs, rhs, &span)?;
                if *negated {
                    v(K::Not(Box::new(n)), Type::Bool)
                } else {
                    Ok(L::V(n, t))
                }
            }
            AstKind::Ternary(c, x, y) => {
                let cn = self.lower_typed(c, &Type::Bool, "a ternary condition")?;
                let (xn, xt) = self.lower(x)?;
                let (yn, yt) = self.lower(y)?;
                let t = unify(&xt, &yt);
                v(K::Ternary(Box::new(cn), Box::new(xn), Box::new(yn)), t)
            }
            AstKind::Let {
                name,
                name_span,
                value,
                body,
            } => {
                if matches!(name.as_str(), "evt" | "Alert" | "queue") {
                    return Err(ExprError::new(
                        name_span.clone(),
                        format!("`{name}` is reserved"),
                    ));
                }
                let (vn, vt) = self.lower(value)?;
                self.scopes.push(Scope::Let {
                    name: name.clone(),
                    ty: vt,
                });
                let r = self.lower(body);
                self.scopes.pop();
                let (bn, bt) = r?;
                v(K::Let(Box::new(vn), Box::new(bn)), bt)
            }
            AstKind::Closure(_) => Err(ExprError::new(
                span,
                "a closure `{...}` is only valid as an argument of any, all, none, one, filter, map or count",
            )),
        }
    }

    fn value_of(&mut self, l: L) -> Result<(Node, Type), ExprError> {
        match l {
            L::V(n, t) => Ok((n, t)),
            L::Ns(_, _, span) | L::Line(_, span) | L::Source(_, span) => {
                Err(ExprError::new(span, "this is not a value"))
            }
        }
    }

    fn ident(&mut self, name: &str, span: &Range<usize>) -> Result<L, ExprError> {
        for (depth, s) in self.scopes.iter().rev().enumerate() {
            if let Scope::Let { name: n, ty } = s
                && n == name
            {
                return Ok(L::V(
                    Node::new(K::Var(depth as u32), span.clone()),
                    ty.clone(),
                ));
            }
        }
        if let Some((n, t)) = self.root(name, span)? {
            return Ok(L::V(n, t));
        }
        let mut cands: Vec<&str> = self
            .scopes
            .iter()
            .filter_map(|s| match s {
                Scope::Let { name, .. } => Some(name.as_str()),
                Scope::Closure { .. } => None,
            })
            .collect();
        let roots = self.available_roots();
        cands.extend(roots.iter().copied());
        let mut e = ExprError::new(span.clone(), format!("unknown name `{name}`"));
        if let Some(c) = closest(name, cands.iter().copied()) {
            e = e.with_hint(format!("did you mean `{c}`?"));
        } else if matches!(name, "evt" | "Alert" | "queue") || !roots.is_empty() {
            e = e.with_hint(format!("available here: {}", roots.join(", ")));
        }
        Err(e)
    }

    fn field(
        &mut self,
        base: Node,
        ns: Namespace,
        key: &str,
        key_span: &Range<usize>,
        span: &Range<usize>,
    ) -> Result<L, ExprError> {
        let prefix = if ns == Namespace::Labels {
            "evt.Line.Labels".to_owned()
        } else {
            format!("evt.{}", ns.as_str())
        };
        let Some(id) = self.env.fields.get(ns, key) else {
            let mut e = ExprError::new(
                key_span.clone(),
                format!(
                    "unknown field `{prefix}.{key}`: no enabled parser, label or enricher sets it"
                ),
            );
            if let Some(c) = closest(key, self.env.fields.names_in(ns)) {
                e = e.with_hint(format!("did you mean `{prefix}.{c}`?"));
            }
            return Err(e);
        };
        self.record(id);
        let k = if matches!(base.k, K::Evt) {
            K::EvtField(id)
        } else {
            K::EvField(Box::new(base), id)
        };
        Ok(L::V(Node::new(k, span.clone()), Type::Str))
    }

    fn member(
        &mut self,
        base: L,
        name: &str,
        name_span: &Range<usize>,
        span: &Range<usize>,
    ) -> Result<L, ExprError> {
        let sp = span.clone();
        let unknown = |what: &str, known: &[&'static str]| {
            let mut e = ExprError::new(name_span.clone(), format!("{what} has no field `{name}`"));
            if let Some(c) = closest(name, known.iter().copied()) {
                e = e.with_hint(format!("did you mean `{c}`?"));
            } else {
                e = e.with_hint(format!("known: {}", known.join(", ")));
            }
            e
        };
        match base {
            L::Ns(n, ns, _) => self.field(n, ns, name, name_span, span),
            L::Line(n, _) => match name {
                "Raw" => Ok(L::V(Node::new(K::EvRaw(Box::new(n)), sp), Type::Str)),
                "Labels" => Ok(L::Ns(n, Namespace::Labels, sp)),
                _ => Err(unknown("`evt.Line`", &["Raw", "Labels"])),
            },
            L::Source(n, _) => {
                let p = match name {
                    "IP" | "Value" => AlertProp::Value,
                    "Scope" => AlertProp::Scope,
                    _ => return Err(unknown("`Alert.Source`", &["IP", "Value", "Scope"])),
                };
                Ok(L::V(Node::new(K::AlertProp(Box::new(n), p), sp), Type::Str))
            }
            L::V(n, t) => match t {
                Type::Event => match name {
                    "Meta" | "Parsed" | "Enriched" => {
                        let ns = Namespace::from_name(name).unwrap_or(Namespace::Meta);
                        Ok(L::Ns(n, ns, sp))
                    }
                    "Line" => Ok(L::Line(n, sp)),
                    "Time" => Ok(L::V(Node::new(K::EvTime(Box::new(n)), sp), Type::Time)),
                    "Whitelisted" => Ok(L::V(
                        Node::new(K::EvWhitelisted(Box::new(n)), sp),
                        Type::Bool,
                    )),
                    _ => Err(unknown(
                        "an event",
                        &["Meta", "Parsed", "Enriched", "Line", "Time", "Whitelisted"],
                    )),
                },
                Type::Alert => {
                    let (p, t) = match name {
                        "Remediation" => (AlertProp::Remediation, Type::Bool),
                        "Scenario" => (AlertProp::Scenario, Type::Str),
                        "Message" => (AlertProp::Message, Type::Str),
                        "EventsCount" => (AlertProp::EventsCount, Type::Int),
                        "Events" => (AlertProp::Events, Type::List(Box::new(Type::Event))),
                        "Source" => return Ok(L::Source(n, sp)),
                        _ => {
                            return Err(unknown(
                                "an alert",
                                &[
                                    "Remediation",
                                    "Scenario",
                                    "Message",
                                    "EventsCount",
                                    "Events",
                                    "Source",
                                ],
                            ));
                        }
                    };
                    Ok(L::V(Node::new(K::AlertProp(Box::new(n), p), sp), t))
                }
                Type::Queue => match name {
                    "Queue" => Ok(L::V(
                        Node::new(K::QueueList, sp),
                        Type::List(Box::new(Type::Event)),
                    )),
                    _ => Err(unknown("`queue`", &["Queue"])),
                },
                t => Err(ExprError::new(
                    name_span.clone(),
                    format!("a value of type {t} has no field `{name}`"),
                )),
            },
        }
    }

    fn method(
        &mut self,
        base: L,
        name: &str,
        name_span: &Range<usize>,
        args: &[Ast],
        span: &Range<usize>,
    ) -> Result<(Node, Type), ExprError> {
        let (n, t) = self.value_of(base)?;
        let arity = |want: usize| -> Result<(), ExprError> {
            if args.len() != want {
                return Err(ExprError::new(
                    span.clone(),
                    format!("`{name}` takes {want} argument(s), got {}", args.len()),
                ));
            }
            Ok(())
        };
        let lit_key = |a: &Ast| -> Result<String, ExprError> {
            match &a.kind {
                AstKind::Str(s) => Ok(s.clone()),
                _ => Err(
                    ExprError::new(a.span.clone(), "the key must be a string literal")
                        .with_hint("fields are resolved at compile time"),
                ),
            }
        };
        let sp = span.clone();
        match (&t, name) {
            (Type::Event, "SetMeta") => {
                arity(2)?;
                let key = lit_key(&args[0])?;
                if key.is_empty() {
                    return Err(ExprError::new(args[0].span.clone(), "empty key"));
                }
                if !matches!(n.k, K::Evt) {
                    return Err(ExprError::new(
                        span.clone(),
                        "SetMeta can only modify the current event `evt`",
                    ));
                }
                let id = self.env.fields.intern(Namespace::Meta, &key);
                self.record(id);
                let (vn, vt) = self.lower(&args[1])?;
                if matches!(vt, Type::List(_) | Type::Event | Type::Alert | Type::Queue) {
                    return Err(ExprError::new(
                        args[1].span.clone(),
                        format!("SetMeta needs a string value, found {vt}"),
                    ));
                }
                Ok((Node::new(K::SetMeta(id, Box::new(vn)), sp), Type::Bool))
            }
            (Type::Event, "GetMeta") => {
                arity(1)?;
                let key = lit_key(&args[0])?;
                match self.field(n, Namespace::Meta, &key, &args[0].span, span)? {
                    L::V(n, t) => Ok((n, t)),
                    other => self.value_of(other),
                }
            }
            (Type::Alert, "GetScope" | "GetValue" | "GetScenario" | "GetEventsCount") => {
                arity(0)?;
                let (p, t) = match name {
                    "GetScope" => (AlertProp::Scope, Type::Str),
                    "GetValue" => (AlertProp::Value, Type::Str),
                    "GetScenario" => (AlertProp::Scenario, Type::Str),
                    _ => (AlertProp::EventsCount, Type::Int),
                };
                Ok((Node::new(K::AlertProp(Box::new(n), p), sp), t))
            }
            (Type::Alert, "GetMeta") => {
                arity(1)?;
                let key = lit_key(&args[0])?;
                let Some(id) = self.env.fields.get(Namespace::Meta, &key) else {
                    let mut e = ExprError::new(
                        args[0].span.clone(),
                        format!("unknown field `evt.Meta.{key}`"),
                    );
                    if let Some(c) = closest(&key, self.env.fields.names_in(Namespace::Meta)) {
                        e = e.with_hint(format!("did you mean `{c}`?"));
                    }
                    return Err(e);
                };
                self.record(id);
                Ok((Node::new(K::AlertMeta(Box::new(n), id), sp), Type::Str))
            }
            (Type::Queue, "GetQueue") => {
                arity(0)?;
                Ok((
                    Node::new(K::QueueList, sp),
                    Type::List(Box::new(Type::Event)),
                ))
            }
            _ => {
                let known: &[&str] = match t {
                    Type::Event => &["SetMeta", "GetMeta"],
                    Type::Alert => &[
                        "GetScope",
                        "GetValue",
                        "GetScenario",
                        "GetEventsCount",
                        "GetMeta",
                    ],
                    _ => &[],
                };
                let mut e = ExprError::new(
                    name_span.clone(),
                    format!("a value of type {t} has no method `{name}`"),
                );
                if let Some(c) = closest(name, known.iter().copied()) {
                    e = e.with_hint(format!("did you mean `{c}`?"));
                }
                Err(e)
            }
        }
    }

    fn data_list(&self, a: &Ast, kind: Option<DataKind>) -> Result<crate::data::DataId, ExprError> {
        let AstKind::Str(name) = &a.kind else {
            return Err(ExprError::new(
                a.span.clone(),
                "the data list name must be a string literal",
            )
            .with_hint("lists are loaded at compile time"));
        };
        let Some(id) = self.env.data.id(name) else {
            let mut e = ExprError::new(a.span.clone(), format!("unknown data list `{name}`"));
            if let Some(c) = closest(name, self.env.data.names()) {
                e = e.with_hint(format!("did you mean `{c}`?"));
            } else {
                e = e.with_hint("data lists are files under a rules `data/` directory");
            }
            return Err(e);
        };
        if let Some(k) = kind
            && self.env.data.get(id).kind != k
        {
            return Err(ExprError::new(
                a.span.clone(),
                format!("data list `{name}` is not a regex list"),
            )
            .with_hint(
                "regex lists are files named `*.regex.txt`; for literal strings use any(File(...), {...})",
            ));
        }
        Ok(id)
    }

    fn call(
        &mut self,
        name: &str,
        name_span: &Range<usize>,
        args: &[Ast],
        span: &Range<usize>,
    ) -> Result<(Node, Type), ExprError> {
        let sp = span.clone();
        let arity_err = |min: usize, max: usize| {
            let want = if min == max {
                format!("{min}")
            } else if max == usize::MAX {
                format!("at least {min}")
            } else {
                format!("{min} to {max}")
            };
            ExprError::new(
                span.clone(),
                format!("`{name}` takes {want} argument(s), got {}", args.len()),
            )
        };
        match name {
            "File" => {
                if args.len() != 1 {
                    return Err(arity_err(1, 1));
                }
                let id = self.data_list(&args[0], None)?;
                let list = self.env.data.get(id);
                let strs: Box<[Box<str>]> =
                    list.lines.iter().map(|l| Box::from(l.as_str())).collect();
                return Ok((
                    Node::new(K::Data(strs), sp),
                    Type::List(Box::new(Type::Str)),
                ));
            }
            "RegexpInFile" => {
                if args.len() != 2 {
                    return Err(arity_err(2, 2));
                }
                let x =
                    self.lower_typed(&args[0], &Type::Str, "the first argument of RegexpInFile")?;
                let id = self.data_list(&args[1], Some(DataKind::Regexes))?;
                let list = self.env.data.shared(id);
                if !list.shipped {
                    // A local list's regexes are built now, so that an error in them is
                    // reported with the configuration's.
                    list.regex_set()
                        .map_err(|e| ExprError::new(args[1].span.clone(), e))?;
                }
                let list = super::matcher::RegexList::new(list);
                return Ok((
                    Node::new(K::RegexpInFile(Box::new(x), list), sp),
                    Type::Bool,
                ));
            }
            "any" | "all" | "none" | "one" | "filter" | "map" | "count" | "find" | "findIndex" => {
                return self.quant(name, args, span, arity_err);
            }
            _ => {}
        }
        let Some(sig) = SIGS.iter().find(|s| s.name == name) else {
            let mut e = ExprError::new(name_span.clone(), format!("unknown function `{name}`"));
            if let Some(c) = closest(name, all_function_names()) {
                e = e.with_hint(format!("did you mean `{c}`?"));
            }
            return Err(e);
        };
        let max = if sig.variadic {
            usize::MAX
        } else {
            sig.params.len()
        };
        let min = sig.params.len() - sig.optional;
        if args.len() < min || args.len() > max {
            return Err(arity_err(min, max));
        }
        let mut nodes = Vec::with_capacity(args.len());
        let mut types = Vec::with_capacity(args.len());
        for (i, a) in args.iter().enumerate() {
            let p = sig.params.get(i).copied().unwrap_or(P::A);
            let (n, t) = self.lower(a)?;
            let ok = match p {
                P::A => true,
                P::S => matches!(t, Type::Str | Type::Any),
                P::L => matches!(t, Type::List(_) | Type::Any | Type::Nil),
                P::I => matches!(t, Type::Int | Type::Any),
                P::N => matches!(t, Type::Int | Type::Float | Type::Any),
            };
            if !ok {
                let want = match p {
                    P::S => "string",
                    P::L => "list",
                    P::I => "int",
                    P::N => "number",
                    P::A => "value",
                };
                let mut e = ExprError::new(
                    a.span.clone(),
                    format!("argument {} of `{name}` must be a {want}, found {t}", i + 1),
                );
                if p == P::S && numeric(&t) {
                    e = e.with_hint("convert it with ToString(...)");
                }
                return Err(e);
            }
            nodes.push(n);
            types.push(t);
        }
        let ret = match sig.f {
            Func::Upper
            | Func::Lower
            | Func::IpToRange
            | Func::JsonExtract
            | Func::ToString
            | Func::Join
            | Func::Trim
            | Func::TrimSpace
            | Func::TrimLeft
            | Func::TrimRight
            | Func::TrimPrefix
            | Func::TrimSuffix
            | Func::Replace
            | Func::ReplaceAll
            | Func::Sprintf
            | Func::ParseUnix
            | Func::TimeNow
            | Func::PathUnescape
            | Func::QueryUnescape => Type::Str,
            Func::Len
            | Func::GetDecisionsCount
            | Func::GetActiveDecisionsCount
            | Func::Int
            | Func::IndexOf
            | Func::LastIndexOf => Type::Int,
            Func::IpInRange
            | Func::IsIpv4
            | Func::IsIpv6
            | Func::IsIp
            | Func::HasPrefix
            | Func::HasSuffix => Type::Bool,
            Func::Atof | Func::Float => Type::Float,
            Func::Split => Type::List(Box::new(Type::Str)),
            Func::Duration | Func::MedianInterval => Type::Duration,
            Func::Now | Func::Date => Type::Time,
            Func::Abs => types.first().cloned().unwrap_or(Type::Any),
            Func::First | Func::Last => match types.first() {
                Some(Type::List(e)) => (**e).clone(),
                _ => Type::Any,
            },
        };
        if sig.f == Func::Len
            && !matches!(
                types.first(),
                Some(Type::Str | Type::List(_) | Type::Any | Type::Nil)
            )
        {
            return Err(ExprError::new(
                args[0].span.clone(),
                format!(
                    "len needs a string or list, found {}",
                    types.first().cloned().unwrap_or(Type::Any)
                ),
            ));
        }
        if sig.f == Func::MedianInterval
            && !matches!(types.first(), Some(Type::List(e)) if matches!(**e, Type::Time | Type::Event | Type::Any))
            && !matches!(types.first(), Some(Type::Any))
        {
            return Err(ExprError::new(
                args[0].span.clone(),
                "MedianInterval needs a list of times, e.g. map(xs, {#.Time})",
            ));
        }
        // `MedianInterval(map(xs, {#.Time}))`, the hub's idiom over a bucket's queue: the
        // function reads events' times itself, so the list of times is not built.
        let nodes = if sig.f == Func::MedianInterval {
            nodes
                .into_iter()
                .map(|a| match a.k {
                    K::Quant(Quant::Map, list, body)
                        if matches!(&body.k, K::EvTime(e) if matches!(e.k, K::Elem(0))) =>
                    {
                        *list
                    }
                    k => Node { k, span: a.span },
                })
                .collect()
        } else {
            nodes
        };
        let node = Node::new(K::Call(sig.f, nodes), sp.clone());
        self.fold(node, ret, &sp)
    }

    /// Folds a pure call over constants (or over the element of a constant list).
    fn fold(
        &mut self,
        node: Node,
        ret: Type,
        span: &Range<usize>,
    ) -> Result<(Node, Type), ExprError> {
        let K::Call(f, args) = &node.k else {
            return Ok((node, ret));
        };
        if !f.is_pure() {
            return Ok((node, ret));
        }
        let mut elem_depth: Option<u32> = None;
        for a in args {
            match &a.k {
                K::Lit(_) => {}
                K::Elem(d) if elem_depth.is_none_or(|x| x == *d) => elem_depth = Some(*d),
                _ => return Ok((node, ret)),
            }
        }
        match elem_depth {
            None => {
                let ctx = super::EvalCtx::new(self.env.data);
                match eval::eval(&node, &ctx, None) {
                    Ok(v) => match Lit::from_value(&v) {
                        Some(l) => Ok((Node::new(K::Lit(l), span.clone()), ret)),
                        None => Ok((node, ret)),
                    },
                    Err(e) => Err(ExprError::new(
                        span.clone(),
                        format!("this call always fails: {}", e.message),
                    )),
                }
            }
            Some(0) => {
                let data = match self.scopes.last() {
                    Some(Scope::Closure { data: Some(d), .. }) => d.clone(),
                    _ => return Ok((node, ret)),
                };
                let mut col = Vec::with_capacity(data.len());
                for (i, s) in data.iter().enumerate() {
                    match eval::fold_with_elem(&node, self.env.data, Some((s, i))) {
                        Some(l) => col.push(l),
                        None => return Ok((node, ret)),
                    }
                }
                Ok((
                    Node::new(K::Column(0, col.into_boxed_slice()), span.clone()),
                    ret,
                ))
            }
            Some(_) => Ok((node, ret)),
        }
    }

    fn quant(
        &mut self,
        name: &str,
        args: &[Ast],
        span: &Range<usize>,
        arity_err: impl Fn(usize, usize) -> ExprError,
    ) -> Result<(Node, Type), ExprError> {
        if args.len() != 2 {
            return Err(arity_err(2, 2));
        }
        let q = match name {
            "any" => Quant::Any,
            "all" => Quant::All,
            "none" => Quant::None,
            "one" => Quant::One,
            "filter" => Quant::Filter,
            "map" => Quant::Map,
            "count" => Quant::Count,
            "find" => Quant::Find,
            _ => Quant::FindIndex,
        };
        let (ln, lt) = self.lower(&args[0])?;
        let elem = match &lt {
            Type::List(e) => (**e).clone(),
            Type::Any | Type::Nil => Type::Any,
            t => {
                return Err(ExprError::new(
                    args[0].span.clone(),
                    format!("the first argument of `{name}` must be a list, found {t}"),
                ));
            }
        };
        let AstKind::Closure(body) = &args[1].kind else {
            return Err(ExprError::new(args[1].span.clone(), "expected a closure"));
        };
        let data: Option<Rc<[Box<str>]>> = match &ln.k {
            K::Data(d) => Some(d.iter().cloned().collect()),
            K::ListLit(items) => items
                .iter()
                .map(|i| match &i.k {
                    K::Lit(Lit::Str(s)) => Some(s.clone()),
                    _ => None,
                })
                .collect(),
            _ => None,
        };
        if let (Some(d), Quant::Any | Quant::None) = (&data, q)
            && let Some(n) = self.special_any(d, body, span)?
        {
            let n = if q == Quant::None {
                Node::new(K::Not(Box::new(n)), span.clone())
            } else {
                n
            };
            return Ok((n, Type::Bool));
        }
        self.scopes.push(Scope::Closure {
            elem: elem.clone(),
            data,
        });
        let r = self.lower(body);
        self.scopes.pop();
        let (bn, bt) = r?;
        let pred = !matches!(q, Quant::Map);
        let pure = eval::element_pure(&bn, 0);
        // A predicate that reads only its element gives the same verdict for the same
        // event every time: over a bucket's queue, each event's verdict is computed once
        // and kept on the event (conditions re-run over the whole queue at every pour).
        let bn = if pred && self.memo_next < eval::MEMO_SLOTS && pure {
            let slot = self.memo_next;
            self.memo_next += 1;
            let sp = bn.span.clone();
            Node::new(K::Memo(slot, Box::new(bn)), sp)
        } else {
            bn
        };
        if pred && !assignable(&bt, &Type::Bool) {
            return Err(ExprError::new(
                body.span.clone(),
                format!("the predicate of `{name}` must return bool, found {bt}"),
            ));
        }
        let t = match q {
            Quant::Any | Quant::All | Quant::None | Quant::One => Type::Bool,
            Quant::Filter => Type::List(Box::new(elem)),
            Quant::Map => Type::List(Box::new(bt)),
            Quant::Count | Quant::FindIndex => Type::Int,
            Quant::Find => elem,
        };
        // `filter(queue.Queue, P)` with `P` reading only its element: a bucket may test `P`
        // once per event as it queues it (see `Program::queue_filter_admits`).
        let k = if q == Quant::Filter && pure && matches!(ln.k, K::QueueList) {
            K::QueueFilter(Box::new(ln), Arc::new(bn))
        } else {
            K::Quant(q, Box::new(ln), Box::new(bn))
        };
        let node = Node::new(k, span.clone());
        // `any(File(L), {evt.F contains f(#) ? ... : false})`: one pass over `evt.F` for
        // all the `f(#)` first (see `eval::gate_of_any`).
        if let K::Quant(Quant::Any, _, body) = &node.k
            && let Some((field, col)) = eval::gate_of_any(body)
        {
            let strs: Option<Vec<&str>> = col
                .iter()
                .map(|l| match l {
                    Lit::Str(s) => Some(&**s),
                    _ => None,
                })
                .collect();
            if let Some(m) =
                strs.and_then(|s| StrMatcher::new(MatchOp::Contains, Fold::None, s).ok())
            {
                return Ok((
                    Node::new(K::ContainsGate(field, m, Box::new(node)), span.clone()),
                    t,
                ));
            }
        }
        Ok((node, t))
    }

    /// `any(L, {X op #})` over a constant list → a prebuilt matcher.
    fn special_any(
        &mut self,
        data: &[Box<str>],
        body: &Ast,
        span: &Range<usize>,
    ) -> Result<Option<Node>, ExprError> {
        match &body.kind {
            AstKind::Binary {
                op,
                negated: false,
                lhs,
                rhs,
                ..
            } => {
                let mop = match op {
                    BinOp::Contains => MatchOp::Contains,
                    BinOp::Eq => MatchOp::Exact,
                    BinOp::StartsWith => MatchOp::Prefix,
                    BinOp::EndsWith => MatchOp::Suffix,
                    _ => return Ok(None),
                };
                let (x, pf) = match (pointer_form(rhs), pointer_form(lhs)) {
                    (Some(pf), None) if !mentions_pointer(lhs) => (&**lhs, pf),
                    (None, Some(pf)) if mop == MatchOp::Exact && !mentions_pointer(rhs) => {
                        (&**rhs, pf)
                    }
                    _ => return Ok(None),
                };
                let patterns: Vec<String> = data.iter().map(|s| apply_fold(pf, s)).collect();
                self.matcher(x, mop, patterns.iter().map(String::as_str), span)
                    .map(Some)
            }
            AstKind::Call { name, args, .. }
                if name == "IpInRange"
                    && args.len() == 2
                    && matches!(args[1].kind, AstKind::Pointer)
                    && !mentions_pointer(&args[0]) =>
            {
                // Like IpInRange, an entry that is not a CIDR never matches.
                let nets: Vec<ipnet::IpNet> = data
                    .iter()
                    .filter_map(|s| s.parse::<ipnet::IpNet>().ok())
                    .collect();
                let x =
                    self.lower_typed(&args[0], &Type::Str, "the first argument of IpInRange")?;
                Ok(Some(Node::new(
                    K::IpInNets(Box::new(x), nets.into_boxed_slice()),
                    span.clone(),
                )))
            }
            _ => Ok(None),
        }
    }

    /// A matcher of `x` (possibly `Upper(..)`/`Lower(..)`) against literal patterns.
    fn matcher<'p>(
        &mut self,
        x: &Ast,
        op: MatchOp,
        patterns: impl IntoIterator<Item = &'p str>,
        span: &Range<usize>,
    ) -> Result<Node, ExprError> {
        let (fold, inner) = match case_call(x) {
            Some((f, inner)) => (f, inner),
            None => (Fold::None, x),
        };
        let xn = self.lower_typed(inner, &Type::Str, "the left operand")?;
        let m = StrMatcher::new(op, fold, patterns)
            .map_err(|e| ExprError::new(span.clone(), format!("cannot build matcher: {e}")))?;
        Ok(Node::new(K::Match(Box::new(xn), m), span.clone()))
    }

    fn binary(
        &mut self,
        op: BinOp,
        op_span: &Range<usize>,
        lhs: &Ast,
        rhs: &Ast,
        span: &Range<usize>,
    ) -> Result<(Node, Type), ExprError> {
        let sp = span.clone();
        // `x in [string literals]` / `x in File(L)`: prebuilt sets.
        if op == BinOp::In {
            let lits: Option<Vec<&str>> = match &rhs.kind {
                AstKind::List(items) if !items.is_empty() => items
                    .iter()
                    .map(|i| match &i.kind {
                        AstKind::Str(s) => Some(s.as_str()),
                        _ => None,
                    })
                    .collect(),
                _ => None,
            };
            if let Some(lits) = lits {
                let (_, lt) = self.probe_type(lhs)?;
                if matches!(lt, Type::Str | Type::Any) {
                    let n = self.matcher(lhs, MatchOp::Exact, lits, span)?;
                    return Ok((n, Type::Bool));
                }
            }
            if let AstKind::Call { name, args, .. } = &rhs.kind
                && name == "File"
                && args.len() == 1
            {
                let id = self.data_list(&args[0], None)?;
                let lines: Vec<String> = self.env.data.get(id).lines.clone();
                let n =
                    self.matcher(lhs, MatchOp::Exact, lines.iter().map(String::as_str), span)?;
                return Ok((n, Type::Bool));
            }
        }
        let (ln, lt) = self.lower(lhs)?;
        let (rn, rt) = self.lower(rhs)?;
        let mismatch = |what: &str| {
            let mut e = ExprError::new(sp.clone(), format!("cannot {what} {lt} and {rt}"));
            let lit_num = |a: &Ast| matches!(a.kind, AstKind::Int(_) | AstKind::Float(_));
            if (lt == Type::Str && lit_num(rhs)) || (rt == Type::Str && lit_num(lhs)) {
                e = e.with_hint("event fields are strings: compare with a string literal, e.g. '404', or convert with int(...)");
            } else if (lt == Type::Str && numeric(&rt)) || (rt == Type::Str && numeric(&lt)) {
                e = e.with_hint("convert with int(...), Atof(...) or ToString(...)");
            }
            e
        };
        let b = |l: Node, r: Node| (Box::new(l), Box::new(r));
        let any = |t: &Type| matches!(t, Type::Any);
        Ok(match op {
            BinOp::And | BinOp::Or => {
                for (t, a) in [(&lt, lhs), (&rt, rhs)] {
                    if !assignable(t, &Type::Bool) {
                        return Err(ExprError::new(
                            a.span.clone(),
                            format!("operands of `{}` must be bool, found {t}", op.name()),
                        ));
                    }
                }
                let (l, r) = b(ln, rn);
                let k = if op == BinOp::And {
                    K::And(l, r)
                } else {
                    K::Or(l, r)
                };
                (Node::new(k, sp), Type::Bool)
            }
            BinOp::Eq | BinOp::Ne => {
                let ok = any(&lt)
                    || any(&rt)
                    || lt == Type::Nil
                    || rt == Type::Nil
                    || (numeric(&lt) && numeric(&rt))
                    || lt == rt
                    || matches!((&lt, &rt), (Type::List(_), Type::List(_)));
                if !ok {
                    return Err(mismatch("compare"));
                }
                let c = if op == BinOp::Eq { Cmp::Eq } else { Cmp::Ne };
                let (l, r) = b(ln, rn);
                (Node::new(K::Cmp(c, l, r), sp), Type::Bool)
            }
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                let ok = any(&lt)
                    || any(&rt)
                    || (numeric(&lt) && numeric(&rt))
                    || (lt == rt && matches!(lt, Type::Str | Type::Duration | Type::Time));
                if !ok {
                    return Err(mismatch("compare"));
                }
                let c = match op {
                    BinOp::Lt => Cmp::Lt,
                    BinOp::Le => Cmp::Le,
                    BinOp::Gt => Cmp::Gt,
                    _ => Cmp::Ge,
                };
                let (l, r) = b(ln, rn);
                (Node::new(K::Cmp(c, l, r), sp), Type::Bool)
            }
            BinOp::In => {
                let elem = match &rt {
                    Type::List(e) => (**e).clone(),
                    Type::Any | Type::Nil => Type::Any,
                    _ => {
                        return Err(ExprError::new(
                            rhs.span.clone(),
                            format!("the right side of `in` must be a list, found {rt}"),
                        )
                        .with_hint(if rt == Type::Str {
                            "use `contains` to search in a string"
                        } else {
                            "use a list literal [...]"
                        }));
                    }
                };
                let ok = any(&lt)
                    || any(&elem)
                    || lt == Type::Nil
                    || elem == Type::Nil
                    || (numeric(&lt) && numeric(&elem))
                    || lt == elem;
                if !ok {
                    let mut e =
                        ExprError::new(sp, format!("cannot look for a {lt} in a list of {elem}"));
                    if lt == Type::Str && numeric(&elem) {
                        e = e.with_hint(
                            "event fields are strings: quote the list items, e.g. ['404', '403']",
                        );
                    }
                    return Err(e);
                }
                let (l, r) = b(ln, rn);
                (Node::new(K::In(l, r), sp), Type::Bool)
            }
            BinOp::Contains | BinOp::StartsWith | BinOp::EndsWith => {
                for (t, a) in [(&lt, lhs), (&rt, rhs)] {
                    if !matches!(t, Type::Str | Type::Any) {
                        let mut e = ExprError::new(
                            a.span.clone(),
                            format!("operands of `{}` must be strings, found {t}", op.name()),
                        );
                        if matches!(t, Type::List(_)) && op == BinOp::Contains {
                            e = e.with_hint("to test list membership, write `x in list`");
                        }
                        return Err(e);
                    }
                }
                if let (BinOp::Contains, K::Lit(Lit::Str(needle))) = (op, &rn.k)
                    && !needle.is_empty()
                {
                    // `X contains 'literal'`: the searcher is built here, once
                    // (`str::contains` builds one at every call).
                    let m = StrMatcher::new(MatchOp::Contains, Fold::None, [&**needle])
                        .map_err(|e| ExprError::new(sp.clone(), e))?;
                    return Ok((Node::new(K::Match(Box::new(ln), m), sp), Type::Bool));
                }
                let so = match op {
                    BinOp::Contains => StrOp::Contains,
                    BinOp::StartsWith => StrOp::StartsWith,
                    _ => StrOp::EndsWith,
                };
                let (l, r) = b(ln, rn);
                (Node::new(K::StrOp(so, l, r), sp), Type::Bool)
            }
            BinOp::Matches => {
                for (t, a) in [(&lt, lhs), (&rt, rhs)] {
                    if !matches!(t, Type::Str | Type::Any) {
                        return Err(ExprError::new(
                            a.span.clone(),
                            format!("operands of `matches` must be strings, found {t}"),
                        ));
                    }
                }
                if let K::Lit(Lit::Str(p)) = &rn.k {
                    let re = regex::RegexBuilder::new(p)
                        .size_limit(16 << 20)
                        .build()
                        .map_err(|e| {
                            let msg = e.to_string();
                            let last = msg.lines().last().unwrap_or("").trim().to_owned();
                            ExprError::new(rhs.span.clone(), format!("invalid regular expression: {last}"))
                                .with_hint("patterns use RE2 / Rust regex syntax (no look-around or backreferences)")
                        })?;
                    (Node::new(K::MatchesLit(Box::new(ln), re), sp), Type::Bool)
                } else {
                    let (l, r) = b(ln, rn);
                    (Node::new(K::Matches(l, r), sp), Type::Bool)
                }
            }
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod | BinOp::Pow => {
                let t = match (op, &lt, &rt) {
                    (_, Type::Any, _) | (_, _, Type::Any) => Type::Any,
                    (BinOp::Div | BinOp::Pow, a, b) if numeric(a) && numeric(b) => Type::Float,
                    (BinOp::Mod, Type::Int, Type::Int) => Type::Int,
                    (BinOp::Mod, _, _) => return Err(mismatch("apply % to")),
                    (_, Type::Int, Type::Int) => Type::Int,
                    (_, a, b) if numeric(a) && numeric(b) => Type::Float,
                    (BinOp::Add, Type::Str, Type::Str) => Type::Str,
                    (BinOp::Add, Type::Time, Type::Duration)
                    | (BinOp::Add, Type::Duration, Type::Time) => Type::Time,
                    (BinOp::Sub, Type::Time, Type::Duration) => Type::Time,
                    (BinOp::Sub, Type::Time, Type::Time) => Type::Duration,
                    (BinOp::Add | BinOp::Sub, Type::Duration, Type::Duration) => Type::Duration,
                    (BinOp::Mul, Type::Duration, Type::Int)
                    | (BinOp::Mul, Type::Int, Type::Duration) => Type::Duration,
                    _ => {
                        let mut e = ExprError::new(
                            op_span.clone(),
                            format!("operator `{}` is not defined on {lt} and {rt}", op.name()),
                        );
                        if op == BinOp::Add && (lt == Type::Str || rt == Type::Str) {
                            e = e.with_hint("convert the other side with ToString(...)");
                        }
                        return Err(e);
                    }
                };
                let a = match op {
                    BinOp::Add => Arith::Add,
                    BinOp::Sub => Arith::Sub,
                    BinOp::Mul => Arith::Mul,
                    BinOp::Div => Arith::Div,
                    BinOp::Mod => Arith::Mod,
                    _ => Arith::Pow,
                };
                if a == Arith::Add && lt == Type::Str && rt == Type::Str {
                    // String chains (`a + "/" + b`) build one string.
                    let mut parts = match ln.k {
                        K::Concat(parts) => parts,
                        _ => vec![ln],
                    };
                    match rn.k {
                        K::Concat(more) => parts.extend(more),
                        _ => parts.push(rn),
                    }
                    return Ok((Node::new(K::Concat(parts), sp), t));
                }
                let (l, r) = b(ln, rn);
                (Node::new(K::Arith(a, l, r), sp), t)
            }
            BinOp::Coalesce => {
                let t = if lt == Type::Nil {
                    rt.clone()
                } else {
                    unify(&lt, &rt)
                };
                let (l, r) = b(ln, rn);
                (Node::new(K::Coalesce(l, r), sp), t)
            }
            BinOp::Range => {
                if !assignable(&lt, &Type::Int) || !assignable(&rt, &Type::Int) {
                    return Err(mismatch("build a range from"));
                }
                let (l, r) = b(ln, rn);
                (
                    Node::new(K::Range(l, r), sp),
                    Type::List(Box::new(Type::Int)),
                )
            }
        })
    }

    /// The type of an expression without keeping its lowering (for choosing a strategy).
    fn probe_type(&mut self, a: &Ast) -> Result<(Node, Type), ExprError> {
        let saved = self.fields.len();
        let r = self.lower(a);
        self.fields.truncate(saved);
        r
    }
}
