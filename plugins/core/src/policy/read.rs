//! Policy types from a parsed tree ([`Node`]) without serde's generated visitors: the
//! serde derives stay on the types and remain the specification (`read_test.rs` checks
//! that both give the same value or the same error, path and message for every mutation
//! of a full policy), but what the filters and `meshward check` run is this. serde's
//! derive instantiates a field-identifier visitor, a `visit_map` and one `next_value_seed`
//! per field type for every struct, which was the largest part of the rate-limit filter's
//! Wasm code; here every struct drives ONE shared, non-generic field loop
//! ([`fields`]) through a `&mut dyn FnMut`, and every enum the shared [`variant`].
//! Messages and paths are serde's, word for word (`unknown field`, `missing field`,
//! `invalid type: ..., expected struct Rule`, ...). Knows the shape of a tree and serde's
//! wording, not the policy's types (those are in `read_types.rs`).

use super::de::{At, Chain, DeError, Found, Node};
use super::text::concat;
use super::units::UnitError;

/// A type read from a tree node. Errors carry the field path like [`super::de`]'s.
pub(crate) trait FromNode: Sized {
    /// Reads `at`; an error without a path is given the path of the nearest enclosing
    /// field, element or the document.
    fn from_node(at: At<'_, '_>) -> Result<Self, DeError>;
}

/// Reads the whole document as `T`.
pub(crate) fn read<T: FromNode>(value: &Node) -> Result<T, DeError> {
    let root = Chain::Root;
    T::from_node(At { value, at: &root }).map_err(|e| e.at(&root))
}

/// A field of the struct at hand: its index in the `names` given to [`fields`], and its value.
pub(super) type Field<'f> = &'f mut dyn FnMut(usize, At<'_, '_>) -> Result<(), DeError>;

/// The loop of every struct (serde's derived `visit_map` with `deny_unknown_fields`):
/// `at` must be a map (else "invalid type: ..., expected {expecting}"); each key must be
/// one of `names` ("unknown field", at the key's path) and appear once ("duplicate field",
/// at the struct's path); `field` reads each value, whose errors get the key's path.
/// Returns which names were present (bit `i` for `names[i]`): missing fields are the
/// caller's (it knows the defaults). At most 64 names.
pub(super) fn fields(
    at: At<'_, '_>,
    expecting: &str,
    names: &'static [&'static str],
    field: Field<'_>,
) -> Result<u64, DeError> {
    let Node::Map(entries) = at.value else {
        return at.wrong(expecting);
    };
    let mut seen = 0u64;
    for (key, value) in entries {
        let chain = Chain::Key(at.at, key);
        let Some(i) = names.iter().position(|n| n == key) else {
            return Err(DeError::unknown("field", key, names).at(&chain));
        };
        let bit = 1u64 << (i % 64);
        if seen & bit != 0 {
            if let Some(name) = names.get(i) {
                return Err(DeError::new(concat(&["duplicate field `", name, "`"])));
            }
        }
        seen |= bit;
        field(i, At { value, at: &chain }).map_err(|e| e.at(&chain))?;
    }
    Ok(seen)
}

/// Reads `at` into a field that holds its default until then.
pub(super) fn read_into<T: FromNode>(slot: &mut T, at: At<'_, '_>) -> Result<(), DeError> {
    *slot = T::from_node(at)?;
    Ok(())
}

/// serde's error for the first required field (in declaration order, as serde checks them)
/// that was not among the keys: `seen` and `required` have bit `i` for `names[i]`.
pub(super) fn required(
    seen: u64,
    required: u64,
    names: &'static [&'static str],
) -> Result<(), DeError> {
    let absent = required & !seen;
    match names.get(absent.trailing_zeros() as usize) {
        Some(name) if absent != 0 => Err(missing(name)),
        _ => Ok(()),
    }
}

/// `Err(missing field `name`)`, serde's error for an absent required field.
pub(super) fn missing(name: &'static str) -> DeError {
    DeError::new(concat(&["missing field `", name, "`"]))
}

/// An enum (serde's derived enum visitor over [`super::de`]'s `deserialize_enum`): the
/// variant's index in `names` and its value, `None` when written as a bare string.
pub(super) fn variant<'v>(
    at: &At<'v, '_>,
    expecting: &str,
    names: &'static [&'static str],
) -> Result<(usize, Option<&'v Node>), DeError> {
    let (name, value) = match at.value {
        Node::Str(s) => (s.as_str(), None),
        Node::Map(entries) if entries.len() == 1 => match entries.first() {
            Some((name, value)) => (name.as_str(), Some(value)),
            None => return at.wrong(expecting),
        },
        Node::Map(_) => {
            return Err(DeError::found(
                "invalid value",
                Found::Shape("map"),
                "a map with a single key",
            ))
        }
        _ => return at.wrong(expecting),
    };
    match names.iter().position(|n| *n == name) {
        Some(i) => Ok((i, value)),
        None => Err(DeError::unknown("variant", name, names)),
    }
}

/// An enum of unit variants only: the index of the variant in `names`.
pub(super) fn unit_variant(
    at: &At<'_, '_>,
    expecting: &str,
    names: &'static [&'static str],
) -> Result<usize, DeError> {
    let (i, value) = variant(at, expecting, names)?;
    match value {
        None | Some(Node::Null) => Ok(i),
        Some(_) => Err(DeError::found(
            "invalid type",
            Found::Shape("newtype variant"),
            "unit variant",
        )),
    }
}

/// The value of a newtype variant read by [`variant`], at the path `at.variant`.
pub(super) fn newtype<T: FromNode>(
    at: &At<'_, '_>,
    names: &'static [&'static str],
    i: usize,
    value: Option<&Node>,
) -> Result<T, DeError> {
    let (Some(value), Some(name)) = (value, names.get(i)) else {
        return Err(DeError::found(
            "invalid type",
            Found::Shape("unit variant"),
            "newtype variant",
        ));
    };
    let chain = Chain::Key(at.at, name);
    T::from_node(At { value, at: &chain }).map_err(|e| e.at(&chain))
}

/// An unsigned integer no larger than `max`; `expecting` is the type's name (`u32`).
fn unsigned(at: At<'_, '_>, max: u64, expecting: &str) -> Result<u64, DeError> {
    let what = match *at.value {
        Node::Unsigned(u) if u <= max => return Ok(u),
        Node::Signed(i) => match u64::try_from(i) {
            Ok(u) if u <= max => return Ok(u),
            _ => "invalid value",
        },
        Node::Unsigned(_) => "invalid value",
        Node::Float(_) => "invalid type",
        _ => return at.wrong(expecting),
    };
    Err(DeError::found(what, Found::Value(at.value), expecting))
}

impl FromNode for u8 {
    fn from_node(at: At<'_, '_>) -> Result<Self, DeError> {
        let u = unsigned(at, u8::MAX.into(), "u8")?;
        Ok(u8::try_from(u).unwrap_or(u8::MAX))
    }
}

impl FromNode for u16 {
    fn from_node(at: At<'_, '_>) -> Result<Self, DeError> {
        let u = unsigned(at, u16::MAX.into(), "u16")?;
        Ok(u16::try_from(u).unwrap_or(u16::MAX))
    }
}

impl FromNode for u32 {
    fn from_node(at: At<'_, '_>) -> Result<Self, DeError> {
        let u = unsigned(at, u32::MAX.into(), "u32")?;
        Ok(u32::try_from(u).unwrap_or(u32::MAX))
    }
}

impl FromNode for bool {
    fn from_node(at: At<'_, '_>) -> Result<Self, DeError> {
        match at.value {
            Node::Bool(b) => Ok(*b),
            _ => at.wrong("a boolean"),
        }
    }
}

impl FromNode for String {
    fn from_node(at: At<'_, '_>) -> Result<Self, DeError> {
        match at.value {
            Node::Str(s) => Ok(s.clone()),
            _ => at.wrong("a string"),
        }
    }
}

impl<T: FromNode> FromNode for Option<T> {
    fn from_node(at: At<'_, '_>) -> Result<Self, DeError> {
        match at.value {
            Node::Null => Ok(None),
            _ => T::from_node(at).map(Some),
        }
    }
}

impl<T: FromNode> FromNode for Vec<T> {
    fn from_node(at: At<'_, '_>) -> Result<Self, DeError> {
        let mut out = Vec::new();
        elements(at, &mut |v| {
            out.push(T::from_node(v)?);
            Ok(())
        })?;
        Ok(out)
    }
}

/// The loop of every array (serde's `Vec` visitor): `at` must be a sequence (else
/// "invalid type: ..., expected a sequence"); `element` reads each item, whose errors
/// get the item's path (`rules[1]`).
fn elements(
    at: At<'_, '_>,
    element: &mut dyn FnMut(At<'_, '_>) -> Result<(), DeError>,
) -> Result<(), DeError> {
    let Node::Seq(items) = at.value else {
        return at.wrong("a sequence");
    };
    for (i, value) in items.iter().enumerate() {
        let chain = Chain::Index(at.at, i);
        element(At { value, at: &chain }).map_err(|e| e.at(&chain))?;
    }
    Ok(())
}

/// A string turned into `T` by its `FromStr` (what serde's `try_from = "String"` ends in,
/// without the owned copy): a refusal is the message, at the field's path.
pub(super) fn from_text<T>(at: At<'_, '_>) -> Result<T, DeError>
where
    T: std::str::FromStr<Err = UnitError>,
{
    match at.value {
        Node::Str(s) => T::from_str(s).map_err(|e| DeError::new(e.0)),
        _ => at.wrong("a string"),
    }
}

/// A type only serde reads (the renderer-only `deployment:` section).
#[cfg(feature = "deployment")]
pub(super) fn with_serde<T: serde::de::DeserializeOwned>(at: At<'_, '_>) -> Result<T, DeError> {
    T::deserialize(at)
}

#[cfg(test)]
#[path = "read_test.rs"]
mod tests;
