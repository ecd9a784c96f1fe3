//! A serde deserializer over the [`Node`] tree that knows where every value was written.
//!
//! Errors carry the span and JSON pointer of the innermost value that failed, so a type
//! error three blocks deep still points at the exact argument in the user's file.

use super::tree::{Node, Span, Value, pointer_segment};
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// A deserialization error with its location.
#[derive(Debug, Clone)]
pub struct DeError {
    /// What went wrong (serde's message, made friendlier).
    pub message: String,
    /// Where (filled in by the innermost node that saw the error).
    pub span: Option<Span>,
    /// The JSON pointer of that node.
    pub pointer: Option<String>,
    /// For unknown fields and variants: the name written and the names accepted.
    pub unknown: Option<(String, Vec<&'static str>)>,
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            message: msg.to_string(),
            span: None,
            pointer: None,
            unknown: None,
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        DeError {
            message: format!("unknown field `{field}`"),
            span: None,
            pointer: None,
            unknown: Some((field.to_owned(), expected.to_vec())),
        }
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        DeError {
            message: format!("unknown value `{variant}`, expected {}", one_of(expected)),
            span: None,
            pointer: None,
            unknown: Some((variant.to_owned(), expected.to_vec())),
        }
    }

    fn missing_field(field: &'static str) -> Self {
        Self::custom(format!("missing field `{field}`"))
    }
}

fn one_of(names: &[&str]) -> String {
    match names {
        [] => "nothing".into(),
        [one] => format!("`{one}`"),
        _ => format!(
            "one of {}",
            names
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

impl DeError {
    fn at(mut self, span: Span, pointer: &str) -> Self {
        if self.span.is_none() {
            self.span = Some(span);
            self.pointer = Some(if pointer.is_empty() {
                "/".into()
            } else {
                pointer.into()
            });
        }
        self
    }
}

/// Deserializes a value of type `T` from a tree.
pub fn from_node<T: de::DeserializeOwned>(node: &Node) -> Result<T, DeError> {
    T::deserialize(NodeDe {
        node,
        pointer: String::new(),
    })
}

/// A deserializer for one node.
pub struct NodeDe<'a> {
    node: &'a Node,
    pointer: String,
}

impl<'a> NodeDe<'a> {
    fn wrap<T>(&self, r: Result<T, DeError>) -> Result<T, DeError> {
        r.map_err(|e| e.at(self.node.span, &self.pointer))
    }

    fn invalid(&self, exp: &dyn de::Expected) -> DeError {
        let found = match &self.node.value {
            Value::Str(s) => format!("the string \"{s}\""),
            Value::Int(i) => format!("the integer {i}"),
            Value::Float(f) => format!("the number {f}"),
            Value::Bool(b) => format!("#{b}"),
            other => other.kind().to_owned(),
        };
        de::Error::custom(format!("expected {exp}, found {found}"))
    }
}

macro_rules! forward_to_any {
    ($($m:ident)*) => {$(
        fn $m<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> { self.deserialize_any(v) }
    )*};
}

impl<'de> de::Deserializer<'de> for NodeDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match &self.node.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => visitor.visit_i64(*i),
            Value::Float(f) => visitor.visit_f64(*f),
            Value::Str(s) => visitor.visit_str(s),
            Value::Array(items) => visitor.visit_seq(Seq {
                items: items.iter().enumerate(),
                pointer: self.pointer.clone(),
            }),
            Value::Object(entries) => visitor.visit_map(Map {
                entries: entries.iter(),
                pending: None,
                pointer: self.pointer.clone(),
            }),
        };
        // Turn serde's "invalid type: X, expected Y" into our wording with the real value.
        let r = r.map_err(|e| {
            if e.span.is_none() && e.message.starts_with("invalid type:") {
                let expected = e
                    .message
                    .split(", expected ")
                    .nth(1)
                    .unwrap_or("another type")
                    .to_owned();
                self.invalid(&expected.as_str())
            } else {
                e
            }
        });
        self.wrap(r)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let r = match &self.node.value {
            Value::Str(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            Value::Object(entries) if entries.len() == 1 => visitor.visit_enum(Enum {
                entry: &entries[0],
                pointer: self.pointer.clone(),
            }),
            _ => Err(self.invalid(&"a name or a block with one key")),
        };
        self.wrap(r)
    }

    forward_to_any! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
        deserialize_f32 deserialize_f64 deserialize_char deserialize_str deserialize_string
        deserialize_bytes deserialize_byte_buf deserialize_unit deserialize_seq deserialize_map
        deserialize_identifier deserialize_ignored_any
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_any(v)
    }
    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, v: V) -> Result<V::Value, DeError> {
        self.deserialize_any(v)
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        v: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_any(v)
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Object(_) => self.deserialize_any(v),
            // A KDL node with no value reads as `true`; where a block is expected
            // (`enforcement` alone), it is an empty block.
            Value::Bool(true) => {
                let r = v.visit_map(Map {
                    entries: [].iter(),
                    pending: None,
                    pointer: self.pointer.clone(),
                });
                self.wrap(r)
            }
            _ => {
                let e = self.invalid(&"a block");
                Err(e.at(self.node.span, &self.pointer))
            }
        }
    }
}

struct Seq<'a> {
    items: std::iter::Enumerate<std::slice::Iter<'a, Node>>,
    pointer: String,
}

impl<'de> SeqAccess<'de> for Seq<'de> {
    type Error = DeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            None => Ok(None),
            Some((i, node)) => {
                let pointer = format!("{}/{i}", self.pointer);
                // Errors raised after the node returned (a value's own validation) get its span.
                seed.deserialize(NodeDe {
                    node,
                    pointer: pointer.clone(),
                })
                .map(Some)
                .map_err(|e| e.at(node.span, &pointer))
            }
        }
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct Map<'a> {
    entries: std::slice::Iter<'a, super::tree::Entry>,
    pending: Option<&'a super::tree::Entry>,
    pointer: String,
}

impl<'de> MapAccess<'de> for Map<'de> {
    type Error = DeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some(entry) = self.entries.next() else {
            return Ok(None);
        };
        self.pending = Some(entry);
        let ptr = format!("{}/{}", self.pointer, pointer_segment(&entry.key));
        seed.deserialize(entry.key.as_str().into_deserializer())
            .map(Some)
            .map_err(|e: DeError| e.at(entry.key_span, &ptr))
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let Some(entry) = self.pending.take() else {
            return Err(de::Error::custom("value requested before key"));
        };
        let pointer = format!("{}/{}", self.pointer, pointer_segment(&entry.key));
        seed.deserialize(NodeDe {
            node: &entry.value,
            pointer: pointer.clone(),
        })
        .map_err(|e| e.at(entry.value.span, &pointer))
    }
}

struct Enum<'a> {
    entry: &'a super::tree::Entry,
    pointer: String,
}

impl<'de> de::EnumAccess<'de> for Enum<'de> {
    type Error = DeError;
    type Variant = NodeDe<'de>;
    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, NodeDe<'de>), DeError> {
        let ptr = format!("{}/{}", self.pointer, pointer_segment(&self.entry.key));
        let v = seed
            .deserialize(self.entry.key.as_str().into_deserializer())
            .map_err(|e: DeError| e.at(self.entry.key_span, &ptr))?;
        Ok((
            v,
            NodeDe {
                node: &self.entry.value,
                pointer: ptr,
            },
        ))
    }
}

impl<'de> de::VariantAccess<'de> for NodeDe<'de> {
    type Error = DeError;
    fn unit_variant(self) -> Result<(), DeError> {
        Ok(())
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        seed.deserialize(self)
    }
    fn tuple_variant<V: Visitor<'de>>(self, _: usize, v: V) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_any(self, v)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        _: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_any(self, v)
    }
}
