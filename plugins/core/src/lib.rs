//! meshward-core: the policy model (serde), route matching and the rate-limit algorithms.
//! Pure Rust: no proxy-wasm, no I/O, no clock of its own (time and shared state come in
//! through the [`ratelimit::Clock`]-free `now` parameters and the [`ratelimit::Store`]
//! trait), so the same code runs in the filters, the CLI and the tests.

pub mod policy;
