//! `Host`: the process-wide state of one embedding (engine handle + compiled-module cache,
//! shared data, shared queues, metrics, logs, traps, clusters, clock, epoch ticker), its
//! builder, `load` (compile, check imports/exports, configuration check on a throwaway VM) and
//! the `Plugin` handle. Must not know how streams flow through a chain (that is `worker`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::{Engine, ExternType, InstancePre, Linker};

use crate::abi::{self, LEGACY_010};
use crate::callouts::{GrpcHandler, HttpHandler, Inbox};
use crate::clock::{Clock, SystemClock};
use crate::engine::{self, Ticker, MAX_MEMORY_BYTES};
use crate::error::{HostError, LoadError};
use crate::logs::{LogLevel, LogRecord, LogSink, Logs};
use crate::metrics::Metrics;
use crate::queues::SharedQueues;
use crate::shared_data::SharedData;
use crate::spec::PluginSpec;
use crate::trap::{TrapBatch, TrapReport, Traps, TRAPS_KEPT};
use crate::vm::{Vm, VmState};
use crate::wasi::{OLD_ENVOY_WASI, WASI_MODULES};
use crate::worker::Worker;
use crate::worker_core::WorkerCore;

/// Envoy's default `per_connection_buffer_limit_bytes` (1 MiB, `listener.proto`).
pub const DEFAULT_BUFFER_LIMIT: usize = 1 << 20;

/// A foreign function the guest can call with `proxy_call_foreign_function`.
pub type ForeignFn = Arc<dyn Fn(&[u8]) -> Vec<u8> + Send + Sync>;

/// Host-side VM statistics.
#[derive(Debug, Default)]
pub struct HostStats {
    created: AtomicU64,
    failed: AtomicU64,
    reloaded: AtomicU64,
    reload_backoffs: AtomicU64,
    reload_failures: AtomicU64,
}

impl HostStats {
    pub(crate) fn created(&self) {
        self.created.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn reloaded(&self) {
        self.reloaded.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn reload_backoff(&self) {
        self.reload_backoffs.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn reload_failed(&self) {
        self.reload_failures.fetch_add(1, Ordering::Relaxed);
    }
    /// VMs instantiated (configuration checks included).
    pub fn vms_created(&self) -> u64 {
        self.created.load(Ordering::Relaxed)
    }
    /// VMs that failed to start or trapped later.
    pub fn vms_failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
    /// VMs replaced after a trap (FailReload).
    pub fn vms_reloaded(&self) -> u64 {
        self.reloaded.load(Ordering::Relaxed)
    }
    /// Streams that found a dead FailReload VM still in its reload backoff (Envoy stat event
    /// `VmReloadBackoff`); they got the fail-closed 503.
    pub fn reload_backoffs(&self) -> u64 {
        self.reload_backoffs.load(Ordering::Relaxed)
    }
    /// Reload attempts whose new VM failed to start (Envoy `VmReloadFailure`).
    pub fn reload_failures(&self) -> u64 {
        self.reload_failures.load(Ordering::Relaxed)
    }
}

pub(crate) struct HostInner {
    pub(crate) engine: Engine,
    pub(crate) pooling: bool,
    pub(crate) linker: Linker<VmState>,
    pub(crate) linker_names: std::collections::HashSet<(String, String)>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) strict: bool,
    pub(crate) memory_limit: usize,
    pub(crate) callback_deadline: Duration,
    /// Envoy's per-connection buffer limit: a body buffered by StopIterationAndBuffer beyond it
    /// gets 413 (request) or 500 (response).
    pub(crate) buffer_limit: usize,
    pub(crate) http_clusters: HashMap<String, Arc<dyn HttpHandler>>,
    pub(crate) grpc_clusters: HashMap<String, Arc<dyn GrpcHandler>>,
    pub(crate) foreign: HashMap<String, ForeignFn>,
    pub(crate) properties: HashMap<Vec<u8>, Vec<u8>>,
    pub(crate) logs: Logs,
    pub(crate) log_level: LogLevel,
    pub(crate) traps: Traps,
    pub(crate) shared_data: SharedData,
    pub(crate) queues: SharedQueues,
    pub(crate) metrics: Metrics,
    pub(crate) stats: HostStats,
    pub(crate) random_seed: u64,
    /// Batched callbacks are on ([`HostBuilder::batch_callbacks`]).
    pub(crate) batch: bool,
    pub(crate) workers: Mutex<HashMap<usize, Sender<Inbox>>>,
    pub(crate) next_worker: AtomicUsize,
    _ticker: Arc<Ticker>,
}

impl HostInner {
    /// Post a message to a worker's inbox (dropped if that worker is gone).
    pub(crate) fn notify(&self, worker: usize, msg: Inbox) {
        if let Ok(w) = self.workers.lock() {
            if let Some(tx) = w.get(&worker) {
                let _ = tx.send(msg);
            }
        }
    }
}

/// The process-wide host. Cheap to clone; Send + Sync.
#[derive(Clone)]
pub struct Host {
    pub(crate) inner: Arc<HostInner>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("pooling", &self.inner.pooling)
            .field("strict", &self.inner.strict)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Host`].
pub struct HostBuilder {
    clock: Arc<dyn Clock>,
    strict: bool,
    memory_limit: usize,
    deadline: Duration,
    buffer_limit: usize,
    traps_kept: usize,
    http: HashMap<String, Arc<dyn HttpHandler>>,
    grpc: HashMap<String, Arc<dyn GrpcHandler>>,
    foreign: HashMap<String, ForeignFn>,
    properties: HashMap<Vec<u8>, Vec<u8>>,
    sink: LogSink,
    log_level: LogLevel,
    seed: u64,
    batch: bool,
}

impl HostBuilder {
    /// The clock (default: [`SystemClock`]).
    pub fn clock(mut self, c: impl Clock) -> Self {
        self.clock = Arc::new(c);
        self
    }
    /// Refuse modules importing anything an Envoy from before Dec 2024 lacks (the old WASI list
    /// plus the proxy-wasm 0.2.1 functions), naming the import.
    pub fn strict_imports(mut self, on: bool) -> Self {
        self.strict = on;
        self
    }
    /// Linear memory cap per VM (default 64 MiB; at most 1 GiB as cpp-host).
    pub fn memory_limit_bytes(mut self, n: usize) -> Self {
        self.memory_limit = n.min(MAX_MEMORY_BYTES);
        self
    }
    /// Deadline for one callback (epoch interruption; default 1 s). Rounded up to the epoch
    /// period (2 ms).
    pub fn callback_deadline(mut self, d: Duration) -> Self {
        self.deadline = d;
        self
    }
    /// The stream buffer limit, as Envoy's listener `per_connection_buffer_limit_bytes`
    /// (default [`DEFAULT_BUFFER_LIMIT`], 1 MiB, Envoy's default). When a plugin pauses a body
    /// (StopIterationAndBuffer) and the body buffered in the chain grows past it, the host
    /// answers 413 on the request path and 500 on the response path (or resets the stream when
    /// the response headers already went downstream), as Envoy's filter manager does.
    pub fn buffer_limit_bytes(mut self, n: usize) -> Self {
        self.buffer_limit = n;
        self
    }
    /// How many trap reports the host keeps (default [`TRAPS_KEPT`]); older ones are dropped and
    /// counted ([`Host::traps_since`], [`Host::traps_dropped`]).
    pub fn traps_kept(mut self, n: usize) -> Self {
        self.traps_kept = n.max(1);
        self
    }
    /// Register an HTTP cluster for `proxy_http_call`.
    pub fn http_cluster(mut self, name: &str, h: impl HttpHandler) -> Self {
        self.http.insert(name.to_string(), Arc::new(h));
        self
    }
    /// Register a gRPC cluster for `proxy_grpc_call` / `proxy_grpc_stream`.
    pub fn grpc_cluster(mut self, name: &str, h: impl GrpcHandler) -> Self {
        self.grpc.insert(name.to_string(), Arc::new(h));
        self
    }
    /// Register a foreign function.
    pub fn foreign_function(
        mut self,
        name: &str,
        f: impl Fn(&[u8]) -> Vec<u8> + Send + Sync + 'static,
    ) -> Self {
        self.foreign.insert(name.to_string(), Arc::new(f));
        self
    }
    /// A host-level property (e.g. `&["xds", "cluster_name"]`), bytes in Envoy's encoding.
    pub fn property(mut self, path: &[&str], value: impl Into<Vec<u8>>) -> Self {
        self.properties
            .insert(path.join("\0").into_bytes(), value.into());
        self
    }
    /// Where log lines go (default: captured).
    pub fn log_sink(mut self, s: LogSink) -> Self {
        self.sink = s;
        self
    }
    /// Host log level: lines below it are dropped and `proxy_get_log_level` returns it
    /// (default Info, as Envoy).
    pub fn log_level(mut self, l: LogLevel) -> Self {
        self.log_level = l;
        self
    }
    /// Run several callbacks of a stream in one entry into wasm where the order and what each
    /// callback sees stay as with one entry each (default on; the `MESHWARD_HOST_NO_BATCH`
    /// environment variable turns it off for every host): context create with the first
    /// request headers, and an HTTP stream's log, done and delete when its chain has one live
    /// plugin. A batch runs under one callback deadline, not the sum of its callbacks'
    /// deadlines. Off: every callback is an entry of its own.
    pub fn batch_callbacks(mut self, on: bool) -> Self {
        self.batch = on;
        self
    }
    /// Seed of `random_get` (deterministic per VM).
    pub fn random_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Build the host (the wasmtime engine is created once per process and shared).
    pub fn build(self) -> Result<Host, HostError> {
        let pe = engine::engine().map_err(HostError::Build)?;
        let reg = abi::linker(&pe.engine);
        Ok(Host {
            inner: Arc::new(HostInner {
                engine: pe.engine.clone(),
                pooling: pe.pooling,
                linker: reg.linker,
                linker_names: reg.names,
                clock: self.clock,
                strict: self.strict,
                memory_limit: self.memory_limit,
                callback_deadline: self.deadline,
                buffer_limit: self.buffer_limit,
                http_clusters: self.http,
                grpc_clusters: self.grpc,
                foreign: self.foreign,
                properties: self.properties,
                logs: Logs::new(self.sink),
                log_level: self.log_level,
                traps: Traps::new(self.traps_kept),
                shared_data: SharedData::new(),
                queues: SharedQueues::default(),
                metrics: Metrics::new(),
                stats: HostStats::default(),
                random_seed: self.seed,
                batch: self.batch && std::env::var_os("MESHWARD_HOST_NO_BATCH").is_none(),
                workers: Mutex::new(HashMap::new()),
                next_worker: AtomicUsize::new(0),
                _ticker: pe.ticker(),
            }),
        })
    }
}

pub(crate) struct PluginInner {
    pub(crate) spec: PluginSpec,
    pub(crate) pre: InstancePre<VmState>,
    pub(crate) abi_010: bool,
    pub(crate) host: std::sync::Weak<HostInner>,
    /// Export indexes checked on the first instance (the configuration check VM).
    pub(crate) exports: std::sync::OnceLock<crate::exports::ExportPlan>,
    /// The module imports `proxy_get_property`: only then can it read a stream's times
    /// (`request.time`, `request.duration`), so only then does a worker read the clock when a
    /// stream opens and completes.
    pub(crate) reads_properties: bool,
    /// The batch shim for this plugin's shape of callbacks (None: no batch saves an entry,
    /// or batching is off), made on its first worker VM.
    pub(crate) batch: std::sync::OnceLock<Option<crate::batch::ShimModule>>,
}

/// A loaded (compiled and configuration-checked) plugin. Cheap to clone.
#[derive(Clone)]
pub struct Plugin {
    pub(crate) inner: Arc<PluginInner>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.inner.spec.name)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// The plugin name.
    pub fn name(&self) -> &str {
        &self.inner.spec.name
    }
    /// The spec it was loaded from.
    pub fn spec(&self) -> &PluginSpec {
        &self.inner.spec
    }
}

impl Host {
    /// Start building a host.
    pub fn builder() -> HostBuilder {
        HostBuilder {
            clock: Arc::new(SystemClock::new()),
            strict: false,
            memory_limit: 64 << 20,
            deadline: Duration::from_secs(1),
            buffer_limit: DEFAULT_BUFFER_LIMIT,
            traps_kept: TRAPS_KEPT,
            http: HashMap::new(),
            grpc: HashMap::new(),
            foreign: HashMap::new(),
            properties: HashMap::new(),
            sink: LogSink::Capture,
            log_level: LogLevel::Info,
            seed: 0x6d65_7368_7761_7264,
            batch: true,
        }
    }

    /// Compile (cached by sha256), check imports and exports, and run the configuration check
    /// on a throwaway VM (`_initialize`/`main`, root context, `on_vm_start`, `on_configure`).
    pub fn load(&self, spec: PluginSpec) -> Result<Plugin, LoadError> {
        let inner = &self.inner;
        let name = spec.name.clone();
        let pe = engine::engine().map_err(|m| LoadError::InvalidModule {
            plugin: name.clone(),
            message: m,
        })?;
        let module = pe
            .module(&spec.wasm)
            .map_err(|m| LoadError::InvalidModule {
                plugin: name.clone(),
                message: m,
            })?;
        let has = |n: &str| module.get_export(n).is_some();
        let abi_010 = if has("proxy_abi_version_0_2_1") || has("proxy_abi_version_0_2_0") {
            false
        } else if has("proxy_abi_version_0_1_0") {
            true
        } else {
            return Err(LoadError::MissingExport {
                plugin: name,
                message: "Wasm module has no proxy_abi_version_* export (0.1.0, 0.2.0 or 0.2.1)"
                    .into(),
            });
        };
        for imp in module.imports() {
            let (m, n) = (imp.module(), imp.name());
            let unknown = |why: &str| LoadError::UnknownImport {
                plugin: name.clone(),
                module: m.to_string(),
                name: n.to_string(),
                why: why.to_string(),
            };
            if !matches!(imp.ty(), ExternType::Func(_)) {
                return Err(unknown(" (only function imports are provided)"));
            }
            if !inner.linker_names.contains(&(m.to_string(), n.to_string())) {
                return Err(unknown(""));
            }
            let legacy = m == "env" && LEGACY_010.contains(&n);
            if legacy && !abi_010 {
                return Err(unknown(" (ABI 0.1.0 function in a 0.2.x module)"));
            }
            if inner.strict && WASI_MODULES.contains(&m) && !OLD_ENVOY_WASI.contains(&n) {
                return Err(unknown(
                    " (strict imports: not provided by Envoy releases before Dec 2024)",
                ));
            }
        }
        let reads_properties = module
            .imports()
            .any(|i| i.module() == "env" && i.name() == "proxy_get_property");
        let pre = inner
            .linker
            .instantiate_pre(&module)
            .map_err(|e| LoadError::UnknownImport {
                plugin: name.clone(),
                module: String::new(),
                name: String::new(),
                why: format!(": {e:#}"),
            })?;
        let plugin = Plugin {
            inner: Arc::new(PluginInner {
                spec,
                pre,
                abi_010,
                host: Arc::downgrade(inner),
                exports: std::sync::OnceLock::new(),
                reads_properties,
                batch: batch_slot(inner.batch),
            }),
        };
        // Configuration check (Envoy's canary VM), with its own throwaway worker state.
        let (tx, _rx) = std::sync::mpsc::channel();
        let mut core = Some(Box::new(WorkerCore::new(None, inner.clock.clone(), 1, tx)));
        Vm::start(inner, &plugin.inner, None, 0, 0, &mut core)?;
        Ok(plugin)
    }

    /// A worker: one VM per plugin of `chain`, each instantiated and configured (like one
    /// Envoy worker thread). A chain holds at most [`crate::MAX_CHAIN`] plugins.
    pub fn worker(&self, chain: &[Plugin]) -> Result<Worker, HostError> {
        Worker::new(self.clone(), chain)
    }

    /// Create `n` workers, each on its own thread, and run `f(index, worker)` on each;
    /// returns the results in index order.
    pub fn run_workers<R, F>(&self, n: usize, chain: &[Plugin], f: F) -> Result<Vec<R>, HostError>
    where
        R: Send,
        F: Fn(usize, &mut Worker) -> R + Sync,
    {
        let f = &f;
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..n)
                .map(|i| {
                    s.spawn(move || -> Result<R, HostError> {
                        let mut w = self.worker(chain)?;
                        Ok(f(i, &mut w))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| match h.join() {
                    Ok(r) => r,
                    Err(p) => std::panic::resume_unwind(p),
                })
                .collect()
        })
    }

    /// Advance several workers on one virtual clock: due events of all of them fire in time
    /// order (the clock is set to each event's due time first).
    pub fn advance(&self, d: Duration, workers: &mut [&mut Worker]) {
        let target = self
            .inner
            .clock
            .now_nanos()
            .saturating_add(d.as_nanos() as u64);
        loop {
            for w in workers.iter_mut() {
                w.drain_inbox();
            }
            let next = workers
                .iter()
                .enumerate()
                .filter_map(|(i, w)| w.timeline_due().map(|t| (t, i)))
                .min();
            match next {
                Some((t, i)) if t <= target => {
                    self.inner.clock.set_nanos(t);
                    workers[i].fire_one(target);
                }
                _ => break,
            }
        }
        if !self.inner.clock.set_nanos(target) {
            std::thread::sleep(d);
        }
        for w in workers.iter_mut() {
            w.poll();
        }
    }

    /// The shared-data store.
    pub fn shared_data(&self) -> &SharedData {
        &self.inner.shared_data
    }
    /// The metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }
    /// Captured log lines (all plugins, all workers), oldest first.
    pub fn logs(&self) -> Vec<LogRecord> {
        self.inner.logs.snapshot()
    }
    /// Captured log lines, emptying the store.
    pub fn take_logs(&self) -> Vec<LogRecord> {
        self.inner.logs.take()
    }
    /// Guest traps seen so far (the newest [`HostBuilder::traps_kept`], oldest first).
    pub fn traps(&self) -> Vec<TrapReport> {
        self.inner.traps.snapshot()
    }
    /// Traps recorded since `cursor` (start with 0, then pass the returned `next`): each trap
    /// is read once, and `missed` counts those dropped before they could be read.
    pub fn traps_since(&self, cursor: u64) -> TrapBatch {
        self.inner.traps.since(cursor)
    }
    /// Traps dropped because more than [`HostBuilder::traps_kept`] were recorded.
    pub fn traps_dropped(&self) -> u64 {
        self.inner.traps.counts().1
    }
    /// VM statistics.
    pub fn stats(&self) -> &HostStats {
        &self.inner.stats
    }
    /// Items waiting in shared queue `(vm_id, name)`.
    pub fn queue_len(&self, vm_id: &str, name: &str) -> Option<usize> {
        self.inner.queues.len(vm_id, name)
    }
    /// True when the pooling allocator is in use (false: on-demand fallback).
    pub fn pooling(&self) -> bool {
        self.inner.pooling
    }
    /// Current clock time (Unix nanoseconds).
    pub fn now_nanos(&self) -> u64 {
        self.inner.clock.now_nanos()
    }
}

/// A plugin's batch-shim slot: empty (filled on its first worker VM), or already None when
/// batching is off (every callback one entry).
fn batch_slot(on: bool) -> std::sync::OnceLock<Option<crate::batch::ShimModule>> {
    let slot = std::sync::OnceLock::new();
    if !on {
        let _ = slot.set(None);
    }
    slot
}
