//! Reports of guest failures (traps, deadline interruptions, proc_exit): which plugin, which
//! worker, which callback, the message and the guest backtrace. Must not decide what happens
//! after a trap (that is the worker's FailStrategy handling). The store keeps the newest reports
//! (bounded) and numbers them so an embedder can read them with a cursor.

use std::collections::VecDeque;
use std::sync::Mutex;

/// One contained guest failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrapReport {
    /// Plugin name.
    pub plugin: String,
    /// Worker index; None for the configuration-check VM.
    pub worker: Option<usize>,
    /// The export that was running, e.g. `proxy_on_request_headers`.
    pub callback: String,
    /// The trap message (e.g. "wasm `unreachable` instruction executed", "interrupt").
    pub message: String,
    /// The guest backtrace (wasmtime `WasmBacktrace`), one frame per line; may be empty.
    pub backtrace: String,
}

impl TrapReport {
    /// Build from a wasmtime error raised by a call into the guest.
    pub(crate) fn from_error(
        plugin: &str,
        worker: Option<usize>,
        callback: &str,
        err: &wasmtime::Error,
    ) -> TrapReport {
        let message = if let Some(t) = err.downcast_ref::<wasmtime::Trap>() {
            match t {
                wasmtime::Trap::Interrupt => {
                    "interrupt: callback deadline exceeded (epoch interruption)".to_string()
                }
                other => other.to_string(),
            }
        } else {
            format!("{}", err.root_cause())
        };
        let backtrace = err
            .downcast_ref::<wasmtime::WasmBacktrace>()
            .map(|bt| bt.to_string())
            .unwrap_or_default();
        TrapReport {
            plugin: plugin.to_string(),
            worker,
            callback: callback.to_string(),
            message,
            backtrace,
        }
    }
}

/// How many trap reports a host keeps by default ([`crate::HostBuilder::traps_kept`]); older
/// ones are dropped and counted.
pub const TRAPS_KEPT: usize = 1024;

/// Traps read with [`crate::Host::traps_since`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrapBatch {
    /// The kept traps at or after the cursor, oldest first.
    pub traps: Vec<TrapReport>,
    /// The cursor to pass next time (the number of traps ever recorded).
    pub next: u64,
    /// Traps at or after the cursor that were dropped (the store was full) before this read.
    pub missed: u64,
}

#[derive(Debug)]
struct TrapLog {
    kept: VecDeque<TrapReport>,
    /// Sequence number of `kept[0]` (= how many were dropped so far).
    first: u64,
    cap: usize,
}

/// The host's trap store: the newest `cap` reports, each with a sequence number (0, 1, ...).
#[derive(Debug)]
pub(crate) struct Traps {
    log: Mutex<TrapLog>,
}

impl Traps {
    pub(crate) fn new(cap: usize) -> Self {
        Traps {
            log: Mutex::new(TrapLog {
                kept: VecDeque::new(),
                first: 0,
                cap: cap.max(1),
            }),
        }
    }
    pub(crate) fn push(&self, t: TrapReport) {
        if let Ok(mut l) = self.log.lock() {
            l.kept.push_back(t);
            while l.kept.len() > l.cap {
                l.kept.pop_front();
                l.first += 1;
            }
        }
    }
    pub(crate) fn snapshot(&self) -> Vec<TrapReport> {
        self.log
            .lock()
            .map(|l| l.kept.iter().cloned().collect())
            .unwrap_or_default()
    }
    pub(crate) fn since(&self, cursor: u64) -> TrapBatch {
        let Ok(l) = self.log.lock() else {
            return TrapBatch::default();
        };
        let next = l.first + l.kept.len() as u64;
        let skip = cursor.saturating_sub(l.first).min(l.kept.len() as u64) as usize;
        TrapBatch {
            traps: l.kept.iter().skip(skip).cloned().collect(),
            next,
            missed: l.first.saturating_sub(cursor),
        }
    }
    /// (recorded in total, dropped because the store was full).
    pub(crate) fn counts(&self) -> (u64, u64) {
        self.log
            .lock()
            .map(|l| (l.first + l.kept.len() as u64, l.first))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(n: u32) -> TrapReport {
        TrapReport {
            plugin: "p".into(),
            worker: Some(0),
            callback: format!("cb{n}"),
            message: String::new(),
            backtrace: String::new(),
        }
    }

    #[test]
    fn a_cursor_reads_each_trap_once_and_counts_the_dropped_ones() {
        let traps = Traps::new(3);
        for n in 0..2 {
            traps.push(t(n));
        }
        let a = traps.since(0);
        assert_eq!((a.traps.len(), a.next, a.missed), (2, 2, 0));
        assert_eq!(traps.since(a.next).traps, vec![]);
        for n in 2..7 {
            traps.push(t(n));
        }
        // Kept: 4, 5, 6; the reader at 2 missed 2 and 3.
        let b = traps.since(a.next);
        let names: Vec<&str> = b.traps.iter().map(|t| t.callback.as_str()).collect();
        assert_eq!(names, ["cb4", "cb5", "cb6"]);
        assert_eq!((b.next, b.missed), (7, 2));
        assert_eq!(traps.counts(), (7, 4));
        assert_eq!(traps.snapshot().len(), 3);
    }
}
