//! Baselines for the criterion benchmarks in `benches/`: what the same work costs without the
//! meshward host, measured in the same run so results are reported as ratios.
//!
//! - [`floor::Floor`]: a bare wasmtime embedding of a proxy-wasm module (every import a stub
//!   returning zeros, no Envoy bookkeeping): the floor for calls into the guest and for VM start.
//! - [`raw_guest::RAW_NOOP_WAT`]: a no-op guest on the raw ABI (no SDK), so host vs floor
//!   on it is the host's own per-callback cost.
//! - [`native::NativeStore`]: Envoy's shared-data rules as plain Rust behind a mutex.
//! - [`ratelimit::NativeFilter`]: the rate-limit filter's decision made by the same core code
//!   natively, over [`ratelimit::SharedMap`].
//! - [`traffic`]: the request and response headers every benchmark sends.
//! - [`cpu::Clock`]: wall time or this thread's CPU time, so a run on a loaded machine can
//!   report what the work costs on the CPU as well as how long it took.
//!
//! This crate must not know the host's internals; the benches use only its public API.

pub mod cpu;
pub mod floor;
pub mod native;
pub mod ratelimit;
pub mod raw_guest;
pub mod traffic;
