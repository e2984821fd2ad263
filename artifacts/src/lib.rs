//! Builds the filters and the host's conformance guests for wasm32-wasip1 and exposes their bytes.
