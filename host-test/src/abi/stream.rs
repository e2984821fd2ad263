//! Stream control from the guest: `proxy_continue_stream`, `proxy_close_stream`,
//! `proxy_send_local_response`, `proxy_set_effective_context`, `proxy_done`, and the 0.1.0
//! `proxy_continue_request/response`, `proxy_clear_route_cache`. Effects are queued as
//! after-call actions (Envoy `addAfterVmCallAction`); a local reply also forces the running
//! callback's result to Stop. Must not know how the worker applies the actions.

use super::{mem_state, slice, status, Reg, C, R};
use crate::logs::LogLevel;
use std::sync::Arc;

use crate::pairs;
use crate::vm::VmState;
use crate::worker_core::Action;

/// Longest serialized local-reply header map a stream slot keeps to recognise the next one.
pub(crate) const REPLY_RAW_KEPT: usize = 4096;

fn continue_stream(st: &mut VmState, t: i32) -> i32 {
    let response = match t {
        0 => false,
        1 => true,
        // Envoy: DOWNSTREAM continues reading on a network filter (a no-op for HTTP);
        // UPSTREAM is UNIMPLEMENTED.
        2 => false,
        3 => return status::UNIMPLEMENTED,
        _ => return status::BAD_ARGUMENT,
    };
    let plugin = st.plugin_index;
    if let (Some(slot), Some(core)) = (st.call.stream, st.core.as_deref_mut()) {
        let tcp = core.stream(slot).is_some_and(|s| s.tcp);
        if (t == 2) != tcp {
            return status::OK;
        }
        core.actions.push(Action::Continue {
            slot,
            plugin,
            response,
        });
    }
    // A root context has no stream: nothing to continue (Envoy returns Ok).
    status::OK
}

pub(super) fn add(r: &mut Reg) {
    r.func(
        "env",
        "proxy_continue_stream",
        |mut c: C<'_>, t: i32| -> R { Ok(continue_stream(c.data_mut(), t)) },
    );
    r.func("env", "proxy_continue_request", |mut c: C<'_>| -> R {
        Ok(continue_stream(c.data_mut(), 0))
    });
    r.func("env", "proxy_continue_response", |mut c: C<'_>| -> R {
        Ok(continue_stream(c.data_mut(), 1))
    });
    r.func("env", "proxy_clear_route_cache", |_c: C<'_>| -> R {
        Ok(status::OK)
    });
    r.func("env", "proxy_close_stream", |mut c: C<'_>, t: i32| -> R {
        let st = c.data_mut();
        match t {
            0 | 1 => {
                if let (Some(slot), Some(core)) = (st.call.stream, st.core.as_deref_mut()) {
                    core.actions.push(Action::Close { slot });
                }
                Ok(status::OK)
            }
            2 | 3 => Ok(status::UNIMPLEMENTED),
            _ => Ok(status::BAD_ARGUMENT),
        }
    });
    r.func(
        "env",
        "proxy_send_local_response",
        |mut c: C<'_>,
         code: i32,
         dp: i32,
         dl: i32,
         bp: i32,
         bl: i32,
         hp: i32,
         hl: i32,
         grpc: i32|
         -> R {
            crate::batch::bail(&mut c);
            let Some((mem, st)) = mem_state(&mut c) else {
                return Ok(status::INTERNAL_FAILURE);
            };
            let (Some(details), Some(body), Some(hdrs)) =
                (slice(mem, dp, dl), slice(mem, bp, bl), slice(mem, hp, hl))
            else {
                return Ok(status::INVALID_MEMORY_ACCESS);
            };
            let plugin = st.plugin_index;
            let Some(slot) = st.call.stream else {
                return Ok(status::BAD_ARGUMENT);
            };
            let Some(core) = st.core.as_deref_mut() else {
                return Ok(status::INTERNAL_FAILURE);
            };
            let Some(s) = core.stream_mut(slot) else {
                return Ok(status::BAD_ARGUMENT);
            };
            if s.local_reply_sent {
                // A second local reply (e.g. from the response callbacks the first one runs
                // through) is refused: in Envoy it hangs the client (envoy#28826).
                st.log(
                    LogLevel::Warn,
                    "proxy_send_local_response refused: a local reply was already sent".into(),
                );
                return Ok(status::BAD_ARGUMENT);
            }
            // The plugin's headers go to the slot's own map for them (`HttpStream::reply_asked`,
            // the same shape reply after reply: nothing renamed or allocated), and are not
            // parsed again when their bytes are the slot's last reply's (a filter refusing a
            // burst). The reply record is the slot's spare one when it has one (see
            // `HttpStream::spare_reply`).
            if s.reply_asked_raw.is_empty() || hdrs != s.reply_asked_raw.as_slice() {
                s.reply_asked_raw.clear();
                if pairs::deserialize_into(hdrs, &mut s.reply_asked, &mut s.reply_pool).is_err() {
                    return Ok(status::BAD_ARGUMENT);
                }
                if hdrs.len() <= REPLY_RAW_KEPT {
                    s.reply_asked_raw.extend_from_slice(hdrs);
                }
            }
            let mut reply = s.spare_reply.take().unwrap_or_default();
            let Some(r) = Arc::get_mut(&mut reply) else {
                return Ok(status::INTERNAL_FAILURE);
            };
            s.local_reply_sent = true;
            r.status = code as u32;
            r.body.clear();
            r.body.extend_from_slice(body);
            r.details.clear();
            match std::str::from_utf8(details) {
                // The usual details (ASCII, no whitespace) as they are, in one copy.
                Ok(d) if d.bytes().all(|b| b.is_ascii_graphic()) => r.details.push_str(d),
                _ => r
                    .details
                    .extend(String::from_utf8_lossy(details).chars().map(|ch| {
                        if ch.is_whitespace() {
                            '_'
                        } else {
                            ch
                        }
                    })),
            }
            r.grpc_status = (0..=16).contains(&grpc).then_some(grpc);
            r.plugin = plugin;
            core.actions.push(Action::LocalReply {
                slot,
                reply,
                asked: true,
            });
            st.call.local_reply_sent = true;
            Ok(status::OK)
        },
    );
    r.func(
        "env",
        "proxy_set_effective_context",
        |mut c: C<'_>, id: i32| -> R {
            crate::batch::bail(&mut c);
            let st = c.data_mut();
            let id = id as u32;
            if id == st.root_ctx {
                st.call.effective = id;
                st.call.stream = None;
                return Ok(status::OK);
            }
            match st.ctx_streams.get(id) {
                Some(slot) => {
                    st.call.effective = id;
                    st.call.stream = Some(slot);
                    Ok(status::OK)
                }
                None => Ok(status::BAD_ARGUMENT),
            }
        },
    );
    r.func("env", "proxy_done", |mut c: C<'_>| -> R {
        let st = c.data_mut();
        let id = st.call.effective;
        match st.pending_done.iter().position(|&x| x == id) {
            Some(i) => {
                st.pending_done.swap_remove(i);
                Ok(status::OK)
            }
            None => Ok(status::NOT_FOUND),
        }
    });
}
