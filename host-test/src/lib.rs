//! A proxy-wasm ABI 0.2.1 host on wasmtime that runs plugins the way Envoy does.
