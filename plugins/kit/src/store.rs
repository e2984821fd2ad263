//! meshward-core's `Store` over proxy-wasm shared data, shared by every worker VM of the
//! proxy (same vm_id). Envoy's CAS has one hole: a set on a *missing* key succeeds whatever
//! cas is given, so two workers creating the same slot at once could both "win" and one
//! update would be lost. Slots are therefore created under a small lock key (itself created
//! at configure time): take the lock with CAS, create the slot only if still missing,
//! release. Creation happens once per slot, so the lock is cold.

use meshward_core::ratelimit::{Record, Store, StoreError};
use proxy_wasm::hostcalls;

/// Shared-data store with a key prefix for its lock.
#[derive(Debug, Clone)]
pub struct SharedStore {
    lock_key: String,
    retries: u32,
}

const FREE: &[u8] = b"0";
const HELD: &[u8] = b"1";

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
        // Spins are bounded; workers are real threads, so the holder finishes meanwhile.
        for _ in 0..self.retries.saturating_mul(64) {
            match hostcalls::get_shared_data(&self.lock_key) {
                Ok((Some(v), Some(cas))) if v == FREE => {
                    if hostcalls::set_shared_data(&self.lock_key, Some(HELD), Some(cas)).is_ok() {
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
