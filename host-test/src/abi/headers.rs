//! Header/trailer/metadata maps (`proxy_*_header_map_*`) with Envoy's exact statuses (§4.6):
//! keys lower-cased, first value only from get_header_map_value, BAD_ARGUMENT for an
//! unavailable map (NOT_FOUND in the access-log phase), OK + empty from get_header_map_pairs,
//! NOT_FOUND for a missing key (OK + empty for 0.1.0 guests), trailers creatable from a body
//! callback at end of stream. Must not know about the chain's flow.

use super::{mem_state, put_u32, return_scratch, slice, status, take_scratch, Reg, C, R};
use crate::pairs::{self, Headers};
use crate::vm::VmState;

enum Which {
    Stream { response: bool, trailers: bool },
    GrpcInitial,
    GrpcTrailing,
    CallHeaders,
    CallTrailers,
}

fn which(t: i32) -> Option<Which> {
    Some(match t {
        0 => Which::Stream {
            response: false,
            trailers: false,
        },
        1 => Which::Stream {
            response: false,
            trailers: true,
        },
        2 => Which::Stream {
            response: true,
            trailers: false,
        },
        3 => Which::Stream {
            response: true,
            trailers: true,
        },
        4 => Which::GrpcInitial,
        5 => Which::GrpcTrailing,
        6 => Which::CallHeaders,
        7 => Which::CallTrailers,
        _ => return None,
    })
}

/// The map for reading: Err(status) for a bad type, Ok(None) when unavailable.
pub(crate) fn read_map(st: &VmState, t: i32) -> Result<Option<&Headers>, i32> {
    let w = which(t).ok_or(status::BAD_ARGUMENT)?;
    Ok(match w {
        Which::GrpcInitial => st.call.data_ref().and_then(|d| d.grpc_initial.as_ref()),
        Which::GrpcTrailing => st.call.data_ref().and_then(|d| d.grpc_trailing.as_ref()),
        Which::CallHeaders => st
            .call
            .data_ref()
            .and_then(|d| d.http_response.as_ref())
            .map(|r| &r.headers),
        Which::CallTrailers => st
            .call
            .data_ref()
            .and_then(|d| d.http_response.as_ref())
            .map(|r| &r.trailers),
        Which::Stream { response, trailers } => {
            let (Some(slot), Some(core)) = (st.call.stream, st.core.as_deref()) else {
                return Ok(None);
            };
            let Some(s) = core.stream(slot) else {
                return Ok(None);
            };
            let pos = s.pos(response, st.plugin_index);
            let dir = if response { &s.resp } else { &s.req };
            match (trailers, s.in_log) {
                (false, true) => dir.started.then_some(&dir.headers),
                (true, true) => dir.trailers.as_ref(),
                (false, false) => dir.headers_open(pos).then_some(&dir.headers),
                (true, false) => {
                    if dir.trailers_open(pos) {
                        dir.trailers.as_ref()
                    } else {
                        None
                    }
                }
            }
        }
    })
}

/// The map for writing: Err(status) for a bad type, Ok(None) when unavailable or read-only.
fn write_map(st: &mut VmState, t: i32) -> Result<Option<&mut Headers>, i32> {
    Ok(write_map_pooled(st, t)?.map(|(m, _)| m))
}

/// The map `t` names, writable by the current plugin, and (for a headers map) the stream
/// direction's pool of entry buffers, so that added entries reuse old allocations.
#[allow(clippy::type_complexity)]
fn write_map_pooled(
    st: &mut VmState,
    t: i32,
) -> Result<Option<(&mut Headers, Option<&mut Vec<(Vec<u8>, Vec<u8>)>>)>, i32> {
    let w = which(t).ok_or(status::BAD_ARGUMENT)?;
    let Which::Stream { response, trailers } = w else {
        return Ok(None);
    };
    let plugin = st.plugin_index;
    let Some(slot) = st.call.stream else {
        return Ok(None);
    };
    let Some(core) = st.core.as_deref_mut() else {
        return Ok(None);
    };
    let Some(s) = core.stream_mut(slot) else {
        return Ok(None);
    };
    if s.in_log {
        return Ok(None);
    }
    let pos = s.pos(response, plugin);
    let dir = if response { &mut s.resp } else { &mut s.req };
    if !trailers {
        if !dir.headers_open(pos) {
            return Ok(None);
        }
        return Ok(Some((&mut dir.headers, Some(&mut dir.pool))));
    }
    if dir.trailers_open(pos) {
        return Ok(dir.trailers.as_mut().map(|m| (m, None)));
    }
    // Trailers may be added from the body callback at end of stream when none exist
    // (Envoy addDecodedTrailers/addEncodedTrailers).
    if dir.in_body == Some(pos) && dir.eos.has(pos) && dir.trailers.is_none() && !dir.aborted {
        dir.trailers = Some(Headers::new());
        dir.trailers_added_at = Some(pos);
        return Ok(dir.trailers.as_mut().map(|m| (m, None)));
    }
    Ok(None)
}

fn edit(c: &mut C<'_>, t: i32, kptr: i32, klen: i32, vptr: i32, vlen: i32, op: u8) -> R {
    crate::batch::sync_in_log(c);
    let Some((mem, st)) = mem_state(c) else {
        return Ok(status::INTERNAL_FAILURE);
    };
    let Some(key) = slice(mem, kptr, klen) else {
        return Ok(status::INVALID_MEMORY_ACCESS);
    };
    let value = if op == b'r' {
        &[][..]
    } else {
        match slice(mem, vptr, vlen) {
            Some(v) => v,
            None => return Ok(status::INVALID_MEMORY_ACCESS),
        }
    };
    let (map, pool) = match write_map_pooled(st, t) {
        Err(s) => return Ok(s),
        Ok(None) => return Ok(status::BAD_ARGUMENT),
        Ok(Some(m)) => m,
    };
    match op {
        b'a' => match pool {
            Some(pool) => map.add_pooled(key, value, pool),
            None => map.add(key, value),
        },
        b'p' => map.replace(key, value),
        _ => map.remove(key),
    }
    Ok(status::OK)
}

pub(super) fn add(r: &mut Reg) {
    r.func(
        "env",
        "proxy_get_header_map_size",
        |mut c: C<'_>, t: i32, out: i32| -> R {
            crate::batch::sync_in_log(&mut c);
            let Some((mem, st)) = mem_state(&mut c) else {
                return Ok(status::INTERNAL_FAILURE);
            };
            let size = match read_map(st, t) {
                Err(s) => return Ok(s),
                Ok(None) => return Ok(status::BAD_ARGUMENT),
                Ok(Some(m)) => m.serialized_size(),
            };
            Ok(if put_u32(mem, out, size as u32) {
                status::OK
            } else {
                status::INVALID_MEMORY_ACCESS
            })
        },
    );
    r.func(
        "env",
        "proxy_get_header_map_pairs",
        |mut c: C<'_>, t: i32, pp: i32, sp: i32| -> R {
            crate::batch::sync_in_log(&mut c);
            let st = c.data_mut();
            let mut out = take_scratch(st);
            match read_map(st, t) {
                Err(s) => {
                    st.scratch = out;
                    return Ok(s);
                }
                // Unavailable: OK with an empty map (Envoy), written as size 0.
                Ok(None) => {}
                Ok(Some(m)) if m.is_empty() => {}
                Ok(Some(m)) => pairs::serialize_into(
                    m.0.iter().map(|(k, v)| (k.as_slice(), v.as_slice())),
                    &mut out,
                ),
            }
            return_scratch(&mut c, out, pp, sp)
        },
    );
    r.func(
        "env",
        "proxy_set_header_map_pairs",
        |mut c: C<'_>, t: i32, ptr: i32, len: i32| -> R {
            crate::batch::sync_in_log(&mut c);
            let Some((mem, st)) = mem_state(&mut c) else {
                return Ok(status::INTERNAL_FAILURE);
            };
            let Some(data) = slice(mem, ptr, len) else {
                return Ok(status::INVALID_MEMORY_ACCESS);
            };
            let Ok(new) = pairs::deserialize(data) else {
                return Ok(status::BAD_ARGUMENT);
            };
            match write_map(st, t) {
                Err(s) => Ok(s),
                Ok(None) => Ok(status::BAD_ARGUMENT),
                Ok(Some(m)) => {
                    m.0.clear();
                    for (k, v) in new {
                        m.0.push((k.to_ascii_lowercase(), v));
                    }
                    Ok(status::OK)
                }
            }
        },
    );
    r.func(
        "env",
        "proxy_get_header_map_value",
        |mut c: C<'_>, t: i32, kp: i32, kl: i32, pp: i32, sp: i32| -> R {
            crate::batch::sync_in_log(&mut c);
            let Some((mem, st)) = mem_state(&mut c) else {
                return Ok(status::INTERNAL_FAILURE);
            };
            let Some(key) = slice(mem, kp, kl) else {
                return Ok(status::INVALID_MEMORY_ACCESS);
            };
            let in_log = st
                .call
                .stream
                .and_then(|s| st.core.as_deref().and_then(|c| c.stream(s)))
                .is_some_and(|s| s.in_log);
            let abi_010 = st.abi_010;
            let mut out = std::mem::take(&mut st.scratch);
            out.clear();
            let found = match read_map(st, t) {
                Err(s) => {
                    st.scratch = out;
                    return Ok(s);
                }
                Ok(None) => {
                    st.scratch = out;
                    return Ok(if in_log {
                        status::NOT_FOUND
                    } else {
                        status::BAD_ARGUMENT
                    });
                }
                Ok(Some(m)) => match m.get_bytes(key) {
                    Some(v) => {
                        out.extend_from_slice(v);
                        true
                    }
                    None => false,
                },
            };
            if !found && !abi_010 {
                st.scratch = out;
                return Ok(status::NOT_FOUND);
            }
            return_scratch(&mut c, out, pp, sp)
        },
    );
    r.func(
        "env",
        "proxy_add_header_map_value",
        |mut c: C<'_>, t: i32, kp: i32, kl: i32, vp: i32, vl: i32| -> R {
            edit(&mut c, t, kp, kl, vp, vl, b'a')
        },
    );
    r.func(
        "env",
        "proxy_replace_header_map_value",
        |mut c: C<'_>, t: i32, kp: i32, kl: i32, vp: i32, vl: i32| -> R {
            edit(&mut c, t, kp, kl, vp, vl, b'p')
        },
    );
    r.func(
        "env",
        "proxy_remove_header_map_value",
        |mut c: C<'_>, t: i32, kp: i32, kl: i32| -> R { edit(&mut c, t, kp, kl, 0, 0, b'r') },
    );
}
