//! `CtxMap`: a VM's stream context ids -> stream slots. Context ids are handed out
//! sequentially per VM (as cpp-host's `next_context_id_++`), so the ids alive at one time sit
//! in a narrow window: a direct-mapped table indexed by the id's low bits holds nearly all of
//! them, and an insert, lookup or remove is one array access (a general hash map costs a
//! hash, a probe and tombstone bookkeeping, ~25 ns of a ~400 ns request lifecycle). An id
//! whose table entry is taken by another live id (a long-lived stream among many short ones)
//! goes to a spill map. Must not know what a stream or a context is for.

use std::collections::HashMap;

/// Context id -> stream slot. Id 0 is never stored (it is no context id).
#[derive(Debug, Default)]
pub(crate) struct CtxMap {
    /// `(id, slot)` at index `id & (len - 1)`; id 0 marks a free entry. Length 0 or a power
    /// of two.
    table: Vec<(u32, u32)>,
    /// Ids whose table entry was taken when they were inserted.
    spill: HashMap<u32, u32>,
    /// Ids stored in `table`.
    in_table: usize,
}

/// First table size.
const MIN_TABLE: usize = 64;

impl CtxMap {
    #[inline]
    fn index(&self, id: u32) -> usize {
        id as usize & (self.table.len() - 1)
    }

    /// Map `id` to `slot` (replacing an earlier mapping of `id`). The usual case, a free
    /// table entry and nothing spilled, is a store inline.
    #[inline]
    pub(crate) fn insert(&mut self, id: u32, slot: u32) {
        if id != 0 && !self.table.is_empty() && self.spill.is_empty() {
            let i = self.index(id);
            let e = &mut self.table[i];
            if e.0 == 0 {
                *e = (id, slot);
                self.in_table += 1;
                return;
            }
        }
        self.insert_slow(id, slot);
    }

    #[inline(never)]
    fn insert_slow(&mut self, id: u32, slot: u32) {
        if id == 0 {
            return;
        }
        if self.table.is_empty() {
            self.table = vec![(0, 0); MIN_TABLE];
        }
        if !self.spill.is_empty() {
            self.spill.remove(&id);
        }
        loop {
            let i = self.index(id);
            let e = &mut self.table[i];
            if e.0 == id {
                e.1 = slot;
                return;
            }
            if e.0 == 0 {
                *e = (id, slot);
                self.in_table += 1;
                return;
            }
            // Taken by another live id. Grow while the table is at most half full (the live
            // ids then spread over more low bits); past that, spill.
            if (self.in_table + self.spill.len()) * 2 >= self.table.len() {
                self.grow();
            } else {
                self.spill.insert(id, slot);
                return;
            }
        }
    }

    /// The slot of `id`.
    #[inline]
    pub(crate) fn get(&self, id: u32) -> Option<u32> {
        if self.table.is_empty() || id == 0 {
            return None;
        }
        let e = self.table[self.index(id)];
        if e.0 == id {
            return Some(e.1);
        }
        self.spill.get(&id).copied()
    }

    /// Forget `id`.
    #[inline]
    pub(crate) fn remove(&mut self, id: u32) {
        if self.table.is_empty() || id == 0 {
            return;
        }
        let i = self.index(id);
        if self.table[i].0 == id {
            self.table[i] = (0, 0);
            self.in_table -= 1;
        } else if !self.spill.is_empty() {
            self.spill.remove(&id);
        }
    }

    /// Double the table and re-place every entry (spilled ones included).
    fn grow(&mut self) {
        let size = self.table.len() * 2;
        let old = std::mem::replace(&mut self.table, vec![(0, 0); size]);
        let spilled: Vec<(u32, u32)> = self.spill.drain().collect();
        self.in_table = 0;
        for (id, slot) in old.into_iter().filter(|e| e.0 != 0).chain(spilled) {
            let i = self.index(id);
            if self.table[i].0 == 0 {
                self.table[i] = (id, slot);
                self.in_table += 1;
            } else {
                self.spill.insert(id, slot);
            }
        }
    }

    /// Ids stored.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.in_table + self.spill.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_ids_live_and_die_like_streams() {
        let mut m = CtxMap::default();
        // One long-lived context among many short ones, a window of 100 alive at a time.
        m.insert(1, 7);
        for id in 2..10_000u32 {
            m.insert(id, id % 97);
            if id >= 102 {
                m.remove(id - 100);
            }
            assert_eq!(m.get(id), Some(id % 97));
            assert_eq!(m.get(1), Some(7));
        }
        assert_eq!(m.len(), 101);
        assert_eq!(m.get(9_900), Some(9_900 % 97));
        assert_eq!(m.get(9_899), None, "removed");
        assert_eq!(m.get(0), None);
        assert!(
            m.table.len() <= 512,
            "the table follows the live window, not the ids"
        );
    }

    #[test]
    fn colliding_ids_spill_and_stay_reachable() {
        let mut m = CtxMap::default();
        // Ids equal modulo every table size up to 2^20 collide until the table grows.
        let ids: Vec<u32> = (1..=40).map(|k| k << 20).collect();
        for (n, &id) in ids.iter().enumerate() {
            m.insert(id, n as u32);
        }
        for (n, &id) in ids.iter().enumerate() {
            assert_eq!(m.get(id), Some(n as u32));
        }
        m.insert(ids[3], 99);
        assert_eq!(m.get(ids[3]), Some(99));
        assert_eq!(m.len(), 40);
        for &id in &ids {
            m.remove(id);
            assert_eq!(m.get(id), None);
        }
        assert_eq!(m.len(), 0);
    }
}
