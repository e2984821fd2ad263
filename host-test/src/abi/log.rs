//! `proxy_log` and `proxy_get_log_level`. Must not know about streams.

use super::{mem_state, put_u32, slice, status, Reg, C, R};
use crate::logs::LogLevel;

pub(super) fn add(r: &mut Reg) {
    r.func(
        "env",
        "proxy_log",
        |mut c: C<'_>, level: i32, ptr: i32, len: i32| -> R {
            let Some(level) = LogLevel::from_abi(level) else {
                return Ok(status::BAD_ARGUMENT);
            };
            let Some((mem, st)) = mem_state(&mut c) else {
                return Ok(status::INTERNAL_FAILURE);
            };
            if level < st.host.log_level {
                return Ok(if slice(mem, ptr, len).is_some() {
                    status::OK
                } else {
                    status::INVALID_MEMORY_ACCESS
                });
            }
            let Some(msg) = slice(mem, ptr, len) else {
                return Ok(status::INVALID_MEMORY_ACCESS);
            };
            let msg = String::from_utf8_lossy(msg).into_owned();
            st.log(level, msg);
            Ok(status::OK)
        },
    );
    r.func(
        "env",
        "proxy_get_log_level",
        |mut c: C<'_>, out: i32| -> R {
            let Some((mem, st)) = mem_state(&mut c) else {
                return Ok(status::INTERNAL_FAILURE);
            };
            let lvl = st.host.log_level.as_abi() as u32;
            Ok(if put_u32(mem, out, lvl) {
                status::OK
            } else {
                status::INVALID_MEMORY_ACCESS
            })
        },
    );
}
