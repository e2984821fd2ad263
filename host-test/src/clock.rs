//! Time for the host: the `Clock` trait the embedder picks, a real `SystemClock` and a
//! `VirtualClock` that moves only when told. Ticks, callout latencies and timeouts,
//! `proxy_get_current_time_nanoseconds` and the WASI clocks all read one `Clock`.
//! Must not know about workers, VMs or the timeline (it only tells time).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
#[cfg(not(unix))]
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of time. `now_nanos` is wall-clock Unix nanoseconds (WASI REALTIME and
/// `proxy_get_current_time_nanoseconds`); `monotonic_nanos` never goes backwards (WASI MONOTONIC).
pub trait Clock: Send + Sync + 'static {
    /// Unix time in nanoseconds.
    fn now_nanos(&self) -> u64;
    /// Monotonic nanoseconds from an arbitrary origin.
    fn monotonic_nanos(&self) -> u64;
    /// Move the clock to `unix_nanos` if this clock can be moved (virtual clocks). Returns
    /// false for a real clock, which the timeline then waits for instead.
    fn set_nanos(&self, _unix_nanos: u64) -> bool {
        false
    }
}

/// The machine's clock.
#[derive(Debug, Clone)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    /// A clock that reads the operating system.
    pub fn new() -> Self {
        SystemClock {
            origin: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    #[cfg(unix)]
    fn now_nanos(&self) -> u64 {
        // One `clock_gettime(CLOCK_REALTIME)` (vDSO) and the arithmetic inline: `SystemTime`'s
        // `duration_since` + `as_nanos` are two more out-of-line calls, and a stream of a
        // plugin that can read `request.time` reads the clock twice (start and end).
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; CLOCK_REALTIME always exists.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
        if rc != 0 || ts.tv_sec < 0 {
            return 0;
        }
        (ts.tv_sec as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(ts.tv_nsec as u64)
    }
    #[cfg(not(unix))]
    fn now_nanos(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    }
    fn monotonic_nanos(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }
}

/// A clock that only moves when told (`advance`, `set`). Clones share one time.
#[derive(Debug, Clone)]
pub struct VirtualClock {
    now: Arc<AtomicU64>,
}

impl VirtualClock {
    /// A virtual clock starting at `start_unix_nanos`.
    pub fn new(start_unix_nanos: u64) -> Self {
        VirtualClock {
            now: Arc::new(AtomicU64::new(start_unix_nanos)),
        }
    }
    /// Move forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.now.fetch_add(d.as_nanos() as u64, Ordering::SeqCst);
    }
    /// Set the time (it may not go backwards: an earlier time is ignored).
    pub fn set(&self, unix_nanos: u64) {
        self.now.fetch_max(unix_nanos, Ordering::SeqCst);
    }
    /// Current Unix nanoseconds.
    pub fn now(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }
}

impl Clock for VirtualClock {
    fn now_nanos(&self) -> u64 {
        self.now()
    }
    fn monotonic_nanos(&self) -> u64 {
        self.now()
    }
    fn set_nanos(&self, unix_nanos: u64) -> bool {
        self.set(unix_nanos);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_clock_moves_only_when_told_and_never_back() {
        let c = VirtualClock::new(1_000);
        let c2 = c.clone();
        assert_eq!(c.now_nanos(), 1_000);
        c.advance(Duration::from_nanos(500));
        assert_eq!(c2.now_nanos(), 1_500);
        c.set(1_200);
        assert_eq!(c.now(), 1_500, "set backwards is ignored");
        assert!(c.set_nanos(2_000));
        assert_eq!(c.monotonic_nanos(), 2_000);
    }

    #[test]
    fn system_clock_cannot_be_set() {
        let c = SystemClock::new();
        assert!(!c.set_nanos(5));
        assert!(c.now_nanos() > 1_600_000_000_000_000_000);
    }

    #[test]
    fn system_clock_agrees_with_the_standard_library() {
        let c = SystemClock::new();
        let std_now = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
        };
        let before = std_now();
        let ours = c.now_nanos();
        let after = std_now();
        assert!(
            before <= ours && ours <= after,
            "{before} <= {ours} <= {after}"
        );
    }
}
