//! Parser: tokens to an untyped syntax tree, with expr-lang's precedence rules.

use super::ExprError;
use super::lexer::{Tok, Token, lex};
use std::ops::Range;

/// A syntax node with its byte span.
#[derive(Debug, Clone)]
pub(crate) struct Ast {
    pub kind: AstKind,
    pub span: Range<usize>,
}

/// Binary operators as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    Contains,
    StartsWith,
    EndsWith,
    Matches,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Coalesce,
    Range,
}

impl BinOp {
    /// (precedence, right associative)
    fn info(self) -> (u8, bool) {
        match self {
            BinOp::Or => (10, false),
            BinOp::And => (15, false),
            BinOp::Eq
            | BinOp::Ne
            | BinOp::Lt
            | BinOp::Le
            | BinOp::Gt
            | BinOp::Ge
            | BinOp::In
            | BinOp::Contains
            | BinOp::StartsWith
            | BinOp::EndsWith
            | BinOp::Matches => (20, false),
            BinOp::Range => (25, false),
            BinOp::Add | BinOp::Sub => (30, false),
            BinOp::Mul | BinOp::Div | BinOp::Mod => (60, false),
            BinOp::Pow => (100, true),
            BinOp::Coalesce => (250, false),
        }
    }

    /// The operator as written in source (for messages).
    pub fn name(self) -> &'static str {
        match self {
            BinOp::Or => "||",
            BinOp::And => "&&",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::In => "in",
            BinOp::Contains => "contains",
            BinOp::StartsWith => "startsWith",
            BinOp::EndsWith => "endsWith",
            BinOp::Matches => "matches",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
            BinOp::Pow => "**",
            BinOp::Coalesce => "??",
            BinOp::Range => "..",
        }
    }

    /// Operators that may follow `not` (`not in`, `not contains`, ...).
    fn negatable(self) -> bool {
        matches!(
            self,
            BinOp::In | BinOp::Contains | BinOp::StartsWith | BinOp::EndsWith | BinOp::Matches
        )
    }
}

/// Unary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UnOp {
    Not,
    Neg,
    Plus,
}

/// Syntax node kinds.
#[derive(Debug, Clone)]
pub(crate) enum AstKind {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Ident(String),
    /// `#`, the closure element.
    Pointer,
    List(Vec<Ast>),
    /// `obj.name`; `name_span` covers the name.
    Member {
        obj: Box<Ast>,
        name: String,
        name_span: Range<usize>,
    },
    Index {
        obj: Box<Ast>,
        index: Box<Ast>,
    },
    Slice {
        obj: Box<Ast>,
        from: Option<Box<Ast>>,
        to: Option<Box<Ast>>,
    },
    /// `name(args)`
    Call {
        name: String,
        name_span: Range<usize>,
        args: Vec<Ast>,
    },
    /// `obj.name(args)`
    Method {
        obj: Box<Ast>,
        name: String,
        name_span: Range<usize>,
        args: Vec<Ast>,
    },
    Unary(UnOp, Box<Ast>),
    /// `negated` for `not in`, `not contains`, ...
    Binary {
        op: BinOp,
        op_span: Range<usize>,
        negated: bool,
        lhs: Box<Ast>,
        rhs: Box<Ast>,
    },
    Ternary(Box<Ast>, Box<Ast>, Box<Ast>),
    Let {
        name: String,
        name_span: Range<usize>,
        value: Box<Ast>,
        body: Box<Ast>,
    },
    Closure(Box<Ast>),
}

/// Builtins whose later arguments are predicates (closures).
pub(crate) const CLOSURE_BUILTINS: &[&str] = &[
    "all",
    "any",
    "none",
    "one",
    "filter",
    "map",
    "count",
    "find",
    "findIndex",
    "findLast",
    "findLastIndex",
    "sum",
    "groupBy",
    "sortBy",
];

/// Limit on nesting (recursion plus operator / postfix chains), so that checking, evaluating
/// and dropping a tree can never exhaust the stack.
const MAX_DEPTH: usize = 64;

struct Parser {
    toks: Vec<Token>,
    pos: usize,
    depth: usize,
}

/// Parses a whole expression.
pub(crate) fn parse(src: &str) -> Result<Ast, ExprError> {
    let toks = lex(src)?;
    let mut p = Parser {
        toks,
        pos: 0,
        depth: 0,
    };
    let e = p.expr(0)?;
    let t = p.peek();
    if t.tok != Tok::Eof {
        return Err(p.unexpected(&t, "end of expression"));
    }
    Ok(e)
}

fn binop_of(t: &Tok) -> Option<BinOp> {
    Some(match t {
        Tok::Op("||") => BinOp::Or,
        Tok::Op("&&") => BinOp::And,
        Tok::Op("==") => BinOp::Eq,
        Tok::Op("!=") => BinOp::Ne,
        Tok::Op("<") => BinOp::Lt,
        Tok::Op("<=") => BinOp::Le,
        Tok::Op(">") => BinOp::Gt,
        Tok::Op(">=") => BinOp::Ge,
        Tok::Op("+") => BinOp::Add,
        Tok::Op("-") => BinOp::Sub,
        Tok::Op("*") => BinOp::Mul,
        Tok::Op("/") => BinOp::Div,
        Tok::Op("%") => BinOp::Mod,
        Tok::Op("**") | Tok::Op("^") => BinOp::Pow,
        Tok::Op("??") => BinOp::Coalesce,
        Tok::Op("..") => BinOp::Range,
        Tok::Ident(s) => match s.as_str() {
            "or" => BinOp::Or,
            "and" => BinOp::And,
            "in" => BinOp::In,
            "contains" => BinOp::Contains,
            "startsWith" => BinOp::StartsWith,
            "endsWith" => BinOp::EndsWith,
            "matches" => BinOp::Matches,
            _ => return None,
        },
        _ => return None,
    })
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("`{s}`"),
        Tok::Int(v) => format!("number {v}"),
        Tok::Float(v) => format!("number {v}"),
        Tok::Str(_) => "string literal".to_owned(),
        Tok::Op(o) => format!("`{o}`"),
        Tok::Eof => "end of expression".to_owned(),
    }
}

impl Parser {
    fn peek(&self) -> Token {
        self.toks
            .get(self.pos)
            .or_else(|| self.toks.last())
            .cloned()
            .unwrap_or(Token {
                tok: Tok::Eof,
                span: 0..0,
            })
    }

    fn peek_at(&self, n: usize) -> Tok {
        self.toks
            .get(self.pos + n)
            .map_or(Tok::Eof, |t| t.tok.clone())
    }

    fn next(&mut self) -> Token {
        let t = self.peek();
        if self.pos < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn is_op(&self, op: &str) -> bool {
        matches!(self.toks.get(self.pos), Some(Token { tok: Tok::Op(o), .. }) if *o == op)
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self.toks.get(self.pos), Some(Token { tok: Tok::Ident(o), .. }) if o == w)
    }

    fn unexpected(&self, t: &Token, wanted: &str) -> ExprError {
        ExprError::new(
            t.span.clone(),
            format!("unexpected {}, expected {wanted}", describe(&t.tok)),
        )
    }

    fn expect_op(&mut self, op: &'static str) -> Result<Token, ExprError> {
        let t = self.peek();
        if t.tok == Tok::Op(op) {
            self.pos += 1;
            Ok(t)
        } else {
            Err(self.unexpected(&t, &format!("`{op}`")))
        }
    }

    fn enter(&mut self, span: &Range<usize>) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ExprError::new(span.clone(), "expression nested too deeply"));
        }
        Ok(())
    }

    fn expr(&mut self, min_prec: u8) -> Result<Ast, ExprError> {
        let here = self.peek().span;
        let saved = self.depth;
        self.enter(&here)?;
        let r = self.expr_inner(min_prec);
        self.depth = saved;
        r
    }

    fn expr_inner(&mut self, min_prec: u8) -> Result<Ast, ExprError> {
        if min_prec == 0 && self.is_word("let") {
            return self.let_expr();
        }
        let mut lhs = self.unary()?;
        let mut prev_coalesce = false;
        loop {
            let t = self.peek();
            let mut negated = false;
            let mut op_tok = t.clone();
            if matches!(&t.tok, Tok::Ident(s) if s == "not") {
                let nt = self.peek_at(1);
                match binop_of(&nt) {
                    Some(op) if op.negatable() => {
                        if op.info().0 < min_prec {
                            break;
                        }
                        negated = true;
                        self.pos += 1;
                        op_tok = self.peek();
                        op_tok.span = t.span.start..op_tok.span.end;
                    }
                    _ => {
                        let nt = self.toks.get(self.pos + 1).cloned().unwrap_or(t.clone());
                        return Err(self.unexpected(
                            &nt,
                            "`in`, `contains`, `startsWith`, `endsWith` or `matches` after `not`",
                        ));
                    }
                }
            }
            let Some(op) = binop_of(&op_tok.tok) else {
                break;
            };
            let (prec, right) = op.info();
            if prec < min_prec {
                break;
            }
            if prev_coalesce && op != BinOp::Coalesce {
                return Err(ExprError::new(
                    op_tok.span.clone(),
                    format!("operator {} and `??` cannot be mixed", op.name()),
                )
                .with_hint("wrap either side in parentheses"));
            }
            self.pos += 1;
            self.enter(&op_tok.span)?;
            let rhs = self.expr(if right { prec } else { prec + 1 })?;
            let span = lhs.span.start..rhs.span.end;
            lhs = Ast {
                kind: AstKind::Binary {
                    op,
                    op_span: op_tok.span,
                    negated,
                    lhs: Box::new(lhs),
                    rhs: Box::new(rhs),
                },
                span,
            };
            prev_coalesce = op == BinOp::Coalesce;
        }
        if min_prec == 0 && self.is_op("?") {
            self.pos += 1;
            let a = self.expr(0)?;
            self.expect_op(":")?;
            let b = self.expr(0)?;
            let span = lhs.span.start..b.span.end;
            lhs = Ast {
                kind: AstKind::Ternary(Box::new(lhs), Box::new(a), Box::new(b)),
                span,
            };
        }
        Ok(lhs)
    }

    fn let_expr(&mut self) -> Result<Ast, ExprError> {
        let start = self.next().span.start;
        let t = self.next();
        let Tok::Ident(name) = t.tok.clone() else {
            return Err(self.unexpected(&t, "a variable name after `let`"));
        };
        self.expect_op("=")?;
        let value = self.expr(0)?;
        self.expect_op(";")?;
        let body = self.expr(0)?;
        let span = start..body.span.end;
        Ok(Ast {
            kind: AstKind::Let {
                name,
                name_span: t.span,
                value: Box::new(value),
                body: Box::new(body),
            },
            span,
        })
    }

    fn unary(&mut self) -> Result<Ast, ExprError> {
        let t = self.peek();
        let op = match &t.tok {
            Tok::Op("!") => Some((UnOp::Not, 50)),
            Tok::Ident(s) if s == "not" => Some((UnOp::Not, 50)),
            Tok::Op("-") => Some((UnOp::Neg, 90)),
            Tok::Op("+") => Some((UnOp::Plus, 90)),
            _ => None,
        };
        if let Some((op, prec)) = op {
            self.pos += 1;
            let e = self.expr(prec)?;
            let span = t.span.start..e.span.end;
            let node = Ast {
                kind: AstKind::Unary(op, Box::new(e)),
                span,
            };
            return self.postfix(node);
        }
        let p = self.primary()?;
        self.postfix(p)
    }

    fn primary(&mut self) -> Result<Ast, ExprError> {
        let t = self.next();
        let span = t.span.clone();
        let kind = match t.tok {
            Tok::Int(v) => AstKind::Int(v),
            Tok::Float(v) => AstKind::Float(v),
            Tok::Str(s) => AstKind::Str(s),
            Tok::Op("(") => {
                let e = self.expr(0)?;
                let close = self.expect_op(")")?;
                return Ok(Ast {
                    kind: e.kind,
                    span: span.start..close.span.end,
                });
            }
            Tok::Op("[") => {
                let mut items = Vec::new();
                loop {
                    if self.is_op("]") {
                        break;
                    }
                    items.push(self.expr(0)?);
                    if self.is_op(",") {
                        self.pos += 1;
                        continue;
                    }
                    break;
                }
                let close = self.expect_op("]")?;
                return Ok(Ast {
                    kind: AstKind::List(items),
                    span: span.start..close.span.end,
                });
            }
            Tok::Op("#") => AstKind::Pointer,
            Tok::Op(".") => {
                // `.Meta` inside a closure is `#.Meta`.
                let n = self.next();
                let Tok::Ident(name) = n.tok.clone() else {
                    return Err(self.unexpected(&n, "a field name after `.`"));
                };
                AstKind::Member {
                    obj: Box::new(Ast {
                        kind: AstKind::Pointer,
                        span: span.clone(),
                    }),
                    name,
                    name_span: n.span.clone(),
                }
            }
            Tok::Ident(name) => match name.as_str() {
                "true" => AstKind::Bool(true),
                "false" => AstKind::Bool(false),
                "nil" => AstKind::Nil,
                _ if self.is_op("(") => {
                    self.pos += 1;
                    let closures = CLOSURE_BUILTINS.contains(&name.as_str());
                    let (args, end) = self.args(closures)?;
                    return Ok(Ast {
                        kind: AstKind::Call {
                            name,
                            name_span: span.clone(),
                            args,
                        },
                        span: span.start..end,
                    });
                }
                _ => AstKind::Ident(name),
            },
            _ => return Err(self.unexpected(&t, "an expression")),
        };
        Ok(Ast { kind, span })
    }

    /// Arguments after `(`; returns them and the end offset of `)`.
    fn args(&mut self, closures: bool) -> Result<(Vec<Ast>, usize), ExprError> {
        let mut args = Vec::new();
        loop {
            if self.is_op(")") {
                break;
            }
            if closures && !args.is_empty() {
                args.push(self.closure()?);
            } else {
                args.push(self.expr(0)?);
            }
            if self.is_op(",") {
                self.pos += 1;
                continue;
            }
            break;
        }
        let close = self.expect_op(")")?;
        Ok((args, close.span.end))
    }

    fn closure(&mut self) -> Result<Ast, ExprError> {
        let t = self.peek();
        if t.tok == Tok::Op("{") {
            self.pos += 1;
            let body = self.expr(0)?;
            let close = self.expect_op("}")?;
            Ok(Ast {
                kind: AstKind::Closure(Box::new(body)),
                span: t.span.start..close.span.end,
            })
        } else {
            let body = self.expr(0)?;
            let span = body.span.clone();
            Ok(Ast {
                kind: AstKind::Closure(Box::new(body)),
                span,
            })
        }
    }

    fn postfix(&mut self, node: Ast) -> Result<Ast, ExprError> {
        let saved = self.depth;
        let r = self.postfix_inner(node);
        self.depth = saved;
        r
    }

    fn postfix_inner(&mut self, mut node: Ast) -> Result<Ast, ExprError> {
        loop {
            let t = self.peek();
            if matches!(t.tok, Tok::Op(".") | Tok::Op("?.") | Tok::Op("[")) {
                self.enter(&t.span)?;
            }
            match t.tok {
                Tok::Op(".") | Tok::Op("?.") => {
                    let optional = t.tok == Tok::Op("?.");
                    self.pos += 1;
                    // `?.[` optional indexing (treated like plain indexing).
                    if optional && self.is_op("[") {
                        continue;
                    }
                    let n = self.next();
                    let name = match &n.tok {
                        Tok::Ident(s) => s.clone(),
                        _ => return Err(self.unexpected(&n, "a field name after `.`")),
                    };
                    if self.is_op("(") {
                        self.pos += 1;
                        let (args, end) = self.args(false)?;
                        node = Ast {
                            span: node.span.start..end,
                            kind: AstKind::Method {
                                obj: Box::new(node),
                                name,
                                name_span: n.span,
                                args,
                            },
                        };
                    } else {
                        node = Ast {
                            span: node.span.start..n.span.end,
                            kind: AstKind::Member {
                                obj: Box::new(node),
                                name,
                                name_span: n.span,
                            },
                        };
                    }
                }
                Tok::Op("[") => {
                    self.pos += 1;
                    let from = if self.is_op(":") {
                        None
                    } else {
                        Some(Box::new(self.expr(0)?))
                    };
                    if self.is_op(":") {
                        self.pos += 1;
                        let to = if self.is_op("]") {
                            None
                        } else {
                            Some(Box::new(self.expr(0)?))
                        };
                        let close = self.expect_op("]")?;
                        node = Ast {
                            span: node.span.start..close.span.end,
                            kind: AstKind::Slice {
                                obj: Box::new(node),
                                from,
                                to,
                            },
                        };
                    } else {
                        let close = self.expect_op("]")?;
                        let Some(index) = from else {
                            return Err(self.unexpected(&close, "an index"));
                        };
                        node = Ast {
                            span: node.span.start..close.span.end,
                            kind: AstKind::Index {
                                obj: Box::new(node),
                                index,
                            },
                        };
                    }
                }
                _ => return Ok(node),
            }
        }
    }
}
