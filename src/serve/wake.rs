//! How a network answer to a callout reaches the plugin worker that asked for it: each worker
//! thread registers its wake-up handle here; a callout handler (which the host calls on the
//! worker's own thread, inside the guest's dispatch) takes the handle of the current thread,
//! and the network task notifies it after handing the answer to the host's `Responder`.
//! Must not know about HTTP or the host.

use std::cell::RefCell;
use std::sync::Arc;

use tokio::sync::Notify;

thread_local! {
    static CURRENT: RefCell<Option<Arc<Notify>>> = const { RefCell::new(None) };
}

/// Makes `wake` the wake-up handle of this thread's plugin worker.
pub fn register(wake: Arc<Notify>) {
    CURRENT.with(|c| *c.borrow_mut() = Some(wake));
}

/// The wake-up handle of the plugin worker running on this thread, if any.
pub fn current() -> Option<Arc<Notify>> {
    CURRENT.with(|c| c.borrow().clone())
}
