//! The guest side of the proxy-wasm callbacks, without the SDK: the traits a filter
//! implements ([`RootContext`], [`StreamContext`]), the worker's contexts ([`Worker`]: its root
//! contexts and a table of stream contexts by id), the dispatch each exported callback makes,
//! and [`crate::filter!`], which generates the exports for one root type. Everything is
//! monomorphized for the filter's types: no `Box<dyn>`, no thread-local hash lookup per
//! callback (the SDK's `dispatcher.rs` keeps every context as a `Box<dyn ...>` in a
//! thread-local `RefCell<HashMap>` per kind and looks it up on every call).
//!
//! Defined answers, never a trap: a callback for an unknown context id (or one that is busy,
//! see below) gets the default answer (Continue, `true`, nothing) and a log line; the SDK
//! panics there. Reentrancy: the host may call into the guest while a host call of the guest
//! runs (`proxy_on_memory_allocate` always, a callback in some hosts). The worker's state is
//! only touched inside [`Global::with`] for table operations that call neither the host nor
//! the filter, and a context is taken out of its table while its callback runs and put back
//! afterwards: a nested callback for the same context finds it busy (default answer), one for
//! another context works, and a delete of the running context drops it when the callback
//! returns. There is no RefCell to panic on.
//!
//! Must not know any filter's policy; only context ids, callbacks and call tokens.

use std::cell::UnsafeCell;
use std::ptr::NonNull;

pub use log::LevelFilter;

use crate::abi::{self, Status};
use crate::ids::IdMap;

/// What a stream callback tells the host (`proxy_action_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Action {
    /// Go on with the stream.
    Continue = 0,
    /// Hold the stream until it is resumed or answered.
    Pause = 1,
}

/// The plugin (root) context of a filter: configuration, timers, and the factory of its
/// stream contexts. One per plugin per VM (Envoy may share a VM between plugins, so a
/// worker keeps several, by id). Every callback has the SDK's default.
pub trait RootContext: Default + 'static {
    /// The filter's per-request context.
    type Stream: StreamContext;

    /// `proxy_on_vm_start` (the VM configuration is in buffer VM_CONFIGURATION).
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        true
    }
    /// `proxy_on_configure` (the plugin configuration is in buffer PLUGIN_CONFIGURATION);
    /// false refuses the configuration.
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        true
    }
    /// `proxy_on_tick`.
    fn on_tick(&mut self) {}
    /// `proxy_on_queue_ready`.
    fn on_queue_ready(&mut self, _queue_id: u32) {}
    /// The answer to a gRPC call this context made ([`grpc_call`]): `status` 0 with the
    /// message's `size` (buffer GRPC_RECEIVE), or the call's gRPC status and size 0.
    fn on_grpc_call_response(&mut self, _token: u32, _status: u32, _size: usize) {}
    /// `proxy_on_log`.
    fn on_log(&mut self) {}
    /// `proxy_on_done`: true when the context is done now.
    fn on_done(&mut self) -> bool {
        true
    }
    /// The context of a new stream `context_id`; `None` leaves the stream without one (every
    /// callback for it then gets the default answer).
    fn create_stream(&mut self, context_id: u32) -> Option<Self::Stream>;
}

/// An HTTP stream's context. Every callback has the SDK's default (Continue).
pub trait StreamContext: 'static {
    /// `proxy_on_request_headers`.
    fn on_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }
    /// `proxy_on_request_body`.
    fn on_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }
    /// `proxy_on_request_trailers`.
    fn on_request_trailers(&mut self, _num_trailers: usize) -> Action {
        Action::Continue
    }
    /// `proxy_on_response_headers`.
    fn on_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }
    /// `proxy_on_response_body`.
    fn on_response_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }
    /// `proxy_on_response_trailers`.
    fn on_response_trailers(&mut self, _num_trailers: usize) -> Action {
        Action::Continue
    }
    /// As [`RootContext::on_grpc_call_response`], for a call this stream made.
    fn on_grpc_call_response(&mut self, _token: u32, _status: u32, _size: usize) {}
    /// `proxy_on_log`.
    fn on_log(&mut self) {}
    /// `proxy_on_done`: true when the context is done now.
    fn on_done(&mut self) -> bool {
        true
    }
}

/// Worker-global state in a VM. `Sync` only where nothing can run concurrently: a proxy-wasm
/// VM runs one thread and wasm32-wasip1 without the atomics feature cannot start another.
pub struct Global<T>(UnsafeCell<T>);

// SAFETY: see the type's doc; other builds never put a Global in a static.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
unsafe impl<T> Sync for Global<T> {}

impl<T> Global<T> {
    /// `value`, as worker-global state.
    pub const fn new(value: T) -> Self {
        Self(UnsafeCell::new(value))
    }

    /// Runs `f` on the state. Every `f` in this module is a table operation that calls
    /// neither the host nor a filter and drops no context, so no other `with` on the same
    /// state can start while it runs.
    fn with<U>(&self, f: impl FnOnce(&mut T) -> U) -> U {
        // SAFETY: single-threaded (see the Sync impl), and not reentered (see above): this
        // is the only reference to the state while `f` runs.
        f(unsafe { &mut *self.0.get() })
    }
}

/// Callbacks running at once (a callback and the ones nested in it): deeper nesting gets the
/// default answer.
const MAX_DEPTH: usize = 8;

/// A context whose callback is running, and whether it was deleted meanwhile.
#[derive(Clone, Copy)]
struct Running {
    id: u32,
    deleted: bool,
}

/// A worker's contexts: its root contexts and its streams, each a heap block owned through
/// a raw pointer (made by `Box::into_raw`, freed by `Box::from_raw` exactly once), so the
/// tables can move and grow while a context's callback runs without touching the context.
/// The contexts whose callbacks are running are kept in `running`: a nested callback for one
/// of them is refused, and deleting one only takes it out of its table; it is freed when its
/// callback returns. One table lookup per callback.
pub struct Worker<R: RootContext> {
    roots: Vec<(u32, NonNull<R>)>,
    streams: IdMap<NonNull<R::Stream>>,
    running: [Running; MAX_DEPTH],
    depth: usize,
}

impl<R: RootContext> Default for Worker<R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<R: RootContext> Drop for Worker<R> {
    fn drop(&mut self) {
        // No callback runs while the worker is dropped, so every context is ours to free.
        for (_, r) in self.roots.drain(..) {
            // SAFETY: made by Box::into_raw in `context_create`, freed only here or in `free`.
            drop(unsafe { Box::from_raw(r.as_ptr()) });
        }
        for s in self.streams.drain() {
            // SAFETY: as above.
            drop(unsafe { Box::from_raw(s.as_ptr()) });
        }
    }
}

impl<R: RootContext> Worker<R> {
    /// No contexts yet.
    pub const fn new() -> Self {
        Self {
            roots: Vec::new(),
            streams: IdMap::new(),
            running: [Running {
                id: 0,
                deleted: false,
            }; MAX_DEPTH],
            depth: 0,
        }
    }

    fn root(&self, id: u32) -> Option<NonNull<R>> {
        self.roots.iter().find(|(k, _)| *k == id).map(|(_, r)| *r)
    }

    /// Stream `id`, marked running; `None` when there is none or it is running already.
    /// One per worker type (not per callback): the lookup and `enter` are inlined here only.
    #[inline(never)]
    fn begin_stream(&mut self, id: u32) -> Option<NonNull<R::Stream>> {
        let p = *self.streams.get_mut(id)?;
        self.enter(id).then_some(p)
    }

    /// Root `id`, marked running; `None` when there is none or it is running already.
    #[inline(never)]
    fn begin_root(&mut self, id: u32) -> Option<NonNull<R>> {
        let p = self.root(id)?;
        self.enter(id).then_some(p)
    }

    /// Marks `id` running; false when it already is (or nesting is too deep).
    #[inline(always)]
    fn enter(&mut self, id: u32) -> bool {
        let depth = self.depth;
        let busy = depth > 0
            && self
                .running
                .get(..depth)
                .is_none_or(|r| r.iter().any(|r| r.id == id));
        match self.running.get_mut(depth) {
            Some(slot) if !busy => {
                *slot = Running { id, deleted: false };
                self.depth = depth + 1;
                true
            }
            _ => false,
        }
    }

    /// Ends the innermost running callback: true when its context was deleted meanwhile.
    #[inline(always)]
    fn leave(&mut self) -> bool {
        self.depth = self.depth.saturating_sub(1);
        self.running.get(self.depth).is_some_and(|r| r.deleted)
    }

    /// Marks `id` deleted if its callback is running (then it is freed by `leave`'s caller).
    fn defer_delete(&mut self, id: u32) -> bool {
        let depth = self.depth;
        match self
            .running
            .get_mut(..depth)
            .and_then(|r| r.iter_mut().find(|r| r.id == id))
        {
            Some(r) => {
                r.deleted = true;
                true
            }
            None => false,
        }
    }
}

/// Frees a context made by `Box::into_raw`.
///
/// # Safety
/// `p` came from `Box::into_raw`, is in no table any more and no callback of it runs.
unsafe fn free<C>(p: NonNull<C>) {
    // SAFETY: see the contract.
    drop(unsafe { Box::from_raw(p.as_ptr()) });
}

/// Logs a callback for a context the worker does not hold (or that is running already).
#[cold]
fn unknown(what: &str, id: u32) {
    log::debug!("meshward: {what} for unknown or busy context {id}: default answer");
}

/// Runs `f` on context `p`, which [`Worker::begin_stream`] or [`Worker::begin_root`] marked
/// running; frees it afterwards if it was deleted meanwhile.
fn run<R: RootContext, C, T>(
    w: &Global<Worker<R>>,
    p: NonNull<C>,
    f: impl FnOnce(&mut C) -> T,
) -> T {
    // SAFETY: `p` is a live context (in its table, or deleted while running, which defers
    // its free to the end of that callback); it is marked running, so no other `&mut` to it
    // is made until `leave` (a nested callback for it is refused by `enter`).
    let out = f(unsafe { &mut *p.as_ptr() });
    if w.with(|w| w.leave()) {
        // SAFETY: deleted during its callback: out of its table, and the callback is over.
        unsafe { free(p) };
    }
    out
}

/// Runs `f` on stream `id`; `missing` (and a log line) when there is none.
fn on_stream<R: RootContext, T>(
    w: &Global<Worker<R>>,
    id: u32,
    what: &str,
    missing: T,
    f: impl FnOnce(&mut R::Stream) -> T,
) -> T {
    match w.with(|w| w.begin_stream(id)) {
        Some(p) => run(w, p, f),
        None => {
            unknown(what, id);
            missing
        }
    }
}

/// Runs `f` on root `id`; `None` when there is none.
fn on_root<R: RootContext, T>(
    w: &Global<Worker<R>>,
    id: u32,
    f: impl FnOnce(&mut R) -> T,
) -> Option<T> {
    let p = w.with(|w| w.begin_root(id))?;
    Some(run(w, p, f))
}

/// Runs `stream` on `id` if it is a stream, else `root` if it is a root; `None` if neither.
fn on_any<R: RootContext, T>(
    w: &Global<Worker<R>>,
    id: u32,
    stream: impl FnOnce(&mut R::Stream) -> T,
    root: impl FnOnce(&mut R) -> T,
) -> Option<T> {
    match w.with(|w| w.begin_stream(id)) {
        Some(p) => Some(run(w, p, stream)),
        None => on_root(w, id, root),
    }
}

// ---- The dispatch of each export (called by the code `filter!` generates). ----

/// `_initialize`: the module's constructors (as the SDK's `main!` runs them), then the log
/// facade at `level`.
#[doc(hidden)]
pub fn initialize(level: LevelFilter) {
    #[cfg(target_os = "wasi")]
    {
        extern "C" {
            fn __wasm_call_ctors();
        }
        // SAFETY: the linker's constructor list, run once by the host's `_initialize` call.
        unsafe { __wasm_call_ctors() };
    }
    crate::logger::install(level);
}

/// `proxy_on_context_create`: a root context when `parent` is 0, else a stream of root
/// `parent`. An id already in use gets the new context (the old one is dropped).
#[doc(hidden)]
pub fn context_create<R: RootContext>(w: &Global<Worker<R>>, id: u32, parent: u32) {
    if parent == 0 {
        let root = NonNull::from(Box::leak(Box::new(R::default())));
        let old = w.with(|w| {
            let old = match w.roots.iter_mut().find(|(k, _)| *k == id) {
                Some((_, r)) => std::mem::replace(r, root),
                None => {
                    w.roots.push((id, root));
                    return None;
                }
            };
            (!w.defer_delete(id)).then_some(old)
        });
        if let Some(old) = old {
            // SAFETY: out of its table and not running.
            unsafe { free(old) };
        }
        return;
    }
    match on_root(w, parent, |r| r.create_stream(id)) {
        Some(Some(s)) => {
            let s = NonNull::from(Box::leak(Box::new(s)));
            let old = w.with(|w| {
                let old = w.streams.insert(id, s)?;
                (!w.defer_delete(id)).then_some(old)
            });
            if let Some(old) = old {
                // SAFETY: out of its table and not running.
                unsafe { free(old) };
            }
        }
        Some(None) => log::debug!("meshward: no context for stream {id} (root {parent})"),
        None => unknown("context_create", parent),
    }
}

macro_rules! stream_callbacks {
    ($( $export:ident => $method:ident ( $($arg:ident : $ty:ty),* ); )*) => {$(
        #[doc(hidden)]
        pub fn $export<R: RootContext>(w: &Global<Worker<R>>, id: u32, $($arg: $ty),*) -> u32 {
            on_stream(w, id, stringify!($export), Action::Continue, |s| s.$method($($arg),*))
                as u32
        }
    )*};
}

stream_callbacks! {
    request_headers => on_request_headers(n: usize, end: bool);
    request_body => on_request_body(n: usize, end: bool);
    request_trailers => on_request_trailers(n: usize);
    response_headers => on_response_headers(n: usize, end: bool);
    response_body => on_response_body(n: usize, end: bool);
    response_trailers => on_response_trailers(n: usize);
}

/// `proxy_on_vm_start`: true when there is no such root (as the SDK's default root).
#[doc(hidden)]
pub fn vm_start<R: RootContext>(w: &Global<Worker<R>>, id: u32, size: usize) -> bool {
    on_root(w, id, |r| r.on_vm_start(size)).unwrap_or_else(|| {
        unknown("vm_start", id);
        true
    })
}

/// `proxy_on_configure`: false when there is no such root (nothing could be configured).
#[doc(hidden)]
pub fn configure<R: RootContext>(w: &Global<Worker<R>>, id: u32, size: usize) -> bool {
    on_root(w, id, |r| r.on_configure(size)).unwrap_or_else(|| {
        unknown("configure", id);
        false
    })
}

/// `proxy_on_tick`.
#[doc(hidden)]
pub fn tick<R: RootContext>(w: &Global<Worker<R>>, id: u32) {
    if on_root(w, id, |r| r.on_tick()).is_none() {
        unknown("tick", id);
    }
}

/// `proxy_on_queue_ready`.
#[doc(hidden)]
pub fn queue_ready<R: RootContext>(w: &Global<Worker<R>>, id: u32, queue: u32) {
    if on_root(w, id, |r| r.on_queue_ready(queue)).is_none() {
        unknown("queue_ready", id);
    }
}

/// `proxy_on_log`.
#[doc(hidden)]
pub fn log<R: RootContext>(w: &Global<Worker<R>>, id: u32) {
    if on_any(w, id, |s| s.on_log(), |r| r.on_log()).is_none() {
        unknown("log", id);
    }
}

/// `proxy_on_done`: true (done) for an unknown context.
#[doc(hidden)]
pub fn done<R: RootContext>(w: &Global<Worker<R>>, id: u32) -> bool {
    on_any(w, id, |s| s.on_done(), |r| r.on_done()).unwrap_or_else(|| {
        unknown("done", id);
        true
    })
}

/// `proxy_on_delete`: the context is freed (when its callback returns, if one is running).
#[doc(hidden)]
pub fn delete<R: RootContext>(w: &Global<Worker<R>>, id: u32) {
    enum Gone<R: RootContext> {
        Stream(NonNull<R::Stream>),
        Root(NonNull<R>),
        Deferred,
        Unknown,
    }
    let gone = w.with(|w| {
        let gone = if let Some(s) = w.streams.remove(id) {
            Gone::Stream(s)
        } else if let Some(i) = w.roots.iter().position(|(k, _)| *k == id) {
            Gone::Root(w.roots.swap_remove(i).1)
        } else {
            return Gone::Unknown;
        };
        if w.defer_delete(id) {
            Gone::Deferred
        } else {
            gone
        }
    });
    if !matches!(gone, Gone::Unknown) {
        forget_calls(id);
    }
    match gone {
        // SAFETY: out of its table and not running.
        Gone::Stream(p) => unsafe { free(p) },
        // SAFETY: as above.
        Gone::Root(p) => unsafe { free(p) },
        Gone::Deferred => {}
        Gone::Unknown => unknown("delete", id),
    }
}

/// `proxy_on_grpc_receive` / `proxy_on_grpc_close`: the answer to call `token`, delivered
/// to the context that made it (as the SDK does: `status` 0 and the message size, or the
/// close status and 0), after making it the host's effective context. A token already
/// answered (the close after a message) or never made here is ignored.
#[doc(hidden)]
pub fn grpc_answer<R: RootContext>(w: &Global<Worker<R>>, token: u32, status: u32, size: usize) {
    let Some(id) = calls(|c| c.remove(token)) else {
        return;
    };
    if let Err(s) = abi::set_effective_context(id) {
        log::debug!("meshward: gRPC answer for context {id}: effective context {s:?}");
    }
    let answered = on_any(
        w,
        id,
        |s| s.on_grpc_call_response(token, status, size),
        |r| r.on_grpc_call_response(token, status, size),
    );
    if answered.is_none() {
        unknown("grpc answer", id);
    }
}

// ---- Calls out. ----

/// Forgets the calls context `id` still waits for: Envoy cancels a deleted context's calls
/// without an answer, so their tokens would otherwise stay in the table for good (one per
/// client that went away while the rate limit service was asked). A late answer for one of
/// them is then ignored like any unknown token.
fn forget_calls(id: u32) {
    calls(|c| {
        if c.is_empty() {
            return;
        }
        // Usually none: an answered call has left already (collecting none allocates nothing).
        let mine: Vec<u32> = c
            .iter()
            .filter(|(_, owner)| **owner == id)
            .map(|(token, _)| token)
            .collect();
        for token in mine {
            c.remove(token);
        }
    });
}

/// Calls in flight: token to the id of the context that made the call.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
fn calls<T>(f: impl FnOnce(&mut IdMap<u32>) -> T) -> T {
    static CALLS: Global<IdMap<u32>> = Global::new(IdMap::new());
    CALLS.with(f)
}

/// Calls in flight: token to the id of the context that made the call.
#[cfg(not(all(target_arch = "wasm32", not(target_feature = "atomics"))))]
fn calls<T>(f: impl FnOnce(&mut IdMap<u32>) -> T) -> T {
    thread_local! {
        static CALLS: Global<IdMap<u32>> = const { Global::new(IdMap::new()) };
    }
    CALLS.with(|c| c.with(f))
}

/// A unary gRPC call for context `context_id` (`proxy_grpc_call`, no initial metadata); its
/// answer arrives as that context's `on_grpc_call_response`. The call's token.
pub fn grpc_call(
    context_id: u32,
    upstream: &str,
    service: &str,
    method: &str,
    message: &[u8],
    timeout_ms: u32,
) -> Result<u32, Status> {
    /// An empty map, serialized (a zero count), as the SDK sends one.
    const NO_METADATA: &[u8] = &[0; 4];
    let token = abi::grpc_call(
        upstream.as_bytes(),
        service.as_bytes(),
        method.as_bytes(),
        NO_METADATA,
        message,
        timeout_ms,
    )?;
    calls(|c| c.insert(token, context_id));
    Ok(token)
}

/// Generates a filter's proxy-wasm exports for root context type `$root` (a [`RootContext`]),
/// with `log` lines up to `$level` (default `Debug`) sent to the host. The worker's state is a
/// static on single-threaded wasm; elsewhere (a filter's native unit tests, which never call
/// the exports) a thread-local, so the same code compiles everywhere.
#[macro_export]
macro_rules! filter {
    ($root:ty) => {
        $crate::filter!($root, $crate::filter::LevelFilter::Debug);
    };
    ($root:ty, $level:expr) => {
        const _: () = {
            use $crate::filter as kit;
            type W = kit::Global<kit::Worker<$root>>;

            #[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
            fn worker<T>(f: impl FnOnce(&W) -> T) -> T {
                static WORKER: W = kit::Global::new(kit::Worker::new());
                f(&WORKER)
            }
            #[cfg(not(all(target_arch = "wasm32", not(target_feature = "atomics"))))]
            fn worker<T>(f: impl FnOnce(&W) -> T) -> T {
                ::std::thread_local! {
                    static WORKER: W = const { kit::Global::new(kit::Worker::new()) };
                }
                WORKER.with(f)
            }

            #[no_mangle]
            pub extern "C" fn _initialize() {
                kit::initialize($level)
            }
            #[no_mangle]
            pub extern "C" fn proxy_abi_version_0_2_1() {}
            #[no_mangle]
            pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
                $crate::abi::allocate(size)
            }
            #[no_mangle]
            pub extern "C" fn proxy_on_context_create(id: u32, parent: u32) {
                worker(|w| kit::context_create(w, id, parent))
            }
            #[no_mangle]
            pub extern "C" fn proxy_on_vm_start(id: u32, size: usize) -> bool {
                worker(|w| kit::vm_start(w, id, size))
            }
            #[no_mangle]
            pub extern "C" fn proxy_on_configure(id: u32, size: usize) -> bool {
                worker(|w| kit::configure(w, id, size))
            }
            #[no_mangle]
            pub extern "C" fn proxy_on_tick(id: u32) {
                worker(|w| kit::tick(w, id))
            }
            #[no_mangle]
            pub extern "C" fn proxy_on_queue_ready(id: u32, queue: u32) {
                worker(|w| kit::queue_ready(w, id, queue))
            }
            #[no_mangle]
            pub extern "C" fn proxy_on_request_headers(id: u32, n: usize, end: u32) -> u32 {
                worker(|w| kit::request_headers(w, id, n, end != 0))
            }
            #[no_mangle]
            pub extern "C" fn proxy_on_request_body(id: u32, n: usize, end: u32) -> u32 {
                worker(|w| kit::request_body(w, id, n, end != 0))
            }
            #[no_mangle]
            pub extern "C" fn proxy_on_request_trailers(id: u32, n: usize) -> u32 {
                worker(|w| kit::request_trailers(w, id, n))
            }
            #[no_mangle]
            pub extern "C" fn proxy_on_response_headers(id: u32, n: usize, end: u32) -> u32 {
                worker(|w| kit::response_headers(w, id, n, end != 0))
            }
            #[no_mangle]
            pub extern "C" fn proxy_on_response_body(id: u32, n: usize, end: u32) -> u32 {
                worker(|w| kit::response_body(w, id, n, end != 0))
            }
            #[no_mangle]
            pub extern "C" fn proxy_on_response_trailers(id: u32, n: usize) -> u32 {
                worker(|w| kit::response_trailers(w, id, n))
            }
            #[no_mangle]
            pub extern "C" fn proxy_on_log(id: u32) {
                worker(|w| kit::log(w, id))
            }
            #[no_mangle]
            pub extern "C" fn proxy_on_done(id: u32) -> bool {
                worker(|w| kit::done(w, id))
            }
            #[no_mangle]
            pub extern "C" fn proxy_on_delete(id: u32) {
                worker(|w| kit::delete(w, id))
            }
            #[no_mangle]
            pub extern "C" fn proxy_on_http_call_response(
                _root: u32,
                _token: u32,
                _headers: usize,
                _body: usize,
                _trailers: usize,
            ) {
                // No HTTP calls are made through kit: nothing waits for an answer.
            }
            #[no_mangle]
            pub extern "C" fn proxy_on_grpc_receive_initial_metadata(_: u32, _: u32, _: usize) {
                // Unary calls only: the metadata is not read (as the SDK for a call).
            }
            #[no_mangle]
            pub extern "C" fn proxy_on_grpc_receive(_root: u32, token: u32, size: usize) {
                worker(|w| kit::grpc_answer(w, token, 0, size))
            }
            #[no_mangle]
            pub extern "C" fn proxy_on_grpc_receive_trailing_metadata(_: u32, _: u32, _: usize) {
                // Unary calls only: the metadata is not read (as the SDK for a call).
            }
            #[no_mangle]
            pub extern "C" fn proxy_on_grpc_close(_root: u32, token: u32, status: u32) {
                worker(|w| kit::grpc_answer(w, token, status, 0))
            }
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    type Seen = Rc<RefCell<Vec<String>>>;

    #[derive(Default)]
    struct TestRoot {
        seen: Seen,
        configured: bool,
    }

    struct TestStream {
        id: u32,
        seen: Seen,
    }

    thread_local! {
        static W: Global<Worker<TestRoot>> = const { Global::new(Worker::new()) };
    }

    fn w<T>(f: impl FnOnce(&Global<Worker<TestRoot>>) -> T) -> T {
        W.with(f)
    }

    impl RootContext for TestRoot {
        type Stream = TestStream;
        fn on_configure(&mut self, size: usize) -> bool {
            self.configured = size > 0;
            self.configured
        }
        fn create_stream(&mut self, id: u32) -> Option<TestStream> {
            self.configured.then(|| TestStream {
                id,
                seen: Rc::clone(&self.seen),
            })
        }
    }

    impl StreamContext for TestStream {
        fn on_request_headers(&mut self, n: usize, _end: bool) -> Action {
            self.seen
                .borrow_mut()
                .push(format!("{} headers {n}", self.id));
            match n {
                // Re-enter for this very stream (busy), and for stream 3.
                99 => {
                    let again = w(|w| request_headers(w, self.id, 1, true));
                    let other = w(|w| request_headers(w, 3, 2, true));
                    self.seen
                        .borrow_mut()
                        .push(format!("nested {again} {other}"));
                }
                // Delete this stream while it runs.
                98 => w(|w| delete(w, self.id)),
                _ => {}
            }
            Action::Pause
        }
        fn on_grpc_call_response(&mut self, token: u32, status: u32, size: usize) {
            let line = format!("{} grpc {token} {status} {size}", self.id);
            self.seen.borrow_mut().push(line);
        }
        fn on_done(&mut self) -> bool {
            self.seen.borrow_mut().push(format!("{} done", self.id));
            false
        }
    }

    fn seen() -> Vec<String> {
        w(|w| {
            w.with(|w| {
                w.roots
                    .first()
                    // SAFETY: a live root, read while no callback runs.
                    .map(|(_, r)| unsafe { r.as_ref() }.seen.borrow().clone())
            })
        })
        .unwrap_or_default()
    }

    #[test]
    fn callbacks_reach_their_context_and_unknown_ids_get_defaults() {
        w(|w| {
            context_create(w, 1, 0);
            assert!(vm_start(w, 1, 0));
            assert!(!configure(w, 9, 10), "no root 9");
            assert!(configure(w, 1, 10));
            context_create(w, 2, 1);
            context_create(w, 3, 1);
            context_create(w, 4, 7);
            assert_eq!(request_headers(w, 2, 5, false), Action::Pause as u32);
            assert_eq!(request_headers(w, 4, 5, false), Action::Continue as u32);
            assert_eq!(response_headers(w, 2, 1, false), Action::Continue as u32);
            assert!(!done(w, 2));
            assert!(done(w, 4), "unknown: done");
            assert!(done(w, 1), "root default");
            delete(w, 2);
            assert_eq!(request_headers(w, 2, 5, false), Action::Continue as u32);
            tick(w, 1);
            log(w, 3);
            grpc_answer(w, 12345, 0, 3);
        });
        assert_eq!(seen(), ["2 headers 5", "2 done"]);
    }

    #[test]
    fn a_nested_callback_finds_its_own_context_busy_and_others_free() {
        w(|w| {
            context_create(w, 1, 0);
            assert!(configure(w, 1, 1));
            context_create(w, 2, 1);
            context_create(w, 3, 1);
            assert_eq!(request_headers(w, 2, 99, true), Action::Pause as u32);
            // Still there afterwards.
            assert_eq!(request_headers(w, 2, 5, true), Action::Pause as u32);
            // Deleted while running: gone afterwards, no panic.
            assert_eq!(request_headers(w, 3, 98, true), Action::Pause as u32);
            assert_eq!(request_headers(w, 3, 5, true), Action::Continue as u32);
        });
        assert_eq!(
            seen(),
            [
                "2 headers 99",
                "3 headers 2",
                "nested 0 1",
                "2 headers 5",
                "3 headers 98"
            ]
        );
    }

    #[test]
    fn a_grpc_answer_goes_to_the_caller_once() {
        // Natively the host refuses the call, so nothing is registered.
        assert_eq!(
            grpc_call(2, "rls", "svc", "m", b"", 10),
            Err(Status::UNIMPLEMENTED)
        );
        calls(|c| c.insert(77, 2));
        calls(|c| c.insert(78, 5));
        calls(|c| c.insert(79, 2));
        w(|w| {
            context_create(w, 1, 0);
            assert!(configure(w, 1, 1));
            context_create(w, 2, 1);
            grpc_answer(w, 77, 0, 10);
            grpc_answer(w, 77, 14, 0);
            grpc_answer(w, 78, 0, 1);
            grpc_answer(w, 79, 14, 0);
        });
        assert!(calls(|c| c.is_empty()));
        assert_eq!(seen(), ["2 grpc 77 0 10", "2 grpc 79 14 0"]);
    }

    #[test]
    fn a_deleted_context_leaves_no_call_behind() {
        calls(|c| c.insert(41, 2));
        calls(|c| c.insert(42, 3));
        calls(|c| c.insert(43, 2));
        w(|w| {
            context_create(w, 1, 0);
            assert!(configure(w, 1, 1));
            context_create(w, 2, 1);
            context_create(w, 3, 1);
            // Stream 2 goes away with two calls in flight that will never be answered.
            delete(w, 2);
            assert_eq!(calls(|c| c.len()), 1, "only stream 3's call is left");
            // A late answer for a forgotten call reaches nobody.
            grpc_answer(w, 41, 0, 1);
            grpc_answer(w, 42, 0, 2);
        });
        assert!(calls(|c| c.is_empty()));
        assert_eq!(seen(), ["3 grpc 42 0 2"]);
    }
}
