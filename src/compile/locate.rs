//! Turning JSON pointers (and spans inside string values) into located diagnostics.

use crate::config::diag::{Diagnostic, SourceFile};
use crate::config::tree::{Node, Span, Value};
use std::ops::Range;
use std::sync::Arc;

/// Locates values of one file by JSON pointer.
#[derive(Clone)]
pub(crate) struct Locator<'a> {
    file: &'a Arc<SourceFile>,
    tree: &'a Node,
}

impl<'a> Locator<'a> {
    pub(crate) fn new(file: &'a Arc<SourceFile>, tree: &'a Node) -> Self {
        Locator { file, tree }
    }

    /// The pointer of item `i` of the `len`-item list at `base`: `base/i`, or `base`
    /// itself for a one-item list the file writes as the item alone (a KDL node's single
    /// argument, a JSON object in place of an array).
    pub(crate) fn item(&self, base: &str, i: usize, len: usize) -> String {
        let indexed = format!("{base}/{i}");
        if len == 1 && self.tree.pointer(&indexed).is_none() {
            base.to_owned()
        } else {
            indexed
        }
    }

    /// A diagnostic at the value `pointer` names.
    pub(crate) fn at(&self, pointer: &str, message: impl Into<String>) -> Diagnostic {
        crate::config::diag_at(self.file, self.tree, pointer, message)
    }

    /// A diagnostic at `range` (byte offsets into the string's value) inside the string
    /// value `pointer` names, when the string is written verbatim in the file; else at the
    /// whole value.
    pub(crate) fn in_string(
        &self,
        pointer: &str,
        range: Option<Range<usize>>,
        message: impl Into<String>,
    ) -> Diagnostic {
        let mut d = self.at(pointer, message);
        let (Some(range), Some((node, _))) = (range, self.tree.pointer(pointer)) else {
            return d;
        };
        let Value::Str(s) = &node.value else { return d };
        let written = self
            .file
            .text
            .get(node.span.start..node.span.end)
            .unwrap_or("");
        if let Some(pos) = written.find(s.as_str()) {
            let base = node.span.start + pos;
            let end = (base + range.end.min(s.len())).max(base + range.start.min(s.len()) + 1);
            d.span = Span::new(base + range.start.min(s.len()), end);
        }
        d
    }
}
