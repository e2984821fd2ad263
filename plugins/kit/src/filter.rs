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
//! The parts: `worker.rs` (the contexts and running one), `dispatch.rs` (what each export
//! does), `calls.rs` (calls out and whose answer is whose), `export.rs` (the macro).
//!
//! Must not know any filter's policy; only context ids, callbacks and call tokens.

pub use log::LevelFilter;

mod calls;
mod dispatch;
mod export;
mod worker;

pub use calls::grpc_call;
pub use dispatch::*;
pub use worker::{Global, Worker};

#[cfg(test)]
mod tests;

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
