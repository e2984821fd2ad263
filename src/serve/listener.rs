//! The downstream side: accept HTTP/1.1 connections (at most `max_connections` at once; more
//! wait in the kernel's backlog), give each connection to one worker in turn (as Envoy
//! balances connections, not requests), read each request whole (413 over the body limit),
//! hand it to the worker and write back what the worker answers. On shutdown it stops
//! accepting and lets open connections finish their current request.
//! Must not know about plugins or the host.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

use super::exchange::{Answer, Conn, Job};
use super::http::{collect, request_pairs, text_response, BodyError};

/// How long a client may take to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Limits of the downstream listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open connections at most.
    pub max_connections: usize,
    /// Largest request body.
    pub body_limit: usize,
}

/// Accepts until `shutdown` turns true, then waits up to `drain` for open connections.
pub async fn serve(
    listener: TcpListener,
    workers: Vec<mpsc::Sender<Job>>,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
    drain: Duration,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let next_id = AtomicU64::new(1);
    let mut turn = 0usize;
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&slots).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stopped(&mut shutdown) => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment, do not spin.
                    eprintln!("meshward serve: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut shutdown) => break,
        };
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            peer,
            local,
            id: next_id.fetch_add(1, Ordering::Relaxed),
        };
        let worker = workers[turn % workers.len()].clone();
        turn = turn.wrapping_add(1);
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, conn, worker.clone(), limits));
            let http = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(http);
            tokio::select! {
                _ = http.as_mut() => {}
                _ = stopped(&mut stop) => {
                    http.as_mut().graceful_shutdown();
                    let _ = http.await;
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(drain, slots.acquire_many(all)).await;
}

/// Completes once `rx` says true (or its sender is gone).
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Why a request ends without an answer: hyper then closes the connection.
#[derive(Debug)]
struct Reset;

impl std::fmt::Display for Reset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stream reset by a plugin")
    }
}

impl std::error::Error for Reset {}

async fn handle(
    req: Request<Incoming>,
    conn: Conn,
    worker: mpsc::Sender<Job>,
    limits: Limits,
) -> Result<Response<Full<Bytes>>, Reset> {
    let (parts, body) = req.into_parts();
    let collected = match collect(body, limits.body_limit).await {
        Ok(c) => c,
        Err(BodyError::TooLarge) => {
            return Ok(text_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Payload Too Large",
            ))
        }
        Err(BodyError::Broken(_)) => return Err(Reset),
    };
    let (tx, rx) = oneshot::channel();
    let job = Job {
        headers: request_pairs(&parts, Some(conn.peer.ip())),
        body: collected.data,
        trailers: collected.trailers,
        conn,
        reply: tx,
    };
    if worker.send(job).await.is_err() {
        return Ok(unavailable());
    }
    match rx.await {
        Ok(Answer::Response(r)) => Ok(r),
        Ok(Answer::Reset) => Err(Reset),
        Err(_) => Ok(unavailable()),
    }
}

fn unavailable() -> Response<Full<Bytes>> {
    text_response(StatusCode::SERVICE_UNAVAILABLE, "no worker available")
}
