//! One plugin VM: a wasmtime `Store` whose data is `VmState`, the instance's cached `Memory`,
//! allocator and typed callbacks (resolved once per instance, never by name per call), and the
//! start-up sequence (`_initialize`/`main` or `_start`, root context, `on_vm_start`,
//! `on_configure`). Every call into the guest runs under the callback deadline; a trap becomes
//! a `TrapReport`. Must not know about chains, streams' flow or fail strategies.

use std::collections::HashMap;
use std::sync::Arc;

use wasmtime::{
    Memory, Store, StoreLimits, StoreLimitsBuilder, TypedFunc, WasmParams, WasmResults,
};

use crate::batch::{self, Batch, Globals, Shim, ShimModule};
use crate::ctx_map::CtxMap;
use crate::engine::deadline_ticks;
use crate::error::LoadError;
pub(crate) use crate::exports::Callbacks;
use crate::exports::{Bound, ExportPlan, HeadersCb, StartFns};
use crate::host::{HostInner, PluginInner};
use crate::logs::{LogLevel, LogRecord};
use crate::shared_data::SharedSpace;
use crate::trap::TrapReport;
use crate::worker_core::WorkerCore;

/// A failed guest call's report, boxed: a call's `Result` stays two words, so the common Ok path
/// does not move a ~100-byte report through every caller.
pub(crate) type Trapped = Box<TrapReport>;

/// Which callback is running (for access windows and buffer availability).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallKind {
    Init,
    ContextCreate,
    VmStart,
    Configure,
    Tick,
    QueueReady,
    Stream,
    Log,
    Done,
    Delete,
    HttpCallResponse,
    Grpc,
    GrpcClose,
    Foreign,
}

/// What the running callback may see besides stream state. Kept small (the per-call data of
/// callout answers and foreign calls is boxed and absent for stream callbacks): one is built
/// and dropped for every guest call.
#[derive(Debug)]
pub(crate) struct CallCtx {
    pub(crate) kind: CallKind,
    /// Effective context id (changed by `proxy_set_effective_context`).
    pub(crate) effective: u32,
    /// Stream slot of the effective context (None for the root context).
    pub(crate) stream: Option<u32>,
    /// A local reply was sent from this callback: force a Stop result.
    pub(crate) local_reply_sent: bool,
    /// Buffers and maps of a callout answer or foreign call (None for every other callback).
    extra: Option<Box<CallData>>,
    /// The batch this call runs (see `batch`), or `Batch::None`.
    pub(crate) batch: Batch,
    /// The stage at which a host function asked the batch to stop (0: it did not).
    pub(crate) bailed: i32,
}

/// Data a callout-answer or foreign-function callback can read.
#[derive(Debug, Default)]
pub(crate) struct CallData {
    /// HTTP call response being delivered.
    pub(crate) http_response: Option<crate::callouts::HttpResponse>,
    /// gRPC message / metadata being delivered.
    pub(crate) grpc_message: Option<Vec<u8>>,
    pub(crate) grpc_initial: Option<crate::pairs::Headers>,
    pub(crate) grpc_trailing: Option<crate::pairs::Headers>,
    /// `proxy_get_status` answer.
    pub(crate) status: Option<(u32, Vec<u8>)>,
    /// FOREIGN_FUNCTION_ARGUMENTS.
    pub(crate) foreign_args: Option<Vec<u8>>,
}

impl CallCtx {
    #[inline]
    pub(crate) fn new(kind: CallKind, effective: u32, stream: Option<u32>) -> Self {
        CallCtx {
            kind,
            effective,
            stream,
            local_reply_sent: false,
            extra: None,
            batch: Batch::None,
            bailed: 0,
        }
    }
    /// The callback's data, created on first use (by the worker, before the call).
    pub(crate) fn data(&mut self) -> &mut CallData {
        self.extra.get_or_insert_with(Box::default)
    }
    /// The callback's data, if it has any.
    pub(crate) fn data_ref(&self) -> Option<&CallData> {
        self.extra.as_deref()
    }
}

/// Store data of one VM.
pub(crate) struct VmState {
    pub(crate) memory: Option<Memory>,
    pub(crate) malloc: Option<TypedFunc<i32, i32>>,
    pub(crate) host: Arc<HostInner>,
    pub(crate) plugin: Arc<PluginInner>,
    pub(crate) worker: Option<usize>,
    pub(crate) plugin_index: usize,
    pub(crate) generation: u32,
    pub(crate) limits: StoreLimits,
    pub(crate) shared: SharedSpace,
    pub(crate) rng: u64,
    /// The worker's state, moved in for the duration of a call.
    pub(crate) core: Option<Box<WorkerCore>>,
    pub(crate) call: CallCtx,
    pub(crate) next_ctx_id: u32,
    pub(crate) root_ctx: u32,
    /// Stream context id -> stream slot.
    pub(crate) ctx_streams: CtxMap,
    /// Contexts whose `on_done` returned false (proxy_done allowed).
    pub(crate) pending_done: Vec<u32>,
    /// `proxy_set_property` from the root context.
    pub(crate) root_props: HashMap<Vec<u8>, Vec<u8>>,
    /// Log lines captured for a LoadError (configuration check VM and start-up).
    pub(crate) startup_logs: Option<Vec<String>>,
    pub(crate) scratch: Vec<u8>,
    /// Handles of the metrics this VM incremented (no registry lock per increment).
    pub(crate) metric_cache: crate::metrics::MetricCache,
    /// The batch shim's globals (None: the VM runs unbatched).
    pub(crate) batch_globals: Option<Globals>,
    /// Frozen time per callback is not used: reads go to the clock.
    pub(crate) abi_010: bool,
}

impl VmState {
    pub(crate) fn log(&mut self, level: LogLevel, message: String) {
        if level < self.host.log_level {
            return;
        }
        if let Some(l) = self.startup_logs.as_mut() {
            l.push(format!("[{level:?}] {message}"));
        }
        let rec = LogRecord {
            plugin: self.plugin.spec.name.clone(),
            worker: self.worker,
            level,
            message,
            at: self.host.clock.now_nanos(),
        };
        self.host
            .logs
            .push(rec, &self.plugin.spec.root_id, &self.plugin.spec.vm_id);
    }
    pub(crate) fn core(&mut self) -> Option<&mut WorkerCore> {
        self.core.as_deref_mut()
    }
    pub(crate) fn next_random(&mut self) -> u64 {
        // SplitMix64.
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// One instance of a plugin.
pub(crate) struct Vm {
    pub(crate) store: Store<VmState>,
    pub(crate) cb: Callbacks,
    pub(crate) deadline: u64,
    /// The batch functions (worker VMs of plugins with a batchable shape).
    pub(crate) shim: Option<Shim>,
}

impl Vm {
    /// Instantiate and run the start-up sequence with `core` moved in. On failure the error
    /// carries the VM's log lines.
    pub(crate) fn start(
        host: &Arc<HostInner>,
        plugin: &Arc<PluginInner>,
        worker: Option<usize>,
        plugin_index: usize,
        generation: u32,
        core: &mut Option<Box<WorkerCore>>,
    ) -> Result<Vm, LoadError> {
        let name = plugin.spec.name.clone();
        let limits = StoreLimitsBuilder::new()
            .memory_size(host.memory_limit)
            // The plugin and its batch shim.
            .instances(2)
            .build();
        let state = VmState {
            memory: None,
            malloc: None,
            host: host.clone(),
            plugin: plugin.clone(),
            worker,
            plugin_index,
            generation,
            limits,
            shared: host.shared_data.space(&plugin.spec.vm_id),
            rng: host
                .random_seed
                .wrapping_add((worker.unwrap_or(usize::MAX) as u64).wrapping_mul(0x1000_0000_01b3))
                .wrapping_add((plugin_index as u64) << 32)
                .wrapping_add(generation as u64),
            core: None,
            call: CallCtx::new(CallKind::Init, 0, None),
            next_ctx_id: 1,
            root_ctx: 0,
            ctx_streams: CtxMap::default(),
            pending_done: Vec::new(),
            root_props: HashMap::new(),
            startup_logs: Some(Vec::new()),
            scratch: Vec::new(),
            metric_cache: Default::default(),
            batch_globals: None,
            abi_010: plugin.abi_010,
        };
        let mut store = Store::new(&host.engine, state);
        store.limiter(|s| &mut s.limits);
        let deadline = deadline_ticks(host.callback_deadline);
        store.set_epoch_deadline(deadline);
        store.epoch_deadline_trap();
        host.stats.created();
        let instance = match plugin.pre.instantiate(&mut store) {
            Ok(i) => i,
            Err(e) => {
                host.stats.failed();
                return Err(LoadError::Instantiate {
                    plugin: name,
                    message: format!("{e:#}"),
                });
            }
        };
        // Exports: resolved by name and type-checked on the plugin's first instance (its
        // configuration check), bound by index on every later one.
        let bound = match plugin.exports.get() {
            Some(plan) => plan.bind(&mut store, &instance),
            None => {
                let (bound, plan) =
                    ExportPlan::check(&mut store, &instance, plugin.pre.module(), &name)?;
                let _ = plugin.exports.set(plan);
                Some(bound)
            }
        };
        let Some(Bound {
            memory,
            malloc,
            start: start_fns,
            cb,
        }) = bound
        else {
            return Err(LoadError::MissingExport {
                plugin: name,
                message: "an export of the module is missing from this instance".into(),
            });
        };
        store.data_mut().memory = Some(memory);
        store.data_mut().malloc = Some(malloc);
        let StartFns {
            initialize,
            main,
            main_void,
            start,
        } = start_fns;
        let mut vm = Vm {
            store,
            cb,
            deadline,
            shim: None,
        };
        let fail = |vm: &mut Vm, stage: &str, message: String| {
            host.stats.failed();
            LoadError::StartFailed {
                plugin: name.clone(),
                stage: stage.to_string(),
                message,
                logs: vm.store.data_mut().startup_logs.take().unwrap_or_default(),
            }
        };
        vm.enter(core, CallCtx::new(CallKind::Init, 0, None));
        let r = (|| -> Result<(), Box<(String, TrapReport)>> {
            if let Some(f) = initialize {
                vm.call(&f, (), "_initialize")
                    .map_err(|t| Box::new(("_initialize".to_string(), *t)))?;
                if let Some(m) = main {
                    vm.call(&m, (0, 0), "main")
                        .map_err(|t| Box::new(("main".to_string(), *t)))?;
                } else if let Some(m) = main_void {
                    vm.call(&m, (), "__main_void")
                        .map_err(|t| Box::new(("__main_void".to_string(), *t)))?;
                }
            } else if let Some(f) = start {
                vm.call(&f, (), "_start")
                    .map_err(|t| Box::new(("_start".to_string(), *t)))?;
            }
            Ok(())
        })();
        vm.leave(core);
        if let Err(b) = r {
            let (stage, t) = *b;
            host.traps.push(t.clone());
            return Err(fail(&mut vm, &stage, t.message));
        }
        // Root context, on_vm_start, on_configure (cpp-host `start` + `configure`).
        let root = vm.alloc_ctx_id();
        vm.store.data_mut().root_ctx = root;
        let stages: [(&str, CallKind); 3] = [
            ("proxy_on_context_create", CallKind::ContextCreate),
            ("proxy_on_vm_start", CallKind::VmStart),
            ("proxy_on_configure", CallKind::Configure),
        ];
        for (stage, kind) in stages {
            vm.enter(core, CallCtx::new(kind, root, None));
            let r: Result<bool, Trapped> = match kind {
                CallKind::ContextCreate => match vm.cb.on_context_create.clone() {
                    Some(f) => vm.call(&f, (root as i32, 0), stage).map(|_| true),
                    None => Ok(true),
                },
                CallKind::VmStart => match vm.cb.on_vm_start.clone() {
                    Some(f) => {
                        let n = plugin.spec.vm_config.len() as i32;
                        vm.call(&f, (root as i32, n), stage).map(|r| r != 0)
                    }
                    None => Ok(true),
                },
                _ => match vm.cb.on_configure.clone() {
                    Some(f) => {
                        let n = plugin.spec.plugin_config.len() as i32;
                        vm.call(&f, (root as i32, n), stage).map(|r| r != 0)
                    }
                    None => Ok(true),
                },
            };
            vm.leave(core);
            match r {
                Ok(true) => {}
                Ok(false) => return Err(fail(&mut vm, stage, "returned false".into())),
                Err(t) => {
                    host.traps.push((*t).clone());
                    return Err(fail(&mut vm, stage, t.message));
                }
            }
        }
        vm.store.data_mut().startup_logs = None;
        if worker.is_some() {
            // Worker VMs only (the configuration check runs no stream).
            let shim = plugin.batch.get_or_init(|| ShimModule::new(&vm.cb));
            if let Some(shim) = shim {
                vm.shim = shim.instantiate(&mut vm.store, &vm.cb);
                vm.store.data_mut().batch_globals = vm.shim.as_ref().map(|s| s.globals);
            }
        }
        Ok(vm)
    }

    pub(crate) fn alloc_ctx_id(&mut self) -> u32 {
        let s = self.store.data_mut();
        let id = s.next_ctx_id;
        s.next_ctx_id = s.next_ctx_id.wrapping_add(1).max(1);
        id
    }

    pub(crate) fn root_ctx(&self) -> u32 {
        self.store.data().root_ctx
    }

    /// Move the worker state in and set the call context.
    #[inline]
    pub(crate) fn enter(&mut self, core: &mut Option<Box<WorkerCore>>, call: CallCtx) {
        let d = self.store.data_mut();
        d.core = core.take();
        let old = std::mem::replace(&mut d.call, call);
        // The drop glue, inline: only callout answers and foreign calls carry boxed data, so
        // most calls skip the out-of-line `drop_in_place::<CallCtx>` call.
        if let Some(extra) = old.extra {
            drop(extra);
        }
    }

    /// Move the worker state back out.
    #[inline]
    pub(crate) fn leave(&mut self, core: &mut Option<Box<WorkerCore>>) -> bool {
        let d = self.store.data_mut();
        *core = d.core.take();
        std::mem::replace(&mut d.call.local_reply_sent, false)
    }

    /// Call a guest export under the callback deadline.
    #[inline]
    pub(crate) fn call<P: WasmParams, R: WasmResults>(
        &mut self,
        f: &TypedFunc<P, R>,
        args: P,
        name: &str,
    ) -> Result<R, Trapped> {
        call_in(&mut self.store, self.deadline, f, args, name)
    }

    /// Call the callback `pick` selects (None when the module does not export it).
    #[inline]
    pub(crate) fn call_cb<P: WasmParams, R: WasmResults>(
        &mut self,
        pick: impl FnOnce(&Callbacks) -> Option<&TypedFunc<P, R>>,
        args: P,
        name: &str,
    ) -> Option<Result<R, Trapped>> {
        let Vm {
            store,
            cb,
            deadline,
            ..
        } = self;
        let f = pick(cb)?;
        Some(call_in(store, *deadline, f, args, name))
    }

    /// `proxy_on_request_headers` / `proxy_on_response_headers` (2 or 3 params).
    #[inline]
    pub(crate) fn headers_cb(
        &mut self,
        response: bool,
        ctx: u32,
        n: usize,
        eos: bool,
    ) -> Option<Result<i32, Trapped>> {
        let Vm {
            store,
            cb,
            deadline,
            ..
        } = self;
        let (f, name) = if response {
            (
                cb.on_response_headers.as_ref()?,
                "proxy_on_response_headers",
            )
        } else {
            (cb.on_request_headers.as_ref()?, "proxy_on_request_headers")
        };
        Some(match f {
            HeadersCb::V2(f) => call_in(
                store,
                *deadline,
                f,
                (ctx as i32, n as i32, eos as i32),
                name,
            ),
            HeadersCb::V1(f) => call_in(store, *deadline, f, (ctx as i32, n as i32), name),
        })
    }
}

impl Vm {
    /// The `open` batch (context create + request headers), if this VM has one: the request
    /// headers callback's result. One entry, under one callback deadline.
    #[inline]
    pub(crate) fn open_batch(
        &mut self,
        ctx: u32,
        root: u32,
        n: usize,
        eos: bool,
    ) -> Option<Result<i32, Trapped>> {
        let shim = self.shim.as_ref()?;
        let f = shim.open.as_ref()?;
        let args = (ctx as i32, root as i32, n as i32, eos as i32);
        Some(batch_in(
            &mut self.store,
            self.deadline,
            f,
            args,
            shim.globals,
            batch::stage::CONTEXT_CREATE,
        ))
    }

    /// The `done` batch (log, done, delete), if this VM has one. One entry, under one callback
    /// deadline.
    #[inline]
    pub(crate) fn done_batch(&mut self, ctx: u32) -> Option<Result<(), Trapped>> {
        let shim = self.shim.as_ref()?;
        let f = shim.done.as_ref()?;
        Some(batch_in(
            &mut self.store,
            self.deadline,
            f,
            ctx as i32,
            shim.globals,
            shim.done_first,
        ))
    }

    /// After a batch a host function stopped: clear the shim's `bail` and the call's record;
    /// returns the stage it stopped at (0: it ran to its end).
    #[inline]
    pub(crate) fn take_bail(&mut self) -> i32 {
        let bailed = std::mem::replace(&mut self.store.data_mut().call.bailed, 0);
        if bailed != 0 && batch::flag_needed(bailed) {
            if let Some(g) = self.store.data().batch_globals {
                g.set_bail(&mut self.store, false);
            }
        }
        bailed
    }
}

/// Call a batch function under the callback deadline (one deadline for the whole batch); a
/// trap is reported against the callback the shim's `stage` names (`first` when none yet).
#[inline]
fn batch_in<P: WasmParams, R: WasmResults>(
    store: &mut Store<VmState>,
    deadline: u64,
    f: &TypedFunc<P, R>,
    args: P,
    globals: Globals,
    first: i32,
) -> Result<R, Trapped> {
    store.set_epoch_deadline(deadline);
    f.call(&mut *store, args)
        .map_err(|e| batch_trapped(store, globals, first, &e))
}

#[cold]
#[inline(never)]
fn batch_trapped(
    store: &mut Store<VmState>,
    globals: Globals,
    first: i32,
    e: &wasmtime::Error,
) -> Trapped {
    let s = match globals.stage(&mut *store) {
        batch::stage::NONE => first,
        s => s,
    };
    let mut t = trapped(store, batch::stage_name(s), e);
    batch::strip_shim_frame(&mut t.backtrace);
    t
}

/// Call a guest export under the callback deadline; a trap becomes a report.
#[inline]
pub(crate) fn call_in<P: WasmParams, R: WasmResults>(
    store: &mut Store<VmState>,
    deadline: u64,
    f: &TypedFunc<P, R>,
    args: P,
    name: &str,
) -> Result<R, Trapped> {
    store.set_epoch_deadline(deadline);
    f.call(&mut *store, args)
        .map_err(|e| trapped(store, name, &e))
}

/// The report of a failed call, boxed (out of line: the common path only tests a pointer).
#[cold]
#[inline(never)]
fn trapped(store: &Store<VmState>, name: &str, e: &wasmtime::Error) -> Trapped {
    let d = store.data();
    Box::new(TrapReport::from_error(
        &d.plugin.spec.name,
        d.worker,
        name,
        e,
    ))
}
