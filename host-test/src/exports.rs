//! The typed handles on a plugin instance's exports (memory, allocator, start functions and
//! every proxy-wasm callback) and the per-plugin plan that binds them on each new instance
//! without looking anything up by name or type-checking it again. Must not know about
//! streams, workers or what the callbacks mean.
//!
//! The first instance of a plugin (its configuration check) resolves every export by name
//! with wasmtime's checked `Func::typed`; the plan keeps the `ModuleExport` index of each
//! export found, in a [`Checked`] whose type parameters are the ones that check passed with.
//! Every later instance (each worker VM, each reload) binds from the plan: an indexed export
//! read and `TypedFunc::new_unchecked`. At ~30 exports this takes VM start from ~30 name
//! lookups plus type-registry checks to ~30 array reads.

use std::marker::PhantomData;

use wasmtime::{
    Extern, Instance, Memory, Module, ModuleExport, Store, TypedFunc, WasmParams, WasmResults,
};

use crate::error::LoadError;

/// A function export of one module whose signature passed `Func::typed::<P, R>`.
/// Only [`Checked::check`] makes one, so holding a `Checked<P, R>` is the proof.
struct Checked<P, R> {
    export: ModuleExport,
    _sig: PhantomData<fn(P) -> R>,
}

impl<P, R> Clone for Checked<P, R> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<P, R> Copy for Checked<P, R> {}

/// A resolved export: the handle for this instance and the proof for the plan.
type Found<P, R> = Option<(TypedFunc<P, R>, Checked<P, R>)>;

impl<P: WasmParams, R: WasmResults> Checked<P, R> {
    /// Look `name` up on `instance` by name and check its signature (the slow path, run once
    /// per plugin). `Ok(None)` when the module does not export it.
    fn check<T>(
        store: &mut Store<T>,
        instance: &Instance,
        module: &Module,
        name: &str,
        plugin: &str,
    ) -> Result<Found<P, R>, LoadError> {
        let Some(f) = instance.get_func(&mut *store, name) else {
            return Ok(None);
        };
        let typed = f
            .typed::<P, R>(&*store)
            .map_err(|e| LoadError::MissingExport {
                plugin: plugin.to_string(),
                message: format!("export {name} has the wrong signature: {e}"),
            })?;
        Ok(module.get_export_index(name).map(|export| {
            let checked = Checked {
                export,
                _sig: PhantomData,
            };
            (typed, checked)
        }))
    }

    /// Bind on a new instance of the same module (the fast path).
    fn bind<T>(self, store: &mut Store<T>, instance: &Instance) -> Option<TypedFunc<P, R>> {
        let Some(Extern::Func(f)) = instance.get_module_export(&mut *store, &self.export) else {
            return None;
        };
        debug_assert!(f.typed::<P, R>(&*store).is_ok());
        // SAFETY: a `Checked<P, R>` exists only after `Func::typed::<P, R>` succeeded for this
        // export index of this module (`check`), and every instance a plan is used with comes
        // from the same plugin's `InstancePre`, i.e. the same module: the function at this index
        // has the signature P -> R, which is what `new_unchecked` requires.
        Some(unsafe { TypedFunc::new_unchecked(&*store, f) })
    }
}

/// `proxy_on_request_headers` / `proxy_on_response_headers`: 3 params in 0.2.x, 2 in 0.1.0.
#[derive(Clone)]
pub(crate) enum HeadersCb {
    V2(TypedFunc<(i32, i32, i32), i32>),
    V1(TypedFunc<(i32, i32), i32>),
}

#[derive(Clone, Copy)]
enum HeadersChecked {
    V2(Checked<(i32, i32, i32), i32>),
    V1(Checked<(i32, i32), i32>),
}

fn check_headers<T>(
    store: &mut Store<T>,
    instance: &Instance,
    module: &Module,
    name: &str,
    plugin: &str,
) -> Result<Option<(HeadersCb, HeadersChecked)>, LoadError> {
    if let Ok(Some((t, c))) = Checked::check(store, instance, module, name, plugin) {
        return Ok(Some((HeadersCb::V2(t), HeadersChecked::V2(c))));
    }
    Ok(Checked::check(store, instance, module, name, plugin)?
        .map(|(t, c)| (HeadersCb::V1(t), HeadersChecked::V1(c))))
}

impl HeadersChecked {
    fn bind<T>(self, store: &mut Store<T>, instance: &Instance) -> Option<HeadersCb> {
        match self {
            HeadersChecked::V2(c) => c.bind(store, instance).map(HeadersCb::V2),
            HeadersChecked::V1(c) => c.bind(store, instance).map(HeadersCb::V1),
        }
    }
}

/// Declares `Callbacks` (typed handles, per instance) and `CallbackPlan` (checked export
/// indexes, per plugin) from one list, so the two cannot disagree.
macro_rules! callbacks {
    ($( $field:ident : $name:literal => $p:ty, $r:ty; )* $( [headers] $hfield:ident : $hname:literal; )*) => {
        /// Typed handles on every callback the module exports (all optional).
        #[derive(Default, Clone)]
        pub(crate) struct Callbacks {
            $( pub(crate) $field: Option<TypedFunc<$p, $r>>, )*
            $( pub(crate) $hfield: Option<HeadersCb>, )*
        }

        #[derive(Clone, Copy, Default)]
        struct CallbackPlan {
            $( $field: Option<Checked<$p, $r>>, )*
            $( $hfield: Option<HeadersChecked>, )*
        }

        fn check_callbacks<T>(
            store: &mut Store<T>,
            instance: &Instance,
            module: &Module,
            plugin: &str,
        ) -> Result<(Callbacks, CallbackPlan), LoadError> {
            let mut cb = Callbacks::default();
            let mut plan = CallbackPlan::default();
            $(
                if let Some((t, c)) = Checked::check(store, instance, module, $name, plugin)? {
                    cb.$field = Some(t);
                    plan.$field = Some(c);
                }
            )*
            $(
                if let Some((t, c)) = check_headers(store, instance, module, $hname, plugin)? {
                    cb.$hfield = Some(t);
                    plan.$hfield = Some(c);
                }
            )*
            Ok((cb, plan))
        }

        impl CallbackPlan {
            fn bind<T>(&self, store: &mut Store<T>, instance: &Instance) -> Callbacks {
                Callbacks {
                    $( $field: self.$field.and_then(|c| c.bind(store, instance)), )*
                    $( $hfield: self.$hfield.and_then(|c| c.bind(store, instance)), )*
                }
            }
        }
    };
}

callbacks! {
    on_context_create: "proxy_on_context_create" => (i32, i32), ();
    on_done: "proxy_on_done" => i32, i32;
    on_log: "proxy_on_log" => i32, ();
    on_delete: "proxy_on_delete" => i32, ();
    on_vm_start: "proxy_on_vm_start" => (i32, i32), i32;
    on_configure: "proxy_on_configure" => (i32, i32), i32;
    on_tick: "proxy_on_tick" => i32, ();
    on_queue_ready: "proxy_on_queue_ready" => (i32, i32), ();
    on_new_connection: "proxy_on_new_connection" => i32, i32;
    on_downstream_data: "proxy_on_downstream_data" => (i32, i32, i32), i32;
    on_downstream_connection_close: "proxy_on_downstream_connection_close" => (i32, i32), ();
    on_upstream_data: "proxy_on_upstream_data" => (i32, i32, i32), i32;
    on_upstream_connection_close: "proxy_on_upstream_connection_close" => (i32, i32), ();
    on_request_body: "proxy_on_request_body" => (i32, i32, i32), i32;
    on_request_trailers: "proxy_on_request_trailers" => (i32, i32), i32;
    on_response_body: "proxy_on_response_body" => (i32, i32, i32), i32;
    on_response_trailers: "proxy_on_response_trailers" => (i32, i32), i32;
    on_http_call_response: "proxy_on_http_call_response" => (i32, i32, i32, i32, i32), ();
    on_grpc_receive_initial_metadata: "proxy_on_grpc_receive_initial_metadata" => (i32, i32, i32), ();
    on_grpc_receive: "proxy_on_grpc_receive" => (i32, i32, i32), ();
    on_grpc_receive_trailing_metadata: "proxy_on_grpc_receive_trailing_metadata" => (i32, i32, i32), ();
    on_grpc_close: "proxy_on_grpc_close" => (i32, i32, i32), ();
    on_foreign_function: "proxy_on_foreign_function" => (i32, i32, i32), ();
    [headers] on_request_headers: "proxy_on_request_headers";
    [headers] on_response_headers: "proxy_on_response_headers";
}

/// How the module starts (WASI reactor or command), as cpp-host: `_initialize` then `main` /
/// `__main_void` if present, else `_start`.
#[derive(Clone, Default)]
pub(crate) struct StartFns {
    pub(crate) initialize: Option<TypedFunc<(), ()>>,
    pub(crate) main: Option<TypedFunc<(i32, i32), i32>>,
    pub(crate) main_void: Option<TypedFunc<(), i32>>,
    pub(crate) start: Option<TypedFunc<(), ()>>,
}

#[derive(Clone, Copy, Default)]
struct StartPlan {
    initialize: Option<Checked<(), ()>>,
    main: Option<Checked<(i32, i32), i32>>,
    main_void: Option<Checked<(), i32>>,
    start: Option<Checked<(), ()>>,
}

/// Everything a VM needs from its instance.
pub(crate) struct Bound {
    pub(crate) memory: Memory,
    pub(crate) malloc: TypedFunc<i32, i32>,
    pub(crate) start: StartFns,
    pub(crate) cb: Callbacks,
}

/// The per-plugin plan: export indexes checked on the plugin's first instance.
#[derive(Clone, Copy)]
pub(crate) struct ExportPlan {
    memory: ModuleExport,
    malloc: Checked<i32, i32>,
    start: StartPlan,
    cb: CallbackPlan,
}

impl ExportPlan {
    /// The slow path: resolve by name and check every signature; returns the handles for this
    /// instance and the plan for the next ones.
    pub(crate) fn check<T>(
        store: &mut Store<T>,
        instance: &Instance,
        module: &Module,
        plugin: &str,
    ) -> Result<(Bound, ExportPlan), LoadError> {
        let missing = |message: &str| LoadError::MissingExport {
            plugin: plugin.to_string(),
            message: message.to_string(),
        };
        let memory_index = module
            .get_export_index("memory")
            .ok_or_else(|| missing("Wasm module is missing the `memory` export"))?;
        let memory = instance
            .get_memory(&mut *store, "memory")
            .ok_or_else(|| missing("Wasm module is missing the `memory` export"))?;
        let malloc = match Checked::check(store, instance, module, "malloc", plugin)? {
            Some(m) => m,
            None => Checked::check(store, instance, module, "proxy_on_memory_allocate", plugin)?
                .ok_or_else(|| missing("Wasm module is missing malloc function (neither `malloc` nor `proxy_on_memory_allocate` is exported)"))?,
        };
        let (cb, cb_plan) = check_callbacks(store, instance, module, plugin)?;
        let init = Checked::check(store, instance, module, "_initialize", plugin)?;
        let main = Checked::check(store, instance, module, "main", plugin)?;
        let main_void = Checked::check(store, instance, module, "__main_void", plugin)?;
        let start = Checked::check(store, instance, module, "_start", plugin)?;
        let bound = Bound {
            memory,
            malloc: malloc.0,
            start: StartFns {
                initialize: init.as_ref().map(|x| x.0.clone()),
                main: main.as_ref().map(|x| x.0.clone()),
                main_void: main_void.as_ref().map(|x| x.0.clone()),
                start: start.as_ref().map(|x| x.0.clone()),
            },
            cb,
        };
        let plan = ExportPlan {
            memory: memory_index,
            malloc: malloc.1,
            start: StartPlan {
                initialize: init.map(|x| x.1),
                main: main.map(|x| x.1),
                main_void: main_void.map(|x| x.1),
                start: start.map(|x| x.1),
            },
            cb: cb_plan,
        };
        Ok((bound, plan))
    }

    /// The fast path: bind on a new instance of the same module by index.
    pub(crate) fn bind<T>(&self, store: &mut Store<T>, instance: &Instance) -> Option<Bound> {
        let Some(Extern::Memory(memory)) = instance.get_module_export(&mut *store, &self.memory)
        else {
            return None;
        };
        let malloc = self.malloc.bind(store, instance)?;
        let s = &self.start;
        Some(Bound {
            memory,
            malloc,
            start: StartFns {
                initialize: s.initialize.and_then(|c| c.bind(store, instance)),
                main: s.main.and_then(|c| c.bind(store, instance)),
                main_void: s.main_void.and_then(|c| c.bind(store, instance)),
                start: s.start.and_then(|c| c.bind(store, instance)),
            },
            cb: self.cb.bind(store, instance),
        })
    }
}
