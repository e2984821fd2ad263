//! One plugin worker as the async tasks of its thread share it: the host `Worker` behind a
//! `RefCell` (borrowed only between awaits, never across one), a wake-up per waiting stream
//! raised when the worker reports that stream changed (a stream paused by one request may be
//! resumed by another request's callback, a tick or a callout answer: `Worker::take_resumed`),
//! a `progress` signal raised after every call into the worker (for whoever watches the
//! worker as a whole), and the driver that fires the worker's timeline on the system clock.
//! Must not know about HTTP.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use meshward_host::{StreamId, Worker};
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
    /// One wake-up per stream a task waits on: only streams the worker reports changed are
    /// woken, not every waiting stream after every call.
    waiters: RefCell<HashMap<StreamId, Rc<Notify>>>,
    /// Scratch for `Worker::take_resumed`.
    resumed: RefCell<Vec<StreamId>>,
}

/// A stream's registration in [`Chain`]: woken when the worker changes that stream;
/// unregistered when dropped.
pub struct StreamWaiter<'a> {
    chain: &'a Chain,
    id: StreamId,
    notify: Rc<Notify>,
}

impl StreamWaiter<'_> {
    /// Completes when the worker changed the stream since the last wake-up (a change that
    /// came before this call completes it at once: `Notify` keeps one permit).
    pub async fn changed(&self) {
        self.notify.notified().await
    }
}

impl Drop for StreamWaiter<'_> {
    fn drop(&mut self) {
        self.chain.waiters.borrow_mut().remove(&self.id);
    }
}

impl Chain {
    /// Wraps `worker`; `wake` is what callout tasks notify.
    pub fn new(mut worker: Worker, wake: Arc<Notify>) -> Rc<Chain> {
        worker.watch_resumed();
        Rc::new(Chain {
            worker: RefCell::new(worker),
            progress: Notify::new(),
            rearm: Notify::new(),
            wake,
            waiters: RefCell::new(HashMap::new()),
            resumed: RefCell::new(Vec::new()),
        })
    }

    /// Runs `f` on the worker, then tells the streams it changed and the driver.
    pub fn with<R>(&self, f: impl FnOnce(&mut Worker) -> R) -> R {
        let r = f(&mut self.worker.borrow_mut());
        self.notify_changed();
        self.rearm.notify_one();
        r
    }

    /// Registers a task waiting on stream `id` (one waiter per stream).
    pub fn waiter(&self, id: StreamId) -> StreamWaiter<'_> {
        let notify = Rc::new(Notify::new());
        self.waiters.borrow_mut().insert(id, Rc::clone(&notify));
        StreamWaiter {
            chain: self,
            id,
            notify,
        }
    }

    /// Wakes the waiters of the streams the worker changed, then whoever watches progress.
    fn notify_changed(&self) {
        let mut changed = self.resumed.borrow_mut();
        self.worker.borrow_mut().take_resumed(&mut changed);
        let waiters = self.waiters.borrow();
        for id in changed.iter() {
            if let Some(n) = waiters.get(id) {
                n.notify_one();
            }
        }
        self.progress.notify_waiters();
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
            self.notify_changed();
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
