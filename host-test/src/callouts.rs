//! Callouts to NAMED clusters (`proxy_http_call`, `proxy_grpc_call`, gRPC streams): the
//! request/response types and the `HttpHandler`/`GrpcHandler` traits the embedder registers.
//! A handler answers now, after a latency, fails, or returns Pending and answers later through
//! `Worker::answer_*` or a `Responder` (which any thread may use; the worker picks the answer up
//! on its next `poll`/`advance`, so an async network upstream can be plugged in).
//! Must not know about guests or the timeline.

use std::sync::mpsc::Sender;
use std::time::Duration;

use crate::pairs::Headers;

/// What the guest sent with `proxy_http_call`.
#[derive(Debug, Clone)]
pub struct HttpCallRequest {
    /// Cluster name.
    pub cluster: String,
    /// Headers including `:method`, `:path`, `:authority` (and `content-length` set from the
    /// body, as Envoy).
    pub headers: Headers,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Trailers.
    pub trailers: Headers,
    /// Timeout; None = no timeout (timeout_ms 0).
    pub timeout: Option<Duration>,
    /// The call token the guest got.
    pub token: u32,
    /// Plugin name.
    pub plugin: String,
    pub(crate) responder: Option<Responder>,
}

impl HttpCallRequest {
    /// A handle to answer this call later from anywhere (used with [`CalloutReply::Pending`]).
    pub fn responder(&self) -> Option<Responder> {
        self.responder.clone()
    }
    /// First value of a request header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }
}

/// An HTTP answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpResponse {
    /// Headers, `:status` included.
    pub headers: Headers,
    /// Body.
    pub body: Vec<u8>,
    /// Trailers.
    pub trailers: Headers,
}

impl HttpResponse {
    /// A response with `:status` = `status` and `body`.
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        HttpResponse {
            headers: Headers::from_pairs(&[(":status", &status.to_string())]),
            body: body.into(),
            trailers: Headers::new(),
        }
    }
    /// Add a header.
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.add(k.as_bytes(), v.as_bytes());
        self
    }
}

/// A handler's answer to an HTTP callout.
#[derive(Debug, Clone)]
pub enum CalloutReply {
    /// Deliver `response` after `after` (on the worker timeline).
    Respond {
        /// Latency.
        after: Duration,
        /// The answer.
        response: HttpResponse,
    },
    /// Fail (connection reset) after `after`: the guest sees 0 headers.
    Fail {
        /// Latency.
        after: Duration,
    },
    /// No answer yet: the test or a responder answers later (or the timeout fires).
    Pending,
}

impl CalloutReply {
    /// Respond immediately (delivered on the next `poll`).
    pub fn now(response: HttpResponse) -> Self {
        CalloutReply::Respond {
            after: Duration::ZERO,
            response,
        }
    }
}

/// Answers HTTP callouts for one cluster.
pub trait HttpHandler: Send + Sync + 'static {
    /// Called when the guest dispatches (inside `proxy_http_call`).
    fn call(&self, req: &HttpCallRequest) -> CalloutReply;
}

impl<F> HttpHandler for F
where
    F: Fn(&HttpCallRequest) -> CalloutReply + Send + Sync + 'static,
{
    fn call(&self, req: &HttpCallRequest) -> CalloutReply {
        self(req)
    }
}

/// What the guest sent with `proxy_grpc_call` or on a gRPC stream.
#[derive(Debug, Clone)]
pub struct GrpcCallRequest {
    /// Cluster name.
    pub cluster: String,
    /// Service, e.g. `envoy.service.ratelimit.v3.RateLimitService`.
    pub service: String,
    /// Method, e.g. `ShouldRateLimit`.
    pub method: String,
    /// Initial metadata.
    pub initial_metadata: Headers,
    /// The raw protobuf message bytes the guest sent (no re-encoding).
    pub message: Vec<u8>,
    /// Timeout; None = none.
    pub timeout: Option<Duration>,
    /// Token (call id or stream id).
    pub token: u32,
    /// True for messages sent on a stream (`proxy_grpc_send`).
    pub streaming: bool,
    /// Plugin name.
    pub plugin: String,
    pub(crate) responder: Option<Responder>,
}

impl GrpcCallRequest {
    /// A handle to answer later (used when the handler returns None = pending).
    pub fn responder(&self) -> Option<Responder> {
        self.responder.clone()
    }
}

/// A gRPC answer: status 0 with a message, or a non-zero status (message ignored).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrpcReply {
    /// Latency before delivery.
    pub after: Duration,
    /// gRPC status code (0 = OK).
    pub status: i32,
    /// Raw protobuf response bytes.
    pub message: Vec<u8>,
    /// Status message (read by the guest with `proxy_get_status` in `on_grpc_close`).
    pub status_message: String,
    /// Initial metadata (delivered with `on_grpc_receive_initial_metadata` when not empty).
    pub initial_metadata: Headers,
    /// Trailing metadata (delivered with `on_grpc_receive_trailing_metadata` when not empty).
    pub trailing_metadata: Headers,
}

impl GrpcReply {
    /// OK with `message`, delivered on the next poll.
    pub fn ok(message: impl Into<Vec<u8>>) -> Self {
        GrpcReply {
            message: message.into(),
            ..Default::default()
        }
    }
    /// A failed call with `status` and `status_message`.
    pub fn error(status: i32, status_message: impl Into<String>) -> Self {
        GrpcReply {
            status,
            status_message: status_message.into(),
            ..Default::default()
        }
    }
    /// Deliver after `d`.
    pub fn after(mut self, d: Duration) -> Self {
        self.after = d;
        self
    }
}

/// Answers gRPC calls for one cluster. `None` = pending (answer later).
pub trait GrpcHandler: Send + Sync + 'static {
    /// Called inside `proxy_grpc_call` / `proxy_grpc_send`.
    fn call(&self, req: &GrpcCallRequest) -> Option<GrpcReply>;
}

impl<F> GrpcHandler for F
where
    F: Fn(&GrpcCallRequest) -> Option<GrpcReply> + Send + Sync + 'static,
{
    fn call(&self, req: &GrpcCallRequest) -> Option<GrpcReply> {
        self(req)
    }
}

/// Messages a worker receives from other threads (queue notifications, late callout answers).
#[derive(Debug)]
pub(crate) enum Inbox {
    QueueReady {
        plugin: usize,
        vm_generation: u32,
        root_ctx: u32,
        token: u32,
    },
    Http {
        token: u32,
        response: Option<HttpResponse>,
    },
    Grpc {
        token: u32,
        reply: GrpcReply,
    },
}

/// Answers one pending callout from any thread; the worker applies it on its next
/// `poll`/`advance`.
#[derive(Debug, Clone)]
pub struct Responder {
    pub(crate) tx: Sender<Inbox>,
    pub(crate) token: u32,
}

impl Responder {
    /// Deliver an HTTP response.
    pub fn respond(&self, response: HttpResponse) {
        let _ = self.tx.send(Inbox::Http {
            token: self.token,
            response: Some(response),
        });
    }
    /// Fail the HTTP call (the guest sees 0 headers).
    pub fn fail(&self) {
        let _ = self.tx.send(Inbox::Http {
            token: self.token,
            response: None,
        });
    }
    /// Deliver a gRPC reply.
    pub fn grpc(&self, reply: GrpcReply) {
        let _ = self.tx.send(Inbox::Grpc {
            token: self.token,
            reply,
        });
    }
    /// The callout token.
    pub fn token(&self) -> u32 {
        self.token
    }
}
