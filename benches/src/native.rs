//! Envoy's shared-data rules (`proxy-wasm-cpp-host src/shared_data.cc`: cas 0 is
//! unconditional, a missing key ignores cas, every set takes the next non-zero cas) as plain
//! Rust behind one mutex: the native baseline for the shared-data benchmark.

use std::collections::HashMap;
use std::sync::Mutex;

/// A key-value store with compare-and-swap, no Wasm involved.
#[derive(Default)]
pub struct NativeStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<Vec<u8>, (Vec<u8>, u32)>,
    next_cas: u32,
}

impl NativeStore {
    /// The value and its cas.
    pub fn get(&self, key: &[u8]) -> Option<(Vec<u8>, u32)> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.map.get(key).cloned()
    }

    /// Sets `key` if `cas` is 0, the key is missing, or `cas` matches; false on a mismatch.
    pub fn set(&self, key: &[u8], value: &[u8], cas: u32) -> bool {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.next_cas = inner.next_cas.wrapping_add(1).max(1);
        let next = inner.next_cas;
        match inner.map.get_mut(key) {
            Some(entry) if cas != 0 && entry.1 != cas => false,
            Some(entry) => {
                entry.0.clear();
                entry.0.extend_from_slice(value);
                entry.1 = next;
                true
            }
            None => {
                inner.map.insert(key.to_vec(), (value.to_vec(), next));
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cas_rules_match_envoy() {
        let s = NativeStore::default();
        assert!(s.set(b"k", b"a", 77), "a missing key ignores cas");
        let (_, c) = s.get(b"k").unwrap();
        assert!(!s.set(b"k", b"b", c + 1));
        assert!(s.set(b"k", b"b", c));
        assert!(!s.set(b"k", b"c", c), "cas changed on the last set");
        assert!(s.set(b"k", b"c", 0));
        assert_eq!(s.get(b"k").unwrap().0, b"c");
    }
}
