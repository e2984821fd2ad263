//! The seam between the scenario driver and whatever runs the plugins: the driver speaks
//! [`Engine`]; `host_engine.rs` implements it over meshward-host, tests implement it with
//! a scripted fake so the driver is tested alone. Knows nothing of wasm.

use std::time::Duration;

use serde::Serialize;

use crate::error::RunError;
use crate::traffic::Request;

/// A stream: (worker index, the engine's id for it on that worker).
pub type StreamKey = (usize, u64);

/// Where a stream stands after a call into the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Passed the whole chain: on the request path, forwarded upstream; on the response
    /// path, sent downstream.
    Continue,
    /// A plugin paused it; it waits for `proxy_continue_stream` (or a local reply).
    Paused,
    /// A plugin (or the host, for a trapped plugin) answered locally.
    LocalReply {
        /// `:status` of the reply.
        status: u16,
        /// Envoy's response code details (`wasm_fail_stream` for a dead VM).
        details: String,
    },
    /// The stream was reset (`proxy_close_stream`).
    Reset,
}

/// An upstream response to send back through the chain.
#[derive(Clone, Debug)]
pub struct Response {
    /// `:status` and the other headers.
    pub headers: Vec<(String, String)>,
    /// Body bytes (empty: headers only).
    pub body: Vec<u8>,
}

/// Log level of a plugin's log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// trace
    Trace,
    /// debug
    Debug,
    /// info
    Info,
    /// warn
    Warn,
    /// error
    Error,
    /// critical
    Critical,
}

impl Level {
    /// Every level, lowest first.
    pub const ALL: [Level; 6] = [
        Level::Trace,
        Level::Debug,
        Level::Info,
        Level::Warn,
        Level::Error,
        Level::Critical,
    ];

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Critical => "critical",
        }
    }
}

/// One log line a plugin wrote.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LogLine {
    /// Virtual time from the start of the run, in milliseconds.
    pub at_ms: f64,
    /// The plugin's name.
    pub plugin: String,
    /// Worker index (`null` for the configuration VM).
    pub worker: Option<usize>,
    /// Level.
    pub level: Level,
    /// The text.
    pub message: String,
}

/// A trap in a plugin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Trap {
    /// The plugin's name.
    pub plugin: String,
    /// Worker index.
    pub worker: Option<usize>,
    /// The callback that trapped (`proxy_on_request_headers`...).
    pub callback: String,
    /// The trap message.
    pub message: String,
}

/// Kind of a metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricKind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// A distribution (the value is the number of samples).
    Histogram,
}

/// A metric's value at one moment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MetricSample {
    /// Kind.
    pub kind: MetricKind,
    /// Value (counter/gauge) or sample count (histogram).
    pub value: f64,
}

/// Runs streams through a plugin chain on virtual time.
pub trait Engine {
    /// Number of workers.
    fn workers(&self) -> usize;
    /// Moves virtual time to `to` (from the start of the run), firing what falls due (also
    /// what is due at `to` when `to` is the current time).
    fn advance_to(&mut self, to: Duration) -> Result<(), RunError>;
    /// The earliest time (from the start of the run) at which the engine has something
    /// scheduled (a tick, a callout answer, a timeout, ...), if anything. The driver jumps
    /// straight there while requests are paused, so resume times are exact.
    fn next_event(&mut self) -> Option<Duration>;
    /// Opens a stream on `worker` and sends the request (headers, then body if any).
    fn start(&mut self, worker: usize, request: &Request) -> Result<(StreamKey, Step), RunError>;
    /// Sends the upstream's response back through the chain.
    fn respond(&mut self, key: StreamKey, response: &Response) -> Result<Step, RunError>;
    /// Where a stream that was paused stands now.
    fn status(&mut self, key: StreamKey) -> Step;
    /// Ends a stream (`on_done`/`on_log`/`on_delete`); returns the `:status` the
    /// downstream saw, if any.
    fn finish(&mut self, key: StreamKey) -> Result<Option<u16>, RunError>;
    /// Log lines written since the last call.
    fn take_logs(&mut self) -> Vec<LogLine>;
    /// Traps since the last call.
    fn take_traps(&mut self) -> Vec<Trap>;
    /// Traps since the last call that could not be returned by `take_traps` (dropped by a
    /// bounded store before they were read); they still count.
    fn take_dropped_traps(&mut self) -> u64 {
        0
    }
    /// Every metric the plugins defined, by name.
    fn metrics(&self) -> Vec<(String, MetricSample)>;
}
