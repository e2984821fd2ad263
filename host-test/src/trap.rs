//! Reports of guest failures (traps, deadline interruptions, proc_exit): which plugin, which
//! worker, which callback, the message and the guest backtrace. Must not decide what happens
//! after a trap (that is the worker's FailStrategy handling).

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

#[derive(Debug, Default)]
pub(crate) struct Traps {
    list: Mutex<Vec<TrapReport>>,
}

impl Traps {
    pub(crate) fn push(&self, t: TrapReport) {
        if let Ok(mut l) = self.list.lock() {
            l.push(t);
        }
    }
    pub(crate) fn snapshot(&self) -> Vec<TrapReport> {
        self.list.lock().map(|l| l.clone()).unwrap_or_default()
    }
}
