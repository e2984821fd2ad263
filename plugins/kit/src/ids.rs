//! A small map from host-given `u32` ids (context ids, call tokens) or other integer keys
//! that are already well spread (`u64` hashes) to values: open
//! addressing with linear probing over a power-of-two table, Fibonacci hashing (ids are
//! mostly consecutive), deletion by backward shift (no tombstones), and the slot of the last
//! hit remembered, since one stream's callbacks arrive in a row. Replaces the SDK
//! dispatcher's `hashbrown` maps (`proxy-wasm` 0.2.5 `dispatcher.rs`) with a few hundred
//! bytes of code and no hashing of a hash map's seed. Grows at 3/4 load and never shrinks:
//! its memory is bounded by the most ids live at once. Must not know what the ids mean.

/// An integer key of an [`IdMap`].
pub trait Id: Copy + Eq {
    /// The key as 64 bits (Fibonacci hashing spreads them).
    fn bits(self) -> u64;
}

impl Id for u32 {
    fn bits(self) -> u64 {
        u64::from(self)
    }
}

impl Id for u64 {
    fn bits(self) -> u64 {
        self
    }
}

/// Ids (`K`) to `V`s.
#[derive(Debug)]
pub struct IdMap<V, K = u32> {
    slots: Vec<Option<(K, V)>>,
    len: usize,
    /// The slot of the last id found or inserted (a hint, checked before use).
    last: usize,
}

impl<V, K: Id> Default for IdMap<V, K> {
    fn default() -> Self {
        Self::new()
    }
}

/// The smallest table.
const MIN_SLOTS: usize = 16;

/// "No slot" from [`IdMap::probe`].
const ABSENT: usize = usize::MAX;

impl<V, K: Id> IdMap<V, K> {
    /// Empty (allocates on the first insert).
    pub const fn new() -> Self {
        Self {
            slots: Vec::new(),
            len: 0,
            last: 0,
        }
    }

    /// Ids held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no id is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where `id` would sit in an empty table: the top bits of its Fibonacci hash.
    #[inline(always)]
    fn home(&self, id: K) -> usize {
        let bits = self.slots.len().trailing_zeros();
        // A table has at least 16 slots, so the shift is below 64.
        (id.bits().wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - bits).min(63)) as usize
    }

    /// The slot holding `id`: the last hit's slot when it still holds `id` (inlined: one
    /// stream's callbacks come in a row), else a probe.
    #[inline(always)]
    fn find(&self, id: K) -> Option<usize> {
        match self.slots.get(self.last) {
            Some(Some((k, _))) if *k == id => Some(self.last),
            _ => {
                let i = self.probe(id);
                (i != ABSENT).then_some(i)
            }
        }
    }

    /// The slot holding `id` by linear probing from its home, [`ABSENT`] if none (a plain
    /// number: returned in a register, not through memory as an `Option<usize>` would be).
    #[inline(never)]
    fn probe(&self, id: K) -> usize {
        let Some(mask) = self.slots.len().checked_sub(1) else {
            return ABSENT;
        };
        let mut i = self.home(id);
        // Bounded: the table is never full (3/4 load at most).
        for _ in 0..self.slots.len() {
            match self.slots.get(i) {
                Some(Some((k, _))) if *k == id => return i,
                Some(Some(_)) => i = (i + 1) & mask,
                _ => return ABSENT,
            }
        }
        ABSENT
    }

    /// The value of `id`.
    #[inline(always)]
    pub fn get_mut(&mut self, id: K) -> Option<&mut V> {
        let i = self.find(id)?;
        self.last = i;
        self.slots.get_mut(i)?.as_mut().map(|(_, v)| v)
    }

    /// Sets `id` to `value`; the value it replaces, if any.
    pub fn insert(&mut self, id: K, value: V) -> Option<V> {
        if let Some(i) = self.find(id) {
            self.last = i;
            let slot = self.slots.get_mut(i)?.as_mut()?;
            return Some(std::mem::replace(&mut slot.1, value));
        }
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(id);
        for _ in 0..self.slots.len() {
            match self.slots.get_mut(i) {
                Some(slot @ None) => {
                    *slot = Some((id, value));
                    self.len += 1;
                    self.last = i;
                    return None;
                }
                Some(Some(_)) => i = (i + 1) & mask,
                None => break,
            }
        }
        // Unreachable (the table always has a free slot); the value is dropped, not stored.
        None
    }

    /// Removes `id`; its value, if it was there.
    pub fn remove(&mut self, id: K) -> Option<V> {
        let mut hole = self.find(id)?;
        let (_, value) = self.slots.get_mut(hole)?.take()?;
        self.len -= 1;
        let mask = self.slots.len() - 1;
        // Backward shift: move up every later entry of the run that may sit in the hole.
        let mut j = (hole + 1) & mask;
        while let Some(Some((k, _))) = self.slots.get(j) {
            let home = self.home(*k);
            // The entry at j may move to the hole when its home is not cyclically in
            // (hole, j].
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                let moved = self.slots.get_mut(j).and_then(Option::take);
                if let Some(slot) = self.slots.get_mut(hole) {
                    *slot = moved;
                }
                hole = j;
            }
            j = (j + 1) & mask;
        }
        Some(value)
    }

    /// The value of `id` (the last-hit hint is left as it is).
    pub fn get(&self, id: K) -> Option<&V> {
        let i = self.find(id)?;
        self.slots.get(i)?.as_ref().map(|(_, v)| v)
    }

    /// Every id and its value, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (K, &V)> + '_ {
        self.slots.iter().flatten().map(|(k, v)| (*k, v))
    }

    /// Keeps only the entries `keep` says yes to (re-placing them in a fresh table of the
    /// same size).
    pub fn retain(&mut self, mut keep: impl FnMut(K, &V) -> bool) {
        let size = self.slots.len();
        let old = std::mem::take(&mut self.slots);
        self.slots.reserve_exact(size);
        self.slots.resize_with(size, || None);
        self.len = 0;
        for (k, v) in old.into_iter().flatten() {
            if keep(k, &v) {
                let _ = self.insert(k, v);
            }
        }
    }

    /// Removes every id; their values.
    pub fn drain(&mut self) -> impl Iterator<Item = V> + '_ {
        self.len = 0;
        self.slots.drain(..).flatten().map(|(_, v)| v)
    }

    /// Doubles the table (16 slots the first time) and re-places every entry.
    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(MIN_SLOTS);
        let mut old = std::mem::take(&mut self.slots);
        self.slots.reserve_exact(size);
        self.slots.resize_with(size, || None);
        self.len = 0;
        for (id, v) in old.drain(..).flatten() {
            let _ = self.insert(id, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_found_replaced_and_removed() {
        let mut m = IdMap::new();
        assert_eq!(m.get_mut(1), None);
        assert_eq!(m.remove(1), None);
        for id in 1..=1000u32 {
            assert_eq!(m.insert(id, id * 10), None);
        }
        assert_eq!(m.len(), 1000);
        assert_eq!(m.insert(7, 70_000), Some(70));
        for id in (2..=1000u32).step_by(2) {
            assert_eq!(m.remove(id), Some(if id == 7 { 70_000 } else { id * 10 }));
        }
        assert_eq!(m.len(), 500);
        for id in 1..=1000u32 {
            let want = (id % 2 == 1).then_some(if id == 7 { 70_000 } else { id * 10 });
            assert_eq!(m.get_mut(id).copied(), want, "{id}");
        }
        assert_eq!(m.insert(0, 5), None, "id 0 is an ordinary key");
        assert_eq!(m.get_mut(0).copied(), Some(5));
    }

    #[test]
    fn colliding_ids_survive_removals_anywhere_in_their_run() {
        // Ids that share a home slot in a 16-slot table, removed in every order.
        let mut same_home = Vec::new();
        let probe: IdMap<u32, u32> = IdMap {
            slots: (0..16).map(|_| None).collect(),
            len: 0,
            last: 0,
        };
        let mut id = 1u32;
        while same_home.len() < 5 {
            if probe.home(id) == 15 {
                same_home.push(id);
            }
            id += 1;
        }
        for skip in 0..same_home.len() {
            let mut m = IdMap::new();
            for &id in &same_home {
                m.insert(id, id);
            }
            m.remove(same_home[skip]);
            for (i, &id) in same_home.iter().enumerate() {
                let want = (i != skip).then_some(id);
                assert_eq!(m.get_mut(id).copied(), want);
            }
        }
    }

    #[test]
    fn u64_keys_retain_and_iterate() {
        let mut m: IdMap<u64, u64> = IdMap::new();
        for k in 0..100u64 {
            m.insert(k.wrapping_mul(0x1234_5678_9abc_def1), k);
        }
        m.retain(|_, v| v % 3 == 0);
        assert_eq!(m.len(), 34);
        let mut kept: Vec<u64> = m.iter().map(|(_, v)| *v).collect();
        kept.sort_unstable();
        assert_eq!(kept, (0..100).step_by(3).collect::<Vec<_>>());
        assert_eq!(m.get(3u64.wrapping_mul(0x1234_5678_9abc_def1)), Some(&3));
        assert_eq!(m.get(4u64.wrapping_mul(0x1234_5678_9abc_def1)), None);
    }

    #[test]
    fn the_table_stays_small_for_few_live_ids() {
        let mut m = IdMap::new();
        for id in 1..=100_000u32 {
            m.insert(id, ());
            if id > 8 {
                m.remove(id - 8);
            }
        }
        assert_eq!(m.len(), 8);
        assert_eq!(m.slots.len(), MIN_SLOTS);
    }
}
