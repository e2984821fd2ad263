//! What each exported callback does (called by the code [`crate::filter!`] generates): find
//! the context, run its callback, and answer by default (and log) when there is none. Must
//! not know any filter's policy.

use std::ptr::NonNull;

use super::calls::{calls, forget_calls};
use super::worker::{free, on_any, on_root, on_stream, unknown, Global, Worker};
use super::{Action, LevelFilter, RootContext, StreamContext};
use crate::abi;

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
