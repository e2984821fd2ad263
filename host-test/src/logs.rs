//! Plugin log lines: levels (proxy_log_level_t), records and where they go (captured in memory,
//! stderr, or both). Must not know about wasm; `abi::log` and `wasi` feed it.

use std::sync::Mutex;

/// proxy-wasm log levels (`proxy_log_level_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// 0
    Trace,
    /// 1
    Debug,
    /// 2
    Info,
    /// 3
    Warn,
    /// 4
    Error,
    /// 5
    Critical,
}

impl LogLevel {
    /// From the ABI number; None for an unknown level (BAD_ARGUMENT).
    pub fn from_abi(n: i32) -> Option<LogLevel> {
        Some(match n {
            0 => LogLevel::Trace,
            1 => LogLevel::Debug,
            2 => LogLevel::Info,
            3 => LogLevel::Warn,
            4 => LogLevel::Error,
            5 => LogLevel::Critical,
            _ => return None,
        })
    }
    /// The ABI number.
    pub fn as_abi(self) -> i32 {
        self as i32
    }
}

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogSink {
    /// Kept in memory, read with `Host::logs`/`take_logs` (default).
    #[default]
    Capture,
    /// Printed to stderr as Envoy does (`wasm log <plugin> <root_id> <vm_id>: <msg>`).
    Stderr,
    /// Both.
    Both,
}

/// One log line from a plugin (or from the host about a plugin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Plugin name.
    pub plugin: String,
    /// Worker index; None for the configuration-check VM.
    pub worker: Option<usize>,
    /// Level.
    pub level: LogLevel,
    /// The text.
    pub message: String,
    /// Clock time (Unix nanoseconds) when logged.
    pub at: u64,
}

/// The host-wide log store.
#[derive(Debug, Default)]
pub(crate) struct Logs {
    pub(crate) sink: LogSink,
    records: Mutex<Vec<LogRecord>>,
}

impl Logs {
    pub(crate) fn new(sink: LogSink) -> Self {
        Logs {
            sink,
            records: Mutex::new(Vec::new()),
        }
    }
    pub(crate) fn push(&self, rec: LogRecord, root_id: &str, vm_id: &str) {
        if matches!(self.sink, LogSink::Stderr | LogSink::Both) {
            eprintln!(
                "[{:?}] wasm log {} {} {}: {}",
                rec.level, rec.plugin, root_id, vm_id, rec.message
            );
        }
        if matches!(self.sink, LogSink::Capture | LogSink::Both) {
            if let Ok(mut r) = self.records.lock() {
                r.push(rec);
            }
        }
    }
    pub(crate) fn snapshot(&self) -> Vec<LogRecord> {
        self.records.lock().map(|r| r.clone()).unwrap_or_default()
    }
    pub(crate) fn take(&self) -> Vec<LogRecord> {
        self.records
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default()
    }
}
