//! One HTTP request through the plugin chain and the upstream, as Envoy's connection manager
//! and router do it (buffered): request headers, body and trailers into the chain; a local
//! reply is answered, a pause is waited out (a tick, a callout answer or another request's
//! callback resumes it); then the request as the plugins left it goes upstream, and the
//! answer (or Envoy's local reply for a failed upstream) goes back through the chain to the
//! client. Runs on the worker's thread; upstream I/O runs on the I/O runtime.
//! Must not know about sockets or how requests reach the worker.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use http_body_util::Full;
use meshward_host::{HostError, StreamId, StreamProps, Worker};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::chain::Chain;
use super::http::{borrow, response, response_pairs, text_response, trailer_pairs};
use super::net::{Net, Target};
use super::upstream;

/// What every exchange of a server shares.
#[derive(Debug)]
pub struct Settings {
    /// The service behind the chain.
    pub upstream: Target,
    /// Clients and the I/O runtime.
    pub net: Arc<Net>,
    /// Longest wait for the upstream's whole answer (Envoy's route timeout).
    pub route_timeout: Duration,
    /// Longest a request may stay paused in the chain (Envoy's stream idle timeout: 408).
    pub stream_timeout: Duration,
}

/// The connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct Conn {
    /// Client address.
    pub peer: SocketAddr,
    /// Our address.
    pub local: SocketAddr,
    /// Connection number (the `connection.id` attribute).
    pub id: u64,
}

/// A request handed to a worker.
#[derive(Debug)]
pub struct Job {
    /// Headers as the chain sees them (pseudo-headers first).
    pub headers: Vec<(String, String)>,
    /// The whole body.
    pub body: Bytes,
    /// Trailers, if the client sent some.
    pub trailers: Option<HeaderMap>,
    /// Where it came from.
    pub conn: Conn,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Answer>,
}

/// What the client gets.
#[derive(Debug)]
pub enum Answer {
    /// A response.
    Response(Response<Full<Bytes>>),
    /// The stream was reset (a plugin closed it): the connection is closed without an answer.
    Reset,
}

/// Where one direction of a stream stands.
enum Stage {
    /// Paused in the chain.
    Waiting,
    /// Passed the whole chain.
    Passed,
    /// A plugin answered (status, headers, body as the client sees them).
    Local(Answer),
    /// A plugin reset the stream.
    Reset,
}

/// Why waiting stopped without an outcome.
enum Stop {
    Timeout,
    ClientGone,
}

/// Runs one request to its end; the answer goes to `job.reply` unless the client left.
pub async fn run(chain: Rc<Chain>, settings: Arc<Settings>, mut job: Job) {
    let props = StreamProps::new()
        .source_address(&job.conn.peer.to_string())
        .destination_address(&job.conn.local.to_string())
        .protocol("HTTP/1.1")
        .connection_id(job.conn.id);
    let id = chain.with(|w| w.open_http_stream(props));
    let answer = through(&chain, &settings, id, &mut job).await;
    chain.with(|w| {
        // Ends the stream as Envoy does when the exchange is over (or the client left):
        // on_done, on_log, on_delete for each plugin; the view is not needed afterwards.
        let _ = w.complete(id);
        w.release(id);
    });
    if let Some(a) = answer {
        let _ = job.reply.send(a);
    }
}

async fn through(chain: &Chain, s: &Settings, id: StreamId, job: &mut Job) -> Option<Answer> {
    let deadline = Instant::now() + s.stream_timeout;
    let (body, trailers) = (std::mem::take(&mut job.body), job.trailers.take());
    let fed = chain.with(|w| feed_request(w, id, &job.headers, &body, trailers.as_ref()));
    if let Err(e) = fed {
        return Some(host_error(e));
    }
    match wait(chain, id, false, deadline, &mut job.reply).await {
        Ok(Stage::Passed) => {}
        Ok(Stage::Local(a)) => return Some(a),
        Ok(Stage::Reset) => return Some(Answer::Reset),
        Ok(Stage::Waiting) | Err(Stop::Timeout) => return Some(stream_timeout()),
        Err(Stop::ClientGone) => return None,
    }
    let (headers, body) = chain.peek(|w| {
        w.stream(id)
            .map(|v| (v.request_headers().clone(), v.request_body().to_vec()))
    })?;
    let head = headers.get(":method") == Some("HEAD");
    let (net, target, timeout) = (Arc::clone(&s.net), s.upstream.clone(), s.route_timeout);
    let fetch = s.net.io.spawn(async move {
        upstream::send(&net.http1, &target, &headers, body, timeout, net.body_limit).await
    });
    let fetched = tokio::select! {
        r = fetch => r.unwrap_or(Err(upstream::Failure::Reset("the upstream task ended".into()))),
        _ = job.reply.closed() => return None,
    };
    let fed = chain.with(|w| match fetched {
        Ok(a) => {
            let pairs = response_pairs(a.status, &a.headers);
            let eos = a.body.is_empty() && a.trailers.is_none();
            w.response_headers(id, &borrow(&pairs), eos)?;
            if !a.body.is_empty() {
                w.response_body(id, &a.body, a.trailers.is_none())?;
            }
            if let Some(t) = &a.trailers {
                w.response_trailers(id, &borrow(&trailer_pairs(t)))?;
            }
            Ok(())
        }
        Err(failure) => {
            // Envoy's router answers locally; that answer goes through the encoder chain.
            eprintln!(
                "meshward serve: upstream {}: {failure}",
                s.upstream.authority()
            );
            let (status, text) = failure.envoy_reply();
            let pairs = [
                (":status", status.to_string()),
                ("content-type", "text/plain".to_string()),
                ("content-length", text.len().to_string()),
            ];
            let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            w.response_headers(id, &pairs, false)?;
            w.response_body(id, text.as_bytes(), true)?;
            Ok::<(), HostError>(())
        }
    });
    if let Err(e) = fed {
        return Some(host_error(e));
    }
    match wait(chain, id, true, deadline, &mut job.reply).await {
        Ok(Stage::Passed) => chain.peek(|w| downstream_response(w, id, head)),
        Ok(Stage::Local(a)) => Some(a),
        Ok(Stage::Reset) => Some(Answer::Reset),
        Ok(Stage::Waiting) | Err(Stop::Timeout) => Some(stream_timeout()),
        Err(Stop::ClientGone) => None,
    }
}

fn feed_request(
    w: &mut Worker,
    id: StreamId,
    headers: &[(String, String)],
    body: &[u8],
    trailers: Option<&HeaderMap>,
) -> Result<(), HostError> {
    let eos = body.is_empty() && trailers.is_none();
    w.request_headers(id, &borrow(headers), eos)?;
    if !body.is_empty() {
        w.request_body(id, body, trailers.is_none())?;
    }
    if let Some(t) = trailers {
        w.request_trailers(id, &borrow(&trailer_pairs(t)))?;
    }
    Ok(())
}

/// Waits until the request (`response == false`) or response direction has passed the chain,
/// a plugin answered or reset the stream, the deadline passed or the client left.
async fn wait(
    chain: &Chain,
    id: StreamId,
    response: bool,
    deadline: Instant,
    reply: &mut oneshot::Sender<Answer>,
) -> Result<Stage, Stop> {
    // Woken only when the worker reports this stream changed (not after every call).
    let waiter = chain.waiter(id);
    loop {
        let stage = chain.peek(|w| stage(w, id, response));
        if !matches!(stage, Stage::Waiting) {
            return Ok(stage);
        }
        tokio::select! {
            _ = waiter.changed() => {}
            _ = tokio::time::sleep_until(deadline) => return Err(Stop::Timeout),
            _ = reply.closed() => return Err(Stop::ClientGone),
        }
    }
}

fn stage(w: &Worker, id: StreamId, response_dir: bool) -> Stage {
    let Some(v) = w.stream(id) else {
        return Stage::Reset;
    };
    if v.reset() {
        return Stage::Reset;
    }
    if let Some(r) = v.local_reply() {
        return Stage::Local(Answer::Response(response(
            r.status,
            &r.headers,
            r.body.clone(),
        )));
    }
    let passed = if response_dir {
        v.response_paused_at().is_none() && v.response_sent()
    } else {
        v.request_paused_at().is_none() && v.forwarded_upstream()
    };
    if passed {
        Stage::Passed
    } else {
        Stage::Waiting
    }
}

/// The response as the chain left it.
fn downstream_response(w: &Worker, id: StreamId, head: bool) -> Option<Answer> {
    let v = w.stream(id)?;
    let h = v.response_headers();
    let status = h.get(":status").and_then(|s| s.parse().ok()).unwrap_or(502);
    let mut r = response(status, h, v.response_body().to_vec());
    if head {
        // A HEAD answer has no body but says how long the GET answer's would be.
        if let Some(len) = h.get("content-length").and_then(|l| l.parse::<u64>().ok()) {
            r.headers_mut()
                .insert(http::header::CONTENT_LENGTH, len.into());
        }
    }
    Some(Answer::Response(r))
}

fn stream_timeout() -> Answer {
    Answer::Response(text_response(StatusCode::REQUEST_TIMEOUT, "stream timeout"))
}

fn host_error(e: HostError) -> Answer {
    eprintln!("meshward serve: host error: {e}");
    Answer::Response(text_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Internal Server Error",
    ))
}
