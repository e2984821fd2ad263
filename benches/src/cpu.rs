//! The clock a benchmark reads: wall time (criterion's default), or the CPU time of the
//! calling thread (`CLOCK_THREAD_CPUTIME_ID`), which leaves out the time the thread waited
//! for a core. On a machine busy with other work the wall-clock median mostly measures the
//! wait; the thread's CPU time is what the work itself costs (caches shared with the other
//! work still inflate it a little). Knows nothing of what is being measured.

use std::time::{Duration, Instant};

/// Which clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// Elapsed real time.
    Wall,
    /// CPU time of the calling thread.
    ThreadCpu,
}

/// A reading of a [`Clock`].
#[derive(Debug, Clone, Copy)]
pub enum Reading {
    /// Wall clock.
    Wall(Instant),
    /// Thread CPU time since the thread started.
    Cpu(Duration),
}

impl Clock {
    /// `MESHWARD_BENCH_CLOCK=cpu` selects thread CPU time; anything else is wall time.
    pub fn from_env() -> Clock {
        match std::env::var("MESHWARD_BENCH_CLOCK").as_deref() {
            Ok("cpu") => Clock::ThreadCpu,
            _ => Clock::Wall,
        }
    }

    /// Now.
    pub fn now(self) -> Reading {
        match self {
            Clock::Wall => Reading::Wall(Instant::now()),
            Clock::ThreadCpu => Reading::Cpu(thread_cpu()),
        }
    }

    /// Time since `start` (taken from the same clock on the same thread).
    pub fn since(self, start: Reading) -> Duration {
        match start {
            Reading::Wall(t) => t.elapsed(),
            Reading::Cpu(t) => thread_cpu().saturating_sub(t),
        }
    }
}

/// CPU time consumed by the calling thread.
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_cpu_time_advances_with_work_not_with_sleep() {
        let c = Clock::ThreadCpu;
        let t = c.now();
        std::thread::sleep(Duration::from_millis(30));
        let slept = c.since(t);
        assert!(slept < Duration::from_millis(20), "{slept:?}");
        let t = c.now();
        let mut x = 0u64;
        while c.since(t) < Duration::from_millis(5) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(x > 0);
    }
}
