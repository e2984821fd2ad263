//! The admin listener, a small subset of Envoy's admin interface: `GET /stats/prometheus`
//! (the host's metrics in Prometheus text format, as Envoy prints them), `GET /ready`
//! (`LIVE`), and `/` listing both. Must not know about plugins or requests.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use meshward_host::Host;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use super::http::text_response;
use super::listener::{stopped, HEADER_TIMEOUT};

/// Admin connections at once.
pub const MAX_CONNECTIONS: usize = 16;

/// Serves the admin pages until `shutdown` turns true.
pub async fn serve(listener: TcpListener, host: Host, mut shutdown: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&slots).acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = stopped(&mut shutdown) => break,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
            _ = stopped(&mut shutdown) => break,
        };
        let host = host.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let host = host.clone();
                async move { Ok::<_, Infallible>(page(&host, &req)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            drop(permit);
        });
    }
}

fn page(host: &Host, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text_response(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
    }
    match req.uri().path() {
        "/stats/prometheus" => {
            let mut r = text_response(StatusCode::OK, host.metrics().prometheus_text());
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        "/ready" => text_response(StatusCode::OK, "LIVE\n"),
        "/" => text_response(
            StatusCode::OK,
            "meshward serve admin\n  /stats/prometheus  plugin metrics (Prometheus text)\n  /ready             LIVE when serving\n",
        ),
        _ => text_response(StatusCode::NOT_FOUND, "not found; see /\n"),
    }
}
