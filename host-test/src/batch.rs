//! Batched callbacks: several proxy-wasm callbacks of one stream context run in ONE entry into
//! wasm. Per plugin VM a tiny shim module (generated here as bytes, one per shape of exported
//! callbacks, compiled once per process through the engine's module cache) is instantiated in
//! the same store; it imports the plugin's callbacks and exports
//! - `open(ctx, root, n, eos) -> i32`: `proxy_on_context_create` then
//!   `proxy_on_request_headers` (the result is the headers callback's);
//! - `done(ctx)`: the HTTP end of a stream, `proxy_on_log`, `proxy_on_done`, `proxy_on_delete`
//!   (those of the three the plugin exports, at least two).
//!
//! A wasm-to-wasm call between two instances of one store is a direct call, so a batch costs
//! one host-to-wasm entry (~185 instructions of wasmtime's entry and exit each) instead of one
//! per callback. Must not know about chains or streams' flow: the worker decides when a batch
//! may run (one live plugin, no shutdown under way, ...).
//!
//! What the host sees per callback stays exact through two exported globals:
//! - `stage`: the shim writes the running callback's [`stage`] number before each call (and 0
//!   when the batch returns). The host reads it only where it matters: after a trap (the
//!   report names the callback that was running) and in the header functions during a `done`
//!   batch (headers are readable as in the access-log pass during `proxy_on_log` only).
//! - `bail`: a host function that changes per-callback state (`proxy_set_effective_context`,
//!   `proxy_send_local_response`) sets it to 1 and records the stage; the shim returns after
//!   that callback and the worker runs the batch's remaining callbacks one entry each, as
//!   without batching. After a batch's last callback only the stage is recorded (the shim
//!   returns anyway), so a 429 sent from the request headers writes no global.
//!
//! Deadline: a batch runs under ONE per-callback deadline (the epoch deadline is set once per
//! entry), not the sum of its callbacks' deadlines: its callbacks together must finish within
//! the deadline a single callback gets.

use wasmtime::{
    AsContextMut, Caller, Extern, Global, Instance, Module, ModuleExport, Store, TypedFunc, Val,
};

use crate::exports::{Callbacks, HeadersCb};
use crate::vm::VmState;

/// The shim module's name (the `name` section): its frame is cut from trap backtraces.
pub(crate) const SHIM_NAME: &str = "meshward-batch";

/// The numbers the shim writes to its `stage` global before each callback.
pub(crate) mod stage {
    /// No callback running (before the first, after the last).
    pub(crate) const NONE: i32 = 0;
    pub(crate) const CONTEXT_CREATE: i32 = 1;
    pub(crate) const REQUEST_HEADERS: i32 = 2;
    pub(crate) const LOG: i32 = 3;
    pub(crate) const DONE: i32 = 4;
    pub(crate) const DELETE: i32 = 5;
}

/// The export a stage runs.
pub(crate) fn stage_name(s: i32) -> &'static str {
    match s {
        stage::CONTEXT_CREATE => "proxy_on_context_create",
        stage::REQUEST_HEADERS => "proxy_on_request_headers",
        stage::LOG => "proxy_on_log",
        stage::DONE => "proxy_on_done",
        _ => "proxy_on_delete",
    }
}

/// Which batch a call is, for the host functions that must know (none for a plain call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Batch {
    None,
    Open,
    /// A `done` batch on the stream in this slot (its `in_log` follows the stage).
    Done {
        slot: u32,
    },
}

/// Which callbacks the shim calls: fixed by the plugin's exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shape {
    /// `open` exists: context create + request headers (Some(true): 3-param headers).
    open: Option<bool>,
    log: bool,
    done: bool,
    delete: bool,
}

impl Shape {
    /// The shape for a plugin's callbacks; None when no batch would save an entry.
    pub(crate) fn of(cb: &Callbacks) -> Option<Shape> {
        let open = match (&cb.on_context_create, &cb.on_request_headers) {
            (Some(_), Some(HeadersCb::V2(_))) => Some(true),
            (Some(_), Some(HeadersCb::V1(_))) => Some(false),
            _ => None,
        };
        let s = Shape {
            open,
            log: cb.on_log.is_some(),
            done: cb.on_done.is_some(),
            delete: cb.on_delete.is_some(),
        };
        (s.open.is_some() || s.done_batch()).then_some(s)
    }

    /// The `done` batch runs at least two callbacks.
    fn done_batch(&self) -> bool {
        (self.log as u8 + self.done as u8 + self.delete as u8) >= 2
    }

    /// The first stage of the `done` batch.
    pub(crate) fn done_first(&self) -> i32 {
        if self.log {
            stage::LOG
        } else {
            stage::DONE
        }
    }

    /// The shim module's bytes.
    pub(crate) fn wasm(&self) -> Vec<u8> {
        // Types: 0 (i32 i32)->(), 1 (i32 i32 i32)->i32, 2 (i32 i32)->i32, 3 (i32)->(),
        // 4 (i32)->i32, 5 (i32 i32 i32 i32)->i32.
        const I32: u8 = 0x7f;
        let types: [(&[u8], &[u8]); 6] = [
            (&[I32, I32], &[]),
            (&[I32, I32, I32], &[I32]),
            (&[I32, I32], &[I32]),
            (&[I32], &[]),
            (&[I32], &[I32]),
            (&[I32, I32, I32, I32], &[I32]),
        ];
        let mut ty = Vec::new();
        leb(&mut ty, types.len() as u32);
        for (p, r) in types {
            ty.push(0x60);
            leb(&mut ty, p.len() as u32);
            ty.extend_from_slice(p);
            leb(&mut ty, r.len() as u32);
            ty.extend_from_slice(r);
        }
        // Imports (module "p"), function indexes in this order.
        let mut imports: Vec<(&str, u8)> = Vec::new();
        if let Some(v2) = self.open {
            imports.push(("create", 0));
            imports.push(("req", if v2 { 1 } else { 2 }));
        }
        let done = self.done_batch();
        if done {
            if self.log {
                imports.push(("log", 3));
            }
            if self.done {
                imports.push(("done", 4));
            }
            if self.delete {
                imports.push(("delete", 3));
            }
        }
        let index = |n: &str| imports.iter().position(|(m, _)| *m == n).unwrap_or(0) as u8;
        let mut imp = Vec::new();
        leb(&mut imp, imports.len() as u32);
        for (n, t) in &imports {
            name(&mut imp, "p");
            name(&mut imp, n);
            imp.push(0x00);
            leb(&mut imp, *t as u32);
        }
        // Defined functions: open (type 5), done (type 3).
        let mut funcs: Vec<(&str, u8, Vec<u8>)> = Vec::new();
        const SET_STAGE: u8 = 0x24; // global.set 0
        const GET_BAIL: u8 = 0x23; // global.get 1
        let set_stage =
            |c: &mut Vec<u8>, s: i32| c.extend_from_slice(&[0x41, s as u8, SET_STAGE, 0]);
        // if bail: stage = 0; return (with a result when the function has one).
        let bail_check = |c: &mut Vec<u8>, result: bool| {
            c.extend_from_slice(&[GET_BAIL, 1, 0x04, 0x40, 0x41, 0, SET_STAGE, 0]);
            if result {
                c.extend_from_slice(&[0x41, 0]);
            }
            c.extend_from_slice(&[0x0f, 0x0b]);
        };
        if let Some(v2) = self.open {
            let mut c = Vec::new();
            set_stage(&mut c, stage::CONTEXT_CREATE);
            c.extend_from_slice(&[0x20, 0, 0x20, 1, 0x10, index("create")]);
            bail_check(&mut c, true);
            set_stage(&mut c, stage::REQUEST_HEADERS);
            c.extend_from_slice(&[0x20, 0, 0x20, 2]);
            if v2 {
                c.extend_from_slice(&[0x20, 3]);
            }
            c.extend_from_slice(&[0x10, index("req")]);
            set_stage(&mut c, stage::NONE);
            funcs.push(("open", 5, c));
        }
        if done {
            let mut c = Vec::new();
            let steps = [
                (self.log, stage::LOG, "log", false),
                (self.done, stage::DONE, "done", true),
                (self.delete, stage::DELETE, "delete", false),
            ];
            let mut first = true;
            for (present, s, n, drop) in steps {
                if !present {
                    continue;
                }
                if !first {
                    bail_check(&mut c, false);
                }
                first = false;
                set_stage(&mut c, s);
                c.extend_from_slice(&[0x20, 0, 0x10, index(n)]);
                if drop {
                    c.push(0x1a);
                }
            }
            set_stage(&mut c, stage::NONE);
            funcs.push(("done", 3, c));
        }
        let nimp = imports.len() as u32;
        let mut fsec = Vec::new();
        leb(&mut fsec, funcs.len() as u32);
        for (_, t, _) in &funcs {
            leb(&mut fsec, *t as u32);
        }
        // Globals: 0 stage, 1 bail (mutable i32, 0).
        let mut gsec = Vec::new();
        leb(&mut gsec, 2);
        for _ in 0..2 {
            gsec.extend_from_slice(&[I32, 0x01, 0x41, 0, 0x0b]);
        }
        let mut esec = Vec::new();
        leb(&mut esec, funcs.len() as u32 + 2);
        for (i, (n, _, _)) in funcs.iter().enumerate() {
            name(&mut esec, n);
            esec.push(0x00);
            leb(&mut esec, nimp + i as u32);
        }
        for (n, g) in [("stage", 0u32), ("bail", 1)] {
            name(&mut esec, n);
            esec.push(0x03);
            leb(&mut esec, g);
        }
        let mut code = Vec::new();
        leb(&mut code, funcs.len() as u32);
        for (_, _, c) in &funcs {
            // No locals; the body ends with `end`.
            leb(&mut code, c.len() as u32 + 2);
            code.push(0);
            code.extend_from_slice(c);
            code.push(0x0b);
        }
        // `name` section: the module's name and the batch functions' names.
        let mut names = Vec::new();
        name(&mut names, "name");
        let mut sub = Vec::new();
        name(&mut sub, SHIM_NAME);
        names.push(0);
        leb(&mut names, sub.len() as u32);
        names.extend_from_slice(&sub);
        let mut sub = Vec::new();
        leb(&mut sub, funcs.len() as u32);
        for (i, (n, _, _)) in funcs.iter().enumerate() {
            leb(&mut sub, nimp + i as u32);
            name(&mut sub, n);
        }
        names.push(1);
        leb(&mut names, sub.len() as u32);
        names.extend_from_slice(&sub);

        let mut m = b"\0asm\x01\0\0\0".to_vec();
        section(&mut m, 1, &ty);
        section(&mut m, 2, &imp);
        section(&mut m, 3, &fsec);
        section(&mut m, 6, &gsec);
        section(&mut m, 7, &esec);
        section(&mut m, 10, &code);
        section(&mut m, 0, &names);
        m
    }
}

fn leb(out: &mut Vec<u8>, mut v: u32) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn name(out: &mut Vec<u8>, s: &str) {
    leb(out, s.len() as u32);
    out.extend_from_slice(s.as_bytes());
}

fn section(out: &mut Vec<u8>, id: u8, body: &[u8]) {
    out.push(id);
    leb(out, body.len() as u32);
    out.extend_from_slice(body);
}

/// The shim's globals, which host functions read or set on the rare paths only (resolved
/// once per VM, when the shim is instantiated: an export lookup by index costs more than the
/// read itself).
#[derive(Clone, Copy)]
pub(crate) struct Globals {
    stage: Global,
    bail: Global,
}

impl Globals {
    /// The stage running now ([`stage::NONE`] when none).
    pub(crate) fn stage(&self, store: impl AsContextMut) -> i32 {
        self.stage.get(store).i32().unwrap_or(stage::NONE)
    }
    /// Make the shim return after the running callback (1) or clear that (0).
    pub(crate) fn set_bail(&self, store: impl AsContextMut, on: bool) {
        let _ = self.bail.set(store, Val::I32(on as i32));
    }
}

/// Whether the shim must be told to stop after stage `s`: not after the last callback of its
/// batch (request headers in `open`, delete in `done`), after which it returns anyway. A
/// local reply sent from the request headers (a 429) then costs no write of `bail` and no
/// clearing of it.
pub(crate) fn flag_needed(s: i32) -> bool {
    s != stage::REQUEST_HEADERS && s != stage::DELETE
}

/// One VM's shim instance: its batch functions.
pub(crate) struct Shim {
    pub(crate) open: Option<TypedFunc<(i32, i32, i32, i32), i32>>,
    pub(crate) done: Option<TypedFunc<i32, ()>>,
    /// The first stage of `done` (log, or done when the plugin has no `proxy_on_log`).
    pub(crate) done_first: i32,
    pub(crate) globals: Globals,
}

/// A plugin's compiled shim and the indexes of its exports (looked up once, bound by index on
/// every VM, as `exports::ExportPlan` does for the plugin's own exports).
pub(crate) struct ShimModule {
    shape: Shape,
    module: Module,
    open: Option<ModuleExport>,
    done: Option<ModuleExport>,
    stage: ModuleExport,
    bail: ModuleExport,
}

impl ShimModule {
    /// The shim for a plugin's callbacks, compiled through the engine's module cache (one
    /// compile per shape per process). None when no batch would save an entry.
    pub(crate) fn new(cb: &Callbacks) -> Option<ShimModule> {
        let shape = Shape::of(cb)?;
        let module = crate::engine::engine().ok()?.module(&shape.wasm()).ok()?;
        let open = module.get_export_index("open");
        let done = module.get_export_index("done");
        Some(ShimModule {
            shape,
            open,
            done,
            stage: module.get_export_index("stage")?,
            bail: module.get_export_index("bail")?,
            module,
        })
    }

    /// Instantiate on the plugin's callbacks `cb` in `store`. None on any failure (e.g. no
    /// instance slot left): the VM then runs unbatched.
    pub(crate) fn instantiate(&self, store: &mut Store<VmState>, cb: &Callbacks) -> Option<Shim> {
        let shape = &self.shape;
        let mut imports: Vec<Extern> = Vec::with_capacity(5);
        if shape.open.is_some() {
            imports.push((*cb.on_context_create.as_ref()?.func()).into());
            imports.push(match cb.on_request_headers.as_ref()? {
                HeadersCb::V2(f) => (*f.func()).into(),
                HeadersCb::V1(f) => (*f.func()).into(),
            });
        }
        if shape.done_batch() {
            if let Some(f) = &cb.on_log {
                imports.push((*f.func()).into());
            }
            if let Some(f) = &cb.on_done {
                imports.push((*f.func()).into());
            }
            if let Some(f) = &cb.on_delete {
                imports.push((*f.func()).into());
            }
        }
        let instance = Instance::new(&mut *store, &self.module, &imports).ok()?;
        let mut func = |e: &Option<ModuleExport>| match e {
            Some(e) => match instance.get_module_export(&mut *store, e) {
                Some(Extern::Func(f)) => Some(f),
                _ => None,
            },
            None => None,
        };
        let (open, done) = (func(&self.open), func(&self.done));
        debug_assert!(open.is_none_or(|f| f.typed::<(i32, i32, i32, i32), i32>(&*store).is_ok()));
        debug_assert!(done.is_none_or(|f| f.typed::<i32, ()>(&*store).is_ok()));
        // SAFETY: the shim is this module's own code (`Shape::wasm`): its `open` export has
        // type (i32 i32 i32 i32) -> i32 and its `done` export (i32) -> (), the signatures
        // `new_unchecked` is given (checked in debug builds above and by the unit test).
        let open = open.map(|f| unsafe { TypedFunc::new_unchecked(&*store, f) });
        let done = done.map(|f| unsafe { TypedFunc::new_unchecked(&*store, f) });
        let mut global = |e: &ModuleExport| match instance.get_module_export(&mut *store, e) {
            Some(Extern::Global(g)) => Some(g),
            _ => None,
        };
        let globals = Globals {
            stage: global(&self.stage)?,
            bail: global(&self.bail)?,
        };
        Some(Shim {
            open,
            done,
            done_first: shape.done_first(),
            globals,
        })
    }
}

/// Before a header function reads or writes a stream's maps: during a `done` batch the
/// stream's `in_log` follows the running stage (the access-log view in `proxy_on_log` only),
/// as it does between separate calls. One compare when no batch runs.
#[inline]
pub(crate) fn sync_in_log(c: &mut Caller<'_, VmState>) {
    if let Batch::Done { slot } = c.data().call.batch {
        sync_in_log_slow(c, slot);
    }
}

#[cold]
#[inline(never)]
fn sync_in_log_slow(c: &mut Caller<'_, VmState>, slot: u32) {
    let Some(g) = c.data().batch_globals else {
        return;
    };
    let log = g.stage(&mut *c) == stage::LOG;
    if let Some(s) = c.data_mut().core().and_then(|core| core.stream_mut(slot)) {
        s.in_log = log;
    }
}

/// A host function is about to change per-callback state (the effective context, a local
/// reply's forced Stop): during a batch, record the running stage and make the shim return
/// after this callback, so the next one starts from fresh state in a call of its own.
#[inline]
pub(crate) fn bail(c: &mut Caller<'_, VmState>) {
    let call = &c.data().call;
    if call.batch != Batch::None && call.bailed == 0 {
        bail_slow(c);
    }
}

#[cold]
#[inline(never)]
fn bail_slow(c: &mut Caller<'_, VmState>) {
    let Some(g) = c.data().batch_globals else {
        return;
    };
    let s = g.stage(&mut *c);
    if s != stage::NONE {
        c.data_mut().call.bailed = s;
        if flag_needed(s) {
            g.set_bail(&mut *c, true);
        }
    }
}

/// A trap backtrace without the shim's frame (the outermost one, its last line).
pub(crate) fn strip_shim_frame(bt: &mut String) {
    if let Some(pos) = bt.rfind('\n') {
        if bt[pos..].contains(SHIM_NAME) {
            bt.truncate(pos);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shape_is_a_valid_module() {
        let engine = wasmtime::Engine::default();
        for bits in 0u8..32 {
            let s = Shape {
                open: match bits & 3 {
                    0 => None,
                    1 => Some(false),
                    _ => Some(true),
                },
                log: bits & 4 != 0,
                done: bits & 8 != 0,
                delete: bits & 16 != 0,
            };
            let m = Module::new(&engine, s.wasm()).expect("valid shim");
            assert_eq!(m.name(), Some(SHIM_NAME));
            assert_eq!(m.get_export("open").is_some(), s.open.is_some());
            assert_eq!(m.get_export("done").is_some(), s.done_batch());
            // (i32 params, i32 results), every type i32.
            let sig = |n: &str| {
                let f = m.get_export(n)?.func()?.clone();
                let i32s = f.params().chain(f.results()).all(|t| t.is_i32());
                i32s.then(|| (f.params().count(), f.results().count()))
            };
            if s.open.is_some() {
                assert_eq!(sig("open"), Some((4, 1)));
            }
            if s.done_batch() {
                assert_eq!(sig("done"), Some((1, 0)));
            }
        }
    }
}
