//! Host time in nanoseconds since the Unix epoch (`proxy_get_current_time_nanoseconds`).
//! A wall clock: callers subtract with saturation, so a backward jump cannot corrupt state.

use std::time::UNIX_EPOCH;

/// Now, in ns; 0 if the host cannot tell (every algorithm treats that as "long ago").
pub fn now_nanos() -> u64 {
    proxy_wasm::hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
