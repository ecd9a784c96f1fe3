//! A format-neutral value tree with source spans.
//!
//! KDL and JSON documents are both decoded into a [`Node`] tree first, and the typed model is
//! deserialized from that tree (see [`super::de`]). So both formats share one model, one set of
//! validations, and errors that point at `file:line:col` in whichever file the user wrote.

/// A byte range in a source file.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// A span from `start` to `end`.
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }

    /// The smallest span covering both.
    pub fn join(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }
}

/// A value with the span of the text it came from.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
pub struct Node {
    /// The value.
    pub value: Value,
    /// Where it was written.
    pub span: Span,
}

/// One key of an object with the span of the key itself.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
pub struct Entry {
    /// The key.
    pub key: String,
    /// Where the key was written.
    pub key_span: Span,
    /// The value.
    pub value: Node,
}

/// The data model shared by KDL and JSON.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
pub enum Value {
    /// `#null` / `null`.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A string.
    Str(String),
    /// A list.
    Array(Vec<Node>),
    /// A map with its keys in document order.
    Object(Vec<Entry>),
}

impl Value {
    /// A short description for "expected X, found Y" messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Array(_) => "a list",
            Value::Object(_) => "a block",
        }
    }
}

impl Node {
    /// Looks a key up in an object node.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        match &self.value {
            Value::Object(entries) => entries.iter().find(|e| e.key == key),
            _ => None,
        }
    }

    /// Follows a JSON pointer (`/acquisitions/0/type`) to the node it names, returning the
    /// node and, for object members, the span of the key.
    pub fn pointer(&self, pointer: &str) -> Option<(&Node, Option<Span>)> {
        let mut node = self;
        let mut key_span = None;
        for raw in pointer.split('/').skip(1) {
            let seg = raw.replace("~1", "/").replace("~0", "~");
            match &node.value {
                Value::Object(entries) => {
                    let e = entries.iter().find(|e| e.key == seg)?;
                    key_span = Some(e.key_span);
                    node = &e.value;
                }
                Value::Array(items) => {
                    node = items.get(seg.parse::<usize>().ok()?)?;
                    key_span = None;
                }
                _ => return None,
            }
        }
        Some((node, key_span))
    }
}

/// Escapes one JSON-pointer segment.
pub fn pointer_segment(seg: &str) -> String {
    seg.replace('~', "~0").replace('/', "~1")
}
