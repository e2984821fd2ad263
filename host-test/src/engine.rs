//! The process-wide wasmtime `Engine` (epoch interruption, pooling allocator with an on-demand
//! fallback), the compiled-`Module` cache keyed by sha256 of the bytes, and the epoch ticker
//! thread (shared by the Hosts alive, stopped when the last one is dropped). Must not know
//! about proxy-wasm.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, Module, PoolingAllocationConfig};

/// How often the epoch advances; callback deadlines are rounded up to this.
pub(crate) const EPOCH_PERIOD: Duration = Duration::from_millis(2);

/// Largest linear memory any VM may get (cpp-host `PROXY_WASM_HOST_MAX_WASM_MEMORY_SIZE_BYTES`).
pub(crate) const MAX_MEMORY_BYTES: usize = 1 << 30;

/// A compiled module (or its compile error), filled once.
type ModuleSlot = Arc<OnceLock<Result<Module, String>>>;

pub(crate) struct ProcessEngine {
    pub(crate) engine: Engine,
    pub(crate) pooling: bool,
    /// One slot per module hash: concurrent loads of the same bytes wait for one compile.
    modules: Mutex<HashMap<[u8; 32], ModuleSlot>>,
    ticker: Mutex<Weak<Ticker>>,
}

static ENGINE: OnceLock<Result<ProcessEngine, String>> = OnceLock::new();

fn base_config() -> Config {
    let mut c = Config::new();
    c.epoch_interruption(true);
    c.cranelift_opt_level(wasmtime::OptLevel::Speed);
    c
}

fn pooled_config() -> Config {
    let mut c = base_config();
    let mut p = PoolingAllocationConfig::default();
    // Enough for many workers x plugins plus config checks; memory slots reserve address
    // space only (the default 4 GiB reservation keeps bounds checks elided).
    p.total_core_instances(1000);
    p.total_memories(1000);
    p.total_tables(1000);
    p.max_memory_size(MAX_MEMORY_BYTES);
    p.max_memories_per_module(1);
    p.max_tables_per_module(1);
    p.table_elements(100_000);
    c.allocation_strategy(InstanceAllocationStrategy::Pooling(p));
    c
}

/// The engine of this process (created once).
pub(crate) fn engine() -> Result<&'static ProcessEngine, String> {
    ENGINE
        .get_or_init(|| {
            let make = |cfg: &Config, pooling: bool| {
                Engine::new(cfg).map(|engine| ProcessEngine {
                    engine,
                    pooling,
                    modules: Mutex::new(HashMap::new()),
                    ticker: Mutex::new(Weak::new()),
                })
            };
            let pooled = if std::env::var_os("MESHWARD_HOST_NO_POOLING").is_some() {
                None
            } else {
                make(&pooled_config(), true).ok()
            };
            match pooled {
                Some(e) => Ok(e),
                None => make(&base_config(), false).map_err(|e| format!("{e:#}")),
            }
        })
        .as_ref()
        .map_err(|e| e.clone())
}

impl ProcessEngine {
    /// Compile `wasm` or return the cached module for the same bytes (single flight: a second
    /// caller with the same bytes waits for the first compile). Failures are cached too.
    pub(crate) fn module(&self, wasm: &[u8]) -> Result<Module, String> {
        let key: [u8; 32] = Sha256::digest(wasm).into();
        let slot = {
            let mut m = self.modules.lock().unwrap_or_else(|p| p.into_inner());
            m.entry(key).or_default().clone()
        };
        slot.get_or_init(|| Module::from_binary(&self.engine, wasm).map_err(|e| format!("{e:#}")))
            .clone()
    }

    /// A handle on the ticker thread, starting it if no Host holds one.
    pub(crate) fn ticker(&self) -> Arc<Ticker> {
        let mut slot = self.ticker.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = slot.upgrade() {
            return t;
        }
        let t = Arc::new(Ticker::start(self.engine.clone()));
        *slot = Arc::downgrade(&t);
        t
    }
}

/// Advances the engine epoch every [`EPOCH_PERIOD`] until dropped.
pub(crate) struct Ticker {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: Engine) -> Ticker {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::Builder::new()
            .name("meshward-epoch".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_PERIOD);
                    engine.increment_epoch();
                }
            })
            .ok();
        Ticker { stop, handle }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Epoch ticks for a deadline (at least 2 so a callback that starts just before a tick still
/// gets one full period).
pub(crate) fn deadline_ticks(d: Duration) -> u64 {
    (d.as_nanos() / EPOCH_PERIOD.as_nanos()) as u64 + 2
}
