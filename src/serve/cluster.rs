//! Named clusters reached over the network: `--cluster NAME=http://host:port` becomes an
//! `HttpHandler` (HTTP/1.1, `:method`/`:path`/`:authority` from the plugin's pseudo-headers)
//! and a `GrpcHandler` (HTTP/2 prior knowledge, `POST /<service>/<method>` with the plugin's
//! protobuf bytes in one length-prefixed frame, status from `grpc-status`/`grpc-message`).
//! Each call runs on the I/O runtime; its answer goes to the host's `Responder` and then
//! wakes the worker that dispatched it. A call never outlives the plugin's timeout (or
//! `MAX_CALL` when it gave none). Must not know about plugin internals or request streams.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::Full;
use meshward_host::{
    CalloutReply, GrpcCallRequest, GrpcHandler, GrpcReply, Headers, HttpCallRequest, HttpHandler,
    HttpResponse,
};

use super::grpc::{self, code};
use super::http::{collect, BodyError};
use super::net::{Net, Target};
use super::upstream;
use super::wake;

/// The longest a callout without a timeout may take.
pub const MAX_CALL: Duration = Duration::from_secs(60);

/// Parses `NAME=http://host:port`.
pub fn parse(spec: &str) -> Result<(String, Target)> {
    let Some((name, url)) = spec.split_once('=') else {
        bail!("--cluster `{spec}`: expected NAME=http://host:port");
    };
    if name.is_empty() {
        bail!("--cluster `{spec}`: the cluster name is empty");
    }
    Ok((name.to_string(), Target::parse(url)?))
}

/// HTTP callouts to one cluster.
pub struct HttpCluster {
    /// Where the cluster is.
    pub target: Target,
    /// Clients and runtime.
    pub net: Arc<Net>,
}

impl HttpHandler for HttpCluster {
    fn call(&self, req: &HttpCallRequest) -> CalloutReply {
        let (Some(responder), Some(wake)) = (req.responder(), wake::current()) else {
            // Not dispatched from a serving worker (e.g. the configuration check VM).
            return CalloutReply::Fail {
                after: Duration::ZERO,
            };
        };
        let net = Arc::clone(&self.net);
        let target = self.target.clone();
        let headers = req.headers.clone();
        let body = req.body.clone();
        let timeout = req.timeout.unwrap_or(MAX_CALL).min(MAX_CALL);
        let cluster = req.cluster.clone();
        self.net.io.spawn(async move {
            let answer =
                upstream::send(&net.http1, &target, &headers, body, timeout, net.body_limit).await;
            match answer {
                Ok(a) => responder.respond(http_response(a)),
                Err(e) => {
                    eprintln!("meshward serve: HTTP callout to cluster `{cluster}` failed: {e}");
                    responder.fail();
                }
            }
            wake.notify_one();
        });
        CalloutReply::Pending
    }
}

fn http_response(a: upstream::Answer) -> HttpResponse {
    let mut r = HttpResponse::new(a.status.as_u16(), a.body.to_vec());
    r.headers = headers_of(Some(a.status), &a.headers);
    if let Some(t) = &a.trailers {
        r.trailers = headers_of(None, t);
    }
    r
}

fn headers_of(status: Option<StatusCode>, map: &HeaderMap) -> Headers {
    let mut h = Headers::new();
    if let Some(s) = status {
        h.add(b":status", s.as_str().as_bytes());
    }
    for (k, v) in map {
        h.add(k.as_str().as_bytes(), v.as_bytes());
    }
    h
}

/// gRPC callouts to one cluster.
pub struct GrpcCluster {
    /// Where the cluster is.
    pub target: Target,
    /// Clients and runtime.
    pub net: Arc<Net>,
}

impl GrpcHandler for GrpcCluster {
    fn call(&self, req: &GrpcCallRequest) -> Option<GrpcReply> {
        if req.streaming {
            return Some(GrpcReply::error(
                code::UNIMPLEMENTED,
                "meshward serve does not support gRPC streams to clusters",
            ));
        }
        let (Some(responder), Some(wake)) = (req.responder(), wake::current()) else {
            return Some(GrpcReply::error(
                code::UNAVAILABLE,
                "no serving worker for this call",
            ));
        };
        let net = Arc::clone(&self.net);
        let target = self.target.clone();
        let call = req.clone();
        self.net.io.spawn(async move {
            let reply = unary(&net, &target, &call).await;
            if reply.status != 0 {
                eprintln!(
                    "meshward serve: gRPC call {}/{} to cluster `{}`: status {} {}",
                    call.service, call.method, call.cluster, reply.status, reply.status_message
                );
            }
            responder.grpc(reply);
            wake.notify_one();
        });
        None
    }
}

/// One unary call over HTTP/2: the reply as the plugin will see it.
async fn unary(net: &Net, target: &Target, call: &GrpcCallRequest) -> GrpcReply {
    let timeout = call.timeout.unwrap_or(MAX_CALL).min(MAX_CALL);
    let req = match grpc_request(target, call, timeout) {
        Ok(r) => r,
        Err(e) => return GrpcReply::error(code::INTERNAL, e),
    };
    let exchange = async {
        let resp = match net.h2c.request(req).await {
            Ok(r) => r,
            Err(e) => return GrpcReply::error(code::UNAVAILABLE, e.to_string()),
        };
        let (parts, body) = resp.into_parts();
        let collected = match collect(body, net.body_limit).await {
            Ok(c) => c,
            Err(BodyError::TooLarge) => {
                return GrpcReply::error(code::INTERNAL, "response larger than the body limit")
            }
            Err(BodyError::Broken(m)) => return GrpcReply::error(code::UNAVAILABLE, m),
        };
        reply_of(
            parts.status,
            &parts.headers,
            &collected.data,
            collected.trailers,
        )
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(r) => r,
        Err(_) => GrpcReply::error(code::DEADLINE_EXCEEDED, "deadline exceeded"),
    }
}

fn grpc_request(
    target: &Target,
    call: &GrpcCallRequest,
    timeout: Duration,
) -> Result<Request<Full<Bytes>>, String> {
    let uri = target
        .uri(&format!("/{}/{}", call.service, call.method))
        .map_err(|e| format!("bad service or method name: {e}"))?;
    let mut req = Request::new(Full::new(Bytes::from(grpc::frame(&call.message))));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = uri;
    let h = req.headers_mut();
    for (k, v) in &call.initial_metadata.0 {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(k),
            HeaderValue::from_bytes(v.as_slice()),
        ) {
            h.append(name, value);
        }
    }
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert(http::header::TE, HeaderValue::from_static("trailers"));
    if let Ok(v) = HeaderValue::from_str(&grpc::timeout_header(timeout)) {
        h.insert("grpc-timeout", v);
    }
    Ok(req)
}

/// The reply from an HTTP/2 answer: `grpc-status` from the trailers, or from the headers of
/// a trailers-only answer; a non-200 HTTP status maps to a gRPC code.
fn reply_of(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    trailers: Option<HeaderMap>,
) -> GrpcReply {
    if status != StatusCode::OK {
        return GrpcReply::error(
            grpc::code_for_http_status(status.as_u16()),
            format!("HTTP status {status}"),
        );
    }
    let source = match &trailers {
        Some(t) if t.contains_key("grpc-status") => t,
        _ => headers,
    };
    let Some(grpc_status) = source
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i32>().ok())
    else {
        return GrpcReply::error(code::INTERNAL, "the answer carries no grpc-status");
    };
    let status_message = source
        .get("grpc-message")
        .map(|v| grpc::decode_message(v.as_bytes()))
        .unwrap_or_default();
    let mut reply = GrpcReply {
        status: grpc_status,
        status_message,
        initial_metadata: headers_of(None, headers),
        trailing_metadata: trailers
            .as_ref()
            .map(|t| headers_of(None, t))
            .unwrap_or_default(),
        ..GrpcReply::default()
    };
    if grpc_status == 0 {
        match grpc::unframe(body) {
            Ok(m) => reply.message = m.unwrap_or_default().to_vec(),
            Err(e) => return GrpcReply::error(code::INTERNAL, e.to_string()),
        }
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn cluster_flags_name_a_plain_http_address() {
        let (name, t) = parse("outbound|8081||rls.svc=http://127.0.0.1:8081").unwrap();
        assert_eq!(name, "outbound|8081||rls.svc");
        assert_eq!(t.authority(), "127.0.0.1:8081");
        assert!(parse("rls")
            .unwrap_err()
            .to_string()
            .contains("NAME=http://"));
        assert!(parse("=http://a:1").is_err());
    }

    #[test]
    fn replies_read_status_from_trailers_or_a_trailers_only_answer() {
        let body = grpc::frame(b"\x08\x01");
        let ok = reply_of(
            StatusCode::OK,
            &map(&[("content-type", "application/grpc")]),
            &body,
            Some(map(&[("grpc-status", "0")])),
        );
        assert_eq!(ok.status, 0);
        assert_eq!(ok.message, b"\x08\x01");
        let only = reply_of(
            StatusCode::OK,
            &map(&[("grpc-status", "8"), ("grpc-message", "too%20many")]),
            b"",
            None,
        );
        assert_eq!((only.status, only.status_message.as_str()), (8, "too many"));
        assert_eq!(
            reply_of(
                StatusCode::SERVICE_UNAVAILABLE,
                &HeaderMap::new(),
                b"",
                None
            )
            .status,
            code::UNAVAILABLE
        );
        assert_eq!(
            reply_of(StatusCode::OK, &HeaderMap::new(), &body, None).status,
            code::INTERNAL
        );
        let bad = reply_of(
            StatusCode::OK,
            &HeaderMap::new(),
            &body[..4],
            Some(map(&[("grpc-status", "0")])),
        );
        assert_eq!(bad.status, code::INTERNAL);
    }
}
