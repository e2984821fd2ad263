//! Host time in nanoseconds since the Unix epoch (`proxy_get_current_time_nanoseconds`).
//! A wall clock: callers subtract with saturation, so a backward jump cannot corrupt state.
//! Read through the ABI directly on wasm: one call per request, no `SystemTime` round trip,
//! and a status the SDK would panic on is "cannot tell".

/// Now, in ns; 0 if the host cannot tell (every algorithm treats that as "long ago").
#[cfg(target_arch = "wasm32")]
pub fn now_nanos() -> u64 {
    #[link(wasm_import_module = "env")]
    extern "C" {
        fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    }
    let mut t = 0u64;
    // SAFETY: the host writes one u64 to a live local.
    let status = unsafe { proxy_get_current_time_nanoseconds(&mut t) };
    if status == 0 {
        t
    } else {
        0
    }
}

/// Now, in ns; 0 if the host cannot tell (every algorithm treats that as "long ago").
#[cfg(not(target_arch = "wasm32"))]
pub fn now_nanos() -> u64 {
    proxy_wasm::hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
