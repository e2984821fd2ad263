//! `proxy_set_tick_period_milliseconds` (one timer per root context per worker VM; 0 disables;
//! re-setting replaces it) and `proxy_get_current_time_nanoseconds` (from the host `Clock`).
//! Must not know how ticks are fired.

use super::{mem_state, put_u64, status, Reg, C, R};

pub(super) fn add(r: &mut Reg) {
    r.func(
        "env",
        "proxy_set_tick_period_milliseconds",
        |mut c: C<'_>, ms: i32| -> R {
            let plugin = c.data().plugin_index;
            match c.data_mut().core() {
                Some(core) => {
                    core.set_tick(plugin, ms as u32);
                    Ok(status::OK)
                }
                None => Ok(status::INTERNAL_FAILURE),
            }
        },
    );
    r.func(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut c: C<'_>, out: i32| -> R {
            let Some((mem, st)) = mem_state(&mut c) else {
                return Ok(status::INTERNAL_FAILURE);
            };
            let now = st.host.clock.now_nanos();
            Ok(if put_u64(mem, out, now) {
                status::OK
            } else {
                status::INVALID_MEMORY_ACCESS
            })
        },
    );
}
