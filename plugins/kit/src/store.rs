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
//! The request path (`load`, `replace`) calls the ABI directly ([`raw`]): the slot key goes
//! as bytes (no UTF-8 check per call), and every status the host may return is a defined
//! result (the SDK's wrappers panic on one they do not expect, which would trap the VM).

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
        match raw::get(key) {
            Ok(Some((v, cas))) if cas != 0 => Ok(Some((Record::from_bytes(&v), cas))),
            Ok(_) => Ok(None),
            Err(s) => Err(StoreError(format!("get: {}", raw::status_name(s)))),
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
        raw::set(key, &rec.to_bytes(), version)
            .map_err(|s| StoreError(format!("set: {}", raw::status_name(s))))
    }
}

/// `proxy_get_shared_data` / `proxy_set_shared_data` without the SDK: statuses as numbers.
mod raw {
    const OK: u32 = 0;
    const NOT_FOUND: u32 = 1;
    const CAS_MISMATCH: u32 = 8;

    /// A status's name in the ABI (for error messages).
    pub fn status_name(s: u32) -> &'static str {
        match s {
            OK => "Ok",
            NOT_FOUND => "NotFound",
            2 => "BadArgument",
            3 => "SerializationFailure",
            4 => "ParseFailure",
            7 => "Empty",
            CAS_MISMATCH => "CasMismatch",
            10 => "InternalFailure",
            _ => "unknown status",
        }
    }

    /// The value and cas of `key`; `None` when it is missing (cas 0: the host gave none).
    #[cfg(target_arch = "wasm32")]
    pub fn get(key: &[u8]) -> Result<Option<(Vec<u8>, u32)>, u32> {
        let mut data: *mut u8 = std::ptr::null_mut();
        let (mut size, mut cas) = (0usize, 0u32);
        // SAFETY: `key` is live for the call; the host writes a pointer, a length and a cas.
        let status = unsafe {
            abi::proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas)
        };
        match status {
            OK if data.is_null() => Ok(None),
            // SAFETY: the host allocated `size` bytes at `data` through the guest's
            // `proxy_on_memory_allocate` (the SDK's, a `Vec<u8>` buffer of exactly that
            // capacity) and ownership passes to us, as the SDK's own wrapper takes it.
            OK => Ok(Some((
                unsafe { Vec::from_raw_parts(data, size, size) },
                cas,
            ))),
            NOT_FOUND => Ok(None),
            s => Err(s),
        }
    }

    /// Sets `key` to `value` if its cas is still `cas`: `Ok(false)` on a cas mismatch.
    #[cfg(target_arch = "wasm32")]
    pub fn set(key: &[u8], value: &[u8], cas: u32) -> Result<bool, u32> {
        // SAFETY: `key` and `value` are live for the call.
        let status = unsafe {
            abi::proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas)
        };
        match status {
            OK => Ok(true),
            CAS_MISMATCH => Ok(false),
            s => Err(s),
        }
    }

    /// Off wasm (the kit's own tests): the SDK's wrappers, keys as UTF-8.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn get(key: &[u8]) -> Result<Option<(Vec<u8>, u32)>, u32> {
        let key = std::str::from_utf8(key).map_err(|_| 2u32)?;
        match proxy_wasm::hostcalls::get_shared_data(key) {
            Ok((Some(v), Some(cas))) => Ok(Some((v, cas))),
            Ok(_) => Ok(None),
            Err(s) => Err(s as u32),
        }
    }

    /// Off wasm (the kit's own tests): the SDK's wrappers, keys as UTF-8.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn set(key: &[u8], value: &[u8], cas: u32) -> Result<bool, u32> {
        let key = std::str::from_utf8(key).map_err(|_| 2u32)?;
        match proxy_wasm::hostcalls::set_shared_data(key, Some(value), Some(cas)) {
            Ok(()) => Ok(true),
            Err(proxy_wasm::types::Status::CasMismatch) => Ok(false),
            Err(s) => Err(s as u32),
        }
    }

    #[cfg(target_arch = "wasm32")]
    mod abi {
        #[link(wasm_import_module = "env")]
        extern "C" {
            pub fn proxy_get_shared_data(
                key_data: *const u8,
                key_size: usize,
                return_value_data: *mut *mut u8,
                return_value_size: *mut usize,
                return_cas: *mut u32,
            ) -> u32;
            pub fn proxy_set_shared_data(
                key_data: *const u8,
                key_size: usize,
                value_data: *const u8,
                value_size: usize,
                cas: u32,
            ) -> u32;
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
