//! `Worker`: one VM per plugin of a chain (one Envoy worker thread). Drives HTTP streams through
//! the chain with Envoy's iteration rules (request first..last, response last..first; PAUSE in
//! headers = StopAllIterationAndWatermark, PAUSE in body = StopIterationAndBuffer with
//! cumulative sizes; continue_stream resumes; local replies run through the response callbacks
//! of every plugin, or go direct / reset once the response started), applies after-call actions,
//! fires the timeline (ticks, callout answers, timeouts) and the inbox (queue-ready, late
//! answers), and applies the FailStrategy after a trap. Must not know about wasm memory or ABI
//! encodings.

use std::collections::VecDeque;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Duration;

use crate::batch::{stage, Batch};
use crate::callouts::{GrpcReply, HttpCallRequest, HttpResponse, Inbox};
use crate::error::HostError;
use crate::host::{Host, Plugin};
use crate::logs::LogLevel;
use crate::pairs::Headers;
use crate::spec::FailStrategy;
use crate::stream::{Flow, HttpStream, LocalReply, PluginCtx, StreamId, StreamProps, StreamView};
use crate::trap::TrapReport;
use crate::vm::{CallCtx, CallKind, Trapped, Vm};
use crate::worker_core::{Action, CalloutKind, Event, WorkerCore};

/// Largest action queue capacity the worker keeps for reuse (a burst's larger one is dropped).
const ACTIONS_KEPT: usize = 64;

/// How many completed streams stay readable through `Worker::stream` before their slots are
/// reused.
pub const COMPLETED_KEPT: usize = 1024;

struct VmSlot {
    vm: Option<Vm>,
    generation: u32,
    /// Clock time of the last load or reload attempt (Envoy `handle_wrapper.last_load`).
    last_load: u64,
    /// The FailReload interval drawn for the next check, in nanoseconds.
    backoff: u64,
    shutdown: Shutdown,
}

/// Where a plugin's root context stands in a worker shutdown (cpp-host `WasmBase::startShutdown`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shutdown {
    Running,
    /// `proxy_on_done` returned false: waiting for the plugin to call `proxy_done`.
    AwaitingDone,
    /// `proxy_on_delete` ran (or the VM was dead): the plugin is out of the chain.
    Deleted,
}

/// Result of one stream callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Continue,
    Stop,
    /// The plugin failed and its FailStrategy is closed/reload: a 503 is (being) sent.
    Failed,
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Stop,
    Next,
    Headers { n: usize, eos: bool },
    Body { size: usize, eos: bool },
    Trailers { n: usize },
}

/// One worker: a VM per chain plugin, its streams and its timeline. `Send`, not `Sync`.
pub struct Worker {
    host: Host,
    index: usize,
    chain: Vec<Plugin>,
    slots: Vec<VmSlot>,
    core: Option<Box<WorkerCore>>,
    rx: Receiver<Inbox>,
    completed: VecDeque<StreamId>,
    ctx_scratch: Vec<PluginCtx>,
    /// The action queue's other half (`run_actions_slow` swaps them), kept while small.
    actions_spare: Vec<Action>,
    /// Inbox messages taken out by `next_due` (handled first by the next `drain_inbox`).
    stash: VecDeque<Inbox>,
    /// SplitMix64 state for the FailReload backoff jitter (seeded from the host seed).
    rng: u64,
    /// Some chain plugin can read a stream's start and end times (it imports
    /// `proxy_get_property`). When none can, the two clock reads per stream are skipped: nothing
    /// else reads those times, so what any plugin or the embedder sees is the same.
    stream_times: bool,
    /// Streams changed by something other than the embedder's own call on them (a
    /// `proxy_continue_stream`, local reply or close from another context, a tick, a callout
    /// answer, a trap), recorded only once the embedder asked with [`Worker::watch_resumed`].
    resumed: Option<Vec<StreamId>>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Ok(mut w) = self.host.inner.workers.lock() {
            w.remove(&self.index);
        }
    }
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("index", &self.index)
            .field("plugins", &self.chain)
            .finish_non_exhaustive()
    }
}

impl Worker {
    pub(crate) fn new(host: Host, chain: &[Plugin]) -> Result<Worker, HostError> {
        if chain.len() > crate::MAX_CHAIN {
            return Err(HostError::ChainTooLong {
                got: chain.len(),
                max: crate::MAX_CHAIN,
            });
        }
        for p in chain {
            let same = p
                .inner
                .host
                .upgrade()
                .is_some_and(|h| Arc::ptr_eq(&h, &host.inner));
            if !same {
                return Err(HostError::ForeignPlugin(p.name().to_string()));
            }
        }
        let index = host
            .inner
            .next_worker
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = std::sync::mpsc::channel();
        if let Ok(mut w) = host.inner.workers.lock() {
            w.insert(index, tx.clone());
        }
        let mut core = Some(Box::new(WorkerCore::new(
            Some(index),
            host.inner.clock.clone(),
            chain.len(),
            tx,
        )));
        let mut slots = Vec::with_capacity(chain.len());
        let mut rng = host.inner.random_seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let now = host.inner.clock.now_nanos();
        for (i, p) in chain.iter().enumerate() {
            let vm = Vm::start(&host.inner, &p.inner, Some(index), i, 0, &mut core)?;
            slots.push(VmSlot {
                vm: Some(vm),
                generation: 0,
                last_load: now,
                backoff: backoff_draw(&mut rng, p.inner.spec.reload_backoff),
                shutdown: Shutdown::Running,
            });
        }
        Ok(Worker {
            host,
            index,
            chain: chain.to_vec(),
            slots,
            core,
            rx,
            completed: VecDeque::new(),
            ctx_scratch: Vec::new(),
            actions_spare: Vec::new(),
            stash: VecDeque::new(),
            rng,
            stream_times: chain.iter().any(|p| p.inner.reads_properties),
            resumed: None,
        })
    }

    /// This worker's index (as in log records and trap reports).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The host this worker belongs to.
    pub fn host(&self) -> &Host {
        &self.host
    }

    fn core(&mut self) -> &mut WorkerCore {
        // Invariant: the core is only moved out for the duration of a guest call.
        self.core
            .as_deref_mut()
            .expect("worker core is present outside guest calls")
    }

    fn core_ref(&self) -> &WorkerCore {
        self.core
            .as_deref()
            .expect("worker core is present outside guest calls")
    }

    fn strategy(&self, p: usize) -> FailStrategy {
        self.chain[p].inner.spec.fail_strategy
    }

    // ----- guest calls and failures -----

    fn invoke(
        &mut self,
        p: usize,
        call: CallCtx,
        f: impl FnOnce(&mut Vm) -> Result<i32, Trapped>,
    ) -> Option<(i32, bool)> {
        let vm = self.slots[p].vm.as_mut()?;
        vm.enter(&mut self.core, call);
        let r = f(vm);
        let forced = vm.leave(&mut self.core);
        let out = match r {
            Ok(v) => Some((v, forced)),
            Err(t) => {
                self.on_trap(p, *t);
                None
            }
        };
        if self.slots[p].shutdown == Shutdown::AwaitingDone {
            self.delete_root_if_done(p);
        }
        out
    }

    #[cold]
    fn on_trap(&mut self, p: usize, t: TrapReport) {
        let inner = self.host.inner.clone();
        let msg = format!("Function: {} failed: {}", t.callback, t.message);
        inner.logs.push(
            crate::logs::LogRecord {
                plugin: t.plugin.clone(),
                worker: Some(self.index),
                level: LogLevel::Critical,
                message: msg,
                at: inner.clock.now_nanos(),
            },
            &self.chain[p].inner.spec.root_id,
            &self.chain[p].inner.spec.vm_id,
        );
        inner.traps.push(t);
        inner.stats.failed();
        // The VM is dead (Envoy FailState::RuntimeError): drop it, its timers and callouts.
        self.slots[p].vm = None;
        let strategy = self.strategy(p);
        let core = self.core();
        if let Some(tk) = core.ticks.get_mut(p) {
            tk.gen = tk.gen.wrapping_add(1);
            tk.period_ms = 0;
        }
        core.callouts.retain(|_, c| c.plugin != p);
        // Streams stopped at this plugin would wait forever: fail them now.
        let mut stuck = Vec::new();
        for (slot, s) in core.streams.iter().enumerate() {
            if !core.live[slot] || s.complete || s.reset {
                continue;
            }
            for response in [false, true] {
                let dir = if response { &s.resp } else { &s.req };
                if dir.stopped_at() == Some(s.pos(response, p)) {
                    stuck.push((slot as u32, response));
                }
            }
        }
        for (slot, response) in stuck {
            match strategy {
                FailStrategy::FailOpen => {
                    if let Some(s) = core.stream_mut(slot) {
                        s.ctx[p].skip = true;
                    }
                    core.actions.push(Action::Continue {
                        slot,
                        plugin: p,
                        response,
                    })
                }
                _ => core.actions.push(Action::LocalReply {
                    slot,
                    reply: Arc::new(fail_reply(p)),
                    asked: false,
                }),
            }
        }
    }

    /// FailReload: replace dead VMs with fresh configured ones (for new streams), at most once
    /// per backoff interval. Envoy `PluginConfig::maybeReloadHandleIfNeeded`
    /// (source/extensions/common/wasm/wasm.cc): only a VM dead of a runtime error is reloaded;
    /// if less than `nextBackOffMs()` passed since `last_load` the stream keeps the failed VM
    /// (stat `VmReloadBackoff`; `createContext` then gives it the fail-closed empty context,
    /// i.e. the 503); otherwise `last_load = now` and a new VM is made (kept only if it starts).
    fn reload_dead(&mut self) {
        for p in 0..self.slots.len() {
            if self.slots[p].vm.is_some()
                || self.strategy(p) != FailStrategy::FailReload
                || self.slots[p].shutdown != Shutdown::Running
            {
                continue;
            }
            let inner = self.host.inner.clone();
            let now = inner.clock.now_nanos();
            let base = self.chain[p].inner.spec.reload_backoff;
            let waited = now.saturating_sub(self.slots[p].last_load);
            let interval = std::mem::replace(
                &mut self.slots[p].backoff,
                backoff_draw(&mut self.rng, base),
            );
            if waited < interval {
                inner.stats.reload_backoff();
                continue;
            }
            self.slots[p].last_load = now;
            let gen = self.slots[p].generation.wrapping_add(1);
            match Vm::start(
                &inner,
                &self.chain[p].inner,
                Some(self.index),
                p,
                gen,
                &mut self.core,
            ) {
                Ok(vm) => {
                    inner.stats.reloaded();
                    self.slots[p].vm = Some(vm);
                    self.slots[p].generation = gen;
                }
                Err(e) => {
                    inner.stats.reload_failed();
                    self.slots[p].generation = gen;
                    inner.logs.push(
                        crate::logs::LogRecord {
                            plugin: self.chain[p].name().to_string(),
                            worker: Some(self.index),
                            level: LogLevel::Error,
                            message: format!("reload failed: {e}"),
                            at: inner.clock.now_nanos(),
                        },
                        "",
                        "",
                    );
                }
            }
        }
    }

    /// What a dead or replaced VM means for a stream.
    fn dead_outcome(&mut self, slot: u32, p: usize) -> Outcome {
        if self.strategy(p) == FailStrategy::FailOpen {
            if let Some(s) = self.core().stream_mut(slot) {
                s.ctx[p].skip = true;
            }
            Outcome::Continue
        } else {
            Outcome::Failed
        }
    }

    /// The plugin's context id for this stream, creating it (on_context_create) if needed.
    fn ensure_ctx(&mut self, slot: u32, p: usize) -> Result<u32, Outcome> {
        let Some(ctx) = self.core_ref().stream(slot).map(|s| s.ctx[p]) else {
            return Err(Outcome::Stop);
        };
        self.ensure_ctx_with(slot, p, ctx)
    }

    /// `ensure_ctx` with the stream's record of the plugin's context already read (the caller
    /// just looked at the stream): a live context is a few compares inline; creation and a
    /// dead or replaced VM go out of line.
    #[inline]
    fn ensure_ctx_with(&mut self, slot: u32, p: usize, ctx: PluginCtx) -> Result<u32, Outcome> {
        let vm = &self.slots[p];
        if ctx.id != 0 && !ctx.skip && ctx.generation == vm.generation && vm.vm.is_some() {
            return Ok(ctx.id);
        }
        self.ensure_ctx_slow(slot, p, ctx)
    }

    #[inline(never)]
    fn ensure_ctx_slow(&mut self, slot: u32, p: usize, ctx: PluginCtx) -> Result<u32, Outcome> {
        let gen = self.slots[p].generation;
        if ctx.skip {
            return Err(Outcome::Continue);
        }
        if ctx.id != 0 {
            if ctx.generation == gen && self.slots[p].vm.is_some() {
                return Ok(ctx.id);
            }
            return Err(self.dead_outcome(slot, p));
        }
        let Some((id, root)) = self.new_ctx(slot, p) else {
            return Err(self.dead_outcome(slot, p));
        };
        let r = self.invoke(
            p,
            CallCtx::new(CallKind::ContextCreate, id, Some(slot)),
            |vm| {
                vm.call_cb(
                    |c| c.on_context_create.as_ref(),
                    (id as i32, root as i32),
                    "proxy_on_context_create",
                )
                .map(|r| r.map(|_| 0))
                .unwrap_or(Ok(0))
            },
        );
        match r {
            Some(_) => Ok(id),
            None => Err(self.dead_outcome(slot, p)),
        }
    }

    /// A new context id of plugin `p` for the stream in `slot`, recorded in the VM's context
    /// map and the stream's per-plugin contexts (the callback creating it is the caller's);
    /// with the VM's root context id. None when the plugin has no VM. Inlined into both
    /// callers: it is on every stream's path.
    #[inline(always)]
    fn new_ctx(&mut self, slot: u32, p: usize) -> Option<(u32, u32)> {
        let generation = self.slots[p].generation;
        let vm = self.slots[p].vm.as_mut()?;
        let id = vm.alloc_ctx_id();
        let root = vm.root_ctx();
        vm.store.data_mut().ctx_streams.insert(id, slot);
        if let Some(s) = self.core().stream_mut(slot) {
            s.ctx[p] = PluginCtx {
                id,
                generation,
                skip: false,
            };
        }
        Some((id, root))
    }

    /// A plugin's first request headers with its context not created yet, through the VM's
    /// `open` batch (context create + request headers in one entry, see `batch`). None when
    /// the VM has no such batch or the plugin is shutting down: the caller makes the two calls.
    /// A host function that asks the batch to stop in `proxy_on_context_create` (effective
    /// context, local reply) gets the headers callback as a call of its own.
    #[inline]
    fn open_batched(
        &mut self,
        slot: u32,
        p: usize,
        ctx: PluginCtx,
        n: usize,
        eos: bool,
    ) -> Option<Outcome> {
        if ctx.skip || self.slots[p].shutdown != Shutdown::Running {
            return None;
        }
        self.slots[p].vm.as_ref()?.shim.as_ref()?.open.as_ref()?;
        let (id, root) = self.new_ctx(slot, p)?;
        let mut call = CallCtx::new(CallKind::ContextCreate, id, Some(slot));
        call.batch = Batch::Open;
        let vm = self.slots[p].vm.as_mut()?;
        vm.enter(&mut self.core, call);
        let r = vm.open_batch(id, root, n, eos);
        let bailed = vm.take_bail();
        let forced = vm.leave(&mut self.core);
        Some(match r {
            Some(Ok(_)) if bailed == stage::CONTEXT_CREATE => {
                let ctx = self.core_ref().stream(slot).map(|s| s.ctx[p])?;
                let step = Step::Headers { n, eos };
                return Some(self.stream_call(slot, p, false, step, ctx, false));
            }
            Some(Ok(v)) => match (v, forced) {
                (_, true) => Outcome::Stop,
                (0, false) => Outcome::Continue,
                _ => Outcome::Stop,
            },
            Some(Err(t)) => {
                self.on_trap(p, *t);
                self.dead_outcome(slot, p)
            }
            None => self.dead_outcome(slot, p),
        })
    }

    /// One stream callback of plugin `p`; `ctx` and `tcp` are the stream's context record for
    /// `p` and its kind, as the caller just read them.
    fn stream_call(
        &mut self,
        slot: u32,
        p: usize,
        response: bool,
        step: Step,
        ctx: PluginCtx,
        tcp: bool,
    ) -> Outcome {
        if let (Step::Headers { n, eos }, 0, false, false) = (step, ctx.id, response, tcp) {
            if let Some(o) = self.open_batched(slot, p, ctx, n, eos) {
                return o;
            }
        }
        let id = match self.ensure_ctx_with(slot, p, ctx) {
            Ok(id) => id,
            Err(o) => return o,
        };
        let body = matches!(step, Step::Body { .. });
        if body {
            if let Some(s) = self.core().stream_mut(slot) {
                let pos = s.pos(response, p);
                let d = if response { &mut s.resp } else { &mut s.req };
                d.in_body = Some(pos);
            }
        }
        let r = self.invoke(p, CallCtx::new(CallKind::Stream, id, Some(slot)), |vm| {
            let ctx = id as i32;
            let r = match (step, response, tcp) {
                (Step::Headers { n, eos }, resp, false) => vm.headers_cb(resp, id, n, eos),
                (Step::Headers { .. }, _, true) => vm.call_cb(
                    |c| c.on_new_connection.as_ref(),
                    ctx,
                    "proxy_on_new_connection",
                ),
                (Step::Body { size, eos }, resp, tcp) => {
                    let args = (ctx, size as i32, eos as i32);
                    match (resp, tcp) {
                        (false, false) => vm.call_cb(
                            |c| c.on_request_body.as_ref(),
                            args,
                            "proxy_on_request_body",
                        ),
                        (true, false) => vm.call_cb(
                            |c| c.on_response_body.as_ref(),
                            args,
                            "proxy_on_response_body",
                        ),
                        (false, true) => vm.call_cb(
                            |c| c.on_downstream_data.as_ref(),
                            args,
                            "proxy_on_downstream_data",
                        ),
                        (true, true) => vm.call_cb(
                            |c| c.on_upstream_data.as_ref(),
                            args,
                            "proxy_on_upstream_data",
                        ),
                    }
                }
                (Step::Trailers { n }, false, _) => vm.call_cb(
                    |c| c.on_request_trailers.as_ref(),
                    (ctx, n as i32),
                    "proxy_on_request_trailers",
                ),
                (Step::Trailers { n }, true, _) => vm.call_cb(
                    |c| c.on_response_trailers.as_ref(),
                    (ctx, n as i32),
                    "proxy_on_response_trailers",
                ),
                _ => None,
            };
            r.unwrap_or(Ok(0))
        });
        // `in_body` is set only around a body callback (None before every other one).
        if body {
            if let Some(s) = self.core().stream_mut(slot) {
                let d = if response { &mut s.resp } else { &mut s.req };
                d.in_body = None;
            }
        }
        match r {
            // A local reply forces a Stop; so does a value outside proxy_action_t (cpp-host).
            Some((_, true)) => Outcome::Stop,
            Some((0, false)) => Outcome::Continue,
            Some(_) => Outcome::Stop,
            None => self.dead_outcome(slot, p),
        }
    }

    // ----- chain iteration -----

    fn decide(s: &HttpStream, response: bool, pos: usize) -> Step {
        let d = if response { &s.resp } else { &s.req };
        if s.reset || d.aborted || !d.started || s.complete {
            return Step::Stop;
        }
        if d.hdr_at < pos {
            return Step::Stop;
        }
        if d.hdr_at == pos {
            if d.hdr_paused {
                return Step::Stop;
            }
            return Step::Headers {
                n: d.headers.len(),
                eos: d.headers_eos,
            };
        }
        if d.fresh.has(pos) {
            return Step::Body {
                size: d.buf[pos].len(),
                eos: d.eos.has(pos),
            };
        }
        if d.tr_at == Some(pos) {
            if d.tr_paused {
                return Step::Stop;
            }
            return Step::Trailers {
                n: d.trailers.as_ref().map_or(0, |t| t.len()),
            };
        }
        if d.body_paused.has(pos) {
            return Step::Stop;
        }
        Step::Next
    }

    fn move_body(d: &mut crate::stream::Dir, pos: usize) {
        let eos = d.eos.take(pos);
        d.body_paused.set(pos, false);
        let (eos, trailers_here) = if d.trailers_added_at == Some(pos) {
            d.trailers_added_at = None;
            (false, true)
        } else {
            (eos, false)
        };
        let moved = !d.buf[pos].is_empty() || eos;
        if d.buf[pos + 1].is_empty() {
            // Swapped, not moved: `pos` gets the empty buffer back with its capacity (a
            // local reply's body, written there on every 429, then allocates nothing).
            d.buf.swap(pos, pos + 1);
        } else {
            let (here, next) = d.buf.split_at_mut(pos + 1);
            if let (Some(from), Some(to)) = (here.last_mut(), next.first_mut()) {
                to.extend_from_slice(from);
                from.clear();
            }
        }
        if eos {
            d.eos.set(pos + 1, true);
        }
        if moved && pos + 1 < d.n {
            d.fresh.set(pos + 1, true);
        }
        if trailers_here {
            d.tr_at = Some(pos + 1);
            d.tr_paused = false;
        }
    }

    fn drive(&mut self, slot: u32, response: bool) {
        let n = self.slots.len();
        let mut pos = 0;
        let mut guard = 0usize;
        while pos < n {
            guard += 1;
            if guard > 64 * (n + 1) {
                break;
            }
            let p = if response { n - 1 - pos } else { pos };
            let Some(s) = self.core_ref().stream(slot) else {
                return;
            };
            let step = Self::decide(s, response, pos);
            let Some(&ctx) = s.ctx.get(p) else {
                return;
            };
            let tcp = s.tcp;
            let outcome = match step {
                Step::Stop => return,
                Step::Next => {
                    pos += 1;
                    continue;
                }
                _ if ctx.skip => Outcome::Continue,
                _ => {
                    if let Step::Body { .. } = step {
                        if let Some(s) = self.core().stream_mut(slot) {
                            let d = if response { &mut s.resp } else { &mut s.req };
                            d.fresh.set(pos, false);
                        }
                    }
                    self.stream_call(slot, p, response, step, ctx, tcp)
                }
            };
            if outcome == Outcome::Failed && self.fail_stream(slot, p) {
                return;
            }
            let Some(s) = self.core().stream_mut(slot) else {
                return;
            };
            let d = if response { &mut s.resp } else { &mut s.req };
            if d.aborted || s.reset {
                return;
            }
            let go = outcome != Outcome::Stop;
            match step {
                Step::Headers { .. } => {
                    if go {
                        d.hdr_at = pos + 1;
                        // Nothing else waits at this position (no body chunk, trailers or
                        // paused body): the next `decide` here would say Next.
                        if !d.fresh.has(pos) && d.tr_at != Some(pos) && !d.body_paused.has(pos) {
                            pos += 1;
                        }
                    } else {
                        d.hdr_paused = true;
                        return;
                    }
                }
                Step::Body { .. } => {
                    if go {
                        Self::move_body(d, pos);
                    } else {
                        self.body_paused(slot, response, pos, p);
                        return;
                    }
                }
                Step::Trailers { .. } => {
                    if go {
                        d.tr_at = Some(pos + 1);
                        d.tr_paused = false;
                        if d.body_paused.has(pos) || !d.buf[pos].is_empty() {
                            Self::move_body(d, pos);
                        }
                    } else {
                        d.tr_paused = true;
                        return;
                    }
                }
                _ => {}
            }
        }
    }

    /// Plugin `p` failed on this stream: the 503 goes out unless a local reply is already
    /// under way (during a local reply's response pass a failed plugin is skipped). True when
    /// the reply was sent (the drive stops).
    #[cold]
    #[inline(never)]
    fn fail_stream(&mut self, slot: u32, p: usize) -> bool {
        let already = self
            .core_ref()
            .stream(slot)
            .is_some_and(|s| s.local_reply_sent);
        if !already {
            self.apply_local_reply(slot, Arc::new(fail_reply(p)), false);
        }
        !already
    }

    /// A body callback of plugin `p` at `pos` paused. Envoy: StopIterationAndBuffer moves the
    /// data into the stream's buffer, a watermark buffer whose high mark is the buffer limit;
    /// past it, with the filters not streaming, the filter manager replies 413 (request) / 500
    /// (response). A pause in headers buffers the body as StopAllIterationAndWatermark
    /// instead: flow control, no reply. Out of line: `drive`'s usual path is headers.
    #[inline(never)]
    fn body_paused(&mut self, slot: u32, response: bool, pos: usize, p: usize) {
        let limit = self.host.inner.buffer_limit;
        let Some(s) = self.core().stream_mut(slot) else {
            return;
        };
        let d = if response { &mut s.resp } else { &mut s.req };
        d.body_paused.set(pos, true);
        let buffered: usize = d.buf[..d.n].iter().map(Vec::len).sum();
        if buffered > limit && !s.tcp && !s.local_reply_sent {
            self.apply_local_reply(slot, Arc::new(too_large_reply(response, p)), false);
        }
    }

    fn apply_continue(&mut self, slot: u32, p: usize, response: bool) {
        let Some(s) = self.core().stream_mut(slot) else {
            return;
        };
        if s.reset || s.complete {
            return;
        }
        let pos = s.pos(response, p);
        let d = if response { &mut s.resp } else { &mut s.req };
        if d.aborted {
            return;
        }
        let mut changed = false;
        if d.started && d.hdr_at == pos && d.hdr_paused {
            d.hdr_paused = false;
            d.hdr_at = pos + 1;
            changed = true;
        }
        if d.body_paused.has(pos) {
            Self::move_body(d, pos);
            changed = true;
        }
        if d.tr_at == Some(pos) && d.tr_paused {
            d.tr_paused = false;
            d.tr_at = Some(pos + 1);
            changed = true;
        }
        if changed {
            self.drive(slot, response);
        }
    }

    /// Send `reply` downstream through the response callbacks (or directly when the response
    /// had started); `asked`: its headers are the plugin's, in the slot's `reply_asked`.
    fn apply_local_reply(&mut self, slot: u32, reply: Arc<LocalReply>, asked: bool) {
        let n = self.slots.len();
        let Some(s) = self.core().stream_mut(slot) else {
            return;
        };
        if s.reset || s.complete {
            return;
        }
        s.local_reply_sent = true;
        if s.resp.started && s.resp.hdr_at == n {
            // Response headers already went downstream: reset (Envoy cannot reply any more).
            s.reset = true;
            s.req.aborted = true;
            s.resp.aborted = true;
            return;
        }
        let grpc_req = s
            .req
            .headers
            .get("content-type")
            .is_some_and(|c| c.starts_with("application/grpc"));
        let body: &[u8] = if grpc_req && reply.grpc_status.is_some() {
            &[]
        } else {
            &reply.body
        };
        let direct = s.resp.started;
        s.req.aborted = true;
        s.resp.reset(n);
        s.resp.body_seen = true;
        // Built in the direction's own map from its pooled entries (the reset moved the old
        // ones there): no allocation per header once the slot has seen a few streams.
        let crate::stream::Dir { headers, pool, .. } = &mut s.resp;
        let asked = if asked {
            &s.reply_asked
        } else {
            &reply.headers
        };
        local_reply_headers(&reply, asked, grpc_req, headers, pool);
        s.resp.started = true;
        // Into the direction's own (reset, so empty) buffers: no allocation once they have
        // held a body of this size.
        let empty = body.is_empty();
        if direct {
            // Envoy sendDirectLocalReply: the response had started through the encoder
            // filters, so the reply bypasses them.
            s.resp.hdr_at = n;
            if let Some(b) = s.resp.buf.get_mut(n) {
                b.clear();
                b.extend_from_slice(body);
            }
            s.resp.aborted = true;
        } else {
            // sendLocalReplyViaFilterChain: through every plugin's response callbacks.
            s.resp.headers_eos = empty;
            if let (false, Some(b)) = (empty, s.resp.buf.get_mut(0)) {
                b.clear();
                b.extend_from_slice(body);
                s.resp.fresh.set(0, true);
                s.resp.eos.set(0, true);
            }
        }
        s.local_reply = Some(reply);
        if !direct {
            self.drive(slot, true);
        }
        if let Some(s) = self.core().stream_mut(slot) {
            let HttpStream {
                resp,
                local_reply,
                reply_pool,
                ..
            } = s;
            if let Some(r) = local_reply.as_mut().map(Arc::make_mut) {
                r.status = status_of(&resp.headers).unwrap_or(r.status);
                // Into the reply's own buffers (the plugin's headers and body it held).
                r.headers.copy_from_pooled(&resp.headers, reply_pool);
                if let Some(body) = resp.buf.get(n) {
                    r.body.clone_from(body);
                }
            }
        }
    }

    /// Run queued after-call actions; the common empty case is an inline check, not a call.
    #[inline]
    fn run_actions(&mut self) {
        if !self.core_ref().actions.is_empty() {
            self.run_actions_slow();
        }
    }

    #[inline(never)]
    fn run_actions_slow(&mut self) {
        for _ in 0..10_000 {
            if self.core_ref().actions.is_empty() {
                return;
            }
            // Swapped with the worker's spare list, not taken: the queue keeps a capacity
            // (a reply per request allocated nothing then).
            let mut actions = std::mem::take(&mut self.actions_spare);
            std::mem::swap(&mut actions, &mut self.core().actions);
            for a in actions.drain(..) {
                if self.resumed.is_some() {
                    let slot = match &a {
                        Action::Continue { slot, .. }
                        | Action::Close { slot }
                        | Action::LocalReply { slot, .. } => *slot,
                    };
                    if let Some(id) = self.core_ref().stream(slot).map(|s| s.id) {
                        self.mark_resumed(id);
                    }
                }
                match a {
                    Action::Continue {
                        slot,
                        plugin,
                        response,
                    } => self.apply_continue(slot, plugin, response),
                    Action::Close { slot } => {
                        if let Some(s) = self.core().stream_mut(slot) {
                            s.reset = true;
                            s.req.aborted = true;
                            s.resp.aborted = true;
                        }
                    }
                    Action::LocalReply { slot, reply, asked } => {
                        self.apply_local_reply(slot, reply, asked)
                    }
                }
            }
            if actions.capacity() <= ACTIONS_KEPT {
                self.actions_spare = actions;
            }
        }
    }

    /// Start recording which streams change through actions (a plugin resuming, answering or
    /// closing a stream from another context, a tick, a callout answer, a trap's fail
    /// strategy) or are reset by [`Worker::shutdown`]; [`Worker::take_resumed`] hands them
    /// over. An embedder that waits on many
    /// paused streams wakes only these instead of re-checking every stream after each call.
    pub fn watch_resumed(&mut self) {
        self.resumed.get_or_insert_with(Vec::new);
    }

    fn mark_resumed(&mut self, id: StreamId) {
        if let Some(r) = self.resumed.as_mut() {
            // Consecutive actions on one stream are recorded once.
            if r.last() != Some(&id) {
                r.push(id);
            }
        }
    }

    /// The streams changed through actions since the last call (empty unless
    /// [`Worker::watch_resumed`] was called), in order (a stream may appear more than once);
    /// `out` is cleared first.
    pub fn take_resumed(&mut self, out: &mut Vec<StreamId>) {
        out.clear();
        if let Some(r) = self.resumed.as_mut() {
            std::mem::swap(out, r);
        }
    }

    // ----- public stream API -----

    /// Open an HTTP stream (contexts are created lazily, at each plugin's first callback).
    pub fn open_http_stream(&mut self, props: StreamProps) -> StreamId {
        self.reload_dead();
        let n = self.slots.len();
        let times = self.stream_times;
        let core = self.core();
        let now = if times { core.now() } else { 0 };
        let (slot, gen) = core.alloc_slot();
        let id = StreamId::new(slot, gen);
        core.streams[slot as usize].reset_for(id, n, props, now);
        if self.slots.iter().any(|s| s.shutdown != Shutdown::Running) {
            // Shut-down plugins are out of the chain for new streams.
            for p in 0..n {
                if self.slots[p].shutdown != Shutdown::Running {
                    self.core().streams[slot as usize].ctx[p].skip = true;
                }
            }
        }
        id
    }

    fn slot(&self, id: StreamId) -> Result<u32, HostError> {
        let slot = self
            .core_ref()
            .slot_of(id)
            .ok_or(HostError::UnknownStream(id.0))?;
        if self.core_ref().stream(slot).is_some_and(|s| s.complete) {
            return Err(HostError::StreamComplete(id.0));
        }
        Ok(slot)
    }

    /// `slot` and the stream itself in one lookup (the same errors).
    #[inline]
    fn open_stream(&mut self, id: StreamId) -> Result<(u32, &mut HttpStream), HostError> {
        let (slot, s) = self
            .core()
            .stream_of(id)
            .ok_or(HostError::UnknownStream(id.0))?;
        if s.complete {
            return Err(HostError::StreamComplete(id.0));
        }
        Ok((slot, s))
    }

    #[inline]
    fn flow(&self, slot: u32, response: bool) -> Flow {
        let Some(s) = self.core_ref().stream(slot) else {
            return Flow::Reset;
        };
        if s.reset {
            return Flow::Reset;
        }
        if let Some(r) = &s.local_reply {
            return Flow::LocalReply(Arc::clone(r));
        }
        let d = if response { &s.resp } else { &s.req };
        match d.stopped_at() {
            Some(pos) => Flow::Paused {
                plugin: s.pos(response, pos),
            },
            None => Flow::Continue,
        }
    }

    fn input(
        &mut self,
        id: StreamId,
        response: bool,
        f: impl FnOnce(&mut crate::stream::Dir),
    ) -> Result<Flow, HostError> {
        let (slot, s) = self.open_stream(id)?;
        // After a reset or a local reply, later input from either side is ignored.
        if !(s.reset || s.local_reply.is_some()) {
            let d = if response { &mut s.resp } else { &mut s.req };
            if !d.aborted {
                f(d);
            }
        }
        self.drive(slot, response);
        self.run_actions();
        Ok(self.flow(slot, response))
    }

    /// Request headers from downstream (names lower-cased).
    pub fn request_headers(
        &mut self,
        id: StreamId,
        headers: &[(&str, &str)],
        end_of_stream: bool,
    ) -> Result<Flow, HostError> {
        self.input(id, false, |d| {
            d.headers.fill_pooled(headers, &mut d.pool);
            d.started = true;
            d.headers_eos = end_of_stream;
        })
    }

    /// A request body chunk.
    pub fn request_body(
        &mut self,
        id: StreamId,
        data: &[u8],
        end_of_stream: bool,
    ) -> Result<Flow, HostError> {
        self.input(id, false, |d| push_data(d, data, end_of_stream))
    }

    /// Request trailers (end the request).
    pub fn request_trailers(
        &mut self,
        id: StreamId,
        trailers: &[(&str, &str)],
    ) -> Result<Flow, HostError> {
        self.input(id, false, |d| {
            d.trailers = Some(Headers::from_pairs(trailers));
            d.tr_at = Some(0);
            d.tr_paused = false;
        })
    }

    /// Response headers from upstream.
    pub fn response_headers(
        &mut self,
        id: StreamId,
        headers: &[(&str, &str)],
        end_of_stream: bool,
    ) -> Result<Flow, HostError> {
        self.input(id, true, |d| {
            d.headers.fill_pooled(headers, &mut d.pool);
            d.started = true;
            d.headers_eos = end_of_stream;
        })
    }

    /// A response body chunk.
    pub fn response_body(
        &mut self,
        id: StreamId,
        data: &[u8],
        end_of_stream: bool,
    ) -> Result<Flow, HostError> {
        self.input(id, true, |d| push_data(d, data, end_of_stream))
    }

    /// Response trailers.
    pub fn response_trailers(
        &mut self,
        id: StreamId,
        trailers: &[(&str, &str)],
    ) -> Result<Flow, HostError> {
        self.input(id, true, |d| {
            d.trailers = Some(Headers::from_pairs(trailers));
            d.tr_at = Some(0);
            d.tr_paused = false;
        })
    }

    /// End the stream: on_log (headers readable), on_done, on_delete for each plugin context
    /// (a TCP stream: on_done, on_log, on_delete); outstanding callouts of the stream's contexts are cancelled. The stream stays readable
    /// through [`Worker::stream`] for the next [`COMPLETED_KEPT`] completions.
    #[allow(
        clippy::needless_range_loop,
        reason = "p indexes slots and contexts together"
    )]
    pub fn complete(&mut self, id: StreamId) -> Result<(), HostError> {
        let n = self.slots.len();
        let now = if self.stream_times {
            self.core().now()
        } else {
            0
        };
        let mut ctxs = std::mem::take(&mut self.ctx_scratch);
        ctxs.clear();
        let (slot, s) = match self.open_stream(id) {
            Ok(x) => x,
            Err(e) => {
                self.ctx_scratch = ctxs;
                return Err(e);
            }
        };
        s.end_nanos = Some(now);
        ctxs.extend_from_slice(&s.ctx);
        let tcp = s.tcp;
        let live = |w: &Worker, p: usize| {
            let c = ctxs[p];
            c.id != 0 && !c.skip && c.generation == w.slots[p].generation && w.slots[p].vm.is_some()
        };
        // Envoy's order. HTTP: `ConnectionManagerImpl::doDeferredStreamDestroy` runs the access
        // log pass (`filter_manager_.log()` -> wasm `Context::log` -> proxy_on_log, headers
        // readable through the access-log pointers) before `destroyFilters()` (->
        // `Context::onDestroy`: onDone(), onDelete()). TCP: `Context::onCloseTCP` runs onDone,
        // onLog, onDelete (source/common/http/conn_manager_impl.cc,
        // source/extensions/common/wasm/context.cc). proxy_on_done's result is ignored for a
        // stream context: false only defers a root context at VM shutdown (cpp-host
        // include/proxy-wasm/context_interface.h `onDone`, src/wasm.cc `WasmBase::done` looks
        // only at root contexts), so proxy_done from a finished stream answers NOT_FOUND.
        //
        // With one live plugin (the order across plugins then cannot change), an HTTP stream's
        // three callbacks run as the VM's `done` batch, one entry (see `batch`); the loops
        // below then skip what it ran (`ran`: its plugin and the last stage it finished).
        let mut ran = (usize::MAX, stage::NONE);
        if !tcp {
            let mut sole = None;
            for p in 0..n {
                if live(self, p) {
                    sole = match sole {
                        None => Some(p),
                        Some(_) => None,
                    };
                    if sole.is_none() {
                        break;
                    }
                }
            }
            if let Some(p) = sole {
                if let Some(upto) = self.done_batched(p, ctxs[p].id, slot) {
                    ran = (p, upto);
                }
            }
        }
        let skip = |p: usize, s: i32| ran.0 == p && s <= ran.1;
        let order = if tcp {
            [CallKind::Done, CallKind::Log]
        } else {
            [CallKind::Log, CallKind::Done]
        };
        for kind in order {
            let log = kind == CallKind::Log;
            let st = if log { stage::LOG } else { stage::DONE };
            if let (true, Some(s)) = (log, self.core().stream_mut(slot)) {
                s.in_log = true;
            }
            for p in 0..n {
                if live(self, p) && !skip(p, st) {
                    let cid = ctxs[p].id;
                    self.invoke(p, CallCtx::new(kind, cid, Some(slot)), |vm| {
                        if log {
                            vm.call_cb(|c| c.on_log.as_ref(), cid as i32, "proxy_on_log")
                                .map(|r| r.map(|_| 0))
                                .unwrap_or(Ok(0))
                        } else {
                            vm.call_cb(|c| c.on_done.as_ref(), cid as i32, "proxy_on_done")
                                .unwrap_or(Ok(1))
                        }
                    });
                }
            }
            if let (true, Some(s)) = (log, self.core().stream_mut(slot)) {
                s.in_log = false;
            }
        }
        for p in 0..n {
            if live(self, p) && !skip(p, stage::DELETE) {
                let cid = ctxs[p].id;
                self.invoke(p, CallCtx::new(CallKind::Delete, cid, Some(slot)), |vm| {
                    vm.call_cb(|c| c.on_delete.as_ref(), cid as i32, "proxy_on_delete")
                        .map(|r| r.map(|_| 0))
                        .unwrap_or(Ok(0))
                });
            }
            if ctxs[p].id != 0 {
                if let Some(vm) = self.slots[p].vm.as_mut() {
                    let d = vm.store.data_mut();
                    d.ctx_streams.remove(ctxs[p].id);
                    if !d.pending_done.is_empty() {
                        d.pending_done.retain(|&c| c != ctxs[p].id);
                    }
                }
                let cid = ctxs[p].id;
                let core = self.core();
                // `retain` visits every bucket of a map that once grew: skip it when empty.
                if !core.callouts.is_empty() {
                    core.callouts
                        .retain(|_, c| !(c.plugin == p && c.ctx == cid));
                }
            }
        }
        let core = self.core();
        if !core.actions.is_empty() {
            core.actions.retain(|a| match a {
                Action::Continue { slot: s, .. }
                | Action::Close { slot: s }
                | Action::LocalReply { slot: s, .. } => *s != slot,
            });
        }
        if let Some(s) = core.stream_mut(slot) {
            s.complete = true;
        }
        self.ctx_scratch = ctxs;
        self.completed.push_back(id);
        while self.completed.len() > COMPLETED_KEPT {
            if let Some(old) = self.completed.pop_front() {
                let core = self.core();
                if let Some(s) = core.slot_of(old) {
                    core.release(s);
                }
            }
        }
        self.run_actions();
        Ok(())
    }

    /// An HTTP stream's log, done and delete for plugin `p`, its only live plugin, as the VM's
    /// `done` batch. Returns the last stage it finished (a trap kills the VM, so the rest is
    /// skipped anyway), or None when the VM has no such batch or the plugin is shutting down.
    fn done_batched(&mut self, p: usize, cid: u32, slot: u32) -> Option<i32> {
        if self.slots[p].shutdown != Shutdown::Running {
            return None;
        }
        let shim = self.slots[p].vm.as_ref()?.shim.as_ref()?;
        shim.done.as_ref()?;
        let log = shim.done_first == stage::LOG;
        if let Some(s) = self.core().stream_mut(slot) {
            s.in_log = log;
        }
        let kind = if log { CallKind::Log } else { CallKind::Done };
        let mut call = CallCtx::new(kind, cid, Some(slot));
        call.batch = Batch::Done { slot };
        let vm = self.slots[p].vm.as_mut()?;
        vm.enter(&mut self.core, call);
        let r = vm.done_batch(cid);
        let bailed = vm.take_bail();
        vm.leave(&mut self.core);
        if let Some(s) = self.core().stream_mut(slot) {
            s.in_log = false;
        }
        match r? {
            Ok(()) if bailed != 0 => Some(bailed),
            Ok(()) => Some(stage::DELETE),
            Err(t) => {
                self.on_trap(p, *t);
                Some(stage::DELETE)
            }
        }
    }

    /// Release a completed stream's slot now (its view is gone).
    pub fn release(&mut self, id: StreamId) {
        let core = self.core();
        if let Some((s, st)) = core.stream_of(id) {
            if st.complete {
                core.release(s);
                // Usually the newest completion (released right after `complete`).
                if self.completed.back() == Some(&id) {
                    self.completed.pop_back();
                } else {
                    self.completed.retain(|c| *c != id);
                }
            }
        }
    }

    /// Read-only view of a stream (open, or completed recently).
    pub fn stream(&self, id: StreamId) -> Option<StreamView<'_>> {
        let core = self.core_ref();
        let slot = core.slot_of(id)?;
        core.stream(slot).map(|s| StreamView { s })
    }

    // ----- TCP (network filter) streams -----

    /// Open a TCP stream: `proxy_on_new_connection` runs through the chain (a Pause stops
    /// iteration and buffers downstream data until `proxy_continue_stream(DOWNSTREAM)`).
    pub fn open_tcp_stream(&mut self, props: StreamProps) -> Result<(StreamId, Flow), HostError> {
        let id = self.open_http_stream(props);
        let n = self.slots.len();
        if let Some(slot) = self.core_ref().slot_of(id) {
            if let Some(s) = self.core().stream_mut(slot) {
                s.tcp = true;
                s.resp.started = true;
                s.resp.hdr_at = n;
            }
        }
        let flow = self.input(id, false, |d| {
            d.started = true;
        })?;
        Ok((id, flow))
    }

    /// Data from downstream (`proxy_on_downstream_data`, plugins first..last; buffer
    /// DOWNSTREAM_DATA). What passed the chain is `StreamView::request_body`.
    pub fn downstream_data(
        &mut self,
        id: StreamId,
        data: &[u8],
        end_of_stream: bool,
    ) -> Result<Flow, HostError> {
        self.input(id, false, |d| push_data(d, data, end_of_stream))
    }

    /// Data from upstream (`proxy_on_upstream_data`, plugins last..first; buffer
    /// UPSTREAM_DATA). What passed the chain is `StreamView::response_body`.
    pub fn upstream_data(
        &mut self,
        id: StreamId,
        data: &[u8],
        end_of_stream: bool,
    ) -> Result<Flow, HostError> {
        self.input(id, true, |d| push_data(d, data, end_of_stream))
    }

    /// A connection close: `proxy_on_downstream_connection_close` (downstream = true) or
    /// `proxy_on_upstream_connection_close` on every plugin context, with `peer`
    /// (proxy_peer_type_t: 0 unknown, 1 local, 2 remote).
    pub fn connection_close(
        &mut self,
        id: StreamId,
        downstream: bool,
        peer: u32,
    ) -> Result<(), HostError> {
        let slot = self.slot(id)?;
        for p in 0..self.slots.len() {
            let ctx = match self.ensure_ctx(slot, p) {
                Ok(c) => c,
                Err(_) => continue,
            };
            self.invoke(p, CallCtx::new(CallKind::Stream, ctx, Some(slot)), |vm| {
                let args = (ctx as i32, peer as i32);
                let r = if downstream {
                    vm.call_cb(
                        |c| c.on_downstream_connection_close.as_ref(),
                        args,
                        "proxy_on_downstream_connection_close",
                    )
                } else {
                    vm.call_cb(
                        |c| c.on_upstream_connection_close.as_ref(),
                        args,
                        "proxy_on_upstream_connection_close",
                    )
                };
                r.unwrap_or(Ok(())).map(|_| 0)
            });
        }
        self.run_actions();
        Ok(())
    }

    /// Envoy-style foreign-function callback: `proxy_on_foreign_function(root, function_id,
    /// size)` on chain plugin `plugin`, with `args` readable as FOREIGN_FUNCTION_ARGUMENTS.
    pub fn foreign_function_callback(&mut self, plugin: usize, function_id: u32, args: &[u8]) {
        let Some(root) = self
            .slots
            .get(plugin)
            .and_then(|s| s.vm.as_ref())
            .map(|v| v.root_ctx())
        else {
            return;
        };
        let mut call = CallCtx::new(CallKind::Foreign, root, None);
        call.data().foreign_args = Some(args.to_vec());
        let n = args.len() as i32;
        self.invoke(plugin, call, |vm| {
            vm.call_cb(
                |c| c.on_foreign_function.as_ref(),
                (root as i32, function_id as i32, n),
                "proxy_on_foreign_function",
            )
            .unwrap_or(Ok(()))
            .map(|_| 0)
        });
        self.run_actions();
    }

    // ----- time and events -----

    /// Earliest due time on the timeline (ticks, callout answers and timeouts).
    pub(crate) fn timeline_due(&self) -> Option<u64> {
        self.core_ref().timeline.next_due()
    }

    /// The earliest clock time (Unix nanoseconds, as [`Host::now_nanos`]) at which something
    /// is scheduled on this worker: a tick, a callout answer or timeout (handler latency or
    /// `timeout_ms`), an answer or queue notification already waiting in the inbox (due now),
    /// or the end of a FailReload backoff (from then on the next stream gets a reloaded VM).
    /// `None` when nothing is. Nothing runs here: `advance`/`poll` fire the events, so an
    /// embedder on a virtual clock can jump straight to this time. A timer cancelled after it
    /// was scheduled may still show here (advancing to it then fires nothing).
    pub fn next_due(&mut self) -> Option<u64> {
        let now = self.core_ref().now();
        if self.stash.is_empty() {
            if let Ok(m) = self.rx.try_recv() {
                self.stash.push_back(m);
            }
        }
        let inbox = (!self.stash.is_empty()).then_some(now);
        let reload = (0..self.slots.len())
            .filter(|&p| {
                self.slots[p].vm.is_none()
                    && self.slots[p].shutdown == Shutdown::Running
                    && self.strategy(p) == FailStrategy::FailReload
            })
            .map(|p| {
                self.slots[p]
                    .last_load
                    .saturating_add(self.slots[p].backoff)
            })
            .filter(|&t| t > now)
            .min();
        [self.timeline_due(), inbox, reload]
            .into_iter()
            .flatten()
            .min()
    }

    /// Apply inbox messages (queue-ready callbacks run now; answers go on the timeline).
    pub(crate) fn drain_inbox(&mut self) {
        while let Some(msg) = self.stash.pop_front().or_else(|| self.rx.try_recv().ok()) {
            match msg {
                Inbox::QueueReady {
                    plugin,
                    vm_generation,
                    root_ctx,
                    token,
                } => {
                    if plugin >= self.slots.len() || self.slots[plugin].generation != vm_generation
                    {
                        continue;
                    }
                    self.invoke(
                        plugin,
                        CallCtx::new(CallKind::QueueReady, root_ctx, None),
                        |vm| {
                            vm.call_cb(
                                |c| c.on_queue_ready.as_ref(),
                                (root_ctx as i32, token as i32),
                                "proxy_on_queue_ready",
                            )
                            .map(|r| r.map(|_| 0))
                            .unwrap_or(Ok(0))
                        },
                    );
                    self.run_actions();
                }
                Inbox::Http { token, response } => {
                    let core = self.core();
                    let now = core.now();
                    core.timeline.push(
                        now,
                        Event::Http {
                            token,
                            response,
                            timeout: false,
                        },
                    );
                }
                Inbox::Grpc { token, reply } => {
                    let core = self.core();
                    let now = core.now();
                    let close = core
                        .callouts
                        .get(&token)
                        .is_none_or(|c| c.kind != CalloutKind::GrpcStream || reply.status != 0);
                    core.timeline.push(
                        now,
                        Event::Grpc {
                            token,
                            reply,
                            close,
                        },
                    );
                }
            }
        }
    }

    /// Fire the earliest event if due at or before `limit`. Returns false when none is.
    pub(crate) fn fire_one(&mut self, limit: u64) -> bool {
        let Some((_, ev)) = self.core().timeline.pop_due(limit) else {
            return false;
        };
        match ev {
            Event::Tick { plugin, gen } => self.fire_tick(plugin, gen),
            Event::Http {
                token,
                response,
                timeout,
            } => self.fire_http(token, response, timeout),
            Event::Grpc {
                token,
                reply,
                close,
            } => self.fire_grpc(token, reply, close),
        }
        self.run_actions();
        true
    }

    fn fire_tick(&mut self, p: usize, gen: u32) {
        let t = self.core().ticks.get(p).copied().unwrap_or_default();
        if t.gen != gen || t.period_ms == 0 || self.slots[p].vm.is_none() {
            return;
        }
        let Some(root) = self.slots[p].vm.as_ref().map(|v| v.root_ctx()) else {
            return;
        };
        self.invoke(p, CallCtx::new(CallKind::Tick, root, None), |vm| {
            vm.call_cb(|c| c.on_tick.as_ref(), root as i32, "proxy_on_tick")
                .map(|r| r.map(|_| 0))
                .unwrap_or(Ok(0))
        });
        // Re-arm after the tick (drift, no catch-up), unless the period changed meanwhile.
        let core = self.core();
        let now = core.now();
        if let Some(t) = core.ticks.get(p).copied() {
            if t.gen == gen && t.period_ms > 0 {
                core.timeline.push(
                    now + t.period_ms as u64 * 1_000_000,
                    Event::Tick { plugin: p, gen },
                );
            }
        }
    }

    fn callout_target(&mut self, token: u32, remove: bool) -> Option<(usize, u32, Option<u32>)> {
        let core = self.core();
        let c = if remove {
            core.callouts.remove(&token)?
        } else {
            core.callouts.get(&token)?.clone()
        };
        let p = c.plugin;
        if self.slots[p].generation != c.generation {
            return None;
        }
        let vm = self.slots[p].vm.as_ref()?;
        let stream = vm.store.data().ctx_streams.get(c.ctx);
        Some((p, c.ctx, stream))
    }

    fn fire_http(&mut self, token: u32, response: Option<HttpResponse>, timeout: bool) {
        let Some((p, ctx, stream)) = self.callout_target(token, true) else {
            return;
        };
        let mut call = CallCtx::new(CallKind::HttpCallResponse, ctx, stream);
        let (nh, nb, nt) = response.as_ref().map_or((0, 0, 0), |r| {
            (r.headers.len(), r.body.len(), r.trailers.len())
        });
        call.data().status = Some(match (&response, timeout) {
            (Some(_), _) => (0, Vec::new()),
            (None, true) => (11, b"timeout".to_vec()),
            (None, false) => (11, b"reset".to_vec()),
        });
        call.data().http_response = response;
        self.invoke(p, call, |vm| {
            vm.call_cb(
                |c| c.on_http_call_response.as_ref(),
                (ctx as i32, token as i32, nh as i32, nb as i32, nt as i32),
                "proxy_on_http_call_response",
            )
            .map(|r| r.map(|_| 0))
            .unwrap_or(Ok(0))
        });
    }

    fn fire_grpc(&mut self, token: u32, reply: GrpcReply, close: bool) {
        let Some((p, ctx, stream)) = self.callout_target(token, close) else {
            return;
        };
        let t = token as i32;
        let c = ctx as i32;
        if !reply.initial_metadata.is_empty() {
            let mut call = CallCtx::new(CallKind::Grpc, ctx, stream);
            let n = reply.initial_metadata.len() as i32;
            call.data().grpc_initial = Some(reply.initial_metadata.clone());
            self.invoke(p, call, |vm| {
                vm.call_cb(
                    |c| c.on_grpc_receive_initial_metadata.as_ref(),
                    (c, t, n),
                    "proxy_on_grpc_receive_initial_metadata",
                )
                .map(|r| r.map(|_| 0))
                .unwrap_or(Ok(0))
            });
        }
        if reply.status == 0 {
            let mut call = CallCtx::new(CallKind::Grpc, ctx, stream);
            let n = reply.message.len() as i32;
            call.data().grpc_message = Some(reply.message.clone());
            self.invoke(p, call, |vm| {
                vm.call_cb(
                    |c| c.on_grpc_receive.as_ref(),
                    (c, t, n),
                    "proxy_on_grpc_receive",
                )
                .map(|r| r.map(|_| 0))
                .unwrap_or(Ok(0))
            });
        }
        if !reply.trailing_metadata.is_empty() {
            let mut call = CallCtx::new(CallKind::Grpc, ctx, stream);
            let n = reply.trailing_metadata.len() as i32;
            call.data().grpc_trailing = Some(reply.trailing_metadata.clone());
            self.invoke(p, call, |vm| {
                vm.call_cb(
                    |c| c.on_grpc_receive_trailing_metadata.as_ref(),
                    (c, t, n),
                    "proxy_on_grpc_receive_trailing_metadata",
                )
                .map(|r| r.map(|_| 0))
                .unwrap_or(Ok(0))
            });
        }
        if close {
            let mut call = CallCtx::new(CallKind::GrpcClose, ctx, stream);
            call.data().status = Some((
                reply.status as u32,
                reply.status_message.clone().into_bytes(),
            ));
            let st = reply.status;
            self.invoke(p, call, |vm| {
                vm.call_cb(
                    |c| c.on_grpc_close.as_ref(),
                    (c, t, st),
                    "proxy_on_grpc_close",
                )
                .map(|r| r.map(|_| 0))
                .unwrap_or(Ok(0))
            });
        }
    }

    /// Fire everything due now (inbox first, then the timeline in time order).
    pub fn poll(&mut self) {
        for _ in 0..100_000 {
            self.drain_inbox();
            let now = self.core().now();
            if !self.fire_one(now) {
                self.drain_inbox();
                if self.core_ref().timeline.next_due().is_none_or(|t| t > now) {
                    return;
                }
            }
        }
    }

    /// Advance time by `d`, firing due events in exact time order; with a virtual clock the
    /// clock is set to each event's due time before it fires. With a real clock this sleeps.
    pub fn advance(&mut self, d: Duration) {
        let clock = self.host.inner.clock.clone();
        let target = clock.now_nanos().saturating_add(d.as_nanos() as u64);
        if !clock.set_nanos(clock.now_nanos()) {
            std::thread::sleep(d);
            self.poll();
            return;
        }
        loop {
            self.drain_inbox();
            match self.timeline_due() {
                Some(t) if t <= target => {
                    clock.set_nanos(t);
                    self.fire_one(t);
                }
                _ => break,
            }
        }
        clock.set_nanos(target);
        self.poll();
    }

    // ----- callouts answered by the test -----

    /// Outstanding HTTP callouts (answered or not yet), oldest token first.
    pub fn pending_http_calls(&self) -> Vec<HttpCallRequest> {
        let mut v: Vec<HttpCallRequest> = self
            .core_ref()
            .callouts
            .values()
            .filter_map(|c| c.http.clone())
            .collect();
        v.sort_by_key(|r| r.token);
        v
    }

    /// Outstanding gRPC calls and streams.
    pub fn pending_grpc_calls(&self) -> Vec<crate::callouts::GrpcCallRequest> {
        let mut v: Vec<_> = self
            .core_ref()
            .callouts
            .values()
            .filter_map(|c| c.grpc.clone())
            .collect();
        v.sort_by_key(|r| r.token);
        v
    }

    /// Answer an outstanding HTTP callout now (delivered before this returns).
    pub fn answer_http_call(
        &mut self,
        token: u32,
        response: HttpResponse,
    ) -> Result<(), HostError> {
        self.answer(token, Some(response))
    }

    /// Fail an outstanding HTTP callout now (the guest sees 0 headers).
    pub fn fail_http_call(&mut self, token: u32) -> Result<(), HostError> {
        self.answer(token, None)
    }

    fn answer(&mut self, token: u32, response: Option<HttpResponse>) -> Result<(), HostError> {
        let core = self.core();
        if !core.callouts.contains_key(&token) {
            return Err(HostError::UnknownCallout(token));
        }
        let now = core.now();
        core.timeline.push(
            now,
            Event::Http {
                token,
                response,
                timeout: false,
            },
        );
        self.poll();
        Ok(())
    }

    /// Answer an outstanding gRPC call or stream now.
    pub fn answer_grpc_call(&mut self, token: u32, reply: GrpcReply) -> Result<(), HostError> {
        let core = self.core();
        let Some(c) = core.callouts.get(&token) else {
            return Err(HostError::UnknownCallout(token));
        };
        let close = c.kind != CalloutKind::GrpcStream || reply.status != 0;
        let now = core.now();
        core.timeline.push(
            now,
            Event::Grpc {
                token,
                reply,
                close,
            },
        );
        self.poll();
        Ok(())
    }

    /// Shut the worker's plugins down, as Envoy does when a plugin's last handle goes away
    /// (cpp-host `~PluginHandleBase` -> `WasmBase::startShutdown(plugin_key)`, src/wasm.cc).
    /// Streams still open are reset and completed first (in Envoy the handle outlives them).
    /// Then each live root context gets `proxy_on_done`: true -> `proxy_on_delete` runs now;
    /// false -> the root context stays: its ticks, callout answers and queue notifications
    /// keep firing until the plugin calls `proxy_done` from one of them, and
    /// `proxy_on_delete` runs right after that callback (`WasmBase::done` defers it with
    /// `addAfterVmCallAction`). [`Worker::awaiting_done`] lists the plugins still waiting.
    /// Streams opened afterwards skip shut-down plugins. Calling it again does nothing more.
    pub fn shutdown(&mut self) {
        let open: Vec<StreamId> = {
            let core = self.core_ref();
            (0..core.streams.len())
                .filter(|&i| core.live[i] && !core.streams[i].complete)
                .map(|i| core.streams[i].id)
                .collect()
        };
        for id in open {
            if let Some(slot) = self.core_ref().slot_of(id) {
                if let Some(s) = self.core().stream_mut(slot) {
                    s.reset = true;
                    s.req.aborted = true;
                    s.resp.aborted = true;
                }
            }
            self.mark_resumed(id);
            let _ = self.complete(id);
        }
        for p in 0..self.slots.len() {
            if self.slots[p].shutdown != Shutdown::Running {
                continue;
            }
            let Some(root) = self.slots[p].vm.as_ref().map(Vm::root_ctx) else {
                self.slots[p].shutdown = Shutdown::Deleted;
                continue;
            };
            let r = self.invoke(p, CallCtx::new(CallKind::Done, root, None), |vm| {
                vm.call_cb(|c| c.on_done.as_ref(), root as i32, "proxy_on_done")
                    .unwrap_or(Ok(1))
            });
            match r {
                Some((0, _)) => {
                    if let Some(vm) = self.slots[p].vm.as_mut() {
                        vm.store.data_mut().pending_done.push(root);
                    }
                    self.slots[p].shutdown = Shutdown::AwaitingDone;
                }
                Some(_) => self.delete_root(p),
                None => self.slots[p].shutdown = Shutdown::Deleted,
            }
        }
        self.run_actions();
    }

    /// Chain plugins (indexes) whose root context answered false to `proxy_on_done` at
    /// [`Worker::shutdown`] and has not called `proxy_done` yet (Envoy keeps such a VM
    /// alive for it). A stream context never waits: Envoy ignores `proxy_on_done`'s result
    /// for streams.
    pub fn awaiting_done(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&p| self.slots[p].shutdown == Shutdown::AwaitingDone)
            .collect()
    }

    /// After a callback of a plugin awaiting `proxy_done`: delete its root context once the
    /// plugin called it (or drop it if the VM died meanwhile).
    fn delete_root_if_done(&mut self, p: usize) {
        let pending = match self.slots[p].vm.as_ref() {
            Some(vm) => vm.store.data().pending_done.contains(&vm.root_ctx()),
            None => false,
        };
        if !pending {
            self.delete_root(p);
        }
    }

    /// `proxy_on_delete` on the root context; the plugin then leaves the worker (its VM,
    /// timer and callouts go away).
    fn delete_root(&mut self, p: usize) {
        self.slots[p].shutdown = Shutdown::Deleted;
        if let Some(root) = self.slots[p].vm.as_ref().map(Vm::root_ctx) {
            self.invoke(p, CallCtx::new(CallKind::Delete, root, None), |vm| {
                vm.call_cb(|c| c.on_delete.as_ref(), root as i32, "proxy_on_delete")
                    .map(|r| r.map(|_| 0))
                    .unwrap_or(Ok(0))
            });
        }
        self.slots[p].vm = None;
        let core = self.core();
        if let Some(tk) = core.ticks.get_mut(p) {
            tk.gen = tk.gen.wrapping_add(1);
            tk.period_ms = 0;
        }
        core.callouts.retain(|_, c| c.plugin != p);
    }

    /// Is the VM of chain plugin `i` alive (not dead after a trap)?
    pub fn plugin_alive(&self, i: usize) -> bool {
        self.slots.get(i).is_some_and(|s| s.vm.is_some())
    }

    /// Number of events waiting on this worker's timeline.
    pub fn pending_events(&self) -> usize {
        self.core_ref().timeline.len()
    }
}

/// One draw of Envoy's `JitteredLowerBoundBackOffStrategy::nextBackOffMs`
/// (source/common/common/backoff_strategy.cc: `random % (min >> 1) + min`): a value in
/// [base, 1.5 x base) milliseconds, returned in nanoseconds.
fn backoff_draw(rng: &mut u64, base: Duration) -> u64 {
    let min = (base.as_millis() as u64).max(1);
    let half = min >> 1;
    let jitter = if half == 0 { 0 } else { splitmix(rng) % half };
    (min + jitter).saturating_mul(1_000_000)
}

/// SplitMix64 step.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Envoy's reply when a body buffered with StopIterationAndBuffer outgrows the buffer limit:
/// `ActiveStreamDecoderFilter::requestDataTooLarge` sends 413 "Payload Too Large" (details
/// `request_payload_too_large`); `ActiveStreamEncoderFilter::responseDataTooLarge` sends 500
/// "Internal Server Error" (`response_payload_too_large`), which goes directly downstream or
/// resets the stream when the response headers were already sent
/// (source/common/http/filter_manager.cc).
fn too_large_reply(response: bool, plugin: usize) -> LocalReply {
    let (status, body, details) = if response {
        (500, "Internal Server Error", "response_payload_too_large")
    } else {
        (413, "Payload Too Large", "request_payload_too_large")
    };
    LocalReply {
        status,
        headers: Headers::new(),
        body: body.as_bytes().to_vec(),
        details: details.to_string(),
        grpc_status: None,
        plugin,
    }
}

fn push_data(d: &mut crate::stream::Dir, data: &[u8], eos: bool) {
    d.body_seen = true;
    d.buf[0].extend_from_slice(data);
    d.received += data.len();
    if eos {
        d.eos.set(0, true);
    }
    if !data.is_empty() || eos {
        d.fresh.set(0, true);
    }
}

/// Envoy `failStream`: 503, gRPC UNAVAILABLE, details `wasm_fail_stream`.
fn fail_reply(plugin: usize) -> LocalReply {
    LocalReply {
        status: 503,
        headers: Headers::new(),
        body: Vec::new(),
        details: "wasm_fail_stream".to_string(),
        grpc_status: Some(14),
        plugin,
    }
}

/// The `:status` of response headers `h`: usually their first entry (a local reply's is
/// written first), else searched.
fn status_of(h: &Headers) -> Option<u32> {
    let v = match h.0.first() {
        Some((k, v)) if k == b":status" => v.as_slice(),
        _ => h.get_bytes(b":status")?,
    };
    match v {
        [a @ b'1'..=b'9', b @ b'0'..=b'9', c @ b'0'..=b'9'] => {
            Some(u32::from(a - b'0') * 100 + u32::from(b - b'0') * 10 + u32::from(c - b'0'))
        }
        _ => std::str::from_utf8(v).ok()?.parse().ok(),
    }
}

/// Fill `h` (empty) with the headers of local reply `r`: `:status`, then `asked` (the
/// plugin's, or a host-made reply's own), then what Envoy adds. Entries are taken from `pool`.
fn local_reply_headers(
    r: &LocalReply,
    asked: &Headers,
    grpc_req: bool,
    h: &mut Headers,
    pool: &mut Vec<(Vec<u8>, Vec<u8>)>,
) {
    // Written at positions 0, 1, ... into the slot's previous response entries, in their
    // order: a reply of the same shape as the last (a filter refusing every request) finds
    // every name in place.
    h.reuse_in_order(asked.len() + 2, pool);
    let mut n = 0;
    let mut put = |h: &mut Headers, k: &[u8], v: &[u8]| {
        h.set_pooled(n, k, v, pool);
        n += 1;
    };
    let mut digits = [0u8; 20];
    let grpc_reply = grpc_req && r.grpc_status.is_some();
    if grpc_reply {
        // A gRPC local reply is a trailers-only response (Envoy `Grpc::Utility`).
        put(h, b":status", b"200");
        put(h, b"content-type", b"application/grpc");
        let code = r.grpc_status.unwrap_or(2).to_string();
        put(h, b"grpc-status", code.as_bytes());
        if !r.body.is_empty() {
            put(h, b"grpc-message", &r.body);
        }
    } else {
        put(h, b":status", decimal(u64::from(r.status), &mut digits));
    }
    // Noted while copying (names are lower-case on both sides), rather than searched after.
    let (mut has_type, mut has_length) = (false, false);
    for (k, v) in &asked.0 {
        match k.as_slice() {
            b":status" => continue,
            b"content-type" => has_type = true,
            b"content-length" => has_length = true,
            _ => {}
        }
        put(h, k, v);
    }
    // Only what was written stays (the rest goes back to the pool, the entry after the last
    // written first: usually the previous reply's `content-length`).
    h.shrink_pooled(n, pool);
    if !grpc_reply && !r.body.is_empty() {
        if !has_type {
            h.add_pooled(b"content-type", b"text/plain", pool);
        }
        // Envoy sets content-length, replacing any the plugin gave (rare: then `replace`).
        if has_length {
            h.replace(b"content-length", r.body.len().to_string().as_bytes());
        } else {
            let len = decimal(r.body.len() as u64, &mut digits);
            h.add_pooled(b"content-length", len, pool);
        }
    }
}

/// `v` in decimal, written at the end of `buf`.
fn decimal(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return &buf[i..];
        }
    }
}
