//! Tests of the path-tracking deserializer: each error names the field it was found at.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{from_node, json_tree, DeError};
use crate::policy::PathMatch;

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Outer {
    name: String,
    #[serde(default)]
    items: Vec<Inner>,
    #[serde(default)]
    labels: BTreeMap<String, u8>,
    #[serde(default)]
    path: Option<PathMatch>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Inner {
    count: u32,
    #[serde(default)]
    on: bool,
}

fn parse(json: &str) -> Result<Outer, DeError> {
    let tree = json_tree(json.as_bytes()).expect("valid JSON");
    from_node(&tree)
}

fn err(json: &str) -> (String, String) {
    let e = parse(json).expect_err("must fail");
    (e.path().to_string(), e.message().to_string())
}

#[test]
fn a_valid_document_deserializes() {
    let o = parse(r#"{"name":"a","items":[{"count":1},{"count":2,"on":true}],"labels":{"x":3},"path":{"prefix":"/api"}}"#).unwrap();
    assert_eq!(o.items.len(), 2);
    assert!(o.items[1].on);
    assert_eq!(o.labels.get("x"), Some(&3));
    assert_eq!(o.path, Some(PathMatch::Prefix("/api".into())));
}

#[test]
fn type_errors_name_the_field() {
    let (path, msg) = err(r#"{"name":"a","items":[{"count":1},{"count":"many"}]}"#);
    assert_eq!(path, "items[1].count");
    assert_eq!(msg, "invalid type: string \"many\", expected u32");
    let (path, msg) = err(r#"{"name":"a","labels":{"x":300}}"#);
    assert_eq!(path, "labels.x");
    assert!(msg.contains("integer `300`"), "{msg}");
    let (path, msg) = err(r#"{"name":"a","items":[{"count":1.5}]}"#);
    assert_eq!(path, "items[0].count");
    assert_eq!(msg, "invalid type: floating point number, expected u32");
}

#[test]
fn unknown_fields_point_at_the_key_and_missing_ones_at_the_object() {
    let (path, msg) = err(r#"{"name":"a","items":[{"count":1,"cuont":2}]}"#);
    assert_eq!(path, "items[0].cuont");
    assert!(msg.starts_with("unknown field `cuont`"), "{msg}");
    let (path, msg) = err(r#"{"name":"a","items":[{"on":true}]}"#);
    assert_eq!(path, "items[0]");
    assert_eq!(msg, "missing field `count`");
    let (path, msg) = err(r#"{"items":[]}"#);
    assert_eq!(path, ".");
    assert_eq!(msg, "missing field `name`");
}

#[test]
fn enum_errors_name_the_enum_or_the_variant() {
    let (path, msg) = err(r#"{"name":"a","path":{"regex":"/x"}}"#);
    assert_eq!(path, "path");
    assert!(msg.starts_with("unknown variant `regex`"), "{msg}");
    let (path, _) = err(r#"{"name":"a","path":{"exact":7}}"#);
    assert_eq!(path, "path.exact");
    let (path, _) = err(r#"{"name":"a","path":{"exact":"/a","prefix":"/b"}}"#);
    assert_eq!(path, "path");
}

#[test]
fn structs_are_maps_only() {
    let (path, msg) = err(r#"{"name":"a","items":[[1,true]]}"#);
    assert_eq!(path, "items[0]");
    assert!(msg.starts_with("invalid type: sequence"), "{msg}");
}

#[test]
fn duplicate_json_keys_are_refused_with_their_location() {
    let e = json_tree(br#"{"name":"a","name":"b"}"#).unwrap_err();
    assert!(e.to_string().contains("duplicate key `name`"), "{e}");
    assert_eq!(e.line, 1);
}

/// The readers' messages are glued from pieces (`DeError::mismatch`, `DeError::unknown`);
/// they must say what serde's own `Unexpected` and default error methods say, except
/// where they said otherwise before: a float is not printed, a unit is `null` (serde_json's
/// word) and a string is quoted without escapes (serde writes it with `{:?}`).
#[test]
fn built_messages_are_serdes_words() {
    use serde::de::{value::Error as SerdeError, Error as _, Unexpected};
    let unexpected = [
        Unexpected::Bool(true),
        Unexpected::Bool(false),
        Unexpected::Unsigned(0),
        Unexpected::Unsigned(u64::MAX),
        Unexpected::Signed(-7),
        Unexpected::Signed(i64::MIN),
        Unexpected::Signed(42),
        Unexpected::Char('é'),
        Unexpected::Str("a b"),
        Unexpected::Bytes(b"x"),
        Unexpected::Option,
        Unexpected::NewtypeStruct,
        Unexpected::Seq,
        Unexpected::Map,
        Unexpected::Enum,
        Unexpected::UnitVariant,
        Unexpected::NewtypeVariant,
        Unexpected::TupleVariant,
        Unexpected::StructVariant,
        Unexpected::Other("other thing"),
    ];
    for u in unexpected {
        for what in ["invalid type", "invalid value"] {
            assert_eq!(
                DeError::mismatch(what, u, "struct Rule").message(),
                format!("{what}: {u}, expected struct Rule")
            );
        }
    }
    assert_eq!(
        DeError::mismatch("invalid type", Unexpected::Float(1.5), "u32").message(),
        "invalid type: floating point number, expected u32"
    );
    // serde_json's word for a unit.
    assert_eq!(
        DeError::mismatch("invalid type", Unexpected::Unit, "u32").message(),
        "invalid type: null, expected u32"
    );
    let lists: [&'static [&'static str]; 4] = [&[], &["a"], &["a", "b"], &["a", "b", "c"]];
    for names in lists {
        assert_eq!(
            DeError::unknown("field", "x", names).message(),
            SerdeError::unknown_field("x", names).to_string()
        );
        assert_eq!(
            DeError::unknown("variant", "x", names).message(),
            SerdeError::unknown_variant("x", names).to_string()
        );
    }
}

/// The readers' words for a value of the tree are `DeError::mismatch`'s for the same value.
#[test]
fn found_says_what_mismatch_says() {
    use super::{Found, Node};
    use serde::de::Unexpected;
    let cases = [
        (Node::Null, Unexpected::Unit),
        (Node::Bool(true), Unexpected::Bool(true)),
        (Node::Bool(false), Unexpected::Bool(false)),
        (Node::Unsigned(u64::MAX), Unexpected::Unsigned(u64::MAX)),
        (Node::Signed(i64::MIN), Unexpected::Signed(i64::MIN)),
        (Node::Signed(3), Unexpected::Signed(3)),
        (Node::Float(0.5), Unexpected::Float(0.5)),
        (Node::Str("a b".into()), Unexpected::Str("a b")),
        (Node::Seq(vec![]), Unexpected::Seq),
        (Node::Map(vec![]), Unexpected::Map),
    ];
    for (node, unexp) in &cases {
        assert_eq!(
            DeError::found("invalid type", Found::Value(node), "u8").message(),
            DeError::mismatch("invalid type", *unexp, "u8").message()
        );
    }
    for (shape, unexp) in [
        ("map", Unexpected::Map),
        ("unit variant", Unexpected::UnitVariant),
        ("newtype variant", Unexpected::NewtypeVariant),
    ] {
        assert_eq!(
            DeError::found("invalid value", Found::Shape(shape), "x").message(),
            DeError::mismatch("invalid value", unexp, "x").message()
        );
    }
}
