//! What the embedder says about a plugin before loading it: `PluginSpec` (name, root_id, vm_id,
//! configurations, WASI env, fail strategy) and `FailStrategy` (Istio failStrategy). Must not
//! know about wasmtime.

use std::time::Duration;

/// What to do after a guest trap (Istio `WasmPlugin.failStrategy`, Envoy `failure_policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailStrategy {
    /// FAIL_CLOSE: the stream gets a 503 local reply (details `wasm_fail_stream`), and so does
    /// every later request on that worker (the VM is dead). Istio's default.
    #[default]
    FailClosed,
    /// FAIL_OPEN: skip the plugin for this stream and for every later stream on that worker.
    FailOpen,
    /// FAIL_RELOAD: this stream gets the 503 of FailClosed; a later stream gets a fresh,
    /// configured VM (its memory is lost, shared data survives), but not more often than the
    /// reload backoff allows ([`PluginSpec::reload_backoff`]): a stream that finds the VM dead
    /// within the backoff gets the fail-closed 503 too. As Envoy
    /// `PluginConfig::maybeReloadHandleIfNeeded` (source/extensions/common/wasm/wasm.cc).
    FailReload,
}

/// Envoy's default `reload_config.backoff.base_interval` for FAIL_RELOAD (1 s).
pub const DEFAULT_RELOAD_BACKOFF: Duration = Duration::from_secs(1);

/// A plugin to load: the Wasm bytes plus the Envoy `PluginConfig`/`VmConfig` fields.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    pub(crate) name: String,
    pub(crate) wasm: Vec<u8>,
    pub(crate) root_id: String,
    pub(crate) vm_id: String,
    pub(crate) plugin_config: Vec<u8>,
    pub(crate) vm_config: Vec<u8>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) fail_strategy: FailStrategy,
    pub(crate) reload_backoff: Duration,
}

impl PluginSpec {
    /// A plugin called `name` (Istio: `<namespace>.<name>`) with module bytes `wasm`.
    pub fn new(name: impl Into<String>, wasm: impl Into<Vec<u8>>) -> Self {
        PluginSpec {
            name: name.into(),
            wasm: wasm.into(),
            root_id: String::new(),
            vm_id: String::new(),
            plugin_config: Vec::new(),
            vm_config: Vec::new(),
            env: Vec::new(),
            fail_strategy: FailStrategy::default(),
            reload_backoff: DEFAULT_RELOAD_BACKOFF,
        }
    }
    /// Root id (Istio `pluginName`). Default "".
    pub fn root_id(mut self, id: impl Into<String>) -> Self {
        self.root_id = id.into();
        self
    }
    /// VM id: the shared-data / shared-queue namespace. Default "" (as Istio).
    pub fn vm_id(mut self, id: impl Into<String>) -> Self {
        self.vm_id = id.into();
        self
    }
    /// PLUGIN_CONFIGURATION bytes (Istio: the JSON of `pluginConfig`).
    pub fn plugin_config(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.plugin_config = bytes.into();
        self
    }
    /// VM_CONFIGURATION bytes.
    pub fn vm_config(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.vm_config = bytes.into();
        self
    }
    /// A WASI environment variable (`vmConfig.env`).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }
    /// What to do after a trap.
    pub fn fail_strategy(mut self, s: FailStrategy) -> Self {
        self.fail_strategy = s;
        self
    }
    /// FailReload backoff base (Envoy `reload_config.backoff.base_interval`, default 1 s,
    /// at least 1 ms). Each time a stream finds the VM dead, the host draws an interval in
    /// [base, 1.5 x base) (Envoy's `JitteredLowerBoundBackOffStrategy`; no exponential growth,
    /// `max_interval` is not used) and reloads only if that much time passed since the last
    /// load or reload attempt.
    pub fn reload_backoff(mut self, base: Duration) -> Self {
        self.reload_backoff = base.max(Duration::from_millis(1));
        self
    }
    /// The plugin name.
    pub fn name(&self) -> &str {
        &self.name
    }
}
