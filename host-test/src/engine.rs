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
    tier: Tier,
    /// One slot per module hash: concurrent loads of the same bytes wait for one compile.
    modules: Mutex<HashMap<[u8; 32], ModuleSlot>>,
    ticker: Mutex<Weak<Ticker>>,
}

static ENGINE: OnceLock<Result<ProcessEngine, String>> = OnceLock::new();

/// Linear memory a pooled slot keeps resident between instances (reset with `memset`/copy of
/// the touched pages, found with `PAGEMAP_SCAN`, instead of `madvise` + page faults).
const MEMORY_KEEP_RESIDENT: usize = 1 << 20;
/// Same for a table slot.
const TABLE_KEEP_RESIDENT: usize = 64 << 10;

/// The allocation tiers tried in order when the process engine is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tier {
    /// Pooling, slots reset in place: needs Linux's `PAGEMAP_SCAN` (6.7+), without which the
    /// keep-resident reset would `memset` the whole kept range every time (slower than
    /// `madvise`), so it is required (`Enabled::Yes`), not `Auto`.
    PoolingResident,
    /// Pooling, slots reset with `madvise`.
    Pooling,
    /// On-demand allocation (no pool could be reserved).
    OnDemand,
}

/// Epoch interruption (the per-callback deadline), Cranelift at `Speed`, and the allocator of
/// `tier`. The pool is sized for many workers x plugins plus config checks; memory slots
/// reserve address space only (the default 4 GiB reservation keeps bounds checks elided).
fn config(tier: Tier) -> Config {
    let mut c = Config::new();
    c.epoch_interruption(true);
    c.cranelift_opt_level(wasmtime::OptLevel::Speed);
    #[cfg(feature = "profiling")]
    if std::env::var("MESHWARD_WASM_PROFILER").as_deref() == Ok("perfmap") {
        c.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    if tier != Tier::OnDemand {
        let mut p = PoolingAllocationConfig::default();
        // Two instances per VM: the plugin and its batch shim (`batch`).
        p.total_core_instances(2000);
        p.total_memories(1000);
        p.total_tables(1000);
        p.max_memory_size(MAX_MEMORY_BYTES);
        p.max_memories_per_module(1);
        p.max_tables_per_module(1);
        p.table_elements(100_000);
        if tier == Tier::PoolingResident {
            // VM start: a reused slot's touched pages are reset in place rather than dropped
            // and faulted in again (measured: SDK no-op plugin start ~40 us -> ~11 us).
            p.pagemap_scan(wasmtime::Enabled::Yes);
            p.linear_memory_keep_resident(MEMORY_KEEP_RESIDENT);
            p.table_keep_resident(TABLE_KEEP_RESIDENT);
        }
        c.allocation_strategy(InstanceAllocationStrategy::Pooling(p));
    }
    c
}

/// The wasmtime configuration of the host's engine in this process (creating the engine if no
/// host did yet): epoch interruption, Cranelift `Speed`, and the pooling allocator with
/// resident slot reuse where the system allows it. Public so that baselines (the benchmarks'
/// bare-wasmtime floor) run on exactly the engine settings the host uses.
pub fn wasmtime_config() -> Result<Config, String> {
    engine().map(|e| config(e.tier))
}

/// The engine of this process (created once).
pub(crate) fn engine() -> Result<&'static ProcessEngine, String> {
    ENGINE
        .get_or_init(|| {
            let make = |tier: Tier| {
                Engine::new(&config(tier)).map(|engine| ProcessEngine {
                    engine,
                    pooling: tier != Tier::OnDemand,
                    tier,
                    modules: Mutex::new(HashMap::new()),
                    ticker: Mutex::new(Weak::new()),
                })
            };
            let tiers: &[Tier] = if std::env::var_os("MESHWARD_HOST_NO_POOLING").is_some() {
                &[Tier::OnDemand]
            } else {
                &[Tier::PoolingResident, Tier::Pooling, Tier::OnDemand]
            };
            let mut last = String::new();
            for &tier in tiers {
                match make(tier) {
                    Ok(e) => return Ok(e),
                    Err(e) => last = format!("{e:#}"),
                }
            }
            Err(last)
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
