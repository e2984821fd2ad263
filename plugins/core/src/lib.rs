//! meshward policy model, route matching and the resilience algorithms. Pure Rust: no proxy-wasm, no I/O, no clock of its own.
