//! Process-wide shared data keyed by vm_id, with Envoy's CAS rules (cpp-host
//! `src/shared_data.cc`): cas 0 = unconditional, a set on a missing key always succeeds, every
//! successful write gets a fresh non-zero u32 cas from one counter that wraps skipping 0, and
//! there is no delete (an empty value is still a key). Must not know about guests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

type Space = HashMap<Vec<u8>, (Vec<u8>, u32)>;

/// Outcome of a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOutcome {
    /// Written; carries the new cas.
    Ok(u32),
    /// The key exists and its cas differs from the one given.
    CasMismatch,
}

/// One vm_id's key space (handed to VMs so they skip the vm_id lookup per call).
#[derive(Debug, Clone)]
pub(crate) struct SharedSpace {
    map: Arc<Mutex<Space>>,
    cas: Arc<AtomicU32>,
}

impl SharedSpace {
    pub(crate) fn get_with<R>(&self, key: &[u8], f: impl FnOnce(Option<(&[u8], u32)>) -> R) -> R {
        match self.map.lock() {
            Ok(m) => f(m.get(key).map(|(v, c)| (v.as_slice(), *c))),
            Err(_) => f(None),
        }
    }
    pub(crate) fn set(&self, key: &[u8], value: &[u8], cas: u32) -> SetOutcome {
        let Ok(mut m) = self.map.lock() else {
            return SetOutcome::CasMismatch;
        };
        match m.get_mut(key) {
            Some(entry) => {
                if cas != 0 && cas != entry.1 {
                    return SetOutcome::CasMismatch;
                }
                let c = next_cas(&self.cas);
                entry.0.clear();
                entry.0.extend_from_slice(value);
                entry.1 = c;
                SetOutcome::Ok(c)
            }
            None => {
                let c = next_cas(&self.cas);
                m.insert(key.to_vec(), (value.to_vec(), c));
                SetOutcome::Ok(c)
            }
        }
    }
}

fn next_cas(counter: &AtomicU32) -> u32 {
    loop {
        let c = counter.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        if c != 0 {
            return c;
        }
    }
}

/// The host's shared-data store (all vm_ids). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct SharedData {
    spaces: Arc<Mutex<HashMap<String, SharedSpace>>>,
    cas: Arc<AtomicU32>,
}

impl SharedData {
    pub(crate) fn new() -> Self {
        Self::default()
    }
    #[cfg(test)]
    pub(crate) fn with_cas_start(start: u32) -> Self {
        let s = Self::default();
        s.cas.store(start, Ordering::Relaxed);
        s
    }
    pub(crate) fn space(&self, vm_id: &str) -> SharedSpace {
        let mut spaces = match self.spaces.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        spaces
            .entry(vm_id.to_string())
            .or_insert_with(|| SharedSpace {
                map: Arc::new(Mutex::new(HashMap::new())),
                cas: self.cas.clone(),
            })
            .clone()
    }
    /// Value and cas of `key` in vm_id "" (Istio's namespace).
    pub fn get(&self, key: &[u8]) -> Option<(Vec<u8>, u32)> {
        self.get_in("", key)
    }
    /// Value and cas of `key` in `vm_id`.
    pub fn get_in(&self, vm_id: &str, key: &[u8]) -> Option<(Vec<u8>, u32)> {
        self.space(vm_id)
            .get_with(key, |e| e.map(|(v, c)| (v.to_vec(), c)))
    }
    /// Set from the embedder (same CAS rules as the guest).
    pub fn set_in(&self, vm_id: &str, key: &[u8], value: &[u8], cas: u32) -> SetOutcome {
        self.space(vm_id).set(key, value, cas)
    }
    /// Number of keys in vm_id "" (keys are never deleted: watch this for unbounded growth).
    pub fn len(&self) -> usize {
        self.len_in("")
    }
    /// True when vm_id "" has no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Number of keys in `vm_id`.
    pub fn len_in(&self, vm_id: &str) -> usize {
        self.space(vm_id).map.lock().map(|m| m.len()).unwrap_or(0)
    }
    /// Bytes held (keys + values) across all vm_ids.
    pub fn bytes(&self) -> usize {
        let spaces: Vec<SharedSpace> = match self.spaces.lock() {
            Ok(s) => s.values().cloned().collect(),
            Err(_) => return 0,
        };
        spaces
            .iter()
            .map(|s| {
                s.map
                    .lock()
                    .map(|m| m.iter().map(|(k, (v, _))| k.len() + v.len()).sum::<usize>())
                    .unwrap_or(0)
            })
            .sum()
    }
    /// Keys of `vm_id`, sorted.
    pub fn keys_in(&self, vm_id: &str) -> Vec<Vec<u8>> {
        let mut k: Vec<Vec<u8>> = self
            .space(vm_id)
            .map
            .lock()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        k.sort();
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_cas_rules() {
        let sd = SharedData::new();
        let s = sd.space("");
        // Missing key: any cas succeeds.
        let SetOutcome::Ok(c1) = s.set(b"k", b"v1", 12345) else {
            panic!("insert must succeed")
        };
        assert_ne!(c1, 0);
        // Wrong cas on an existing key.
        assert_eq!(
            s.set(b"k", b"x", c1.wrapping_add(7)),
            SetOutcome::CasMismatch
        );
        // Right cas: fresh cas.
        let SetOutcome::Ok(c2) = s.set(b"k", b"v2", c1) else {
            panic!("matching cas must succeed")
        };
        assert_ne!(c2, c1);
        // Old cas is now stale.
        assert_eq!(s.set(b"k", b"v3", c1), SetOutcome::CasMismatch);
        // cas 0 is unconditional.
        assert!(matches!(s.set(b"k", b"v4", 0), SetOutcome::Ok(_)));
        assert_eq!(sd.get(b"k").map(|(v, _)| v), Some(b"v4".to_vec()));
        // Empty value keeps the key.
        s.set(b"k", b"", 0);
        assert_eq!(sd.len(), 1);
        assert_eq!(sd.get(b"k").map(|(v, _)| v), Some(Vec::new()));
    }

    #[test]
    fn cas_wraps_skipping_zero() {
        let sd = SharedData::with_cas_start(u32::MAX - 1);
        let s = sd.space("");
        assert_eq!(s.set(b"a", b"", 0), SetOutcome::Ok(u32::MAX));
        assert_eq!(s.set(b"a", b"", 0), SetOutcome::Ok(1));
    }

    #[test]
    fn vm_ids_are_separate_namespaces() {
        let sd = SharedData::new();
        sd.set_in("a", b"k", b"1", 0);
        assert!(sd.get_in("b", b"k").is_none());
        assert!(sd.get(b"k").is_none());
        assert_eq!(sd.len_in("a"), 1);
        assert_eq!(sd.bytes(), 2);
        assert_eq!(sd.keys_in("a"), vec![b"k".to_vec()]);
    }
}
