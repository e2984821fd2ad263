//! A proxy-wasm ABI 0.2.1 host on wasmtime that runs plugins the way Envoy does.
//!
//! ## Entry points
//! - [`Host::builder`] → [`HostBuilder`] (clock, clusters, limits, strict imports) →
//!   [`Host`]: process-wide state (engine + module cache, shared data, queues, metrics, logs,
//!   traps).
//! - [`Host::load`] a [`PluginSpec`] → [`Plugin`] (compiled, imports checked, configuration
//!   checked on a throwaway VM; a refusal is a [`LoadError`] carrying the plugin's logs).
//! - [`Host::worker`] → [`Worker`]: one VM per chain plugin (one Envoy worker thread). Drive
//!   HTTP streams with `open_http_stream`, `request_headers`/`_body`/`_trailers`,
//!   `response_*`, `complete`; read them back with [`Worker::stream`].
//! - Time: a [`Clock`] ([`SystemClock`] or [`VirtualClock`]); `Worker::advance`/`poll` fire
//!   ticks, callout answers and timeouts in time order; `Host::advance` does it for several
//!   workers on one clock; `Worker::next_due` says when the next thing is scheduled.
//! - Lifecycle: `Worker::complete` ends a stream (on_log, on_done, on_delete, as Envoy);
//!   `Worker::shutdown` ends the root contexts (on_done false waits for `proxy_done`,
//!   `Worker::awaiting_done`). Traps: `Host::traps_since(cursor)` (bounded store).
//! - Callouts go to named clusters answered by [`HttpHandler`]/[`GrpcHandler`] (closures work).
//!
//! ## Process model (as Envoy)
//! Shared data is keyed by vm_id with Envoy's CAS rules and shared by every VM of the host;
//! shared queues are keyed by (vm_id, name) and notify the last registrant; metrics are one
//! registry by name. Each worker VM has its own linear memory, timers and contexts.
//!
//! ## Fencing
//! Per-VM memory cap (wasmtime `ResourceLimiter`), per-callback deadline (epoch interruption
//! with a ticker thread owned by the live hosts), traps contained and reported as
//! [`TrapReport`]s; after a trap the plugin's [`FailStrategy`] applies.
//!
//! ## Where this host differs from Envoy (on purpose or not yet done)
//! - A second `proxy_send_local_response` on a stream is refused with BAD_ARGUMENT and a
//!   warning (Envoy hangs the client, envoy#28826).
//! - HTTP callout timeouts reach the guest as a failed call (0 headers, `proxy_get_status`
//!   11 "timeout"); Envoy's async client may answer 504 instead. Failures are 11 "reset".
//! - No per-callback frozen time, no capability restriction; gRPC upstreams are cluster names
//!   only (not serialized `GrpcService` protos).
//! - A body held by paused headers (Envoy: StopAllIterationAndWatermark, flow control) is
//!   buffered without limit: the host cannot read-disable the embedder. A body paused with
//!   StopIterationAndBuffer does hit the buffer limit (413/500, `HostBuilder::buffer_limit_bytes`).
//! - `Worker::shutdown` resets and completes streams still open before the root contexts'
//!   on_done (in Envoy the plugin handle outlives them); a root context that never calls
//!   `proxy_done` is kept as long as the worker (Envoy may stop waiting after a timeout).
//! - Properties: the common attributes are computed; anything else (xds.node, metadata, ...)
//!   comes as bytes from the embedder (`HostBuilder::property`, `StreamProps::property`).

mod abi;
mod batch;
mod callouts;
mod clock;
mod ctx_map;
mod engine;
mod error;
mod exports;
mod host;
mod logs;
mod metrics;
mod pairs;
mod properties;
mod queues;
mod shared_data;
mod spec;
mod stream;
mod trap;
mod vm;
mod wasi;
mod worker;
mod worker_core;

pub use callouts::{
    CalloutReply, GrpcCallRequest, GrpcHandler, GrpcReply, HttpCallRequest, HttpHandler,
    HttpResponse, Responder,
};
pub use clock::{Clock, SystemClock, VirtualClock};
pub use engine::wasmtime_config;
pub use error::{HostError, LoadError};
pub use host::{ForeignFn, Host, HostBuilder, HostStats, Plugin, DEFAULT_BUFFER_LIMIT};
pub use logs::{LogLevel, LogRecord, LogSink};
pub use metrics::{MetricKind, MetricValue, Metrics, BUCKETS};
pub use pairs::{
    deserialize as deserialize_pairs, serialize as serialize_pairs, Headers, PairsError,
};
pub use shared_data::{SetOutcome, SharedData};
pub use spec::{FailStrategy, PluginSpec, DEFAULT_RELOAD_BACKOFF};
pub use stream::{Flow, LocalReply, StreamId, StreamProps, StreamView, MAX_CHAIN};
pub use trap::{TrapBatch, TrapReport, TRAPS_KEPT};
pub use worker::{Worker, COMPLETED_KEPT};

#[cfg(test)]
mod send_check {
    fn is_send<T: Send>() {}
    fn is_send_sync<T: Send + Sync>() {}
    #[test]
    fn worker_is_send_and_host_is_send_sync() {
        is_send::<crate::Worker>();
        is_send_sync::<crate::Host>();
        is_send_sync::<crate::Plugin>();
    }
}
