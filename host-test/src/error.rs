//! Typed errors of the host API: `LoadError` (a module or configuration the host refuses) and
//! `HostError` (misuse of a worker/stream, or a load error while building one). Must not know
//! how the errors are produced.

/// Why a plugin could not be loaded or a VM could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The bytes are not a valid Wasm module (or do not compile).
    #[error("plugin {plugin}: invalid Wasm module: {message}")]
    InvalidModule {
        /// Plugin name.
        plugin: String,
        /// Compiler message.
        message: String,
    },
    /// The module imports something the host does not provide (or, in strict mode, something
    /// an older Envoy does not provide).
    #[error("plugin {plugin}: unknown import {module}::{name}{why}")]
    UnknownImport {
        /// Plugin name.
        plugin: String,
        /// Import module (`env`, `wasi_snapshot_preview1`, ...).
        module: String,
        /// Import name.
        name: String,
        /// Extra explanation (strict mode, wrong ABI version).
        why: String,
    },
    /// A required export is missing (memory, malloc/proxy_on_memory_allocate, ABI marker).
    #[error("plugin {plugin}: {message}")]
    MissingExport {
        /// Plugin name.
        plugin: String,
        /// What is missing.
        message: String,
    },
    /// Instantiation failed (memory over the limit, start function trapped, pool exhausted).
    #[error("plugin {plugin}: cannot instantiate: {message}")]
    Instantiate {
        /// Plugin name.
        plugin: String,
        /// wasmtime's message.
        message: String,
    },
    /// The guest trapped or refused during start-up (`_initialize`, `on_vm_start`,
    /// `on_configure`). `logs` holds that VM's log lines.
    #[error("plugin {plugin}: {stage} failed: {message}{}", render_logs(.logs))]
    StartFailed {
        /// Plugin name.
        plugin: String,
        /// `_initialize`, `proxy_on_vm_start`, `proxy_on_configure`, ...
        stage: String,
        /// Why (a trap message or "returned false").
        message: String,
        /// The plugin's log lines from that VM.
        logs: Vec<String>,
    },
}

fn render_logs(logs: &[String]) -> String {
    if logs.is_empty() {
        String::new()
    } else {
        format!("; plugin logs: [{}]", logs.join(" | "))
    }
}

/// Errors of worker and stream operations.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// No such stream on this worker (never opened, or released after completion).
    #[error("unknown stream {0}")]
    UnknownStream(u64),
    /// The stream was already completed.
    #[error("stream {0} is already complete")]
    StreamComplete(u64),
    /// More plugins in one chain than a worker runs ([`crate::MAX_CHAIN`]).
    #[error("a chain holds at most {max} plugins, got {got}")]
    ChainTooLong {
        /// Plugins given.
        got: usize,
        /// The limit.
        max: usize,
    },
    /// A plugin given to `Host::worker` was loaded by another Host.
    #[error("plugin {0} belongs to another host")]
    ForeignPlugin(String),
    /// Starting a worker VM failed.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The callout token is not pending on this worker.
    #[error("no pending callout with token {0}")]
    UnknownCallout(u32),
    /// Host construction failed (engine).
    #[error("cannot build host: {0}")]
    Build(String),
}
