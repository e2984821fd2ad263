//! Host time in nanoseconds since the Unix epoch (`proxy_get_current_time_nanoseconds`).
//! A wall clock: callers subtract with saturation, so a backward jump cannot corrupt state.
//! One host call per request, no `SystemTime` round trip; a status other than Ok is "cannot
//! tell".

use crate::abi;

/// Now, in ns; 0 if the host cannot tell (every algorithm treats that as "long ago").
pub fn now_nanos() -> u64 {
    abi::now_nanos().unwrap_or(0)
}
