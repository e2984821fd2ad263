//! meshward-kit: the proxy-wasm glue every meshward filter shares. Request view and client
//! identity, a shared-data [`store::SharedStore`] implementing core's `Store` with bounded
//! CAS, metrics, local replies, config loading and host time. Knows the proxy-wasm ABI
//! (through the `proxy-wasm` crate) but no policy decisions: those are in meshward-core.
//! Nothing here panics on what a client or the host sends. [`alloc::CachingAlloc`] is the
//! global allocator a filter installs for its request path's small blocks.

pub mod abi;
pub mod alloc;
pub mod config;
pub mod filter;
pub mod ids;
pub mod level;
pub mod logger;
pub mod metrics;
pub mod reply;
pub mod request;
pub mod store;
pub mod time;
