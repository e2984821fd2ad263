//! Process-wide shared data keyed by vm_id, with Envoy's CAS rules (cpp-host
//! `src/shared_data.cc`): cas 0 = unconditional, a set on a missing key always succeeds, every
//! successful write gets a fresh non-zero u32 cas from one process-wide counter that wraps
//! skipping 0, and there is no delete (an empty value is still a key). Must not know about
//! guests.
//!
//! Layout, chosen from profiles of the guest-driven get + CAS set loop: each vm_id's space is
//! 16 cache-line-aligned shards, each a `Mutex<hashbrown::HashTable>`; the key is hashed once
//! (foldhash, randomly seeded per process) and that hash picks the shard and probes its table,
//! so a lookup takes `&[u8]` and allocates nothing. Values are `Vec<u8>` overwritten in place
//! (a set allocates only when the value outgrows its buffer); a get copies the value out under
//! the lock (the guest needs its own copy in its memory anyway). vm_id "" (Istio's) is held
//! directly, other vm_ids behind a read-mostly map. Envoy uses one mutex for everything; the
//! shards only let workers touching different keys not wait for each other, which no guest can
//! observe. Memory: nothing is ever evicted (as Envoy), so a guest must bound its own key set
//! (`bytes()`/`len()` let tests check that).

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use hashbrown::{DefaultHashBuilder, HashTable};

/// Shards per vm_id (a power of two).
const SHARDS: usize = 16;

/// Outcome of a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOutcome {
    /// Written; carries the new cas.
    Ok(u32),
    /// The key exists and its cas differs from the one given.
    CasMismatch,
}

struct Entry {
    key: Box<[u8]>,
    value: Vec<u8>,
    cas: u32,
}

/// One shard on its own cache lines, so two workers locking neighbouring shards do not
/// invalidate each other's line.
#[repr(align(128))]
#[derive(Default)]
struct Shard(Mutex<HashTable<Entry>>);

struct Space {
    hasher: DefaultHashBuilder,
    shards: [Shard; SHARDS],
    cas: Arc<AtomicU32>,
}

/// One vm_id's key space (handed to VMs so they skip the vm_id lookup per call).
#[derive(Clone)]
pub(crate) struct SharedSpace(Arc<Space>);

impl SharedSpace {
    fn new(cas: Arc<AtomicU32>) -> Self {
        Self(Arc::new(Space {
            hasher: DefaultHashBuilder::default(),
            shards: Default::default(),
            cas,
        }))
    }

    #[inline]
    fn hash(&self, key: &[u8]) -> u64 {
        self.0.hasher.hash_one(key)
    }

    /// The shard of a hash. Bits 48..52: hashbrown probes with the low bits and tags with the
    /// top 7, so these stay independent of both.
    #[inline]
    fn shard(&self, hash: u64) -> MutexGuard<'_, HashTable<Entry>> {
        let i = (hash >> 48) as usize & (SHARDS - 1);
        // A panic cannot leave an entry half-written (every write is one step), so a poisoned
        // shard is still consistent.
        self.0.shards[i]
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the value and cas of `key` (None when missing), under the shard's lock.
    #[inline]
    pub(crate) fn get_with<R>(&self, key: &[u8], f: impl FnOnce(Option<(&[u8], u32)>) -> R) -> R {
        let h = self.hash(key);
        let table = self.shard(h);
        f(table
            .find(h, |e| *e.key == *key)
            .map(|e| (e.value.as_slice(), e.cas)))
    }

    /// Sets `key` with Envoy's CAS rules.
    pub(crate) fn set(&self, key: &[u8], value: &[u8], cas: u32) -> SetOutcome {
        let h = self.hash(key);
        let mut table = self.shard(h);
        match table.find_mut(h, |e| *e.key == *key) {
            Some(e) => {
                if cas != 0 && cas != e.cas {
                    return SetOutcome::CasMismatch;
                }
                // Reuse the buffer unless it is much larger than the new value (memory follows
                // what is stored, not the largest value ever stored).
                if e.value.capacity() > 2 * value.len().max(32) {
                    e.value = value.to_vec();
                } else {
                    e.value.clear();
                    e.value.extend_from_slice(value);
                }
                e.cas = next_cas(&self.0.cas);
                SetOutcome::Ok(e.cas)
            }
            None => {
                let c = next_cas(&self.0.cas);
                let entry = Entry {
                    key: key.into(),
                    value: value.to_vec(),
                    cas: c,
                };
                let hasher = &self.0.hasher;
                table.insert_unique(h, entry, |e| hasher.hash_one(&*e.key));
                SetOutcome::Ok(c)
            }
        }
    }

    /// Runs `f` on every entry (key, value), shard by shard.
    fn for_each(&self, mut f: impl FnMut(&[u8], &[u8])) {
        for shard in &self.0.shards {
            let table = shard.0.lock().unwrap_or_else(PoisonError::into_inner);
            for e in table.iter() {
                f(&e.key, &e.value);
            }
        }
    }

    fn len(&self) -> usize {
        self.0
            .shards
            .iter()
            .map(|s| s.0.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}

impl fmt::Debug for SharedSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedSpace")
            .field("keys", &self.len())
            .finish()
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

struct Inner {
    /// vm_id "" (Istio's), reached without a map lookup.
    default: SharedSpace,
    /// Every other vm_id (created by the first VM or set that uses it).
    spaces: RwLock<HashMap<String, SharedSpace>>,
    cas: Arc<AtomicU32>,
}

/// The host's shared-data store (all vm_ids). Cheap to clone.
#[derive(Clone)]
pub struct SharedData(Arc<Inner>);

impl Default for SharedData {
    fn default() -> Self {
        let cas = Arc::new(AtomicU32::new(0));
        Self(Arc::new(Inner {
            default: SharedSpace::new(cas.clone()),
            spaces: RwLock::new(HashMap::new()),
            cas,
        }))
    }
}

impl fmt::Debug for SharedData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedData")
            .field("keys", &self.len())
            .finish_non_exhaustive()
    }
}

impl SharedData {
    pub(crate) fn new() -> Self {
        Self::default()
    }
    #[cfg(test)]
    pub(crate) fn with_cas_start(start: u32) -> Self {
        let s = Self::default();
        s.0.cas.store(start, Ordering::Relaxed);
        s
    }
    /// The space of `vm_id`, created if missing.
    pub(crate) fn space(&self, vm_id: &str) -> SharedSpace {
        if let Some(s) = self.existing(vm_id, |s| s.clone()) {
            return s;
        }
        let mut spaces = self
            .0
            .spaces
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        spaces
            .entry(vm_id.to_string())
            .or_insert_with(|| SharedSpace::new(self.0.cas.clone()))
            .clone()
    }
    /// Runs `f` on the space of `vm_id` if it exists (no allocation, no Arc traffic).
    fn existing<R>(&self, vm_id: &str, f: impl FnOnce(&SharedSpace) -> R) -> Option<R> {
        if vm_id.is_empty() {
            return Some(f(&self.0.default));
        }
        let spaces = self.0.spaces.read().unwrap_or_else(PoisonError::into_inner);
        spaces.get(vm_id).map(f)
    }
    /// Value and cas of `key` in vm_id "" (Istio's namespace).
    pub fn get(&self, key: &[u8]) -> Option<(Vec<u8>, u32)> {
        self.get_in("", key)
    }
    /// Value and cas of `key` in `vm_id`.
    pub fn get_in(&self, vm_id: &str, key: &[u8]) -> Option<(Vec<u8>, u32)> {
        self.existing(vm_id, |s| {
            s.get_with(key, |e| e.map(|(v, c)| (v.to_vec(), c)))
        })
        .flatten()
    }
    /// Set from the embedder (same CAS rules as the guest).
    pub fn set_in(&self, vm_id: &str, key: &[u8], value: &[u8], cas: u32) -> SetOutcome {
        match self.existing(vm_id, |s| s.set(key, value, cas)) {
            Some(outcome) => outcome,
            None => self.space(vm_id).set(key, value, cas),
        }
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
        self.existing(vm_id, SharedSpace::len).unwrap_or(0)
    }
    /// Bytes held (keys + values) across all vm_ids.
    pub fn bytes(&self) -> usize {
        let mut spaces: Vec<SharedSpace> = vec![self.0.default.clone()];
        spaces.extend(
            self.0
                .spaces
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .values()
                .cloned(),
        );
        let mut n = 0;
        for s in &spaces {
            s.for_each(|k, v| n += k.len() + v.len());
        }
        n
    }
    /// Keys of `vm_id`, sorted.
    pub fn keys_in(&self, vm_id: &str) -> Vec<Vec<u8>> {
        let mut keys = Vec::new();
        self.existing(vm_id, |s| s.for_each(|k, _| keys.push(k.to_vec())));
        keys.sort();
        keys
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
        assert_eq!(
            sd.get(b"k"),
            Some((b"v1".to_vec(), c1)),
            "a mismatch writes nothing"
        );
        // Right cas: fresh cas.
        let SetOutcome::Ok(c2) = s.set(b"k", b"v2", c1) else {
            panic!("matching cas must succeed")
        };
        assert_ne!(c2, c1);
        assert_eq!(sd.get(b"k"), Some((b"v2".to_vec(), c2)));
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
    fn cas_counter_is_process_wide() {
        // As Envoy: one counter for every key and vm_id, so a cas read from one key never
        // matches another key's current cas by accident of two counters agreeing.
        let sd = SharedData::new();
        let mut seen = std::collections::HashSet::new();
        for i in 0..200u32 {
            let vm = if i % 2 == 0 { "" } else { "other" };
            let SetOutcome::Ok(c) = sd.set_in(vm, &i.to_le_bytes(), b"v", 0) else {
                panic!("unconditional set failed")
            };
            assert!(seen.insert(c), "cas {c} handed out twice");
        }
    }

    #[test]
    fn vm_ids_are_separate_namespaces() {
        let sd = SharedData::new();
        sd.set_in("a", b"k", b"1", 0);
        assert!(sd.get_in("b", b"k").is_none());
        assert!(sd.get(b"k").is_none());
        assert_eq!(sd.len_in("a"), 1);
        assert_eq!(sd.len_in("b"), 0);
        assert_eq!(sd.bytes(), 2);
        assert_eq!(sd.keys_in("a"), vec![b"k".to_vec()]);
        assert!(sd.keys_in("b").is_empty());
    }

    #[test]
    fn many_keys_across_shards_stay_readable() {
        let sd = SharedData::new();
        let s = sd.space("");
        for i in 0..5000u32 {
            assert!(matches!(
                s.set(format!("key/{i}").as_bytes(), &i.to_le_bytes(), 0),
                SetOutcome::Ok(_)
            ));
        }
        assert_eq!(sd.len(), 5000);
        for i in (0..5000u32).step_by(7) {
            let (v, c) = sd.get(format!("key/{i}").as_bytes()).expect("key present");
            assert_eq!(v, i.to_le_bytes());
            assert_ne!(c, 0);
        }
        let keys = sd.keys_in("");
        assert_eq!(keys.len(), 5000);
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "keys_in is sorted");
    }

    #[test]
    fn bytes_follow_the_stored_values() {
        let sd = SharedData::new();
        let s = sd.space("");
        s.set(b"big", &vec![7u8; 1 << 20], 0);
        assert_eq!(sd.bytes(), 3 + (1 << 20));
        s.set(b"big", b"x", 0);
        assert_eq!(sd.bytes(), 4);
        assert_eq!(sd.get(b"big").map(|(v, _)| v), Some(b"x".to_vec()));
    }

    #[test]
    fn concurrent_cas_increments_lose_nothing() {
        // Two threads each add 1 to a counter 2000 times with get + CAS set retries: a lost
        // update would leave the total short.
        let sd = SharedData::new();
        let s = sd.space("");
        s.set(b"n", &0u32.to_le_bytes(), 0);
        std::thread::scope(|t| {
            for _ in 0..2 {
                let s = s.clone();
                t.spawn(move || {
                    for _ in 0..2000 {
                        loop {
                            let (n, cas) = s
                                .get_with(b"n", |e| e.map(|(v, c)| (v.to_vec(), c)))
                                .expect("counter present");
                            let n = u32::from_le_bytes(n.try_into().expect("4 bytes")) + 1;
                            if s.set(b"n", &n.to_le_bytes(), cas) != SetOutcome::CasMismatch {
                                break;
                            }
                        }
                    }
                });
            }
        });
        assert_eq!(
            sd.get(b"n").map(|(v, _)| v),
            Some(4000u32.to_le_bytes().to_vec())
        );
    }
}
