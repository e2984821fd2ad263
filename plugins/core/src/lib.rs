//! meshward-core: the policy model (serde), route matching and the rate-limit algorithms.
//! Pure Rust: no proxy-wasm, no I/O, no clock of its own. Time comes in as a `now`
//! argument (nanoseconds, from the host) and shared state through the
//! [`ratelimit::Store`] trait, so tests control both and the same code runs in the
//! filters, the CLI and the benchmarks.

pub mod policy;
pub mod ratelimit;
