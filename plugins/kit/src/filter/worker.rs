//! A worker's contexts: the worker-global cell they live in ([`Global`]), the tables of
//! root and stream contexts by id ([`Worker`]), and running one callback on one of them with
//! the reentrancy rules of the filter module (a running context is refused to nested
//! callbacks; one deleted while running is freed when its callback returns). Must not know
//! which callback runs or what a filter does in it.

use std::cell::UnsafeCell;
use std::ptr::NonNull;

use super::RootContext;
use crate::ids::IdMap;

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

    /// Runs `f` on the state. Every `f` in this crate is a table operation or a move that
    /// calls neither the host nor a filter and drops no context, so no other `with` on the
    /// same state can start while it runs.
    pub(crate) fn with<U>(&self, f: impl FnOnce(&mut T) -> U) -> U {
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
    pub(super) roots: Vec<(u32, NonNull<R>)>,
    pub(super) streams: IdMap<NonNull<R::Stream>>,
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
    pub(super) fn begin_stream(&mut self, id: u32) -> Option<NonNull<R::Stream>> {
        let p = *self.streams.get_mut(id)?;
        self.enter(id).then_some(p)
    }

    /// Root `id`, marked running; `None` when there is none or it is running already.
    #[inline(never)]
    pub(super) fn begin_root(&mut self, id: u32) -> Option<NonNull<R>> {
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
    pub(super) fn defer_delete(&mut self, id: u32) -> bool {
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
pub(super) unsafe fn free<C>(p: NonNull<C>) {
    // SAFETY: see the contract.
    drop(unsafe { Box::from_raw(p.as_ptr()) });
}

/// Logs a callback for a context the worker does not hold (or that is running already).
#[cold]
pub(super) fn unknown(what: &str, id: u32) {
    log::debug!("meshward: {what} for unknown or busy context {id}: default answer");
}

/// Runs `f` on context `p`, which [`Worker::begin_stream`] or [`Worker::begin_root`] marked
/// running; frees it afterwards if it was deleted meanwhile.
pub(super) fn run<R: RootContext, C, T>(
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
pub(super) fn on_stream<R: RootContext, T>(
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
pub(super) fn on_root<R: RootContext, T>(
    w: &Global<Worker<R>>,
    id: u32,
    f: impl FnOnce(&mut R) -> T,
) -> Option<T> {
    let p = w.with(|w| w.begin_root(id))?;
    Some(run(w, p, f))
}

/// Runs `stream` on `id` if it is a stream, else `root` if it is a root; `None` if neither.
pub(super) fn on_any<R: RootContext, T>(
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
