//! meshward rate-limit filter (proxy-wasm, wasm32-wasip1). Thin: maps proxy callbacks to
//! decisions made by `meshward-core`.
