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
//!
//! Every call goes through kit's [`abi`] wrappers: keys go as bytes (no UTF-8 check per
//! call), and every status the host may return is a defined result (the SDK's wrappers
//! panic on one they do not expect, which would trap the VM).

use meshward_core::ratelimit::{Record, Store, StoreError};

use crate::abi::{self, Status};

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

/// What `read` makes of the value and cas of `key` (`None` when missing), read in place
/// (a slot's record costs no allocation); the status as its name on failure.
fn get<T>(key: &[u8], read: impl FnOnce(Option<(&[u8], u32)>) -> T) -> Result<T, &'static str> {
    abi::read_shared_data(key, read).map_err(Status::name)
}

/// Sets `key` to `value` if its cas is still `cas` (0: unconditionally); `Ok(false)` on a cas
/// mismatch.
fn set(key: &[u8], value: &[u8], cas: u32) -> Result<bool, &'static str> {
    match abi::set_shared_data(key, value, cas) {
        Ok(()) => Ok(true),
        Err(Status::CAS_MISMATCH) => Ok(false),
        Err(s) => Err(s.name()),
    }
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
        if let Ok(false) = get(self.lock_key.as_bytes(), |v| v.is_some()) {
            let _ = set(self.lock_key.as_bytes(), FREE, 0);
        }
    }

    fn lock(&self) -> Result<(), StoreError> {
        let now = crate::time::now_nanos();
        let held = now.saturating_add(LEASE_NS).to_string();
        // Spins are bounded; workers are real threads, so the holder finishes meanwhile.
        for _ in 0..self.retries.saturating_mul(64) {
            let key = self.lock_key.as_bytes();
            match get(key, |v| v.map(|(v, cas)| (cas, lock_is_free(v, now)))) {
                Ok(Some((cas, true))) if cas != 0 => {
                    if set(key, held.as_bytes(), cas) == Ok(true) {
                        return Ok(());
                    }
                }
                Ok(None) => self.init(),
                Ok(_) => {}
                Err(s) => return Err(StoreError(format!("lock: {s}"))),
            }
        }
        Err(StoreError("slot-creation lock is busy".into()))
    }

    fn unlock(&self) {
        for _ in 0..self.retries.saturating_mul(64) {
            let key = self.lock_key.as_bytes();
            match get(key, |v| v.map(|(_, cas)| cas)) {
                Ok(Some(cas)) if cas != 0 => {
                    if set(key, FREE, cas) == Ok(true) {
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
        let read = |v: Option<(&[u8], u32)>| {
            v.filter(|&(_, cas)| cas != 0)
                .map(|(v, cas)| (Record::from_bytes(v), cas))
        };
        get(key, read).map_err(|s| StoreError(format!("get: {s}")))
    }

    fn create(&mut self, key: &[u8], rec: Record) -> Result<(), StoreError> {
        self.lock()?;
        let result = match get(key, |v| v.is_some()) {
            Ok(true) => Ok(()),
            // Unconditional (cas 0): the lock makes this worker the only creator.
            Ok(false) => match set(key, &rec.to_bytes(), 0) {
                Ok(_) => Ok(()),
                Err(s) => Err(StoreError(format!("create: {s}"))),
            },
            Err(s) => Err(StoreError(format!("get: {s}"))),
        };
        self.unlock();
        result
    }

    fn replace(&mut self, key: &[u8], rec: Record, version: u32) -> Result<bool, StoreError> {
        set(key, &rec.to_bytes(), version).map_err(|s| StoreError(format!("set: {s}")))
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
