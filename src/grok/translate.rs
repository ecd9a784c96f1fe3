//! Tokenizer for one grok pattern text: splits it into `%{...}` references,
//! named groups and raw regex text, translating the raw text from the RE2
//! dialect (what CrowdSec runs) into the dialect of the Rust `regex` crate.
//!
//! Differences handled here (RE2 → Rust `regex`):
//!
//! * `\d \s \w \D \S \W` are ASCII-only in RE2 but Unicode-aware in Rust:
//!   they become explicit ASCII classes (which also keeps the DFAs small).
//! * `\b` is an ASCII word boundary in RE2: it becomes `(?-u:\b)`, which also
//!   avoids the Unicode word boundary that makes the lazy DFA give up on
//!   non-ASCII input. `\B` becomes `(?-u:\B)`.
//! * `\<` and `\>` are escaped literals in RE2 but word-boundary assertions in
//!   Rust; every escaped punctuation character is re-emitted as a literal.
//! * `{` that does not start a valid `{n}`, `{n,}` or `{n,m}` repetition is a
//!   literal in RE2 and an error in Rust: it is escaped. `}` and `]` outside a
//!   class are escaped too.
//! * Inside a character class, `[` (except `[:name:]`), `&`, `~` and a `-` that
//!   is not a range operator are literals in RE2 but (potential) nested-class
//!   or set operators in Rust: they are escaped.
//! * `\Q...\E` quoting (RE2 only) becomes escaped literals; octal escapes
//!   (`\0`, `\12`, `\123`) become `\x{..}`.
//! * Every plain capturing group `( ... )` becomes non-capturing `(?: ... )`:
//!   CrowdSec only reports captures coming from `%{NAME:field}`, and fewer
//!   capture slots make matching cheaper.

use std::ops::Range;

/// One token of a pattern text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece<'a> {
    /// Regex text already translated to the Rust dialect.
    Raw(String),
    /// `%{NAME}`, `%{NAME:field}` or `%{NAME:field:type}` (type ignored).
    Ref {
        /// Referenced pattern name.
        name: &'a str,
        /// Field name, if any.
        field: Option<&'a str>,
        /// Byte span of the whole reference inside the pattern text.
        span: Range<usize>,
    },
    /// Opening of a named group `(?P<field>` / `(?<field>`; the closing `)` is
    /// part of a later `Raw` piece.
    NamedGroup {
        /// Field name.
        field: &'a str,
    },
}

/// A translation error: message and byte span inside the pattern text.
pub(crate) type TranslateError = (String, Range<usize>);

const DIGIT: &str = "0-9";
const WORD: &str = "0-9A-Za-z_";
const SPACE: &str = r"\t\n\f\r ";

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Characters with a meaning in Rust's regex syntax (inside or outside a
/// class, including verbose mode and class set operators). Only these are
/// escaped: an escaped `<` or `>` would be a word-boundary assertion.
fn is_meta(c: char) -> bool {
    matches!(
        c,
        '\\' | '.'
            | '+'
            | '*'
            | '?'
            | '('
            | ')'
            | '|'
            | '['
            | ']'
            | '{'
            | '}'
            | '^'
            | '$'
            | '#'
            | '&'
            | '-'
            | '~'
    )
}

/// Pushes `c` as a literal (inside or outside a character class).
fn push_literal(out: &mut String, c: char) {
    if is_meta(c) {
        out.push('\\');
    }
    out.push(c);
}

/// If `src[i..]` starts with a valid counted repetition `{n}`, `{n,}` or
/// `{n,m}`, returns its length in bytes.
fn repetition_len(src: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    let digits_start = j;
    while j < src.len() && src[j].is_ascii_digit() {
        j += 1;
    }
    if j == digits_start || j >= src.len() {
        return None;
    }
    if src[j] == b',' {
        j += 1;
        while j < src.len() && src[j].is_ascii_digit() {
            j += 1;
        }
    }
    if j < src.len() && src[j] == b'}' {
        Some(j + 1 - i)
    } else {
        None
    }
}

/// Parses an octal escape starting at `src[i]` (the first digit). Returns the
/// character and the number of digits consumed.
fn octal(src: &[u8], i: usize) -> Option<(char, usize)> {
    let mut value: u32 = 0;
    let mut n = 0;
    while n < 3 && i + n < src.len() && (b'0'..=b'7').contains(&src[i + n]) {
        value = value * 8 + u32::from(src[i + n] - b'0');
        n += 1;
    }
    // RE2: `\1`..`\7` alone would be a backreference; `\0` alone is NUL.
    if n == 0 || (n == 1 && src[i] != b'0') {
        return None;
    }
    char::from_u32(value).map(|c| (c, n))
}

/// Copies `\p{...}`, `\pX`, `\x{...}` or `\xHH` starting at the backslash at
/// `i`. Returns the index after it.
fn copy_braced_escape(src: &str, i: usize, out: &mut String) -> Result<usize, TranslateError> {
    let bytes = src.as_bytes();
    let kind = bytes[i + 1];
    let start = i;
    let mut j = i + 2;
    if j < bytes.len() && bytes[j] == b'{' {
        match src[j..].find('}') {
            Some(k) => j += k + 1,
            None => {
                return Err((
                    format!("unterminated \\{}{{...}} escape", kind as char),
                    start..src.len(),
                ));
            }
        }
    } else {
        let n = if kind == b'x' { 2 } else { 1 };
        for _ in 0..n {
            match src[j..].chars().next() {
                Some(c) => j += c.len_utf8(),
                None => {
                    return Err((
                        format!("incomplete \\{} escape", kind as char),
                        start..src.len(),
                    ));
                }
            }
        }
    }
    out.push_str(&src[start..j]);
    Ok(j)
}

/// Translates `\Q...\E` starting at the backslash at `i`.
fn quoted(src: &str, i: usize, out: &mut String) -> usize {
    let body_start = i + 2;
    let (body, next) = match src[body_start..].find("\\E") {
        Some(k) => (&src[body_start..body_start + k], body_start + k + 2),
        None => (&src[body_start..], src.len()),
    };
    for c in body.chars() {
        push_literal(out, c);
    }
    next
}

/// Splits and translates one pattern text.
pub(crate) fn translate(src: &str) -> Result<Vec<Piece<'_>>, TranslateError> {
    let bytes = src.as_bytes();
    let mut pieces = Vec::new();
    let mut out = String::with_capacity(src.len() + 16);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' if bytes.get(i + 1) == Some(&b'{')
                && bytes.get(i + 2).is_some_and(|&c| is_word_byte(c)) =>
            {
                let Some(close) = src[i + 2..].find('}') else {
                    return Err(("unterminated %{...} reference".into(), i..src.len()));
                };
                let inner = &src[i + 2..i + 2 + close];
                let span = i..i + 3 + close;
                let mut parts = inner.splitn(3, ':');
                let name = parts.next().unwrap_or_default();
                if !name.bytes().all(is_word_byte) {
                    return Err((
                        format!("invalid pattern name {name:?} (expected letters, digits and _)"),
                        span,
                    ));
                }
                let field = parts.next();
                if let Some(f) = field
                    && (f.is_empty()
                        || f.chars().any(|c| c.is_whitespace() || c == '%' || c == '{'))
                {
                    return Err((format!("invalid field name {f:?}"), span));
                }
                if !out.is_empty() {
                    pieces.push(Piece::Raw(std::mem::take(&mut out)));
                }
                pieces.push(Piece::Ref {
                    name,
                    field,
                    span: span.clone(),
                });
                i = span.end;
            }
            b'\\' => {
                let Some(&e) = bytes.get(i + 1) else {
                    return Err(("trailing backslash".into(), i..i + 1));
                };
                match e {
                    b'd' => out.push_str("[0-9]"),
                    b'D' => out.push_str("[^0-9]"),
                    b'w' => out.push_str("[0-9A-Za-z_]"),
                    b'W' => out.push_str("[^0-9A-Za-z_]"),
                    b's' => out.push_str(r"[\t\n\f\r ]"),
                    b'S' => out.push_str(r"[^\t\n\f\r ]"),
                    b'b' => out.push_str(r"(?-u:\b)"),
                    b'B' => out.push_str(r"(?-u:\B)"),
                    b'p' | b'P' | b'x' => {
                        i = copy_braced_escape(src, i, &mut out)?;
                        continue;
                    }
                    b'Q' => {
                        i = quoted(src, i, &mut out);
                        continue;
                    }
                    b'0'..=b'9' => match octal(bytes, i + 1) {
                        Some((c, n)) => {
                            out.push_str(&format!("\\x{{{:x}}}", c as u32));
                            i += 1 + n;
                            continue;
                        }
                        None => return Err(("backreferences are not supported".into(), i..i + 2)),
                    },
                    _ if e.is_ascii_punctuation() => push_literal(&mut out, e as char),
                    _ if e.is_ascii() => {
                        // \A \z \a \f \t \n \r \v and errors left to the regex parser.
                        out.push('\\');
                        out.push(e as char);
                    }
                    _ => {
                        // Escaped non-ASCII character: a literal.
                        let c = src[i + 1..].chars().next().unwrap_or(' ');
                        out.push(c);
                        i += 1 + c.len_utf8();
                        continue;
                    }
                }
                i += 2;
            }
            b'[' => {
                i = class(src, i, &mut out)?;
            }
            b'(' => {
                let rest = &src[i..];
                let name_start = if rest.starts_with("(?P<") {
                    Some(i + 4)
                } else if rest.starts_with("(?<") {
                    Some(i + 3)
                } else {
                    None
                };
                if let Some(ns) = name_start {
                    let Some(k) = src[ns..].find('>') else {
                        return Err(("unterminated group name".into(), i..src.len()));
                    };
                    let field = &src[ns..ns + k];
                    if field.is_empty() || !field.bytes().all(is_word_byte) {
                        return Err((format!("invalid group name {field:?}"), i..ns + k + 1));
                    }
                    if !out.is_empty() {
                        pieces.push(Piece::Raw(std::mem::take(&mut out)));
                    }
                    pieces.push(Piece::NamedGroup { field });
                    i = ns + k + 1;
                } else if rest.starts_with("(?") {
                    // Non-capturing or flag group: copied as is.
                    out.push_str("(?");
                    i += 2;
                } else {
                    out.push_str("(?:");
                    i += 1;
                }
            }
            b'{' => match repetition_len(bytes, i) {
                Some(n) => {
                    out.push_str(&src[i..i + n]);
                    i += n;
                }
                None => {
                    out.push_str(r"\{");
                    i += 1;
                }
            },
            b'}' | b']' | b'#' => {
                out.push('\\');
                out.push(b as char);
                i += 1;
            }
            _ => {
                let c = src[i..].chars().next().unwrap_or(' ');
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    if !out.is_empty() {
        pieces.push(Piece::Raw(out));
    }
    Ok(pieces)
}

/// Translates a character class starting at the `[` at `start`; returns the
/// index after its closing `]`.
fn class(src: &str, start: usize, out: &mut String) -> Result<usize, TranslateError> {
    let bytes = src.as_bytes();
    let unclosed = || {
        (
            "missing closing ] for character class".to_string(),
            start..src.len(),
        )
    };
    out.push('[');
    let mut i = start + 1;
    if bytes.get(i) == Some(&b'^') {
        out.push('^');
        i += 1;
    }
    // A `]` right after `[` or `[^` is a literal.
    let mut prev_is_char = false;
    if bytes.get(i) == Some(&b']') {
        out.push_str(r"\]");
        i += 1;
        prev_is_char = true;
    }
    // True right after a range operator: the next item is the range's end.
    let mut range_end = false;
    loop {
        let Some(&b) = bytes.get(i) else {
            return Err(unclosed());
        };
        // Whether the item handled in this iteration is a single character.
        let item_is_char;
        match b {
            b']' => {
                out.push(']');
                return Ok(i + 1);
            }
            b'[' if bytes.get(i + 1) == Some(&b':') => {
                // POSIX class `[:alpha:]` / `[:^alpha:]`: same syntax in both.
                match src[i + 2..].find(":]") {
                    Some(k)
                        if src[i + 2..i + 2 + k]
                            .bytes()
                            .all(|c| c.is_ascii_alphabetic() || c == b'^') =>
                    {
                        out.push_str(&src[i..i + 4 + k]);
                        i += 4 + k;
                        item_is_char = false;
                    }
                    _ => {
                        out.push_str(r"\[");
                        i += 1;
                        item_is_char = true;
                    }
                }
            }
            b'\\' => {
                let Some(&e) = bytes.get(i + 1) else {
                    return Err(unclosed());
                };
                item_is_char = match e {
                    b'd' | b'D' | b'w' | b'W' | b's' | b'S' => {
                        let (neg, set) = match e {
                            b'd' => (false, DIGIT),
                            b'D' => (true, DIGIT),
                            b'w' => (false, WORD),
                            b'W' => (true, WORD),
                            b's' => (false, SPACE),
                            _ => (true, SPACE),
                        };
                        out.push('[');
                        if neg {
                            out.push('^');
                        }
                        out.push_str(set);
                        out.push(']');
                        i += 2;
                        false
                    }
                    b'p' | b'P' => {
                        i = copy_braced_escape(src, i, out)?;
                        false
                    }
                    b'x' => {
                        i = copy_braced_escape(src, i, out)?;
                        true
                    }
                    b'Q' => {
                        i = quoted(src, i, out);
                        false
                    }
                    b'0'..=b'9' => match octal(bytes, i + 1) {
                        Some((c, n)) => {
                            out.push_str(&format!("\\x{{{:x}}}", c as u32));
                            i += 1 + n;
                            true
                        }
                        None => return Err(("backreferences are not supported".into(), i..i + 2)),
                    },
                    _ if e.is_ascii_punctuation() => {
                        push_literal(out, e as char);
                        i += 2;
                        true
                    }
                    _ if e.is_ascii() => {
                        out.push('\\');
                        out.push(e as char);
                        i += 2;
                        true
                    }
                    _ => {
                        let c = src[i + 1..].chars().next().unwrap_or(' ');
                        out.push(c);
                        i += 1 + c.len_utf8();
                        true
                    }
                };
            }
            b'-' if prev_is_char && !range_end && bytes.get(i + 1).is_some_and(|&n| n != b']') => {
                out.push('-');
                i += 1;
                range_end = true;
                continue;
            }
            _ => {
                let c = src[i..].chars().next().unwrap_or(' ');
                push_literal(out, c);
                i += c.len_utf8();
                item_is_char = true;
            }
        }
        if range_end {
            range_end = false;
            prev_is_char = false;
        } else {
            prev_is_char = item_is_char;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(src: &str) -> String {
        translate(src)
            .expect("translate")
            .into_iter()
            .map(|p| match p {
                Piece::Raw(s) => s,
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn escapes_and_classes() {
        assert_eq!(raw(r"\d+\s\w"), r"[0-9]+[\t\n\f\r ][0-9A-Za-z_]");
        assert_eq!(raw(r"\bfoo\b"), r"(?-u:\b)foo(?-u:\b)");
        assert_eq!(raw(r"\<a\>"), "<a>");
        assert_eq!(raw(r"[\w_%!$@:.,~-]"), r"[[0-9A-Za-z_]_%!\$@:\.,\~\-]");
        assert_eq!(raw(r"[+-=]"), r"[\+-=]");
        assert_eq!(raw(r"[a-z-]"), r"[a-z\-]");
        assert_eq!(raw(r"[]a[]"), r"[\]a\[]");
        assert_eq!(raw(r"[[:alpha:]&&]"), r"[[:alpha:]\&\&]");
        assert_eq!(raw(r"a{,3}b{2,}"), r"a\{,3\}b{2,}");
        assert_eq!(raw(r"(a)(?:b)(?i)"), r"(?:a)(?:b)(?i)");
        assert_eq!(raw(r"\Qa.b\E."), r"a\.b.");
        assert_eq!(raw(r"\101\0"), r"\x{41}\x{0}");
        assert_eq!(raw(r"\x21\p{Greek}\pL"), r"\x21\p{Greek}\pL");
        assert_eq!(raw("é[é]"), "é[é]");
    }

    #[test]
    fn translated_escapes_compile() {
        for p in [
            r"\<a\>",
            r"[\w_%!$@:.,~-]",
            r"[+-=]",
            r"[]a[]",
            r"a{,3}",
            r"[^\s\S]",
            r"[\d-x]",
            r"[!--]",
        ] {
            let t = raw(p);
            assert!(regex::Regex::new(&t).is_ok(), "{p} -> {t}");
        }
        let re = regex::Regex::new(&raw(r"^\<a\>$")).expect("compile");
        assert!(re.is_match("<a>"));
        let re = regex::Regex::new(&raw(r"^[+-=]+$")).expect("compile");
        assert!(re.is_match("+,-./09:;<="));
    }

    #[test]
    fn references() {
        let p = translate("a%{IP:ip}b%{WORD}%{NUMBER:n:int}%{ x").expect("ok");
        assert_eq!(p.len(), 6, "{p:?}");
        assert_eq!(
            p[1],
            Piece::Ref {
                name: "IP",
                field: Some("ip"),
                span: 1..9
            }
        );
        assert_eq!(
            p[3],
            Piece::Ref {
                name: "WORD",
                field: None,
                span: 10..17
            }
        );
        assert!(matches!(
            p[4],
            Piece::Ref {
                name: "NUMBER",
                field: Some("n"),
                ..
            }
        ));
        assert_eq!(p[5], Piece::Raw(r"%\{ x".into()));
        assert!(translate("%{IP").is_err());
        assert!(translate("%{IP-X}").is_err());
        assert!(translate(r"\1").is_err());
        assert!(translate(r"[abc").is_err());
        assert!(translate("\\").is_err());
    }

    #[test]
    fn named_groups() {
        let p = translate("(?P<a>x)(?<b>y)").expect("ok");
        assert_eq!(
            p,
            vec![
                Piece::NamedGroup { field: "a" },
                Piece::Raw("x)".into()),
                Piece::NamedGroup { field: "b" },
                Piece::Raw("y)".into()),
            ]
        );
    }
}
