//! `proxy_get_property`, `proxy_set_property` (per stream = filter state, readable back; from a
//! root context = per VM) and `proxy_call_foreign_function` (host registry by name, NOT_FOUND
//! for unknown). The attribute tree itself is in `crate::properties`.

use super::{mem_state, return_scratch, slice, status, take_scratch, Reg, C, R};

pub(super) fn add(r: &mut Reg) {
    r.func(
        "env",
        "proxy_get_property",
        |mut c: C<'_>, pp: i32, pl: i32, rp: i32, rs: i32| -> R {
            let Some((mem, st)) = mem_state(&mut c) else {
                return Ok(status::INTERNAL_FAILURE);
            };
            let Some(path) = slice(mem, pp, pl) else {
                return Ok(status::INVALID_MEMORY_ACCESS);
            };
            let mut out = take_scratch(st);
            let s = crate::properties::get(st, path, &mut out);
            if s != status::OK {
                st.scratch = out;
                return Ok(s);
            }
            return_scratch(&mut c, out, rp, rs)
        },
    );
    r.func(
        "env",
        "proxy_set_property",
        |mut c: C<'_>, pp: i32, pl: i32, vp: i32, vl: i32| -> R {
            let Some((mem, st)) = mem_state(&mut c) else {
                return Ok(status::INTERNAL_FAILURE);
            };
            let (Some(path), Some(value)) = (slice(mem, pp, pl), slice(mem, vp, vl)) else {
                return Ok(status::INVALID_MEMORY_ACCESS);
            };
            let path = path.strip_suffix(&[0]).unwrap_or(path).to_vec();
            let value = value.to_vec();
            let stream = st
                .call
                .stream
                .and_then(|slot| st.core.as_deref_mut().and_then(|c| c.stream_mut(slot)));
            match stream {
                Some(s) => {
                    s.filter_state.insert(path, value);
                }
                None => {
                    st.root_props.insert(path, value);
                }
            }
            Ok(status::OK)
        },
    );
    r.func(
        "env",
        "proxy_call_foreign_function",
        |mut c: C<'_>, np: i32, nl: i32, ap: i32, al: i32, rp: i32, rs: i32| -> R {
            let Some((mem, st)) = mem_state(&mut c) else {
                return Ok(status::INTERNAL_FAILURE);
            };
            let (Some(name), Some(args)) = (slice(mem, np, nl), slice(mem, ap, al)) else {
                return Ok(status::INVALID_MEMORY_ACCESS);
            };
            let name = String::from_utf8_lossy(name);
            let Some(f) = st.host.foreign.get(name.as_ref()).cloned() else {
                return Ok(status::NOT_FOUND);
            };
            let result = f(args);
            let mut out = take_scratch(st);
            out.extend_from_slice(&result);
            return_scratch(&mut c, out, rp, rs)
        },
    );
}
