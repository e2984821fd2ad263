//! proxy-wasm glue shared by every meshward filter.
