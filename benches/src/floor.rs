//! The wasmtime floor: a proxy-wasm module instantiated with every import defined as a stub
//! that returns zeros (store-independent `Linker::func_new` stubs), driven by typed
//! calls to its exports. No header maps, no contexts, no timeline: nothing a real host can
//! skip. Only meaningful for guests whose measured callbacks make no host calls (the noop
//! guest), which is what it is used with.

use wasmtime::{
    Engine, ExternType, Instance, InstancePre, Linker, Module, Store, TypedFunc, Val, ValType,
};

/// A compiled module ready to instantiate, plus one live instance for call benchmarks.
pub struct Floor {
    pre: InstancePre<()>,
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
    /// Compiles `wasm` and starts one VM (`_initialize`, root context, vm_start, configure).
    pub fn new(wasm: &[u8]) -> wasmtime::Result<Floor> {
        let engine = Engine::default();
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
        let store = Store::new(&engine, ());
        let pre = linker.instantiate_pre(&module)?;
        let (store, instance) = start(&pre, store)?;
        let live = Live::new(store, &instance)?;
        Ok(Floor { pre, engine, live })
    }

    /// One VM start on a fresh store: instantiate, `_initialize`, root context create,
    /// `proxy_on_vm_start`, `proxy_on_configure`. Returns the store (drop it outside timing).
    pub fn start_vm(&self) -> wasmtime::Result<Store<()>> {
        let store = Store::new(&self.engine, ());
        start(&self.pre, store).map(|(s, _)| s)
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

fn start(pre: &InstancePre<()>, mut store: Store<()>) -> wasmtime::Result<(Store<()>, Instance)> {
    let instance = pre.instantiate(&mut store)?;
    if let Ok(init) = instance.get_typed_func::<(), ()>(&mut store, "_initialize") {
        init.call(&mut store, ())?;
    }
    let create =
        instance.get_typed_func::<(u32, u32), ()>(&mut store, "proxy_on_context_create")?;
    create.call(&mut store, (ROOT, 0))?;
    let vm_start = instance.get_typed_func::<(u32, u32), u32>(&mut store, "proxy_on_vm_start")?;
    vm_start.call(&mut store, (ROOT, 0))?;
    let configure = instance.get_typed_func::<(u32, u32), u32>(&mut store, "proxy_on_configure")?;
    configure.call(&mut store, (ROOT, 0))?;
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
