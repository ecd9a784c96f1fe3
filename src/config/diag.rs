//! Diagnostics that point into the user's files: `file:line:col`, the offending line with a
//! caret, and a hint.

use super::tree::Span;
use std::fmt;
use std::sync::Arc;

/// The format of a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// KDL 2.
    Kdl,
    /// JSON.
    Json,
}

impl Format {
    /// Picks the format from a file name: `.json` is JSON, everything else KDL.
    pub fn from_path(path: &str) -> Format {
        if path.ends_with(".json") {
            Format::Json
        } else {
            Format::Kdl
        }
    }
}

/// A file that diagnostics can point into.
#[derive(Debug)]
pub struct SourceFile {
    /// How the file is named in messages (its path, or `<embedded default>`).
    pub name: String,
    /// Its text.
    pub text: String,
    /// Its format.
    pub format: Format,
}

impl SourceFile {
    /// A shared source file.
    pub fn new(name: impl Into<String>, text: impl Into<String>, format: Format) -> Arc<Self> {
        Arc::new(SourceFile {
            name: name.into(),
            text: text.into(),
            format,
        })
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(&self.text, offset.min(self.text.len()));
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = self.text[line_start..offset].chars().count() + 1;
        (line, col)
    }

    /// The full text of the line containing `offset`, and that line's start offset.
    fn line_at(&self, offset: usize) -> (&str, usize) {
        let offset = floor_char_boundary(&self.text, offset.min(self.text.len()));
        let start = self.text[..offset].rfind('\n').map_or(0, |i| i + 1);
        let end = self.text[offset..]
            .find('\n')
            .map_or(self.text.len(), |i| offset + i);
        (self.text[start..end].trim_end_matches('\r'), start)
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// One problem found in a configuration or rule file.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    /// The file it is in (`None` for problems with no location, such as a missing file).
    pub file: Option<Arc<SourceFile>>,
    /// Where in the file.
    pub span: Span,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
    /// For JSON files and model errors: the JSON pointer of the value.
    pub pointer: Option<String>,
}

impl Diagnostic {
    /// A diagnostic at a span of a file.
    pub fn new(file: &Arc<SourceFile>, span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            file: Some(file.clone()),
            span,
            message: message.into(),
            hint: None,
            pointer: None,
        }
    }

    /// A diagnostic with no location.
    pub fn global(message: impl Into<String>) -> Self {
        Diagnostic {
            file: None,
            span: Span::default(),
            message: message.into(),
            hint: None,
            pointer: None,
        }
    }

    /// Adds a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Adds a hint if there is one.
    pub fn with_opt_hint(mut self, hint: Option<String>) -> Self {
        if hint.is_some() {
            self.hint = hint;
        }
        self
    }

    /// Adds the JSON pointer of the value.
    pub fn with_pointer(mut self, pointer: impl Into<String>) -> Self {
        self.pointer = Some(pointer.into());
        self
    }

    /// `file:line:col` of the start of the span, if the diagnostic has a file.
    pub fn location(&self) -> Option<String> {
        let file = self.file.as_ref()?;
        let (line, col) = file.line_col(self.span.start);
        Some(format!("{}:{line}:{col}", file.name))
    }
}

impl fmt::Display for Diagnostic {
    /// Renders in the style of rustc:
    ///
    /// ```text
    /// error: unknown field `capcity`
    ///   --> config.kdl:12:5 (/scenarios/0/capcity)
    ///    |
    /// 12 |     capcity 5
    ///    |     ^^^^^^^
    ///    = hint: did you mean `capacity`?
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "error: {}", self.message)?;
        if let Some(file) = &self.file {
            let (line_no, col) = file.line_col(self.span.start);
            let gutter = line_no.to_string().len();
            let pad = " ".repeat(gutter);
            write!(f, "{pad}--> {}:{line_no}:{col}", file.name)?;
            if let Some(p) = &self.pointer {
                write!(f, " ({p})")?;
            }
            writeln!(f)?;
            let (line, line_start) = file.line_at(self.span.start);
            writeln!(f, "{pad} |")?;
            writeln!(f, "{line_no} | {line}")?;
            let start_chars = line
                .get(..self.span.start.saturating_sub(line_start).min(line.len()))
                .map_or(0, |s| s.chars().count());
            let end_in_line = self.span.end.saturating_sub(line_start).min(line.len());
            let width = line
                .get(self.span.start.saturating_sub(line_start).min(line.len())..end_in_line)
                .map_or(1, |s| s.chars().count().max(1));
            writeln!(
                f,
                "{pad} | {}{}",
                " ".repeat(start_chars),
                "^".repeat(width)
            )?;
            if let Some(hint) = &self.hint {
                writeln!(f, "{pad} = hint: {hint}")?;
            }
        } else {
            if let Some(p) = &self.pointer {
                writeln!(f, "  at {p}")?;
            }
            if let Some(hint) = &self.hint {
                writeln!(f, "  = hint: {hint}")?;
            }
        }
        Ok(())
    }
}

/// Several diagnostics: compilation reports every problem it finds, not only the first.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// True when nothing is wrong.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds one.
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    /// Number of diagnostics.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Diagnostics(vec![d])
    }
}

/// The closest candidate to `word`, if it is close enough to be a plausible typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let mut best: Option<(&str, f64)> = None;
    for c in candidates {
        let score = strsim::jaro_winkler(word, c);
        if score > 0.8 && best.is_none_or(|(_, s)| score > s) {
            best = Some((c, score));
        }
    }
    best.map(|(c, _)| c)
}
