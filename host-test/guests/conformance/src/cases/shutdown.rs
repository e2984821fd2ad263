//! Case `shutdown`: the end of contexts as Envoy runs it. A stream context's `proxy_on_done`
//! answers false, which Envoy ignores (on_log and on_delete follow at once) and `proxy_done`
//! from it is NOT_FOUND. At worker shutdown the root context's `proxy_on_done` answers false
//! and starts a tick; the tick calls `proxy_done` (OK once, NOT_FOUND after), and only then
//! does the host call `proxy_on_delete` on the root context.

use crate::abi::{self, NOT_FOUND, OK};
use crate::report::{check, note};
use crate::{param, with};

pub fn done(ctx: u32) -> u32 {
    let root = with(|s| s.root_id);
    if ctx == root {
        let period = param("tick").and_then(|t| t.parse().ok()).unwrap_or(5);
        check("shutdown_tick_set", abi::set_tick_period(period), OK);
        with(|s| s.done_pending = true);
        note("root on_done: not done yet");
    } else {
        check("done_from_stream_not_found", abi::done(), NOT_FOUND);
    }
    0
}

pub fn tick() {
    if !with(|s| std::mem::take(&mut s.done_pending)) {
        return;
    }
    check("proxy_done_from_tick_ok", abi::done(), OK);
    check("proxy_done_again_not_found", abi::done(), NOT_FOUND);
    check("tick_stopped", abi::set_tick_period(0), OK);
}
