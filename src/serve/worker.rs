//! A plugin worker thread, like an Envoy worker: its own host `Worker` (one VM per plugin),
//! a current-thread runtime with a `LocalSet`, the timeline driver, and one task per request
//! taken from its channel. When the channel closes it finishes the requests it holds, then
//! ends. Must not know about sockets or HTTP parsing.

use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use meshward_host::{Host, Plugin};
use tokio::sync::{mpsc, Notify};
use tokio::task::{JoinSet, LocalSet};

use super::chain::Chain;
use super::exchange::{self, Job, Settings};
use super::wake;

/// How long plugins that delay their shutdown (on_done returning false) get to call
/// proxy_done when the server stops.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

/// Requests waiting for one worker (the connection limit bounds them further).
pub const QUEUE: usize = 1024;

/// A running worker thread.
pub struct WorkerThread {
    /// Where requests go.
    pub tx: mpsc::Sender<Job>,
    thread: JoinHandle<()>,
}

impl WorkerThread {
    /// Starts worker `index`; returns once its VMs are up (or failed to start).
    pub fn spawn(
        index: usize,
        host: Host,
        plugins: Vec<Plugin>,
        settings: Arc<Settings>,
    ) -> Result<WorkerThread> {
        let (tx, rx) = mpsc::channel::<Job>(QUEUE);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<()>>();
        let thread = std::thread::Builder::new()
            .name(format!("meshward-worker-{index}"))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(anyhow!(e).context("worker runtime")));
                        return;
                    }
                };
                // Registered before the VMs start: a plugin may dispatch a callout from
                // on_vm_start or on_configure.
                let wake = Arc::new(Notify::new());
                wake::register(Arc::clone(&wake));
                let worker = match host.worker(&plugins) {
                    Ok(w) => w,
                    Err(e) => {
                        let _ = ready_tx.send(Err(anyhow!(e).context("starting the VMs")));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                LocalSet::new().block_on(&rt, serve(worker, wake, rx, settings));
            })
            .context("starting a worker thread")?;
        ready_rx
            .recv()
            .map_err(|_| anyhow!("worker {index} ended while starting"))?
            .with_context(|| format!("worker {index}"))?;
        Ok(WorkerThread { tx, thread })
    }

    /// Waits for the thread to end (after every sender of its channel is dropped).
    pub fn join(self) {
        drop(self.tx);
        let _ = self.thread.join();
    }
}

async fn serve(
    worker: meshward_host::Worker,
    wake: Arc<Notify>,
    mut rx: mpsc::Receiver<Job>,
    settings: Arc<Settings>,
) {
    let chain = Chain::new(worker, wake);
    let driver = tokio::task::spawn_local(Rc::clone(&chain).drive());
    let mut running = JoinSet::new();
    loop {
        tokio::select! {
            job = rx.recv() => match job {
                Some(job) => {
                    running.spawn_local(exchange::run(Rc::clone(&chain), Arc::clone(&settings), job));
                }
                None => break,
            },
            Some(_) = running.join_next(), if !running.is_empty() => {}
        }
    }
    while running.join_next().await.is_some() {}
    // Envoy's plugin shutdown: root contexts get on_done; those that answer false keep
    // running (ticks, callouts) until they call proxy_done, for at most SHUTDOWN_WAIT.
    chain.with(|w| w.shutdown());
    let give_up = tokio::time::Instant::now() + SHUTDOWN_WAIT;
    while chain.peek(|w| !w.awaiting_done().is_empty()) {
        let progressed = chain.progressed();
        tokio::select! {
            _ = progressed => {}
            _ = tokio::time::sleep_until(give_up) => break,
        }
    }
    driver.abort();
}
