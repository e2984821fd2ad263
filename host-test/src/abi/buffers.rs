//! Buffers (`proxy_get_buffer_bytes`, `proxy_set_buffer_bytes`, `proxy_get_buffer_status`, and
//! the 0.1.0 `proxy_get_configuration`): bodies inside their windows, call/gRPC responses in
//! their callbacks, VM_CONFIGURATION in on_vm_start, PLUGIN_CONFIGURATION in on_configure.
//! set_buffer_bytes follows Envoy `Buffer::copyFrom`: start 0 drains `size` then prepends,
//! start >= len appends, anything else is BAD_ARGUMENT. Must not know about the chain's flow.

use super::{mem_state, put_u32, return_scratch, slice, status, take_scratch, Reg, C, R};
use crate::vm::{CallKind, VmState};

/// Bytes of a readable buffer: Err(status) when the type is bad, Ok(None) when unavailable.
fn read_buf(st: &VmState, t: i32) -> Result<Option<&[u8]>, i32> {
    Ok(match t {
        0..=3 => {
            // 0/1: HTTP bodies; 2/3: TCP downstream/upstream data (same buffers).
            let response = t == 1 || t == 3;
            let (Some(slot), Some(core)) = (st.call.stream, st.core.as_deref()) else {
                return Ok(None);
            };
            let Some(s) = core.stream(slot) else {
                return Ok(None);
            };
            if s.tcp != (t >= 2) {
                return Ok(None);
            }
            let pos = s.pos(response, st.plugin_index);
            let dir = if response { &s.resp } else { &s.req };
            dir.body_open(pos).then(|| dir.buf[pos].as_slice())
        }
        4 => st
            .call
            .data_ref()
            .and_then(|d| d.http_response.as_ref())
            .map(|r| r.body.as_slice()),
        5 => st.call.data_ref().and_then(|d| d.grpc_message.as_deref()),
        6 => (st.call.kind == CallKind::VmStart).then(|| st.plugin.spec.vm_config.as_slice()),
        7 => (st.call.kind == CallKind::Configure).then(|| st.plugin.spec.plugin_config.as_slice()),
        8 => st.call.data_ref().and_then(|d| d.foreign_args.as_deref()),
        _ => return Err(status::BAD_ARGUMENT),
    })
}

pub(super) fn add(r: &mut Reg) {
    r.func(
        "env",
        "proxy_get_buffer_bytes",
        |mut c: C<'_>, t: i32, start: i32, max: i32, pp: i32, sp: i32| -> R {
            let st = c.data_mut();
            let mut out = take_scratch(st);
            let start = start as u32 as usize;
            let max = max as u32 as usize;
            if start.checked_add(max).is_none() {
                st.scratch = out;
                return Ok(status::BAD_ARGUMENT);
            }
            match read_buf(st, t) {
                Err(s) => {
                    st.scratch = out;
                    return Ok(s);
                }
                Ok(None) => {
                    st.scratch = out;
                    return Ok(status::NOT_FOUND);
                }
                Ok(Some(b)) => {
                    if start < b.len() {
                        let end = b.len().min(start + max);
                        out.extend_from_slice(&b[start..end]);
                    }
                }
            }
            return_scratch(&mut c, out, pp, sp)
        },
    );
    r.func(
        "env",
        "proxy_get_buffer_status",
        |mut c: C<'_>, t: i32, len_ptr: i32, flags_ptr: i32| -> R {
            let Some((mem, st)) = mem_state(&mut c) else {
                return Ok(status::INTERNAL_FAILURE);
            };
            let len = match read_buf(st, t) {
                Err(s) => return Ok(s),
                Ok(None) => return Ok(status::NOT_FOUND),
                Ok(Some(b)) => b.len(),
            };
            Ok(
                if put_u32(mem, len_ptr, len as u32) && put_u32(mem, flags_ptr, 0) {
                    status::OK
                } else {
                    status::INVALID_MEMORY_ACCESS
                },
            )
        },
    );
    r.func(
        "env",
        "proxy_set_buffer_bytes",
        |mut c: C<'_>, t: i32, start: i32, size: i32, dp: i32, dl: i32| -> R {
            let Some((mem, st)) = mem_state(&mut c) else {
                return Ok(status::INTERNAL_FAILURE);
            };
            let Some(data) = slice(mem, dp, dl) else {
                return Ok(status::INVALID_MEMORY_ACCESS);
            };
            if !(0..=8).contains(&t) {
                return Ok(status::BAD_ARGUMENT);
            }
            if t > 3 {
                // Only bodies are writable here; the others are unavailable or read-only.
                return Ok(if read_buf(st, t).ok().flatten().is_some() {
                    status::BAD_ARGUMENT
                } else {
                    status::NOT_FOUND
                });
            }
            let response = t == 1 || t == 3;
            let plugin = st.plugin_index;
            let (Some(slot), Some(core)) = (st.call.stream, st.core.as_deref_mut()) else {
                return Ok(status::NOT_FOUND);
            };
            let Some(s) = core.stream_mut(slot) else {
                return Ok(status::NOT_FOUND);
            };
            if s.tcp != (t >= 2) {
                return Ok(status::NOT_FOUND);
            }
            let pos = s.pos(response, plugin);
            let dir = if response { &mut s.resp } else { &mut s.req };
            if !dir.body_open(pos) {
                return Ok(status::NOT_FOUND);
            }
            let buf = &mut dir.buf[pos];
            let start = start as u32 as usize;
            let size = size as u32 as usize;
            if start == 0 {
                let drain = size.min(buf.len());
                buf.splice(0..drain, data.iter().copied());
            } else if start >= buf.len() {
                buf.extend_from_slice(data);
            } else {
                return Ok(status::BAD_ARGUMENT);
            }
            Ok(status::OK)
        },
    );
    // ABI 0.1.0: the configuration of the running start-up callback.
    r.func(
        "env",
        "proxy_get_configuration",
        |mut c: C<'_>, pp: i32, sp: i32| -> R {
            let st = c.data_mut();
            let mut out = take_scratch(st);
            match st.call.kind {
                CallKind::VmStart => out.extend_from_slice(&st.plugin.spec.vm_config),
                _ => out.extend_from_slice(&st.plugin.spec.plugin_config),
            }
            return_scratch(&mut c, out, pp, sp)
        },
    );
}
