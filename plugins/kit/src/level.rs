//! Whether the host keeps debug lines (`proxy_get_log_level`), so a filter formats no debug
//! line the host would drop. The host's number is compared as a number (the SDK stores it
//! straight into its `LogLevel` enum), and a status other than Ok means "cannot tell".
//!
//! [`debug_enabled_at`] asks the host at most once per [`REFRESH_NS`] of host time per
//! worker, where a filter would otherwise ask on every request. Envoy's level can change at
//! run time (its admin `/logging` endpoint) and no callback tells the guest (the ABI has no
//! `proxy_on_log_level_update`), so any cache lags a change; refreshing by the clock the
//! request has already read bounds the lag to [`REFRESH_NS`] whatever the traffic, and
//! costs no host call of its own. During the lag a filter either formats debug lines the
//! host drops or misses debug lines for at most that long; which lines a request
//! produces is otherwise unchanged.

use std::cell::Cell;

use crate::abi;

/// How long (ns of host time) an answer of the host is reused: one second.
pub const REFRESH_NS: u64 = 1_000_000_000;

thread_local! {
    /// The last answer and the host time it was asked at (`None`: never asked). A VM runs
    /// one thread, so this is per worker.
    static CACHED: Cell<Option<(bool, u64)>> = const { Cell::new(None) };
}

/// True when the host logs at debug or trace level; false when it cannot tell. Asks the host.
pub fn debug_enabled() -> bool {
    abi::log_level().is_ok_and(|l| l <= abi::level::DEBUG)
}

/// [`debug_enabled`] as of host time `now` (ns, as [`crate::time::now_nanos`] gives it):
/// the host is asked again when its last answer is [`REFRESH_NS`] old, when the clock went
/// back, or when the clock cannot tell (`now` 0).
#[inline(always)]
pub fn debug_enabled_at(now: u64) -> bool {
    match CACHED.get() {
        Some((on, at)) if now != 0 && now >= at && now - at < REFRESH_NS => on,
        _ => refresh(now),
    }
}

/// Asks the host and keeps the answer as of `now`.
#[inline(never)]
fn refresh(now: u64) -> bool {
    let on = debug_enabled();
    CACHED.set(Some((on, now)));
    on
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_reused_for_a_second_of_host_time() {
        // Without a host the answer is "cannot tell": false. What is tested is when the host
        // is asked again, seen through the cached time.
        CACHED.set(Some((true, 10)));
        assert!(debug_enabled_at(10 + REFRESH_NS - 1), "fresh: reused");
        assert!(
            !debug_enabled_at(10 + REFRESH_NS),
            "a second old: asked again"
        );
        assert_eq!(CACHED.get(), Some((false, 10 + REFRESH_NS)));
        CACHED.set(Some((true, 10)));
        assert!(!debug_enabled_at(9), "the clock went back: asked again");
        CACHED.set(Some((true, 10)));
        assert!(!debug_enabled_at(0), "no clock: asked every time");
    }
}
