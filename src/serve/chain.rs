//! One plugin worker as the async tasks of its thread share it: the host `Worker` behind a
//! `RefCell` (borrowed only between awaits, never across one), a `progress` signal raised
//! after every call into the worker (a stream paused by one request may be resumed by
//! another request's callback, a tick or a callout answer), and the driver that fires the
//! worker's timeline on the system clock. Must not know about HTTP.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use meshward_host::Worker;
use tokio::sync::Notify;

/// The shortest sleep: something due in the past right after a poll (e.g. the end of a
/// FailReload backoff, which only the next stream acts on) must not make the driver spin.
pub const MIN_SLEEP: Duration = Duration::from_millis(1);
/// The longest sleep (new events re-arm the driver at once anyway).
pub const IDLE_INTERVAL: Duration = Duration::from_secs(1);

/// A worker shared by the tasks of its thread.
pub struct Chain {
    worker: RefCell<Worker>,
    /// Raised after every call into the worker.
    progress: Notify,
    /// Raised when the timeline may have changed (the driver recomputes its sleep).
    rearm: Notify,
    /// Raised by network tasks when a callout answer is waiting in the worker's inbox.
    wake: Arc<Notify>,
}

impl Chain {
    /// Wraps `worker`; `wake` is what callout tasks notify.
    pub fn new(worker: Worker, wake: Arc<Notify>) -> Rc<Chain> {
        Rc::new(Chain {
            worker: RefCell::new(worker),
            progress: Notify::new(),
            rearm: Notify::new(),
            wake,
        })
    }

    /// Runs `f` on the worker, then tells waiting streams and the driver.
    pub fn with<R>(&self, f: impl FnOnce(&mut Worker) -> R) -> R {
        let r = f(&mut self.worker.borrow_mut());
        self.progress.notify_waiters();
        self.rearm.notify_one();
        r
    }

    /// Reads the worker.
    pub fn peek<R>(&self, f: impl FnOnce(&Worker) -> R) -> R {
        f(&self.worker.borrow())
    }

    /// A future that completes at the next `with` (registered as soon as it is created).
    pub fn progressed(&self) -> tokio::sync::futures::Notified<'_> {
        self.progress.notified()
    }

    /// Fires the worker's timeline on the system clock until the task is dropped: ticks,
    /// callout answers and timeouts, queue notifications.
    pub async fn drive(self: Rc<Self>) {
        loop {
            let sleep = next_sleep(&mut self.worker.borrow_mut());
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = self.rearm.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
            // Not `with`: that would re-arm this loop and spin.
            self.worker.borrow_mut().poll();
            self.progress.notify_waiters();
        }
    }
}

/// How long until the worker's next scheduled event (tick, callout answer or timeout, queue
/// notification), on the host's clock.
fn next_sleep(w: &mut Worker) -> Duration {
    match w.next_due() {
        None => IDLE_INTERVAL,
        Some(due) => Duration::from_nanos(due.saturating_sub(w.host().now_nanos()))
            .clamp(MIN_SLEEP, IDLE_INTERVAL),
    }
}
