//! JSON documents into the [`Node`] tree (strict JSON: no comments, no trailing commas).

use super::diag::{Diagnostic, Diagnostics, SourceFile};
use super::tree::{Entry, Node, Span, Value};
use jsonc_parser::ast;
use std::sync::Arc;

/// Parses a JSON file into a tree.
pub fn parse(file: &Arc<SourceFile>) -> Result<Node, Diagnostics> {
    let options = jsonc_parser::ParseOptions {
        allow_comments: false,
        allow_loose_object_property_names: false,
        allow_trailing_commas: false,
        allow_missing_commas: false,
        allow_single_quoted_strings: false,
        allow_hexadecimal_numbers: false,
        allow_unary_plus_numbers: false,
        allow_bare_decimal_point_numbers: false,
        allow_non_finite_numbers: false,
        allow_extended_string_escapes: false,
    };
    let parsed =
        jsonc_parser::parse_to_ast(&file.text, &Default::default(), &options).map_err(|e| {
            let r = e.range();
            Diagnostics::from(Diagnostic::new(
                file,
                Span::new(r.start, r.end.max(r.start + 1)),
                format!("JSON syntax: {}", e.kind()),
            ))
        })?;
    let Some(value) = parsed.value else {
        return Err(
            Diagnostic::new(file, Span::new(0, 1), "empty JSON document")
                .with_hint("a configuration is a JSON object: {}")
                .into(),
        );
    };
    let mut diags = Diagnostics::default();
    let node = convert(file, &value, &mut diags);
    if diags.is_empty() {
        Ok(node)
    } else {
        Err(diags)
    }
}

fn span(r: jsonc_parser::common::Range) -> Span {
    Span::new(r.start, r.end)
}

fn convert(file: &Arc<SourceFile>, v: &ast::Value<'_>, diags: &mut Diagnostics) -> Node {
    use jsonc_parser::common::Ranged;
    let sp = span(v.range());
    let value = match v {
        ast::Value::StringLit(s) => Value::Str(s.value.to_string()),
        ast::Value::NumberLit(n) => {
            if let Ok(i) = n.value.parse::<i64>() {
                Value::Int(i)
            } else if let Ok(f) = n.value.parse::<f64>() {
                Value::Float(f)
            } else {
                diags.push(Diagnostic::new(file, sp, "number out of range"));
                Value::Null
            }
        }
        ast::Value::BooleanLit(b) => Value::Bool(b.value),
        ast::Value::NullKeyword(_) => Value::Null,
        ast::Value::Array(a) => {
            Value::Array(a.elements.iter().map(|e| convert(file, e, diags)).collect())
        }
        ast::Value::Object(o) => {
            let mut entries: Vec<Entry> = Vec::with_capacity(o.properties.len());
            for p in &o.properties {
                let (key, key_span) = match &p.name {
                    ast::ObjectPropName::String(s) => (s.value.to_string(), span(s.range)),
                    ast::ObjectPropName::Word(w) => (w.value.to_owned(), span(w.range)),
                };
                if entries.iter().any(|e| e.key == key) {
                    diags.push(Diagnostic::new(
                        file,
                        key_span,
                        format!("`{key}` is given twice"),
                    ));
                    continue;
                }
                entries.push(Entry {
                    key,
                    key_span,
                    value: convert(file, &p.value, diags),
                });
            }
            Value::Object(entries)
        }
    };
    Node { value, span: sp }
}
