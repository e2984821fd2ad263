//! meshward-core's `Store` over proxy-wasm shared data, shared by every worker VM of the
//! proxy (same vm_id). Envoy's CAS has one hole: a set on a *missing* key succeeds whatever
//! cas is given, so two workers creating the same slot at once could both "win" and one
//! update would be lost. Slots are therefore created under a small lock key (itself created
//! at configure time): take the lock with CAS, create the slot only if still missing,
//! release. Creation happens once per slot, so the lock is cold.
//!
//! The lock is a lease, not a flag: its value is the time (ns since the epoch, decimal) until
//! which it is held, and `0` when free. Shared data outlives a VM, so a worker VM that dies
//! between taking and releasing the lock (a trap, a reload) must not block slot creation on
//! every worker forever: a lease older than [`LEASE_NS`] is taken over with CAS. Taking over a
//! lease whose holder was merely slow costs at most one lost update on the slot it was
//! creating (one admitted request not counted), never a stuck proxy.

use meshward_core::ratelimit::{Record, Store, StoreError};
use proxy_wasm::hostcalls;

/// Shared-data store with a key prefix for its lock.
#[derive(Debug, Clone)]
pub struct SharedStore {
    lock_key: String,
    retries: u32,
}

const FREE: &[u8] = b"0";

/// How long a taken lock is held before another worker may take it over. The critical section
/// is two host calls, so a holder still inside it after a second is gone (or hopelessly slow).
pub const LEASE_NS: u64 = 1_000_000_000;

/// True when the lock value `v` is free or its lease ended before `now` (ns). A value that is
/// not a decimal time (written by something else) counts as an ended lease.
fn lock_is_free(v: &[u8], now: u64) -> bool {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .is_none_or(|until| until <= now)
}

fn key_str(key: &[u8]) -> Result<&str, StoreError> {
    std::str::from_utf8(key).map_err(|_| StoreError("slot key is not UTF-8".into()))
}

impl SharedStore {
    /// A store whose slot-creation lock is `lock_key`; `retries` bounds every CAS loop.
    pub fn new(lock_key: &str, retries: u32) -> Self {
        Self {
            lock_key: lock_key.to_string(),
            retries: retries.max(1),
        }
    }

    /// Creates the lock key if it is missing (call from `on_configure`).
    pub fn init(&self) {
        if let Ok((None, _)) = hostcalls::get_shared_data(&self.lock_key) {
            let _ = hostcalls::set_shared_data(&self.lock_key, Some(FREE), None);
        }
    }

    fn lock(&self) -> Result<(), StoreError> {
        let now = crate::time::now_nanos();
        let held = now.saturating_add(LEASE_NS).to_string();
        // Spins are bounded; workers are real threads, so the holder finishes meanwhile.
        for _ in 0..self.retries.saturating_mul(64) {
            match hostcalls::get_shared_data(&self.lock_key) {
                Ok((Some(v), Some(cas))) if lock_is_free(&v, now) => {
                    let taken = hostcalls::set_shared_data(
                        &self.lock_key,
                        Some(held.as_bytes()),
                        Some(cas),
                    );
                    if taken.is_ok() {
                        return Ok(());
                    }
                }
                Ok((None, _)) => self.init(),
                Ok(_) => {}
                Err(s) => return Err(StoreError(format!("lock: {s:?}"))),
            }
        }
        Err(StoreError("slot-creation lock is busy".into()))
    }

    fn unlock(&self) {
        for _ in 0..self.retries.saturating_mul(64) {
            match hostcalls::get_shared_data(&self.lock_key) {
                Ok((_, Some(cas))) => {
                    if hostcalls::set_shared_data(&self.lock_key, Some(FREE), Some(cas)).is_ok() {
                        return;
                    }
                }
                _ => return,
            }
        }
    }
}

impl Store for SharedStore {
    fn load(&mut self, key: &[u8]) -> Result<Option<(Record, u32)>, StoreError> {
        match hostcalls::get_shared_data(key_str(key)?) {
            Ok((Some(v), Some(cas))) => Ok(Some((Record::from_bytes(&v), cas))),
            Ok(_) => Ok(None),
            Err(s) => Err(StoreError(format!("get: {s:?}"))),
        }
    }

    fn create(&mut self, key: &[u8], rec: Record) -> Result<(), StoreError> {
        let k = key_str(key)?;
        self.lock()?;
        let result = match hostcalls::get_shared_data(k) {
            Ok((Some(_), _)) => Ok(()),
            Ok((None, _)) => hostcalls::set_shared_data(k, Some(&rec.to_bytes()), None)
                .map_err(|s| StoreError(format!("create: {s:?}"))),
            Err(s) => Err(StoreError(format!("get: {s:?}"))),
        };
        self.unlock();
        result
    }

    fn replace(&mut self, key: &[u8], rec: Record, version: u32) -> Result<bool, StoreError> {
        match hostcalls::set_shared_data(key_str(key)?, Some(&rec.to_bytes()), Some(version)) {
            Ok(()) => Ok(true),
            Err(proxy_wasm::types::Status::CasMismatch) => Ok(false),
            Err(s) => Err(StoreError(format!("set: {s:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_free_when_released_ended_or_unreadable() {
        assert!(lock_is_free(FREE, 5));
        assert!(lock_is_free(b"5", 5));
        assert!(lock_is_free(b"4", 5));
        assert!(!lock_is_free(b"6", 5));
        assert!(lock_is_free(b"held", 5));
        assert!(lock_is_free(&[0xff], 5));
    }
}
