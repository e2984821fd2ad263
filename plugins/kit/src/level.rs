//! Whether the host keeps debug lines (`proxy_get_log_level`), asked once per request so a
//! filter formats no debug line the host would drop. Read through the ABI directly on wasm:
//! the SDK's wrapper panics on a status it does not expect (a trap), and stores the host's
//! number straight into its `LogLevel` enum.

/// `LogLevel::Debug` in the ABI (`Trace` is 0).
const DEBUG: u32 = 1;

/// True when the host logs at debug or trace level; false when it cannot tell.
#[cfg(target_arch = "wasm32")]
pub fn debug_enabled() -> bool {
    #[link(wasm_import_module = "env")]
    extern "C" {
        fn proxy_get_log_level(return_level: *mut u32) -> u32;
    }
    let mut level = u32::MAX;
    // SAFETY: the host writes one u32 to a live local.
    let status = unsafe { proxy_get_log_level(&mut level) };
    status == 0 && level <= DEBUG
}

/// True when the host logs at debug or trace level; false when it cannot tell.
#[cfg(not(target_arch = "wasm32"))]
pub fn debug_enabled() -> bool {
    proxy_wasm::hostcalls::get_log_level().is_ok_and(|l| l as u32 <= DEBUG)
}
