//! OVER_LIMIT answers of the global service, kept until the reset the service announced, so
//! a client that is over a global limit is refused locally without another call
//! (envoyproxy/ratelimit's local cache idea). Bounded: when full, expired entries go first,
//! then the one expiring soonest. The keys are already hashes, so kit's `IdMap` (Fibonacci
//! spreading, no hasher) holds them.

use meshward_kit::ids::IdMap;

/// Descriptor hash -> over limit until (ns).
#[derive(Debug, Default)]
pub struct OverLimitCache {
    until: IdMap<u64, u64>,
    cap: usize,
}

impl OverLimitCache {
    /// At most `cap` entries (0 disables the cache).
    pub fn new(cap: usize) -> Self {
        Self {
            until: IdMap::new(),
            cap,
        }
    }

    /// Ns left while `key` is known to be over its limit.
    pub fn over(&self, key: u64, now: u64) -> Option<u64> {
        self.until
            .get(key)
            .and_then(|u| u.checked_sub(now))
            .filter(|left| *left > 0)
    }

    /// Remembers `key` as over its limit until `until`.
    pub fn insert(&mut self, key: u64, until: u64, now: u64) {
        if self.cap == 0 {
            return;
        }
        if self.until.len() >= self.cap && self.until.get(key).is_none() {
            self.until.retain(|_, u| *u > now);
            if self.until.len() >= self.cap {
                if let Some(k) = self.until.iter().min_by_key(|(_, u)| **u).map(|(k, _)| k) {
                    self.until.remove(k);
                }
            }
        }
        self.until.insert(key, until);
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.until.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.until.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_holds_until_reset_and_stays_bounded() {
        let mut c = OverLimitCache::new(2);
        c.insert(1, 1_000, 0);
        assert_eq!(c.over(1, 400), Some(600));
        assert_eq!(c.over(1, 1_000), None);
        c.insert(2, 5_000, 0);
        c.insert(3, 9_000, 0);
        assert_eq!(c.len(), 2, "bounded");
        assert_eq!(c.over(1, 0), None, "the soonest to expire went first");
        assert!(c.over(3, 0).is_some());
        let mut off = OverLimitCache::new(0);
        off.insert(1, 10, 0);
        assert!(off.is_empty());
    }
}
