//! Policy text as a tree ([`Node`], from JSON pluginConfig by `json.rs` or from `yaml.rs`),
//! and a serde `Deserializer` over it. The policy types are read from the tree by `read.rs`; this
//! deserializer runs their serde derives, which `read_test.rs` holds `read.rs` to, and the
//! renderer-only `deployment:` section. It names the field of
//! the first type error (`routes[0].ratelimit.rules[1].rate`, serde_path_to_error's path
//! syntax, so `yaml.rs` can locate it). It replaces serde_json's streaming deserializer
//! wrapped in serde_path_to_error: that pair instantiated every policy type's visitors
//! twice over a large generic parser and were the largest part of the rate-limit filter's
//! Wasm code (see README "Rate limiting"); this one is small, so the filter and `meshward
//! check` can share it. A JSON object keeps its document order, so the first problem
//! reported is the first written. Structs are only accepted as maps (serde_json would also
//! take an array of field values), which keeps the derived `visit_seq` of every struct out
//! of the build. Floats are never formatted (`core`'s float printing is large): messages
//! say "floating point number". Knows nothing of the policy's types.

use std::fmt;

use super::text;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, Expected, MapAccess, SeqAccess, Unexpected,
    VariantAccess, Visitor,
};
#[cfg(feature = "yaml")]
use serde_json::Value;

/// A type error with the path of the field it was found at. Boxed: one pointer, so every
/// `Result<_, DeError>` the readers pass up is small (a `Result<(), DeError>` is a pointer).
#[derive(Debug)]
pub(crate) struct DeError(Box<Problem>);

#[derive(Debug)]
struct Problem {
    /// Set by the innermost map entry, sequence element or variant that saw the error.
    path: Option<String>,
    message: String,
}

/// What a reader found where it expected something else.
pub(super) enum Found<'a> {
    /// A value of the tree (`integer `7``, `string "x"`, `map`).
    Value(&'a Node),
    /// serde's words for a shape that is no value (`unit variant`).
    Shape(&'static str),
}

impl DeError {
    /// An error saying `message`, without a path yet.
    pub(crate) fn new(message: String) -> Self {
        DeError(Box::new(Problem {
            path: None,
            message,
        }))
    }

    /// The field path (`.` for the document itself).
    pub(crate) fn path(&self) -> &str {
        self.0.path.as_deref().unwrap_or(".")
    }

    /// What is wrong.
    pub(crate) fn message(&self) -> &str {
        &self.0.message
    }

    /// Attaches `at` unless a deeper frame already did.
    pub(super) fn at(mut self, at: &Chain<'_>) -> Self {
        if self.0.path.is_none() {
            let mut path = String::new();
            match at {
                Chain::Root => path.push('.'),
                _ => at.render(&mut path),
            }
            self.0.path = Some(path);
        }
        self
    }

    /// serde's `invalid type: {unexp}, expected {exp}` (`what` = `invalid type`) and
    /// `invalid value: ...` (`invalid value`), except that a float is not printed. (The
    /// serde path, tests and the renderer; the readers use [`DeError::found`].)
    pub(super) fn mismatch(what: &str, unexp: Unexpected<'_>, exp: &str) -> Self {
        let number;
        let mut utf8 = [0; 4];
        let (before, value, after) = match unexp {
            Unexpected::Bool(true) => ("boolean `true`", "", ""),
            Unexpected::Bool(false) => ("boolean `false`", "", ""),
            Unexpected::Unsigned(n) => {
                number = text::number(n);
                ("integer `", number.as_str(), "`")
            }
            Unexpected::Signed(n) => {
                number = text::number(n.unsigned_abs());
                let sign = if n < 0 { "integer `-" } else { "integer `" };
                (sign, number.as_str(), "`")
            }
            Unexpected::Float(_) => ("floating point number", "", ""),
            // (Not `c.to_string()`: char's Display is only needed here.)
            Unexpected::Char(c) => ("character `", &*c.encode_utf8(&mut utf8), "`"),
            Unexpected::Str(s) => ("string \"", s, "\""),
            Unexpected::Bytes(_) => ("byte array", "", ""),
            Unexpected::Unit => ("null", "", ""),
            Unexpected::Option => ("Option value", "", ""),
            Unexpected::NewtypeStruct => ("newtype struct", "", ""),
            Unexpected::Seq => ("sequence", "", ""),
            Unexpected::Map => ("map", "", ""),
            Unexpected::Enum => ("enum", "", ""),
            Unexpected::UnitVariant => ("unit variant", "", ""),
            Unexpected::NewtypeVariant => ("newtype variant", "", ""),
            Unexpected::TupleVariant => ("tuple variant", "", ""),
            Unexpected::StructVariant => ("struct variant", "", ""),
            Unexpected::Other(o) => (o, "", ""),
        };
        Self::words(what, before, value, after, exp)
    }

    /// [`DeError::mismatch`]'s message for what the readers meet: a value of the tree, or
    /// one of serde's words for a shape (`map`, `unit variant`). Only the cases a tree can
    /// hold, so the filters do not carry the rest of serde's `Unexpected`.
    pub(super) fn found(what: &str, found: Found<'_>, exp: &str) -> Self {
        let number;
        let (before, value, after) = match found {
            Found::Shape(words) => (words, "", ""),
            Found::Value(node) => match node {
                Node::Null => ("null", "", ""),
                Node::Bool(true) => ("boolean `true`", "", ""),
                Node::Bool(false) => ("boolean `false`", "", ""),
                Node::Unsigned(n) => {
                    number = text::number(*n);
                    ("integer `", number.as_str(), "`")
                }
                Node::Signed(n) => {
                    number = text::number(n.unsigned_abs());
                    let sign = if *n < 0 { "integer `-" } else { "integer `" };
                    (sign, number.as_str(), "`")
                }
                Node::Float(_) => ("floating point number", "", ""),
                Node::Str(s) => ("string \"", s.as_str(), "\""),
                Node::Seq(_) => ("sequence", "", ""),
                Node::Map(_) => ("map", "", ""),
            },
        };
        Self::words(what, before, value, after, exp)
    }

    /// `{what}: {before}{value}{after}, expected {exp}`.
    fn words(what: &str, before: &str, value: &str, after: &str, exp: &str) -> Self {
        DeError::new(text::concat(&[
            what,
            ": ",
            before,
            value,
            after,
            ", expected ",
            exp,
        ]))
    }

    /// serde's `unknown field `x`, expected ...` (`kind` = `field`) and `unknown variant
    /// ...` (`variant`), with serde's list of the names.
    pub(super) fn unknown(kind: &str, name: &str, expected: &[&str]) -> Self {
        let mut m = text::concat(&["unknown ", kind, " `", name, "`"]);
        let n = expected.len();
        if n == 0 {
            m.push_str(if kind == "field" {
                ", there are no fields"
            } else {
                ", there are no variants"
            });
        } else {
            m.push_str(if n > 2 {
                ", expected one of "
            } else {
                ", expected "
            });
        }
        for (i, alt) in expected.iter().enumerate() {
            if i > 0 {
                m.push_str(if n == 2 { " or " } else { ", " });
            }
            m.push('`');
            m.push_str(alt);
            m.push('`');
        }
        DeError::new(m)
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError::new(msg.to_string())
    }

    // serde's defaults print `Unexpected` with its `Display`, which formats floats; ours
    // say the same words without it.
    fn invalid_type(unexp: Unexpected<'_>, exp: &dyn Expected) -> Self {
        Self::mismatch("invalid type", unexp, &exp.to_string())
    }

    fn invalid_value(unexp: Unexpected<'_>, exp: &dyn Expected) -> Self {
        Self::mismatch("invalid value", unexp, &exp.to_string())
    }
}

/// Where the deserializer is, innermost last; lives on the stack of the nested calls.
pub(super) enum Chain<'a> {
    Root,
    Key(&'a Chain<'a>, &'a str),
    Index(&'a Chain<'a>, usize),
}

impl Chain<'_> {
    /// Appends `a.b[2].c` (nothing for the root).
    fn render(&self, out: &mut String) {
        match self {
            Chain::Root => {}
            Chain::Key(parent, key) => {
                parent.render(out);
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Chain::Index(parent, i) => {
                parent.render(out);
                out.push('[');
                out.push_str(&text::number(*i as u64));
                out.push(']');
            }
        }
    }
}

/// A parsed document: JSON's data model, objects as their entries in document order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Null,
    Bool(bool),
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

impl Node {
    /// The same tree from serde_json's (YAML is loaded into one).
    #[cfg(feature = "yaml")]
    pub(crate) fn from_value(v: &Value) -> Node {
        match v {
            Value::Null => Node::Null,
            Value::Bool(b) => Node::Bool(*b),
            Value::Number(n) => match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => Node::Unsigned(u),
                (None, Some(i)) => Node::Signed(i),
                _ => Node::Float(n.as_f64().unwrap_or(0.0)),
            },
            Value::String(s) => Node::Str(s.clone()),
            Value::Array(items) => Node::Seq(items.iter().map(Node::from_value).collect()),
            Value::Object(map) => Node::Map(
                map.iter()
                    .map(|(k, v)| (k.clone(), Node::from_value(v)))
                    .collect(),
            ),
        }
    }
}

/// Deserializes `T` from `value`; a type error carries the path of the offending field.
/// The policy itself is read by `read.rs`; this is its reference (tests).
#[cfg(test)]
pub(crate) fn from_node<T: de::DeserializeOwned>(value: &Node) -> Result<T, DeError> {
    let root = Chain::Root;
    T::deserialize(At { value, at: &root }).map_err(|e| e.at(&root))
}

/// JSON text to a tree, refusing duplicate keys (serde_json's `Value` keeps the last).
pub(crate) fn json_tree(bytes: &[u8]) -> Result<Node, super::json::JsonError> {
    super::json::parse(bytes)
}

/// A value and where it is.
pub(super) struct At<'v, 'c> {
    pub(super) value: &'v Node,
    pub(super) at: &'c Chain<'c>,
}

impl At<'_, '_> {
    fn unexpected(&self) -> Unexpected<'_> {
        match self.value {
            Node::Null => Unexpected::Unit,
            Node::Bool(b) => Unexpected::Bool(*b),
            Node::Unsigned(u) => Unexpected::Unsigned(*u),
            Node::Signed(i) => Unexpected::Signed(*i),
            Node::Float(f) => Unexpected::Float(*f),
            Node::Str(s) => Unexpected::Str(s),
            Node::Seq(_) => Unexpected::Seq,
            Node::Map(_) => Unexpected::Map,
        }
    }

    /// `invalid type: <what this is>, expected {exp}`.
    pub(super) fn wrong<T>(&self, exp: &str) -> Result<T, DeError> {
        Err(DeError::found(
            "invalid type",
            Found::Value(self.value),
            exp,
        ))
    }

    /// [`At::wrong`] for a serde visitor.
    fn wrong_for<T>(&self, exp: &dyn Expected) -> Result<T, DeError> {
        Err(de::Error::invalid_type(self.unexpected(), exp))
    }
}

impl<'de, 'c> Deserializer<'de> for At<'de, 'c> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.value {
            Node::Null => visitor.visit_unit(),
            Node::Bool(b) => visitor.visit_bool(*b),
            Node::Unsigned(u) => visitor.visit_u64(*u),
            Node::Signed(i) => visitor.visit_i64(*i),
            Node::Float(f) => visitor.visit_f64(*f),
            Node::Str(s) => visitor.visit_borrowed_str(s),
            Node::Seq(_) => self.deserialize_seq(visitor),
            Node::Map(_) => self.deserialize_map(visitor),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.value {
            Node::Bool(b) => visitor.visit_bool(*b),
            _ => self.wrong_for(&visitor),
        }
    }

    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_u64(visitor)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_u64(visitor)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_u64(visitor)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.value {
            Node::Unsigned(u) => visitor.visit_u64(*u),
            Node::Signed(i) => visitor.visit_i64(*i),
            Node::Float(f) => visitor.visit_f64(*f),
            _ => self.wrong_for(&visitor),
        }
    }
    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_u64(visitor)
    }
    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_u64(visitor)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_u64(visitor)
    }
    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.value {
            Node::Str(s) => visitor.visit_borrowed_str(s),
            _ => self.wrong_for(&visitor),
        }
    }
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }
    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.value {
            Node::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.value {
            Node::Null => visitor.visit_unit(),
            _ => self.wrong_for(&visitor),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.value {
            Node::Seq(items) => visitor.visit_seq(Items {
                items: items.iter(),
                next: 0,
                at: self.at,
            }),
            _ => self.wrong_for(&visitor),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.value {
            Node::Map(entries) => visitor.visit_map(Entries {
                entries: entries.iter(),
                pending: None,
                at: self.at,
            }),
            _ => self.wrong_for(&visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.value {
            Node::Str(s) => visitor.visit_enum(Variant {
                name: s,
                value: None,
                at: self.at,
            }),
            Node::Map(entries) if entries.len() == 1 => {
                let Some((name, value)) = entries.first() else {
                    return self.wrong_for(&visitor);
                };
                visitor.visit_enum(Variant {
                    name,
                    value: Some(value),
                    at: self.at,
                })
            }
            Node::Map(_) => Err(de::Error::invalid_value(
                Unexpected::Map,
                &"a map with a single key",
            )),
            _ => self.wrong_for(&visitor),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        f32 f64 char bytes byte_buf unit_struct tuple tuple_struct
    }
}

/// Elements of an array.
struct Items<'v, 'c> {
    items: std::slice::Iter<'v, Node>,
    next: usize,
    at: &'c Chain<'c>,
}

impl<'de> SeqAccess<'de> for Items<'de, '_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some(value) = self.items.next() else {
            return Ok(None);
        };
        let at = Chain::Index(self.at, self.next);
        self.next += 1;
        seed.deserialize(At { value, at: &at })
            .map(Some)
            .map_err(|e| e.at(&at))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

/// Entries of an object.
struct Entries<'v, 'c> {
    entries: std::slice::Iter<'v, (String, Node)>,
    pending: Option<(&'v str, &'v Node)>,
    at: &'c Chain<'c>,
}

impl<'de> MapAccess<'de> for Entries<'de, '_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        let key = key.as_str();
        self.pending = Some((key, value));
        seed.deserialize(de::value::BorrowedStrDeserializer::<DeError>::new(key))
            .map(Some)
            .map_err(|e| e.at(&Chain::Key(self.at, key)))
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, DeError> {
        let Some((key, value)) = self.pending.take() else {
            return Err(de::Error::custom("a map value was read before its key"));
        };
        let at = Chain::Key(self.at, key);
        seed.deserialize(At { value, at: &at })
            .map_err(|e| e.at(&at))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// An enum written as `"variant"` or `{ "variant": value }`.
struct Variant<'v, 'c> {
    name: &'v str,
    value: Option<&'v Node>,
    at: &'c Chain<'c>,
}

impl<'de, 'c> EnumAccess<'de> for Variant<'de, 'c> {
    type Error = DeError;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), DeError> {
        match seed.deserialize(de::value::BorrowedStrDeserializer::<DeError>::new(
            self.name,
        )) {
            Ok(v) => Ok((v, self)),
            Err(e) => Err(e.at(self.at)),
        }
    }
}

impl<'de> VariantAccess<'de> for Variant<'de, '_> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        match self.value {
            None | Some(Node::Null) => Ok(()),
            Some(_) => Err(de::Error::invalid_type(
                Unexpected::NewtypeVariant,
                &"unit variant",
            )),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        let at = Chain::Key(self.at, self.name);
        match self.value {
            Some(value) => seed
                .deserialize(At { value, at: &at })
                .map_err(|e| e.at(&at)),
            None => Err(de::Error::invalid_type(
                Unexpected::UnitVariant,
                &"newtype variant",
            )),
        }
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, _visitor: V) -> Result<V::Value, DeError> {
        Err(de::Error::invalid_type(
            Unexpected::TupleVariant,
            &"unit or newtype variant",
        ))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, DeError> {
        Err(de::Error::invalid_type(
            Unexpected::StructVariant,
            &"unit or newtype variant",
        ))
    }
}

#[cfg(test)]
#[path = "de_test.rs"]
mod tests;
