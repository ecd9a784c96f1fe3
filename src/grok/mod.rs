//! Grok pattern libraries and the grok → regex compiler.
//!
//! CrowdSec parsers describe log lines with grok patterns such as
//! `Failed %{WORD:sshd_auth_type} for %{USERNAME:sshd_invalid_user} from %{IP:sshd_client_ip}`.
//! A [`PatternLibrary`] maps pattern names to pattern texts; [`compile`]
//! expands the references recursively into one [`regex::Regex`] and returns a
//! [`Grok`] that reports field values as byte ranges, without allocating per
//! line.
//!
//! # Semantics (CrowdSec / grokky compatible)
//!
//! * `%{NAME}` inserts pattern `NAME` (as a non-capturing group);
//!   `%{NAME:field}` also captures the sub-match as `field`;
//!   `%{NAME:field:type}` is accepted and the type ignored.
//! * Fields of referenced patterns propagate outwards: `%{COMMONAPACHELOG}`
//!   yields `clientip`, `verb`, `request`, ...; `%{NAME:field}` captures
//!   `field` *and* keeps the fields inside `NAME`.
//! * The outer name wins on conflict: when a pattern text names a field
//!   itself (in any of its references), same-named fields coming from inside
//!   its references are dropped (they become non-capturing).
//! * A field may be carried by several groups (alternatives such as
//!   `SSHD_LOG`, or repeated names in sequence). Its value is the **last
//!   group in pattern order that matched a non-empty string**. For sequences
//!   this is what grokky does (its name → group map keeps the last group);
//!   for alternatives grokky would report the last alternative even when it
//!   did not participate (an empty value) — here the alternative that matched
//!   is reported instead.
//! * Empty values are not reported: a field whose groups all matched the
//!   empty string (or did not participate) produces no callback. Note that
//!   CrowdSec itself stores such fields as `""` in `evt.Parsed` (overwriting
//!   any earlier value); a caller wanting that exact behaviour can set every
//!   name of [`Grok::fields`] to `""` before applying the callbacks.
//! * Named groups written directly in the regex text (`(?P<x>...)`,
//!   `(?<x>...)`) are treated like `%{...:x}` captures at that level (grokky
//!   silently ignores them; no hub pattern uses them).
//! * Matching is an unanchored leftmost-first search, like Go's
//!   `FindStringSubmatch`, unless the pattern anchors itself with `^`/`$`.
//! * The RE2 dialect is translated to the Rust `regex` dialect (ASCII `\d \w
//!   \s \b`, literal `\<`, literal `{`, class escapes...); the full list
//!   is in the `translate` submodule's documentation.
//!
//! # Shortcuts: smaller variants where a line cannot tell the difference
//!
//! Capturing runs a backtracker that clears and walks a visited set of automaton states ×
//! line length, so the size of the automaton is paid on every line. Two stock patterns
//! make it large, and each has a cheap test on the line that shows it cannot matter:
//!
//! * `IPV6` is a large alternation (every grok referencing `IP` or `IPORHOST` compiled to
//!   thousands of states). Every string it matches contains `::` or at least six `:`; on a
//!   line with neither it can never match, so it is replaced by a class that matches
//!   nothing.
//! * `HOSTNAME` bounds each label to 63 characters with `{0,62}`, unrolled into 62 states
//!   per label and occurrence. On a line with no run of 64 or more label characters
//!   (`[0-9A-Za-z-]`) no label can reach the bound, so `*` matches exactly the same.
//!
//! Each grok referencing them gets the variants (same capture groups), compiled on first
//! use; a line runs the smallest variant its tests allow, with the same match and
//! captures as the full pattern. Only the exact stock texts get a shortcut.
//!
//! # Native scanners
//!
//! A grok whose expanded regex is exactly a stock text with a native scanner (see
//! `native.rs`; today the nginx access line) tries the scanner first. The scanner accepts
//! only lines on which the regex's captures are forced, returns exactly those, and
//! declines everything else to the regex.
//!
//! # Layering
//!
//! References are resolved through the [`Resolver`] trait. A parser's local
//! `pattern_syntax` goes into its own small [`PatternLibrary`] and is layered
//! over the shared one with [`PatternLibrary::with_local`]; lookups try the
//! local library first **at every depth**, so a local pattern overrides the
//! shared one of the same name everywhere in that compilation (like grokky's
//! `Edit`). CrowdSec itself adds local patterns to its global host, where a
//! name clash is an error.

mod finder;
mod literal;
mod native;
mod pairs;
pub use finder::LiteralFinder;
pub use pairs::{PairGate, PairSet};
mod translate;

use std::fmt;
use std::ops::Range;

use indexmap::IndexMap;
use regex::{CaptureLocations, Regex, RegexBuilder};
use std::sync::{Arc, OnceLock};

use translate::{Piece, translate};

/// Maximum nesting depth of pattern references.
const MAX_DEPTH: usize = 64;
/// Maximum size of an expanded regex, in bytes.
const MAX_EXPANDED_LEN: usize = 4 << 20;
/// Compiled-program size limit handed to the regex crate.
const REGEX_SIZE_LIMIT: usize = 64 << 20;

/// The stock `IPV6` pattern (rules/patterns/base.kdl; a test keeps them equal). Only this
/// exact text gets the shortcut described in the module docs.
const STOCK_IPV6: &str = r#"((([0-9A-Fa-f]{1,4}:){7}([0-9A-Fa-f]{1,4}|:))|(([0-9A-Fa-f]{1,4}:){6}(:[0-9A-Fa-f]{1,4}|((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3})|:))|(([0-9A-Fa-f]{1,4}:){5}(((:[0-9A-Fa-f]{1,4}){1,2})|:((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3})|:))|(([0-9A-Fa-f]{1,4}:){4}(((:[0-9A-Fa-f]{1,4}){1,3})|((:[0-9A-Fa-f]{1,4})?:((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}))|:))|(([0-9A-Fa-f]{1,4}:){3}(((:[0-9A-Fa-f]{1,4}){1,4})|((:[0-9A-Fa-f]{1,4}){0,2}:((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}))|:))|(([0-9A-Fa-f]{1,4}:){2}(((:[0-9A-Fa-f]{1,4}){1,5})|((:[0-9A-Fa-f]{1,4}){0,3}:((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}))|:))|(([0-9A-Fa-f]{1,4}:){1}(((:[0-9A-Fa-f]{1,4}){1,6})|((:[0-9A-Fa-f]{1,4}){0,4}:((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}))|:))|(:(((:[0-9A-Fa-f]{1,4}){1,7})|((:[0-9A-Fa-f]{1,4}){0,5}:((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}))|:)))(%.+)?"#;

/// A regex that matches nothing (an empty class): stands for `IPV6` in the variants that
/// drop it.
const NEVER: &str = r"[^\x00-\x{10FFFF}]";

/// The stock `HOSTNAME` pattern (rules/patterns/base.kdl; a test keeps them equal).
const STOCK_HOSTNAME: &str =
    r"\b[0-9A-Za-z][0-9A-Za-z-]{0,62}(?:\.[0-9A-Za-z][0-9A-Za-z-]{0,62})*(\.?|\b)";

/// [`STOCK_HOSTNAME`] without the label bound: the same matches on a line where no run
/// of label characters reaches 64 bytes.
const RELAXED_HOSTNAME: &str = r"\b[0-9A-Za-z][0-9A-Za-z-]*(?:\.[0-9A-Za-z][0-9A-Za-z-]*)*(\.?|\b)";

/// Whether `h` could contain a match of the stock `IPV6` pattern: every such match has
/// `::` or at least six colons.
fn may_hold_ipv6(h: &str) -> bool {
    let h = h.as_bytes();
    let mut colons = 0;
    memchr::memchr_iter(b':', h).any(|i| {
        colons += 1;
        colons == 6 || h.get(i + 1) == Some(&b':')
    })
}

/// Whether `h` has a run of 64 or more label characters (`[0-9A-Za-z-]`), where a
/// hostname label could exceed the stock pattern's bound of 63. Such a run covers one of
/// the positions 63, 127, 191...: only the runs through those are measured, a few bytes
/// each on a usual line instead of every byte (this runs for every grok tried on a line).
fn may_hold_long_label(h: &str) -> bool {
    const RUN: usize = 64;
    let h = h.as_bytes();
    let label = |c: &u8| c.is_ascii_alphanumeric() || *c == b'-';
    let mut probe = RUN - 1;
    while probe < h.len() {
        if label(&h[probe]) {
            let before = h[..probe].iter().rev().take_while(|c| label(c)).count();
            let after = h[probe..].iter().take_while(|c| label(c)).count();
            if before + after >= RUN {
                return true;
            }
        }
        probe += RUN;
    }
    false
}

/// Which shortcuts an expansion takes (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Shortcuts {
    /// Expand the stock `IPV6` as [`NEVER`].
    drop_ipv6: bool,
    /// Expand the stock `HOSTNAME` as [`RELAXED_HOSTNAME`].
    relax_hostname: bool,
}

impl Shortcuts {
    /// Every combination but none, by [`Shortcuts::index`].
    const ALL: [Shortcuts; 3] = [
        Shortcuts {
            drop_ipv6: true,
            relax_hostname: false,
        },
        Shortcuts {
            drop_ipv6: false,
            relax_hostname: true,
        },
        Shortcuts {
            drop_ipv6: true,
            relax_hostname: true,
        },
    ];

    /// The position in [`Shortcuts::ALL`], or `None` for no shortcut.
    fn index(self) -> Option<usize> {
        (usize::from(self.drop_ipv6) | usize::from(self.relax_hostname) << 1).checked_sub(1)
    }

    /// Whether every shortcut of `self` is also in `other`.
    fn within(self, other: Shortcuts) -> bool {
        (!self.drop_ipv6 || other.drop_ipv6) && (!self.relax_hostname || other.relax_hostname)
    }
}

/// An error while building a library or compiling a grok pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrokError {
    /// Human-readable description.
    pub message: String,
    /// Byte span inside the pattern text (or the KDL document for
    /// [`PatternLibrary::add_kdl`]) the error refers to, when known.
    pub offset: Option<Range<usize>>,
    /// A suggestion ("did you mean `IPV4`?"), when one is available.
    pub hint: Option<String>,
}

impl GrokError {
    fn new(message: impl Into<String>, offset: Option<Range<usize>>) -> Self {
        GrokError {
            message: message.into(),
            offset,
            hint: None,
        }
    }
}

impl fmt::Display for GrokError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(span) = &self.offset {
            write!(f, " (at bytes {}..{})", span.start, span.end)?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for GrokError {}

/// Something that maps pattern names to pattern texts.
pub trait Resolver {
    /// Returns the pattern text called `name`.
    fn resolve(&self, name: &str) -> Option<&str>;
    /// Calls `f` with every known pattern name (used for "did you mean"
    /// hints; order is irrelevant).
    fn for_each_name(&self, f: &mut dyn FnMut(&str));
}

/// An ordered collection of named grok patterns (name → pattern text).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatternLibrary {
    patterns: IndexMap<Box<str>, Box<str>>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl PatternLibrary {
    /// Creates an empty library.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds pattern `name`. Names are ASCII letters, digits and `_`; the
    /// pattern must not be empty; adding an existing name is an error.
    /// References are not checked here (forward references are allowed):
    /// use [`PatternLibrary::check`] or [`compile`].
    pub fn add(&mut self, name: &str, pattern: &str) -> Result<(), GrokError> {
        if !valid_name(name) {
            return Err(GrokError::new(
                format!("invalid pattern name {name:?} (expected ASCII letters, digits and _)"),
                None,
            ));
        }
        if pattern.is_empty() {
            return Err(GrokError::new(format!("pattern {name} is empty"), None));
        }
        if self.patterns.contains_key(name) {
            return Err(GrokError::new(
                format!("pattern {name} is already defined"),
                None,
            ));
        }
        self.patterns.insert(name.into(), pattern.into());
        Ok(())
    }

    /// Returns the pattern text called `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.patterns.get(name).map(|p| &**p)
    }

    /// Number of patterns.
    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    /// Whether the library is empty.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Iterates over `(name, pattern)` in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.patterns.iter().map(|(k, v)| (&**k, &**v))
    }

    /// Layers `local` over this library: `local` is consulted first.
    pub fn with_local<'a>(&'a self, local: &'a PatternLibrary) -> Layered<'a> {
        Layered::new(local, self)
    }

    /// Compiles every pattern of this library (resolving through `resolver`,
    /// which normally contains this library) and returns the first failure
    /// with the name of the offending pattern.
    pub fn check(&self, resolver: &(impl Resolver + ?Sized)) -> Result<(), (String, GrokError)> {
        for (name, pattern) in self.iter() {
            compile(pattern, resolver).map_err(|e| (name.to_string(), e))?;
        }
        Ok(())
    }

    /// Adds the patterns of a KDL document in garrison's format:
    ///
    /// ```kdl
    /// patterns {
    ///     USERNAME #"[a-zA-Z0-9._-]+"#
    /// }
    /// ```
    ///
    /// Every top-level node must be `patterns`; each child's name is a
    /// pattern name and its single argument the pattern text. Error offsets
    /// are byte spans inside `text`.
    pub fn add_kdl(&mut self, text: &str) -> Result<(), GrokError> {
        let doc: kdl::KdlDocument = text.parse().map_err(|e: kdl::KdlError| {
            let diag = e.diagnostics.first();
            let span = diag.map(|d| d.span.offset()..d.span.offset() + d.span.len());
            let message = diag
                .and_then(|d| d.message.clone())
                .unwrap_or_else(|| "invalid KDL document".to_string());
            GrokError {
                message,
                offset: span,
                hint: diag.and_then(|d| d.help.clone()),
            }
        })?;
        let span_of = |s: miette::SourceSpan| Some(s.offset()..s.offset() + s.len());
        for node in doc.nodes() {
            if node.name().value() != "patterns" {
                return Err(GrokError {
                    message: format!("unexpected node `{}`", node.name().value()),
                    offset: span_of(node.name().span()),
                    hint: Some(
                        "pattern files contain `patterns { NAME \"regex\" ... }` blocks".into(),
                    ),
                });
            }
            let Some(children) = node.children() else {
                continue;
            };
            for child in children.nodes() {
                let name = child.name().value();
                let pattern = match child.entries() {
                    [entry] if entry.name().is_none() => entry.value().as_string(),
                    _ => None,
                };
                let Some(pattern) = pattern else {
                    return Err(GrokError {
                        message: format!("pattern {name} must have exactly one string argument"),
                        offset: span_of(child.span()),
                        hint: Some("write regexes as raw strings: NAME #\"...\"#".into()),
                    });
                };
                if child.children().is_some() {
                    return Err(GrokError::new(
                        format!("pattern {name} must not have children"),
                        span_of(child.span()),
                    ));
                }
                self.add(name, pattern).map_err(|e| GrokError {
                    offset: span_of(child.span()),
                    ..e
                })?;
            }
        }
        Ok(())
    }

    /// Parses a KDL pattern document into a new library (see
    /// [`PatternLibrary::add_kdl`]).
    pub fn from_kdl(text: &str) -> Result<Self, GrokError> {
        let mut lib = Self::new();
        lib.add_kdl(text)?;
        Ok(lib)
    }
}

impl Resolver for PatternLibrary {
    fn resolve(&self, name: &str) -> Option<&str> {
        self.get(name)
    }

    fn for_each_name(&self, f: &mut dyn FnMut(&str)) {
        for name in self.patterns.keys() {
            f(name);
        }
    }
}

/// A local library layered over a base resolver (which may itself be a
/// [`Layered`]): names are looked up in `local` first.
#[derive(Clone, Copy)]
pub struct Layered<'a> {
    local: &'a PatternLibrary,
    base: &'a dyn Resolver,
}

impl<'a> Layered<'a> {
    /// Layers `local` over `base`.
    pub fn new(local: &'a PatternLibrary, base: &'a dyn Resolver) -> Self {
        Layered { local, base }
    }
}

impl fmt::Debug for Layered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Layered")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl Resolver for Layered<'_> {
    fn resolve(&self, name: &str) -> Option<&str> {
        self.local.resolve(name).or_else(|| self.base.resolve(name))
    }

    fn for_each_name(&self, f: &mut dyn FnMut(&str)) {
        self.local.for_each_name(f);
        self.base.for_each_name(f);
    }
}

/// Suggests a known name close to `unknown`.
fn did_you_mean(unknown: &str, lib: &(impl Resolver + ?Sized)) -> Option<String> {
    let mut best: Option<(f64, String)> = None;
    let upper = unknown.to_ascii_uppercase();
    lib.for_each_name(&mut |name| {
        let score = if name.eq_ignore_ascii_case(unknown) {
            2.0
        } else {
            strsim::jaro_winkler(&upper, &name.to_ascii_uppercase())
        };
        if score >= 0.8 && best.as_ref().is_none_or(|(s, _)| score > *s) {
            best = Some((score, name.to_string()));
        }
    });
    best.map(|(_, name)| format!("did you mean `{name}`?"))
}

/// The spans a native scanner fills (see [`Grok::native_spans`]).
pub type NativeSpans = [(usize, usize); native::MAX_GROUPS];

/// When [`compile_with`] builds a grok's regex.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Build {
    /// At once, so that a pattern too large for the regex crate is reported with the
    /// rest of the configuration's errors.
    Now,
    /// At the first line that needs it. Building is most of a ruleset's compile time,
    /// and a run needs few of the shipped patterns (a syslog replay none of the web
    /// ones): for patterns a test builds, such as the shipped rules'.
    OnFirstUse,
}

/// A grok's full regex: built at compile time or on first use (see [`Build`]).
#[derive(Debug, Clone)]
struct FullRegex {
    text: Box<str>,
    built: OnceLock<Option<Regex>>,
}

impl FullRegex {
    /// The regex, built now if it was not. A build that fails here (over the regex
    /// crate's size limit: only a pattern built on first use can get this far) is logged
    /// once and matches nothing, so a line is never stalled or crashed on.
    fn get(&self) -> Option<&Regex> {
        self.built
            .get_or_init(|| {
                build_regex(&self.text)
                    .map_err(|e| {
                        tracing::error!(
                            "a grok regex could not be built, it matches nothing: {}",
                            regex_error_message(&e)
                        );
                    })
                    .ok()
            })
            .as_ref()
    }
}

/// A compiled grok pattern.
#[derive(Debug, Clone)]
pub struct Grok {
    regex: FullRegex,
    fields: Box<[Box<str>]>,
    /// For each field, the range of `groups` holding its capture groups.
    field_groups: Box<[Range<u32>]>,
    /// Capture group indices, grouped by field, in pattern order.
    groups: Box<[u32]>,
    required_literal: Option<Box<str>>,
    /// The byte pairs of every literal run a match must contain (of one branch).
    required_pairs: PairGate,
    /// When the pattern uses the stock `IPV6` or `HOSTNAME`: the smaller variants (see
    /// the module docs), and which shortcuts the pattern can take.
    variants: Option<Arc<Variants>>,
    /// A native scanner for this stock pattern, tried before the regex.
    native: Option<native::Native>,
}

/// The variants of a grok, by [`Shortcuts::index`]; each compiled on first use.
#[derive(Debug)]
struct Variants {
    /// The shortcuts that apply: the stock patterns the grok references.
    possible: Shortcuts,
    texts: [Option<Box<str>>; 3],
    regexes: [OnceLock<Option<Regex>>; 3],
}

impl Variants {
    /// The regex of the variant with these shortcuts (`None` if it was not built or does
    /// not compile).
    fn regex(&self, shortcuts: Shortcuts) -> Option<&Regex> {
        let i = shortcuts.index()?;
        let text = self.texts.get(i)?.as_deref()?;
        self.regexes
            .get(i)?
            .get_or_init(|| build_regex(text).ok())
            .as_ref()
    }
}

/// Compiles an expanded pattern (a grok or one of its variants) with the size limits.
fn build_regex(text: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(text)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
}

/// Expansion state for one [`compile`] call.
struct Expander<'r, R: ?Sized> {
    lib: &'r R,
    out: String,
    /// Capture group `i + 1` carries field `group_fields[i]`.
    group_fields: Vec<usize>,
    fields: IndexMap<Box<str>, ()>,
    /// Names being expanded (cycle detection).
    stack: Vec<&'r str>,
    /// Field names declared explicitly at each level being expanded.
    shadow: Vec<Vec<&'r str>>,
    /// Span of the top-level reference being expanded, for error offsets.
    top_span: Option<Range<usize>>,
    /// The shortcuts this expansion takes.
    shortcuts: Shortcuts,
    /// The stock patterns referenced, as the shortcuts they allow.
    saw: Shortcuts,
}

impl<'r, R: Resolver + ?Sized> Expander<'r, R> {
    /// A fresh expansion into a buffer of `capacity` bytes, taking `shortcuts`.
    fn new(lib: &'r R, capacity: usize, shortcuts: Shortcuts) -> Self {
        Expander {
            lib,
            out: String::with_capacity(capacity),
            group_fields: Vec::new(),
            fields: IndexMap::new(),
            stack: Vec::new(),
            shadow: Vec::new(),
            top_span: None,
            shortcuts,
            saw: Shortcuts::default(),
        }
    }

    fn error(&self, message: String) -> GrokError {
        GrokError::new(message, self.top_span.clone())
    }

    fn open_capture(&mut self, field: &str) {
        let index = match self.fields.get_index_of(field) {
            Some(i) => i,
            None => self.fields.insert_full(field.into(), ()).0,
        };
        self.group_fields.push(index);
        self.out.push('(');
    }

    /// Whether `field` is declared explicitly by an enclosing level (which
    /// then wins over this inner occurrence).
    fn shadowed(&self, field: &str) -> bool {
        let ancestors = &self.shadow[..self.shadow.len().saturating_sub(1)];
        ancestors.iter().any(|level| level.contains(&field))
    }

    fn expand(&mut self, text: &'r str, depth: usize) -> Result<(), GrokError> {
        let top = depth == 0;
        if depth > MAX_DEPTH {
            return Err(self.error(format!(
                "pattern references nested deeper than {MAX_DEPTH} levels"
            )));
        }
        let pieces = translate(text).map_err(|(message, span)| {
            if top {
                GrokError::new(message, Some(span))
            } else {
                let name = self.stack.last().copied().unwrap_or_default();
                self.error(format!(
                    "in pattern {name}: {message} (at byte {} of its text)",
                    span.start
                ))
            }
        })?;
        let explicit: Vec<&'r str> = pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Ref { field, .. } => *field,
                Piece::NamedGroup { field } => Some(*field),
                Piece::Raw(_) => None,
            })
            .collect();
        self.shadow.push(explicit);
        for piece in pieces {
            match piece {
                Piece::Raw(s) => self.out.push_str(&s),
                Piece::NamedGroup { field } => {
                    if self.shadowed(field) {
                        self.out.push_str("(?:");
                    } else {
                        self.open_capture(field);
                    }
                }
                Piece::Ref { name, field, span } => {
                    if top {
                        self.top_span = Some(span.clone());
                    }
                    let Some(body) = self.lib.resolve(name) else {
                        let mut err = if top {
                            GrokError::new(format!("unknown pattern `{name}`"), Some(span))
                        } else {
                            let parent = self.stack.last().copied().unwrap_or_default();
                            self.error(format!("unknown pattern `{name}` (referenced by {parent})"))
                        };
                        err.hint = did_you_mean(name, self.lib);
                        return Err(err);
                    };
                    if let Some(pos) = self.stack.iter().position(|n| *n == name) {
                        let mut chain: Vec<&str> = self.stack[pos..].to_vec();
                        chain.push(name);
                        return Err(
                            self.error(format!("pattern reference cycle: {}", chain.join(" -> ")))
                        );
                    }
                    match field {
                        Some(f) if !self.shadowed(f) => self.open_capture(f),
                        _ => self.out.push_str("(?:"),
                    }
                    let ipv6 = name == "IPV6" && body == STOCK_IPV6;
                    let hostname = name == "HOSTNAME" && body == STOCK_HOSTNAME;
                    self.saw.drop_ipv6 |= ipv6;
                    self.saw.relax_hostname |= hostname;
                    if ipv6 && self.shortcuts.drop_ipv6 {
                        self.out.push_str(NEVER);
                    } else {
                        let body = if hostname && self.shortcuts.relax_hostname {
                            RELAXED_HOSTNAME
                        } else {
                            body
                        };
                        self.stack.push(name);
                        self.expand(body, depth + 1)?;
                        self.stack.pop();
                    }
                    self.out.push(')');
                }
            }
            if self.out.len() > MAX_EXPANDED_LEN {
                return Err(
                    self.error(format!("expanded pattern exceeds {MAX_EXPANDED_LEN} bytes"))
                );
            }
        }
        self.shadow.pop();
        Ok(())
    }
}

/// Keeps the `error: ...` lines of a regex error (the full message echoes the
/// whole, possibly huge, expanded pattern).
fn regex_error_message(err: &regex::Error) -> String {
    match err {
        regex::Error::Syntax(s) => {
            let lines: Vec<&str> = s.lines().filter(|l| l.starts_with("error:")).collect();
            if lines.is_empty() {
                s.clone()
            } else {
                lines.join("; ")
            }
        }
        regex::Error::CompiledTooBig(limit) => {
            format!("compiled regex exceeds the size limit of {limit} bytes")
        }
        other => other.to_string(),
    }
}

/// Compiles grok `pattern`, resolving `%{NAME}` references through `lib`.
///
/// Errors carry the byte span of the offending part of `pattern` when it can
/// be located (a bad reference, or the reference whose expansion is invalid)
/// and a "did you mean" hint for unknown names.
pub fn compile(pattern: &str, lib: &(impl Resolver + ?Sized)) -> Result<Grok, GrokError> {
    compile_with(pattern, lib, Build::Now)
}

/// [`compile`], building the regex when `build` says. With [`Build::OnFirstUse`] the
/// expanded pattern's syntax is not checked here: for patterns a test builds.
pub fn compile_with(
    pattern: &str,
    lib: &(impl Resolver + ?Sized),
    build: Build,
) -> Result<Grok, GrokError> {
    if pattern.is_empty() {
        return Err(GrokError::new("empty grok pattern", None));
    }
    let mut exp = Expander::new(lib, pattern.len() * 4, Shortcuts::default());
    exp.expand(pattern, 0)?;
    let built = OnceLock::new();
    if build == Build::Now {
        let regex = build_regex(&exp.out).map_err(|e| locate_regex_error(pattern, lib, &e))?;
        let _ = built.set(Some(regex));
    }

    let mut field_groups = Vec::with_capacity(exp.fields.len());
    let mut groups = Vec::with_capacity(exp.group_fields.len());
    for field in 0..exp.fields.len() {
        let start = groups.len() as u32;
        for (i, f) in exp.group_fields.iter().enumerate() {
            if *f == field {
                groups.push(i as u32 + 1);
            }
        }
        field_groups.push(start..groups.len() as u32);
    }
    let required_literal = literal::required_literal(&exp.out).map(String::into_boxed_str);
    let required_pairs = PairGate::of_branches(&literal::required_runs_by_branch(&exp.out));
    let variants = if exp.saw.index().is_some() {
        let mut texts: [Option<Box<str>>; 3] = Default::default();
        for (text, shortcuts) in texts.iter_mut().zip(Shortcuts::ALL) {
            if !shortcuts.within(exp.saw) {
                continue;
            }
            let mut v = Expander::new(lib, exp.out.len(), shortcuts);
            v.expand(pattern, 0)?;
            // Same groups in the same order, so capture locations are interchangeable.
            if v.group_fields == exp.group_fields {
                *text = Some(v.out.into_boxed_str());
            }
        }
        Some(Arc::new(Variants {
            possible: exp.saw,
            texts,
            regexes: Default::default(),
        }))
    } else {
        None
    };
    let fields: Box<[Box<str>]> = exp.fields.into_keys().collect();
    let native = native::Native::for_pattern(&exp.out, &fields, &exp.group_fields);
    Ok(Grok {
        regex: FullRegex {
            text: exp.out.into_boxed_str(),
            built,
        },
        fields,
        field_groups: field_groups.into_boxed_slice(),
        groups: groups.into_boxed_slice(),
        required_literal,
        required_pairs,
        variants,
        native,
    })
}

/// Finds which top-level reference of `pattern` makes the regex invalid, by
/// compiling each referenced pattern on its own (error path only).
fn locate_regex_error(
    pattern: &str,
    lib: &(impl Resolver + ?Sized),
    err: &regex::Error,
) -> GrokError {
    let message = regex_error_message(err);
    if let Ok(pieces) = translate(pattern) {
        for piece in pieces {
            if let Piece::Ref { name, span, .. } = piece
                && let Some(body) = lib.resolve(name)
                && let Err(inner) = compile(body, lib)
            {
                return GrokError {
                    message: format!("in pattern {name}: {}", inner.message),
                    offset: Some(span),
                    hint: inner.hint,
                };
            }
        }
    }
    GrokError::new(format!("invalid regex: {message}"), Some(0..pattern.len()))
}

impl Grok {
    /// The unique field names this pattern can produce, in order of first
    /// appearance. Field indices passed to callbacks index this slice.
    pub fn fields(&self) -> &[Box<str>] {
        &self.fields
    }

    /// Index of field `name` in [`Grok::fields`].
    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| &**f == name)
    }

    /// The compiled regex (its capture groups are the field groups, numbered
    /// from 1 in pattern order; everything else is non-capturing), built now if it was
    /// not; `None` when it cannot be built (see [`Build::OnFirstUse`]).
    pub fn regex(&self) -> Option<&Regex> {
        self.regex.get()
    }

    /// The expanded regex text.
    pub fn as_str(&self) -> &str {
        &self.regex.text
    }

    /// Whether the pattern matches somewhere in `haystack`.
    pub fn is_match(&self, haystack: &str) -> bool {
        self.regex_for(haystack)
            .is_some_and(|regex| regex.is_match(haystack))
    }

    /// The regex to run on `haystack`: the smallest variant whose shortcuts the line allows
    /// (same match and captures as the full pattern, a smaller automaton).
    fn regex_for(&self, haystack: &str) -> Option<&Regex> {
        let Some(v) = &self.variants else {
            return self.regex.get();
        };
        let shortcuts = Shortcuts {
            drop_ipv6: v.possible.drop_ipv6 && !may_hold_ipv6(haystack),
            relax_hostname: v.possible.relax_hostname && !may_hold_long_label(haystack),
        };
        v.regex(shortcuts).or_else(|| self.regex.get())
    }

    /// Whether a native scanner reads this pattern (see `native.rs`).
    pub fn has_native(&self) -> bool {
        self.native.is_some()
    }

    /// The grok field index of each span [`Grok::native_spans`] fills: empty when no
    /// native scanner reads this pattern.
    pub fn native_fields(&self) -> &[usize] {
        self.native.as_ref().map_or(&[], |n| n.fields())
    }

    /// The native scanner's verdict on `haystack` (`None`: there is no scanner, or it
    /// leaves the line to the regex, which [`Grok::captures_into`] then runs). The scanner
    /// reads bytes, and its spans start and end at ASCII bytes or the ends. On a match,
    /// `spans[i]` is the byte range of the field [`Grok::native_fields`]`[i]` (an empty
    /// range: no value): what `captures_into` would report, without a call per capture.
    #[inline]
    pub fn native_spans(&self, haystack: &[u8], spans: &mut NativeSpans) -> Option<bool> {
        self.native.as_ref()?.spans(haystack, spans)
    }

    /// Searches `haystack`; on a match calls `out(field_index, start, end)`
    /// once per field that has a non-empty value (see the module docs for
    /// which group wins) and returns `true`. Byte offsets index `haystack`.
    ///
    /// `locs` holds this grok's capture locations for the next search: `None` at first,
    /// allocated by the first search that needs them (a line a native scanner decides
    /// does not build the regex), replaced if they belong to a regex with a different
    /// number of groups (the only allocations this method can do). Patterns without
    /// fields only run the (faster) match test.
    #[inline]
    pub fn captures_into(
        &self,
        haystack: &str,
        locs: &mut Option<CaptureLocations>,
        mut out: impl FnMut(usize, usize, usize),
    ) -> bool {
        if let Some(decided) = self
            .native
            .as_ref()
            .and_then(|native| native.captures(haystack, &mut out))
        {
            return decided;
        }
        self.regex_captures(haystack, locs, out)
    }

    /// [`Grok::captures_into`] without the native scanner: the regex decides (for a
    /// caller that ran [`Grok::native_spans`] first).
    pub fn regex_captures(
        &self,
        haystack: &str,
        locs: &mut Option<CaptureLocations>,
        mut out: impl FnMut(usize, usize, usize),
    ) -> bool {
        let Some(regex) = self.regex_for(haystack) else {
            return false;
        };
        if self.groups.is_empty() {
            return regex.is_match(haystack);
        }
        let locs = match locs {
            Some(locs) if locs.len() == regex.captures_len() => locs,
            _ => locs.insert(regex.capture_locations()),
        };
        if regex.captures_read(locs, haystack).is_none() {
            return false;
        }
        for (field, range) in self.field_groups.iter().enumerate() {
            let groups = self
                .groups
                .get(range.start as usize..range.end as usize)
                .unwrap_or_default();
            for &g in groups.iter().rev() {
                if let Some((start, end)) = locs.get(g as usize)
                    && start < end
                {
                    out(field, start, end);
                    break;
                }
            }
        }
        true
    }

    /// Convenience (allocating) variant of [`Grok::captures_into`]: returns
    /// `(field, value)` pairs in field order, or `None` when there is no
    /// match.
    pub fn captures<'h>(&self, haystack: &'h str) -> Option<Vec<(&str, &'h str)>> {
        let mut locs = None;
        let mut values = Vec::new();
        let matched = self.captures_into(haystack, &mut locs, |field, start, end| {
            if let (Some(name), Some(value)) = (self.fields.get(field), haystack.get(start..end)) {
                values.push((&**name, value));
            }
        });
        matched.then_some(values)
    }

    /// The longest literal (at least 3 bytes) that every match must contain,
    /// when a conservative analysis of the expanded regex finds one (none for
    /// case-insensitive patterns or top-level alternations). A caller running
    /// many patterns over the same line can reject lines that lack it with
    /// `memchr::memmem` or one Aho-Corasick pass before running the regex.
    /// (The regex crate already uses prefix and inner literals internally for
    /// a single pattern.)
    pub fn required_literal(&self) -> Option<&str> {
        self.required_literal.as_deref()
    }

    /// The byte pairs of every literal run a match must contain (not only the longest,
    /// and per branch of a top-level alternation): a text whose [`PairSet`] the gate does
    /// not admit cannot match.
    pub fn required_pairs(&self) -> &PairGate {
        &self.required_pairs
    }
}

#[cfg(test)]
mod tests;
