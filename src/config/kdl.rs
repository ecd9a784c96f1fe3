//! KDL 2 documents into the [`Node`] tree.
//!
//! The mapping (the same data model as JSON, so every KDL config has a JSON twin):
//! - a document, or a node's `{ ... }` block, is an object; each child node is a key;
//! - a block whose children are all named `-` is a list, one element per `-` node;
//! - a node's value: no arguments → `true`; one argument → that value; several → a list;
//!   properties and/or a block → an object of the properties and children; one argument
//!   *plus* properties or a block → that object with `name` set to the argument
//!   (`- "ssh-bf" { capacity 5 }` is `{"name": "ssh-bf", "capacity": 5}`);
//! - a key may appear once per block: lists are written as several arguments or `-` children.

use super::diag::{Diagnostic, Diagnostics, SourceFile};
use super::tree::{Entry, Node, Span, Value};
use kdl::{KdlDocument, KdlEntry, KdlNode, KdlValue};
use std::sync::Arc;

/// Parses a KDL file into a tree, reporting syntax and mapping errors.
pub fn parse(file: &Arc<SourceFile>) -> Result<Node, Diagnostics> {
    let doc: KdlDocument = match file.text.parse() {
        Ok(doc) => doc,
        Err(err) => {
            let err: kdl::KdlError = err;
            let mut diags = Diagnostics::default();
            for d in err.diagnostics {
                let start = d.span.offset();
                let mut span = Span::new(start, start + d.span.len().max(1));
                // The parser sometimes blames the whole document; find the likely culprit.
                let multi_line = file
                    .text
                    .get(span.start..span.end.min(file.text.len()))
                    .is_some_and(|t| t.trim_end().contains('\n'));
                let mut digit_word = false;
                if multi_line && let Some(found) = find_unquoted_digit_word(&file.text) {
                    span = found;
                    digit_word = true;
                }
                let message = d
                    .message
                    .clone()
                    .unwrap_or_else(|| "invalid KDL syntax".to_owned());
                let mut diag = Diagnostic::new(file, span, format!("KDL syntax: {message}"));
                let hint = if digit_word {
                    kdl2_hint(file, span)
                } else {
                    kdl2_hint(file, span).or_else(|| d.help.clone())
                };
                diag.hint = hint;
                diags.push(diag);
            }
            if diags.is_empty() {
                diags.push(Diagnostic::new(
                    file,
                    Span::new(0, 1),
                    "invalid KDL document",
                ));
            }
            return Err(diags);
        }
    };
    let mut diags = Diagnostics::default();
    let span = Span::new(0, file.text.len());
    let node = block(file, &doc, span, &mut diags);
    if diags.is_empty() {
        Ok(node)
    } else {
        Err(diags)
    }
}

/// Finds a bare word starting with a digit and followed by letters (`4h`, `10s`) outside
/// strings and comments: KDL 2 rejects it, and its parser does not always say where.
fn find_unquoted_digit_word(text: &str) -> Option<Span> {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            b'#' if b.get(i + 1) == Some(&b'"') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'"' && b[i + 1] == b'#') {
                    i += 1;
                }
                i += 1;
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            c if c.is_ascii_digit() && (i == 0 || matches!(b[i - 1], b' ' | b'=' | b'\t')) => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    i += 1;
                }
                let word = &text[start..i];
                if word.bytes().any(|c| c.is_ascii_alphabetic())
                    && !word.starts_with("0x")
                    && !word.contains('e')
                {
                    return Some(Span::new(start, i));
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Hints for the KDL 1 habits that KDL 2 rejects.
fn kdl2_hint(file: &SourceFile, span: Span) -> Option<String> {
    let rest = file.text.get(span.start..)?;
    for (word, fix) in [("true", "#true"), ("false", "#false"), ("null", "#null")] {
        if rest.starts_with(word) {
            return Some(format!("KDL 2 writes booleans and null as `{fix}`"));
        }
    }
    if rest.starts_with(|c: char| c.is_ascii_digit()) {
        return Some(
            "values starting with a digit, like durations (`10s`), must be quoted: \"10s\"".into(),
        );
    }
    None
}

fn ident_span(n: &KdlNode) -> Span {
    let s = n.name().span();
    Span::new(s.offset(), s.offset() + s.len())
}

fn entry_span(e: &KdlEntry) -> Span {
    let s = e.span();
    Span::new(s.offset(), s.offset() + s.len())
}

fn block(file: &Arc<SourceFile>, doc: &KdlDocument, span: Span, diags: &mut Diagnostics) -> Node {
    let nodes = doc.nodes();
    let dashes = nodes.iter().filter(|n| n.name().value() == "-").count();
    if dashes > 0 {
        if dashes != nodes.len()
            && let Some(n) = nodes.iter().find(|n| n.name().value() != "-")
        {
            diags.push(
                Diagnostic::new(
                    file,
                    ident_span(n),
                    "a block mixes `-` list items with named keys",
                )
                .with_hint("write either only `-` items (a list) or only named keys (a block)"),
            );
        }
        let items = nodes
            .iter()
            .filter(|n| n.name().value() == "-")
            .map(|n| node_value(file, n, diags))
            .collect();
        return Node {
            value: Value::Array(items),
            span,
        };
    }
    let mut entries: Vec<Entry> = Vec::with_capacity(nodes.len());
    for n in nodes {
        let key = n.name().value().to_owned();
        let key_span = ident_span(n);
        if let Some(first) = entries.iter().find(|e| e.key == key) {
            let (line, col) = file.line_col(first.key_span.start);
            diags.push(
                Diagnostic::new(file, key_span, format!("`{key}` is given twice"))
                    .with_hint(format!(
                        "first given at line {line}, column {col}; to give several values write them as arguments (`{key} a b`) or as `-` items in a block"
                    )),
            );
            continue;
        }
        let value = node_value(file, n, diags);
        entries.push(Entry {
            key,
            key_span,
            value,
        });
    }
    Node {
        value: Value::Object(entries),
        span,
    }
}

fn scalar(file: &Arc<SourceFile>, e: &KdlEntry, diags: &mut Diagnostics) -> Node {
    let mut span = entry_span(e);
    // A property's span covers `key=value`; point at the value.
    if e.name().is_some()
        && let Some(eq) = file
            .text
            .get(span.start..span.end)
            .and_then(|t| t.find('='))
    {
        span.start += eq + 1;
    }
    if let Some(ty) = e.ty() {
        diags.push(
            Diagnostic::new(
                file,
                span,
                format!("type annotation `({})` is not used by garrison", ty.value()),
            )
            .with_hint("remove the annotation; the schema gives every value its type"),
        );
    }
    let value = match e.value() {
        KdlValue::String(s) => Value::Str(s.clone()),
        KdlValue::Integer(i) => match i64::try_from(*i) {
            Ok(i) => Value::Int(i),
            Err(_) => {
                diags.push(Diagnostic::new(file, span, "integer out of range"));
                Value::Null
            }
        },
        KdlValue::Float(f) => Value::Float(*f),
        KdlValue::Bool(b) => Value::Bool(*b),
        KdlValue::Null => Value::Null,
    };
    Node { value, span }
}

fn node_value(file: &Arc<SourceFile>, n: &KdlNode, diags: &mut Diagnostics) -> Node {
    let name_span = ident_span(n);
    if let Some(ty) = n.ty() {
        diags.push(
            Diagnostic::new(
                file,
                name_span,
                format!("type annotation `({})` is not used by garrison", ty.value()),
            )
            .with_hint("remove the annotation"),
        );
    }
    let args: Vec<&KdlEntry> = n.entries().iter().filter(|e| e.name().is_none()).collect();
    let props: Vec<&KdlEntry> = n.entries().iter().filter(|e| e.name().is_some()).collect();
    let children = n.children();

    if props.is_empty() && children.is_none() {
        return match args.as_slice() {
            [] => Node {
                value: Value::Bool(true),
                span: name_span,
            },
            [one] => scalar(file, one, diags),
            many => {
                let span = entry_span(many[0]).join(entry_span(many[many.len() - 1]));
                let items = many.iter().map(|e| scalar(file, e, diags)).collect();
                Node {
                    value: Value::Array(items),
                    span,
                }
            }
        };
    }

    // A block: children (if any) as an object or list, then properties and the name argument.
    let mut node = match children {
        Some(doc) => {
            let s = n.span();
            block(
                file,
                doc,
                Span::new(s.offset(), s.offset() + s.len()),
                diags,
            )
        }
        None => Node {
            value: Value::Object(Vec::new()),
            span: name_span,
        },
    };
    node.span = name_span;
    let Value::Object(entries) = &mut node.value else {
        // `-` items: a list. Properties or an argument beside a list have no place to go.
        if let Some(e) = args.first().or(props.first()) {
            diags.push(
                Diagnostic::new(
                    file,
                    entry_span(e),
                    "a list block (`-` items) takes no arguments or properties",
                )
                .with_hint("move this value into the items"),
            );
        }
        return node;
    };
    let mut prefix: Vec<Entry> = Vec::new();
    match args.as_slice() {
        [] => {}
        [one] => prefix.push(Entry {
            key: "name".into(),
            key_span: entry_span(one),
            value: scalar(file, one, diags),
        }),
        [_, second, ..] => diags.push(
            Diagnostic::new(
                file,
                entry_span(second),
                "a node with a block or properties takes at most one argument (its name)",
            )
            .with_hint("give the other values as properties (`key=value`) or as children"),
        ),
    }
    for p in props {
        let Some(id) = p.name() else { continue };
        let key_span = Span::new(id.span().offset(), id.span().offset() + id.span().len());
        prefix.push(Entry {
            key: id.value().to_owned(),
            key_span,
            value: scalar(file, p, diags),
        });
    }
    for p in prefix.into_iter().rev() {
        if let Some(dup) = entries.iter().find(|e| e.key == p.key) {
            diags.push(
                Diagnostic::new(file, dup.key_span, format!("`{}` is given twice", p.key))
                    .with_hint("it is already given as an argument or property of this node"),
            );
            continue;
        }
        entries.insert(0, p);
    }
    node
}
