//! The proxy-wasm ABI 0.2.1 host functions (module `env`), one file per area, plus the shared
//! helpers for guest memory (through the VM's cached `Memory`, never an export lookup per call)
//! and for returning buffers allocated with the guest's allocator. The 0.1.0 legacy functions
//! are registered too (the loader refuses them in 0.2.x guests, as cpp-host registers them only
//! for 0.1.0). Must not know about the chain's flow: stream-level effects are queued as
//! after-call actions for the worker.

mod buffers;
mod callouts;
mod headers;
mod log;
mod metrics;
mod props;
mod shared;
mod stream;
mod timers;

use std::collections::HashSet;

use wasmtime::{Caller, IntoFunc, Linker};

use crate::vm::VmState;

/// proxy_status_t values.
pub(crate) mod status {
    pub(crate) const OK: i32 = 0;
    pub(crate) const NOT_FOUND: i32 = 1;
    pub(crate) const BAD_ARGUMENT: i32 = 2;
    pub(crate) const PARSE_FAILURE: i32 = 4;
    pub(crate) const INVALID_MEMORY_ACCESS: i32 = 6;
    pub(crate) const EMPTY: i32 = 7;
    pub(crate) const CAS_MISMATCH: i32 = 8;
    pub(crate) const INTERNAL_FAILURE: i32 = 10;
    pub(crate) const UNIMPLEMENTED: i32 = 12;
}

pub(crate) type C<'a> = Caller<'a, VmState>;
pub(crate) type R = wasmtime::Result<i32>;

/// The ABI 0.1.0-only functions (refused in 0.2.x guests).
pub(crate) const LEGACY_010: [&str; 4] = [
    "proxy_get_configuration",
    "proxy_continue_request",
    "proxy_continue_response",
    "proxy_clear_route_cache",
];

/// A linker plus the set of (module, name) it defines.
pub(crate) struct Reg {
    pub(crate) linker: Linker<VmState>,
    pub(crate) names: HashSet<(String, String)>,
}

impl Reg {
    pub(crate) fn func<Params, Args>(
        &mut self,
        module: &str,
        name: &str,
        f: impl IntoFunc<VmState, Params, Args>,
    ) {
        // A duplicate definition is a programming error of this crate; keep the first.
        if self.linker.func_wrap(module, name, f).is_ok() {
            self.names.insert((module.to_string(), name.to_string()));
        }
    }
}

/// Build the linker with every proxy-wasm and WASI function.
pub(crate) fn linker(engine: &wasmtime::Engine) -> Reg {
    let mut reg = Reg {
        linker: Linker::new(engine),
        names: HashSet::new(),
    };
    log::add(&mut reg);
    timers::add(&mut reg);
    buffers::add(&mut reg);
    headers::add(&mut reg);
    stream::add(&mut reg);
    shared::add(&mut reg);
    metrics::add(&mut reg);
    props::add(&mut reg);
    callouts::add(&mut reg);
    crate::wasi::add(&mut reg);
    reg
}

/// Guest memory and the store data at once.
#[inline]
pub(crate) fn mem_state<'a>(c: &'a mut C<'_>) -> Option<(&'a mut [u8], &'a mut VmState)> {
    let m = c.data().memory?;
    Some(m.data_and_store_mut(c))
}

/// `len` bytes at `ptr`, if inside memory.
#[inline]
pub(crate) fn slice(mem: &[u8], ptr: i32, len: i32) -> Option<&[u8]> {
    let p = ptr as u32 as usize;
    mem.get(p..p.checked_add(len as u32 as usize)?)
}

#[inline]
pub(crate) fn put_u32(mem: &mut [u8], ptr: i32, v: u32) -> bool {
    let p = ptr as u32 as usize;
    match p.checked_add(4).and_then(|e| mem.get_mut(p..e)) {
        Some(d) => {
            d.copy_from_slice(&v.to_le_bytes());
            true
        }
        None => false,
    }
}

#[inline]
pub(crate) fn put_u64(mem: &mut [u8], ptr: i32, v: u64) -> bool {
    let p = ptr as u32 as usize;
    match p.checked_add(8).and_then(|e| mem.get_mut(p..e)) {
        Some(d) => {
            d.copy_from_slice(&v.to_le_bytes());
            true
        }
        None => false,
    }
}

/// Copy `data` into memory from the guest allocator (nothing allocated for empty data, as
/// cpp-host `copyToPointerSize`) and write the pointer and size. Returns a status; a trap in
/// the allocator propagates.
pub(crate) fn return_bytes(c: &mut C<'_>, data: &[u8], ptr_ptr: i32, size_ptr: i32) -> R {
    let mut ptr = 0i32;
    if !data.is_empty() {
        // Moved out for the call and put back, not cloned: a `TypedFunc` clone bumps four
        // refcounts of its registered type (a fifth of a guest-driven shared-data get in the
        // profile). The guest allocator is not expected to reach this function (Envoy lets it
        // call only log, clock and fd_write: cpp-host `allocMemory`); one that called back
        // into a function returning bytes would get INTERNAL_FAILURE, not a trap.
        let Some(malloc) = c.data_mut().malloc.take() else {
            return Ok(status::INTERNAL_FAILURE);
        };
        let r = malloc.call(&mut *c, data.len() as i32);
        c.data_mut().malloc = Some(malloc);
        ptr = r?;
        if ptr == 0 {
            return Ok(status::INVALID_MEMORY_ACCESS);
        }
    }
    let Some((mem, _)) = mem_state(c) else {
        return Ok(status::INTERNAL_FAILURE);
    };
    if !data.is_empty() {
        let p = ptr as u32 as usize;
        match p.checked_add(data.len()).and_then(|e| mem.get_mut(p..e)) {
            Some(d) => d.copy_from_slice(data),
            None => return Ok(status::INVALID_MEMORY_ACCESS),
        }
    }
    if !put_u32(mem, ptr_ptr, ptr as u32) || !put_u32(mem, size_ptr, data.len() as u32) {
        return Ok(status::INVALID_MEMORY_ACCESS);
    }
    Ok(status::OK)
}

/// Take the reusable scratch buffer (cleared).
#[inline]
pub(crate) fn take_scratch(st: &mut VmState) -> Vec<u8> {
    let mut s = std::mem::take(&mut st.scratch);
    s.clear();
    s
}

/// Return `out` to the guest and give the scratch buffer back.
pub(crate) fn return_scratch(c: &mut C<'_>, out: Vec<u8>, ptr_ptr: i32, size_ptr: i32) -> R {
    let r = return_bytes(c, &out, ptr_ptr, size_ptr);
    c.data_mut().scratch = out;
    r
}
