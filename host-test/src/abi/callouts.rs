//! `proxy_http_call`, `proxy_grpc_call`, `proxy_grpc_stream/send/cancel/close` and
//! `proxy_get_status`, with Envoy's checks (unknown cluster: BAD_ARGUMENT for HTTP,
//! PARSE_FAILURE for gRPC; missing :method/:path/:authority: BAD_ARGUMENT; negative timeout:
//! BAD_ARGUMENT; 0 = no timeout). The handler is asked inside the call; its answer (or the
//! timeout) is put on the worker timeline. Must not know how answers are delivered.

use std::time::Duration;

use super::{mem_state, put_u32, return_scratch, slice, status, take_scratch, Reg, C, R};
use crate::callouts::{CalloutReply, GrpcCallRequest, GrpcReply, HttpCallRequest, Responder};
use crate::pairs::{self, Headers};
use crate::worker_core::{Callout, CalloutKind, Event};

fn ms(timeout: i32) -> Option<Duration> {
    (timeout > 0).then(|| Duration::from_millis(timeout as u64))
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos() as u64
}

pub(super) fn add(r: &mut Reg) {
    r.func(
        "env",
        "proxy_http_call",
        |mut c: C<'_>,
         up: i32,
         ul: i32,
         hp: i32,
         hl: i32,
         bp: i32,
         bl: i32,
         tp: i32,
         tl: i32,
         timeout: i32,
         out: i32|
         -> R {
            let Some((mem, st)) = mem_state(&mut c) else {
                return Ok(status::INTERNAL_FAILURE);
            };
            let (Some(up), Some(h), Some(body), Some(tr)) = (
                slice(mem, up, ul),
                slice(mem, hp, hl),
                slice(mem, bp, bl),
                slice(mem, tp, tl),
            ) else {
                return Ok(status::INVALID_MEMORY_ACCESS);
            };
            let cluster = String::from_utf8_lossy(up).into_owned();
            let Some(handler) = st.host.http_clusters.get(&cluster).cloned() else {
                return Ok(status::BAD_ARGUMENT);
            };
            let (Ok(h), Ok(tr)) = (pairs::deserialize(h), pairs::deserialize(tr)) else {
                return Ok(status::BAD_ARGUMENT);
            };
            let mut headers = Headers(h);
            if [":method", ":path", ":authority"]
                .iter()
                .any(|k| headers.get_bytes(k.as_bytes()).is_none())
            {
                return Ok(status::BAD_ARGUMENT);
            }
            if timeout < 0 {
                return Ok(status::BAD_ARGUMENT);
            }
            if !body.is_empty() {
                headers.replace(b"content-length", body.len().to_string().as_bytes());
            }
            let body = body.to_vec();
            let plugin = st.plugin_index;
            let generation = st.generation;
            let ctx = st.call.effective;
            let pname = st.plugin.spec.name.clone();
            let Some(core) = st.core.as_deref_mut() else {
                return Ok(status::INTERNAL_FAILURE);
            };
            let token = core.token();
            if !put_u32(mem, out, token) {
                return Ok(status::INVALID_MEMORY_ACCESS);
            }
            let req = HttpCallRequest {
                cluster: cluster.clone(),
                headers,
                body,
                trailers: Headers(tr),
                timeout: ms(timeout),
                token,
                plugin: pname,
                responder: Some(Responder {
                    tx: core.inbox.clone(),
                    token,
                }),
            };
            let answer = handler.call(&req);
            let now = core.now();
            let limit = ms(timeout).map(nanos);
            let (after, response) = match answer {
                CalloutReply::Respond { after, response } => (Some(nanos(after)), Some(response)),
                CalloutReply::Fail { after } => (Some(nanos(after)), None),
                CalloutReply::Pending => (None, None),
            };
            match (after, limit) {
                (Some(a), Some(l)) if a >= l => core.timeline.push(
                    now + l,
                    Event::Http {
                        token,
                        response: None,
                        timeout: true,
                    },
                ),
                (Some(a), _) => core.timeline.push(
                    now + a,
                    Event::Http {
                        token,
                        response,
                        timeout: false,
                    },
                ),
                (None, Some(l)) => core.timeline.push(
                    now + l,
                    Event::Http {
                        token,
                        response: None,
                        timeout: true,
                    },
                ),
                (None, None) => {}
            }
            core.callouts.insert(
                token,
                Callout {
                    plugin,
                    generation,
                    ctx,
                    kind: CalloutKind::Http,
                    http: Some(req),
                    grpc: None,
                },
            );
            Ok(status::OK)
        },
    );
    r.func(
        "env",
        "proxy_grpc_call",
        |mut c: C<'_>,
         up: i32,
         ul: i32,
         sp: i32,
         sl: i32,
         mp: i32,
         ml: i32,
         ip: i32,
         il: i32,
         gp: i32,
         gl: i32,
         timeout: i32,
         out: i32|
         -> R {
            grpc_open(
                &mut c,
                [up, ul, sp, sl, mp, ml, ip, il],
                Some((gp, gl)),
                timeout,
                out,
            )
        },
    );
    r.func(
        "env",
        "proxy_grpc_stream",
        |mut c: C<'_>,
         up: i32,
         ul: i32,
         sp: i32,
         sl: i32,
         mp: i32,
         ml: i32,
         ip: i32,
         il: i32,
         out: i32|
         -> R { grpc_open(&mut c, [up, ul, sp, sl, mp, ml, ip, il], None, 0, out) },
    );
    r.func(
        "env",
        "proxy_grpc_send",
        |mut c: C<'_>, token: i32, mp: i32, ml: i32, end: i32| -> R {
            let Some((mem, st)) = mem_state(&mut c) else {
                return Ok(status::INTERNAL_FAILURE);
            };
            let Some(msg) = slice(mem, mp, ml) else {
                return Ok(status::INVALID_MEMORY_ACCESS);
            };
            let msg = msg.to_vec();
            let host = st.host.clone();
            let Some(core) = st.core.as_deref_mut() else {
                return Ok(status::INTERNAL_FAILURE);
            };
            let token = token as u32;
            let Some(call) = core.callouts.get(&token) else {
                return Ok(status::NOT_FOUND);
            };
            if call.kind != CalloutKind::GrpcStream {
                return Ok(status::BAD_ARGUMENT);
            }
            let Some(mut req) = call.grpc.clone() else {
                return Ok(status::INTERNAL_FAILURE);
            };
            let Some(handler) = host.grpc_clusters.get(&req.cluster).cloned() else {
                return Ok(status::NOT_FOUND);
            };
            req.message = msg;
            req.streaming = true;
            if let Some(reply) = handler.call(&req) {
                let now = core.now();
                let due = now + nanos(reply.after);
                let close = end != 0 || reply.status != 0;
                core.timeline.push(
                    due,
                    Event::Grpc {
                        token,
                        reply,
                        close,
                    },
                );
            }
            Ok(status::OK)
        },
    );
    for name in ["proxy_grpc_cancel", "proxy_grpc_close"] {
        r.func("env", name, |mut c: C<'_>, token: i32| -> R {
            let Some(core) = c.data_mut().core() else {
                return Ok(status::INTERNAL_FAILURE);
            };
            match core.callouts.remove(&(token as u32)) {
                Some(_) => Ok(status::OK),
                None => Ok(status::NOT_FOUND),
            }
        });
    }
    r.func(
        "env",
        "proxy_get_status",
        |mut c: C<'_>, code_ptr: i32, pp: i32, sp: i32| -> R {
            let Some((mem, st)) = mem_state(&mut c) else {
                return Ok(status::INTERNAL_FAILURE);
            };
            let (code, msg) = st
                .call
                .data_ref()
                .and_then(|d| d.status.clone())
                .unwrap_or((0, Vec::new()));
            if !put_u32(mem, code_ptr, code) {
                return Ok(status::INVALID_MEMORY_ACCESS);
            }
            let mut out = take_scratch(st);
            out.extend_from_slice(&msg);
            return_scratch(&mut c, out, pp, sp)
        },
    );
}

fn grpc_open(c: &mut C<'_>, p: [i32; 8], msg: Option<(i32, i32)>, timeout: i32, out: i32) -> R {
    let Some((mem, st)) = mem_state(c) else {
        return Ok(status::INTERNAL_FAILURE);
    };
    let (Some(up), Some(svc), Some(method), Some(md)) = (
        slice(mem, p[0], p[1]),
        slice(mem, p[2], p[3]),
        slice(mem, p[4], p[5]),
        slice(mem, p[6], p[7]),
    ) else {
        return Ok(status::INVALID_MEMORY_ACCESS);
    };
    let message = match msg {
        Some((mp, ml)) => match slice(mem, mp, ml) {
            Some(m) => m.to_vec(),
            None => return Ok(status::INVALID_MEMORY_ACCESS),
        },
        None => Vec::new(),
    };
    let cluster = String::from_utf8_lossy(up).into_owned();
    let service = String::from_utf8_lossy(svc).into_owned();
    let method = String::from_utf8_lossy(method).into_owned();
    let Some(handler) = st.host.grpc_clusters.get(&cluster).cloned() else {
        return Ok(status::PARSE_FAILURE);
    };
    let Ok(md) = pairs::deserialize(md) else {
        return Ok(status::BAD_ARGUMENT);
    };
    if timeout < 0 {
        return Ok(status::BAD_ARGUMENT);
    }
    let plugin = st.plugin_index;
    let generation = st.generation;
    let ctx = st.call.effective;
    let pname = st.plugin.spec.name.clone();
    let Some(core) = st.core.as_deref_mut() else {
        return Ok(status::INTERNAL_FAILURE);
    };
    let token = core.token();
    if !put_u32(mem, out, token) {
        return Ok(status::INVALID_MEMORY_ACCESS);
    }
    let streaming = msg.is_none();
    let req = GrpcCallRequest {
        cluster: cluster.clone(),
        service,
        method,
        initial_metadata: Headers(md),
        message,
        timeout: ms(timeout),
        token,
        streaming,
        plugin: pname,
        responder: Some(Responder {
            tx: core.inbox.clone(),
            token,
        }),
    };
    if !streaming {
        let now = core.now();
        let limit = ms(timeout).map(nanos);
        match (handler.call(&req), limit) {
            (Some(r), Some(l)) if nanos(r.after) >= l => core.timeline.push(
                now + l,
                Event::Grpc {
                    token,
                    reply: GrpcReply::error(4, "timeout"),
                    close: true,
                },
            ),
            (Some(r), _) => core.timeline.push(
                now + nanos(r.after),
                Event::Grpc {
                    token,
                    reply: r,
                    close: true,
                },
            ),
            (None, Some(l)) => core.timeline.push(
                now + l,
                Event::Grpc {
                    token,
                    reply: GrpcReply::error(4, "timeout"),
                    close: true,
                },
            ),
            (None, None) => {}
        }
    }
    core.callouts.insert(
        token,
        Callout {
            plugin,
            generation,
            ctx,
            kind: if streaming {
                CalloutKind::GrpcStream
            } else {
                CalloutKind::Grpc
            },
            http: None,
            grpc: Some(req),
        },
    );
    Ok(status::OK)
}
