//! `json.rs` against its specification, serde_json's own parser building the same tree
//! through a serde visitor (what the filters ran before): a full policy, every one-byte
//! deletion, insertion and replacement of it, and a corpus of numbers, strings, escapes and
//! nesting must give the same tree, or the same error message at the same line and column.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::super::de::Node;
use super::parse;

/// serde_json's tree of `bytes`, duplicate keys refused, or its error as (message, line,
/// column).
fn reference(bytes: &[u8]) -> Result<Node, (String, usize, usize)> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let tree = Tree.deserialize(&mut de).and_then(|t| de.end().map(|()| t));
    tree.map_err(|e| {
        let text = e.to_string();
        let message = match text.rfind(" at line ") {
            Some(i) => text[..i].to_string(),
            None => text,
        };
        (message, e.line(), e.column())
    })
}

#[derive(Clone, Copy)]
struct Tree;

impl<'de> DeserializeSeed<'de> for Tree {
    type Value = Node;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Tree {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, b: bool) -> Result<Node, E> {
        Ok(Node::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Node, E> {
        Ok(match u64::try_from(n) {
            Ok(u) => Node::Unsigned(u),
            Err(_) => Node::Signed(n),
        })
    }
    fn visit_u64<E>(self, n: u64) -> Result<Node, E> {
        Ok(Node::Unsigned(n))
    }
    fn visit_f64<E>(self, n: f64) -> Result<Node, E> {
        Ok(Node::Float(n))
    }
    fn visit_str<E>(self, s: &str) -> Result<Node, E> {
        Ok(Node::Str(s.to_string()))
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element_seed(self)? {
            items.push(v);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Node, A::Error> {
        let mut entries: Vec<(String, Node)> = Vec::new();
        while let Some(key) = access.next_key::<String>()? {
            if entries.iter().any(|(k, _)| *k == key) {
                return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
            }
            let value = access.next_value_seed(self)?;
            entries.push((key, value));
        }
        Ok(Node::Map(entries))
    }
}

/// Same tree (floats within a relative 1e-15: serde_json's float reading is not always
/// correctly rounded, and the filters' build approximates).
fn same(a: &Node, b: &Node) -> bool {
    match (a, b) {
        (Node::Float(x), Node::Float(y)) => {
            x == y || (x - y).abs() <= 1e-15 * x.abs().max(y.abs()) && x.signum() == y.signum()
        }
        (Node::Seq(x), Node::Seq(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Node::Map(x), Node::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, a), (kb, b))| ka == kb && same(a, b))
        }
        _ => a == b,
    }
}

fn check(bytes: &[u8]) {
    let ours = parse(bytes).map_err(|e| (e.message, e.line, e.column));
    let theirs = reference(bytes);
    let agree = match (&ours, &theirs) {
        (Ok(a), Ok(b)) => same(a, b),
        (Err(a), Err(b)) => a == b,
        _ => false,
    };
    assert!(
        agree,
        "input {:?}\n  json.rs:    {ours:?}\n  serde_json: {theirs:?}",
        String::from_utf8_lossy(bytes)
    );
}

const DOC: &str = r#"{
  "apiVersion": "meshward.io/v1alpha1", "kind": "Policy",
  "routes": [
    {"name": "a\u00e9\ud83d\ude00\n\t\"\\\/", "match": {"path": {"prefix": "/"}, "methods": []},
     "n": [0, -0, 1, -1, 12.5, -0.25, 1e3, 2E-2, 18446744073709551615, -9223372036854775808],
     "b": [true, false, null], "o": {}}
  ]
}"#;

#[test]
fn a_full_document_reads_the_same() {
    check(DOC.as_bytes());
    assert!(matches!(parse(DOC.as_bytes()), Ok(Node::Map(_))));
}

#[test]
fn every_one_byte_edit_errs_or_reads_the_same() {
    let doc = DOC.as_bytes();
    let bytes: &[u8] = b"\"\\{}[],:0-.eE+u ~\n\x01\xc3\xff";
    for i in 0..=doc.len() {
        if i < doc.len() {
            let mut d = doc.to_vec();
            d.remove(i);
            check(&d);
        }
        for &b in bytes {
            let mut d = doc.to_vec();
            d.insert(i, b);
            check(&d);
            if i < doc.len() {
                let mut d = doc.to_vec();
                d[i] = b;
                check(&d);
            }
        }
        check(&doc[..i]);
    }
}

#[test]
fn numbers_strings_and_literals_read_the_same() {
    let cases: &[&[u8]] = &[
        b"0",
        b"-0",
        b"-",
        b"01",
        b"-01",
        b"1.",
        b"1.e5",
        b"1e",
        b"1e+",
        b"1e-",
        b".5",
        b"+1",
        b"1.5",
        b"-1.5",
        b"1E5",
        b"1e400",
        b"-1e400",
        b"1e-400",
        b"0e400",
        b"1e2147483648",
        b"0e2147483648",
        b"1e-2147483649",
        b"1.0e-2147483648",
        b"18446744073709551615",
        b"18446744073709551616",
        b"-9223372036854775808",
        b"-9223372036854775809",
        b"123456789012345678901234567890",
        b"1844674407370955161.0",
        b"18446744073709551616.25",
        b"0.000000000000000000000000000001",
        b"1x",
        b"[1,]",
        b"[,1]",
        b"[1 2]",
        b"{\"a\" 1}",
        b"{\"a\":1,}",
        b"{,}",
        b"{1:2}",
        b"{\"a\":1 \"b\":2}",
        b"{\"a\":1,\"a\":2}",
        b"{\"a\":1,\"a\"  :2}",
        b"{\"a\":{\"b\":1,\"b\"\n:2}}",
        b"nul",
        b"nulx",
        b"tru",
        b"fals",
        b"t",
        b"",
        b"   ",
        b"\"abc",
        b"\"a\\",
        b"\"\\x\"",
        b"\"\\u12\"",
        b"\"\\u12g4\"",
        b"\"\\ud83d\"",
        b"\"\\ud83dx\"",
        b"\"\\ud83d\\x\"",
        b"\"\\ud83d\\u0041\"",
        b"\"\\ude00\"",
        b"\"\\ud83d\\ude00\"",
        b"\"\\u0000\"",
        b"\"a\xffb\"",
        b"\"\\n\xff\"",
        b"\"\x1f\"",
        b"\"\xe2\x82\xac\"",
        b"\"\xe2\x82\"",
        b"[]",
        b"{}",
        b"[[]]",
        b"1 2",
        b"\n\n  ]",
        b"{\"a\":[1,{\"b\":null}],\"c\":\"d\"}",
    ];
    for case in cases {
        check(case);
    }
}

#[test]
fn nesting_stops_where_serde_json_stops() {
    for depth in [126, 127, 128, 129, 1000] {
        let mut d = vec![b'['; depth];
        d.extend(vec![b']'; depth]);
        check(&d);
        let mut d = b"{\"a\":".repeat(depth);
        d.push(b'1');
        d.extend(vec![b'}'; depth]);
        check(&d);
    }
}
