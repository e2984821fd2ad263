//! The wasmtime floor: a proxy-wasm module instantiated with every import defined as a stub
//! that returns zeros (store-independent `Linker::func_new` stubs), driven by typed
//! calls to its exports. No header maps, no contexts, no timeline: nothing a real host can
//! skip. Only meaningful for guests whose measured callbacks make no host calls (the noop
//! guests), which is what it is used with. The engine `Config` is the caller's: the benches
//! pass the host's own (`meshward_host::wasmtime_config`), so host vs floor isolates the host's
//! bookkeeping, not engine settings.

use wasmtime::{
    Config, Engine, Extern, ExternType, Instance, InstancePre, Linker, Module, ModuleExport, Store,
    TypedFunc, Val, ValType, WasmParams, WasmResults,
};

/// Epoch deadline of the floor's stores: far enough that the host's epoch ticker never reaches
/// it during a benchmark (the floor has no per-callback deadline to enforce).
const FAR_DEADLINE: u64 = u64::MAX / 2;

/// A compiled module ready to instantiate, plus one live instance for call benchmarks.
pub struct Floor {
    pre: InstancePre<()>,
    starts: StartExports,
    engine: Engine,
    live: Live,
}

struct Live {
    store: Store<()>,
    create: TypedFunc<(u32, u32), ()>,
    request_headers: TypedFunc<(u32, u32, u32), u32>,
    response_headers: TypedFunc<(u32, u32, u32), u32>,
    done: TypedFunc<u32, u32>,
    log: TypedFunc<u32, ()>,
    delete: TypedFunc<u32, ()>,
    next_ctx: u32,
}

const ROOT: u32 = 1;

impl Floor {
    /// Compiles `wasm` on an engine built from `config` and starts one VM (`_initialize`, root
    /// context, vm_start, configure).
    pub fn new(wasm: &[u8], config: &Config) -> wasmtime::Result<Floor> {
        let engine = Engine::new(config)?;
        let module = Module::new(&engine, wasm)?;
        let mut linker = Linker::new(&engine);
        for import in module.imports() {
            if let ExternType::Func(ty) = import.ty() {
                let zeros: Vec<Val> = ty
                    .results()
                    .map(|t| match t {
                        ValType::I64 => Val::I64(0),
                        ValType::F32 => Val::F32(0),
                        ValType::F64 => Val::F64(0),
                        _ => Val::I32(0),
                    })
                    .collect();
                linker.func_new(import.module(), import.name(), ty, move |_, _, results| {
                    results.clone_from_slice(&zeros);
                    Ok(())
                })?;
            }
        }
        let store = new_store(&engine);
        let pre = linker.instantiate_pre(&module)?;
        let starts = StartExports::new(&module);
        let (store, instance) = start(&pre, &starts, store)?;
        let live = Live::new(store, &instance)?;
        Ok(Floor {
            pre,
            starts,
            engine,
            live,
        })
    }

    /// One VM start on a fresh store: instantiate, `_initialize`, root context create,
    /// `proxy_on_vm_start`, `proxy_on_configure`. Returns the store (drop it outside timing).
    pub fn start_vm(&self) -> wasmtime::Result<Store<()>> {
        start(&self.pre, &self.starts, new_store(&self.engine)).map(|(s, _)| s)
    }

    /// One request lifecycle as typed calls: context create, request headers, response
    /// headers, done, log, delete.
    pub fn lifecycle(&mut self) -> wasmtime::Result<u32> {
        let l = &mut self.live;
        let ctx = l.next_ctx;
        l.next_ctx += 1;
        l.create.call(&mut l.store, (ctx, ROOT))?;
        let a = l.request_headers.call(&mut l.store, (ctx, 3, 1))?;
        let b = l.response_headers.call(&mut l.store, (ctx, 1, 1))?;
        l.done.call(&mut l.store, ctx)?;
        l.log.call(&mut l.store, ctx)?;
        l.delete.call(&mut l.store, ctx)?;
        Ok(a + b)
    }
}

fn new_store(engine: &Engine) -> Store<()> {
    let mut store = Store::new(engine, ());
    store.set_epoch_deadline(FAR_DEADLINE);
    store
}

/// Call the export at `index` (looked up once per module, checked with `typed` per instance),
/// if the module has it.
fn call<P: WasmParams, R: WasmResults>(
    store: &mut Store<()>,
    instance: &Instance,
    index: Option<&ModuleExport>,
    args: P,
) -> wasmtime::Result<Option<R>> {
    let Some(Extern::Func(f)) = index.and_then(|i| instance.get_module_export(&mut *store, i))
    else {
        return Ok(None);
    };
    f.typed::<P, R>(&*store)?.call(&mut *store, args).map(Some)
}

/// Export indexes of the start-up sequence, resolved once per module.
struct StartExports([Option<ModuleExport>; 4]);

impl StartExports {
    fn new(module: &Module) -> StartExports {
        let names = [
            "_initialize",
            "proxy_on_context_create",
            "proxy_on_vm_start",
            "proxy_on_configure",
        ];
        StartExports(names.map(|n| module.get_export_index(n)))
    }
}

fn start(
    pre: &InstancePre<()>,
    ex: &StartExports,
    mut store: Store<()>,
) -> wasmtime::Result<(Store<()>, Instance)> {
    let instance = pre.instantiate(&mut store)?;
    let s = &mut store;
    let [init, create, vm_start, configure] = &ex.0;
    call::<(), ()>(s, &instance, init.as_ref(), ())?;
    call::<(u32, u32), ()>(s, &instance, create.as_ref(), (ROOT, 0))?;
    call::<(u32, u32), u32>(s, &instance, vm_start.as_ref(), (ROOT, 0))?;
    call::<(u32, u32), u32>(s, &instance, configure.as_ref(), (ROOT, 0))?;
    Ok((store, instance))
}

impl Live {
    fn new(mut store: Store<()>, instance: &Instance) -> wasmtime::Result<Live> {
        Ok(Live {
            create: instance.get_typed_func(&mut store, "proxy_on_context_create")?,
            request_headers: instance.get_typed_func(&mut store, "proxy_on_request_headers")?,
            response_headers: instance.get_typed_func(&mut store, "proxy_on_response_headers")?,
            done: instance.get_typed_func(&mut store, "proxy_on_done")?,
            log: instance.get_typed_func(&mut store, "proxy_on_log")?,
            delete: instance.get_typed_func(&mut store, "proxy_on_delete")?,
            store,
            next_ctx: ROOT + 1,
        })
    }
}
