//! Tokenizer for the expression language (expr-lang compatible subset).

use super::ExprError;
use std::ops::Range;

/// One token kind.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// An identifier or word operator (`and`, `in`, `contains`, ...).
    Ident(String),
    /// An integer literal.
    Int(i64),
    /// A float literal.
    Float(f64),
    /// A string literal, escapes resolved.
    Str(String),
    /// Punctuation or a symbolic operator.
    Op(&'static str),
    /// End of input.
    Eof,
}

/// A token with its byte span in the source.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub tok: Tok,
    pub span: Range<usize>,
}

const OPS: &[&str] = &[
    "??", "?.", "**", "==", "!=", "<=", ">=", "&&", "||", "..", "(", ")", "[", "]", "{", "}", ",",
    ".", ":", ";", "?", "!", "=", "<", ">", "+", "-", "*", "/", "%", "#", "^", "|",
];

/// Splits `src` into tokens; the last one is always [`Tok::Eof`].
pub(crate) fn lex(src: &str) -> Result<Vec<Token>, ExprError> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        // Comments: `// ...` and `/* ... */` (expr-lang supports both).
        if c == b'/' && bytes.get(i + 1) == Some(&b'/') {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if c == b'/' && bytes.get(i + 1) == Some(&b'*') {
            let start = i;
            i += 2;
            loop {
                if i + 1 >= bytes.len() {
                    return Err(ExprError::new(start..src.len(), "unterminated comment"));
                }
                if bytes[i] == b'*' && bytes[i + 1] == b'/' {
                    i += 2;
                    break;
                }
                i += 1;
            }
            continue;
        }
        let start = i;
        if c.is_ascii_alphabetic() || c == b'_' || c == b'$' {
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b'$')
            {
                i += 1;
            }
            out.push(Token {
                tok: Tok::Ident(src[start..i].to_owned()),
                span: start..i,
            });
            continue;
        }
        if c.is_ascii_digit() || (c == b'.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            out.push(lex_number(src, &mut i)?);
            continue;
        }
        if c == b'\'' || c == b'"' || c == b'`' {
            out.push(lex_string(src, &mut i)?);
            continue;
        }
        let rest = &src[i..];
        if let Some(op) = OPS.iter().find(|op| rest.starts_with(**op)) {
            // `?.` followed by a digit is `? .5`, not optional chaining.
            let op = if *op == "?." && bytes.get(i + 2).is_some_and(u8::is_ascii_digit) {
                "?"
            } else {
                op
            };
            i += op.len();
            out.push(Token {
                tok: Tok::Op(op),
                span: start..i,
            });
            continue;
        }
        let ch_len = rest.chars().next().map_or(1, char::len_utf8);
        return Err(ExprError::new(
            start..start + ch_len,
            format!("unexpected character {:?}", &rest[..ch_len]),
        ));
    }
    out.push(Token {
        tok: Tok::Eof,
        span: src.len()..src.len(),
    });
    Ok(out)
}

fn lex_number(src: &str, i: &mut usize) -> Result<Token, ExprError> {
    let bytes = src.as_bytes();
    let start = *i;
    // Hex / octal / binary integers.
    if bytes[start] == b'0'
        && matches!(
            bytes.get(start + 1),
            Some(b'x' | b'X' | b'o' | b'O' | b'b' | b'B')
        )
    {
        let radix = match bytes[start + 1] {
            b'x' | b'X' => 16,
            b'o' | b'O' => 8,
            _ => 2,
        };
        *i += 2;
        while *i < bytes.len() && (bytes[*i].is_ascii_alphanumeric() || bytes[*i] == b'_') {
            *i += 1;
        }
        let digits: String = src[start + 2..*i].chars().filter(|c| *c != '_').collect();
        return i64::from_str_radix(&digits, radix)
            .map(|v| Token {
                tok: Tok::Int(v),
                span: start..*i,
            })
            .map_err(|_| ExprError::new(start..*i, "invalid integer literal"));
    }
    let mut is_float = false;
    while *i < bytes.len() && (bytes[*i].is_ascii_digit() || bytes[*i] == b'_') {
        *i += 1;
    }
    // A fraction, but not the range operator `1..2`.
    if *i < bytes.len() && bytes[*i] == b'.' && bytes.get(*i + 1) != Some(&b'.') {
        is_float = true;
        *i += 1;
        while *i < bytes.len() && (bytes[*i].is_ascii_digit() || bytes[*i] == b'_') {
            *i += 1;
        }
    }
    if *i < bytes.len() && (bytes[*i] == b'e' || bytes[*i] == b'E') {
        let save = *i;
        *i += 1;
        if *i < bytes.len() && (bytes[*i] == b'+' || bytes[*i] == b'-') {
            *i += 1;
        }
        if *i < bytes.len() && bytes[*i].is_ascii_digit() {
            is_float = true;
            while *i < bytes.len() && bytes[*i].is_ascii_digit() {
                *i += 1;
            }
        } else {
            *i = save;
        }
    }
    let text: String = src[start..*i].chars().filter(|c| *c != '_').collect();
    let span = start..*i;
    if is_float {
        text.parse::<f64>()
            .map(|v| Token {
                tok: Tok::Float(v),
                span: span.clone(),
            })
            .map_err(|_| ExprError::new(span, "invalid number literal"))
    } else {
        text.parse::<i64>()
            .map(|v| Token {
                tok: Tok::Int(v),
                span: span.clone(),
            })
            .map_err(|_| ExprError::new(span, "integer literal out of range"))
    }
}

fn lex_string(src: &str, i: &mut usize) -> Result<Token, ExprError> {
    let start = *i;
    let quote = src.as_bytes()[start];
    let mut out = String::new();
    let mut chars = src[start + 1..].char_indices();
    while let Some((off, c)) = chars.next() {
        let pos = start + 1 + off;
        if c as u32 == u32::from(quote) {
            *i = pos + 1;
            return Ok(Token {
                tok: Tok::Str(out),
                span: start..*i,
            });
        }
        if c == '\\' && quote != b'`' {
            let Some((eoff, e)) = chars.next() else {
                break;
            };
            let esc_end = start + 1 + eoff + e.len_utf8();
            let bad = |end: usize| ExprError::new(pos..end, "invalid escape sequence in string");
            match e {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'a' => out.push('\x07'),
                'b' => out.push('\x08'),
                'f' => out.push('\x0c'),
                'v' => out.push('\x0b'),
                '0'..='7' => {
                    // Go-style octal: exactly three digits.
                    let mut v = e.to_digit(8).unwrap_or(0);
                    let mut end = esc_end;
                    for _ in 0..2 {
                        match chars.next() {
                            Some((o, d)) if d.is_digit(8) => {
                                v = v * 8 + d.to_digit(8).unwrap_or(0);
                                end = start + 1 + o + 1;
                            }
                            _ => return Err(bad(end)),
                        }
                    }
                    match char::from_u32(v) {
                        Some(ch) if v <= 255 => out.push(ch),
                        _ => return Err(bad(end)),
                    }
                }
                'x' | 'u' | 'U' => {
                    let n = match e {
                        'x' => 2,
                        'u' => 4,
                        _ => 8,
                    };
                    let mut v: u32 = 0;
                    let mut end = esc_end;
                    for _ in 0..n {
                        match chars.next() {
                            Some((o, d)) if d.is_ascii_hexdigit() => {
                                v = v.wrapping_mul(16).wrapping_add(d.to_digit(16).unwrap_or(0));
                                end = start + 1 + o + 1;
                            }
                            _ => return Err(bad(end)),
                        }
                    }
                    match char::from_u32(v) {
                        Some(ch) => out.push(ch),
                        None => return Err(bad(end)),
                    }
                }
                '\\' | '\'' | '"' | '`' => out.push(e),
                _ => return Err(bad(esc_end)),
            }
            continue;
        }
        out.push(c);
    }
    Err(
        ExprError::new(start..src.len(), "unterminated string literal")
            .with_hint(format!("close it with {}", quote as char)),
    )
}
