//! Forwarding one buffered request to an HTTP/1.1 address and reading the answer whole, with
//! Envoy's outcomes when that fails: connection failure or reset before headers → 503 with
//! Envoy's text, no answer within the route timeout → 504 `upstream request timeout`, an
//! answer larger than the buffer → 500. Used for the upstream service and for HTTP callouts.
//! Must not know about plugins or workers.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::Full;
use meshward_host::Headers;

use super::http::{collect, copy_headers, BodyError};
use super::net::{HttpClient, Target};

/// An answer read whole.
#[derive(Debug)]
pub struct Answer {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
    /// Trailers, if any.
    pub trailers: Option<HeaderMap>,
}

/// Why there is no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The request could not be built from the headers (e.g. a bad `:path`).
    BadRequest(String),
    /// No connection.
    Connect(String),
    /// The connection ended before a whole answer.
    Reset(String),
    /// No answer in time.
    Timeout,
    /// The answer was larger than the body limit.
    TooLarge,
}

impl Failure {
    /// The local reply Envoy's router sends for this failure: status and body.
    pub fn envoy_reply(&self) -> (u16, String) {
        match self {
            Failure::BadRequest(_) => (400, "Bad Request".into()),
            Failure::Connect(_) => (
                503,
                "upstream connect error or disconnect/reset before headers. reset reason: connection failure".into(),
            ),
            Failure::Reset(_) => (
                503,
                "upstream connect error or disconnect/reset before headers. reset reason: connection termination".into(),
            ),
            Failure::Timeout => (504, "upstream request timeout".into()),
            Failure::TooLarge => (500, "Internal Server Error".into()),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::BadRequest(e) => write!(f, "cannot build the request: {e}"),
            Failure::Connect(e) => write!(f, "connection failure: {e}"),
            Failure::Reset(e) => write!(f, "connection reset: {e}"),
            Failure::Timeout => f.write_str("timeout"),
            Failure::TooLarge => f.write_str("response larger than the body limit"),
        }
    }
}

/// Sends `headers` (`:method`, `:path`, `:authority` and the rest) and `body` to `target`
/// and reads the answer, all within `timeout`.
pub async fn send(
    client: &HttpClient,
    target: &Target,
    headers: &Headers,
    body: Vec<u8>,
    timeout: Duration,
    body_limit: usize,
) -> Result<Answer, Failure> {
    let req = build(target, headers, body)?;
    let exchange = async {
        let resp = client.request(req).await.map_err(|e| {
            let msg = error_chain(&e);
            if e.is_connect() {
                Failure::Connect(msg)
            } else {
                Failure::Reset(msg)
            }
        })?;
        let (parts, body) = resp.into_parts();
        let collected = collect(body, body_limit).await.map_err(|e| match e {
            BodyError::TooLarge => Failure::TooLarge,
            BodyError::Broken(m) => Failure::Reset(m),
        })?;
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body: collected.data,
            trailers: collected.trailers,
        })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or(Err(Failure::Timeout))
}

/// The request (request trailers are not sent: a buffered body goes with a length, and
/// HTTP/1.1 trailers need a chunked body).
fn build(
    target: &Target,
    headers: &Headers,
    body: Vec<u8>,
) -> Result<Request<Full<Bytes>>, Failure> {
    let bad = |e: &dyn std::fmt::Display| Failure::BadRequest(e.to_string());
    let method = Method::from_bytes(headers.get(":method").unwrap_or("GET").as_bytes())
        .map_err(|e| bad(&e))?;
    let uri = target
        .uri(headers.get(":path").unwrap_or("/"))
        .map_err(|e| bad(&e))?;
    let authority = headers.get(":authority").unwrap_or(target.authority());
    let mut req = Request::new(Full::new(Bytes::from(body)));
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    copy_headers(headers, req.headers_mut());
    if let Ok(host) = HeaderValue::from_str(authority) {
        req.headers_mut().insert(http::header::HOST, host);
    }
    Ok(req)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}
