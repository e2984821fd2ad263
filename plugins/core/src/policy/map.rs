//! [`Map`]: the string-keyed maps of the policy model that the filters read (rate-limit tiers,
//! claim headers, header matches). A vector of pairs sorted by key: these maps hold a handful
//! of entries, and `BTreeMap`'s node code would cost every filter module ~13 KB. Reads from a
//! map in JSON or YAML; a key given twice is an error (a `BTreeMap` would silently keep the
//! last one). Must not know what the keys mean.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};

/// Pairs sorted by key, keys unique.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Map<V> {
    pairs: Vec<(String, V)>,
}

impl<V> Default for Map<V> {
    fn default() -> Self {
        Self { pairs: Vec::new() }
    }
}

impl<V> Map<V> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&V> {
        let i = self
            .pairs
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()?;
        self.pairs.get(i).map(|(_, v)| v)
    }

    /// True when `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Sets `key` (replacing its value if present); returns the old value.
    pub fn insert(&mut self, key: String, value: V) -> Option<V> {
        match self.pairs.binary_search_by(|(k, _)| k.as_str().cmp(&key)) {
            Ok(i) => self
                .pairs
                .get_mut(i)
                .map(|(_, v)| std::mem::replace(v, value)),
            Err(i) => {
                self.pairs.insert(i, (key, value));
                None
            }
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &V)> {
        self.pairs.iter().map(|(k, v)| (k, v))
    }

    /// Keys in order.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.pairs.iter().map(|(k, _)| k)
    }

    /// Values in key order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.pairs.iter().map(|(_, v)| v)
    }
}

impl<V> FromIterator<(String, V)> for Map<V> {
    /// Later pairs replace earlier ones with the same key.
    fn from_iter<I: IntoIterator<Item = (String, V)>>(iter: I) -> Self {
        let mut m = Self::new();
        for (k, v) in iter {
            m.insert(k, v);
        }
        m
    }
}

impl<'a, V> IntoIterator for &'a Map<V> {
    type Item = (&'a String, &'a V);
    type IntoIter =
        std::iter::Map<std::slice::Iter<'a, (String, V)>, fn(&'a (String, V)) -> Self::Item>;

    fn into_iter(self) -> Self::IntoIter {
        fn pair<K, V>((k, v): &(K, V)) -> (&K, &V) {
            (k, v)
        }
        self.pairs.iter().map(pair)
    }
}

impl<V: Serialize> Serialize for Map<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.pairs.len()))?;
        for (k, v) in &self.pairs {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

struct MapVisitor<V>(PhantomData<V>);

impl<'de, V: Deserialize<'de>> Visitor<'de> for MapVisitor<V> {
    type Value = Map<V>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Map<V>, A::Error> {
        let mut m = Map::new();
        while let Some((k, v)) = access.next_entry::<String, V>()? {
            if m.contains_key(&k) {
                return Err(serde::de::Error::custom(format_args!(
                    "duplicate key `{k}`"
                )));
            }
            m.insert(k, v);
        }
        Ok(m)
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Map<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(MapVisitor(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sorted_finds_and_refuses_a_repeated_key() {
        let m: Map<u32> = serde_json::from_str(r#"{"b":2,"a":1,"c":3}"#).expect("map");
        assert_eq!(
            m.keys().map(String::as_str).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        assert_eq!(m.get("b"), Some(&2));
        assert_eq!(m.get("x"), None);
        assert_eq!(
            serde_json::to_string(&m).expect("json"),
            r#"{"a":1,"b":2,"c":3}"#
        );
        let e = serde_json::from_str::<Map<u32>>(r#"{"a":1,"a":2}"#).expect_err("repeated");
        assert!(e.to_string().contains("duplicate key `a`"), "{e}");
        assert!(serde_json::from_str::<Map<u32>>("[1]").is_err());
    }

    #[test]
    fn insert_replaces_and_keeps_order() {
        let mut m: Map<&str> = [("z".to_string(), "1"), ("a".to_string(), "2")]
            .into_iter()
            .collect();
        assert_eq!(m.insert("a".into(), "3"), Some("2"));
        assert_eq!(m.insert("m".into(), "4"), None);
        let all: Vec<_> = m.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(all, [("a", "3"), ("m", "4"), ("z", "1")]);
        assert_eq!(m.len(), 3);
        assert!(!m.is_empty() && m.contains_key("z"));
    }
}
