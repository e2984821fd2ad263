//! Case `pause_resume`: on_request_headers pauses; the root context resumes the stream from a
//! tick via `proxy_set_effective_context` + `proxy_continue_stream`. While headers are paused
//! the body must be buffered and not delivered (Envoy: StopAllIterationAndWatermark).

use crate::abi::{self, BAD_ARGUMENT, OK};
use crate::report::{check, note};
use crate::{param, with};

/// Tick period: `period=<ms>` in the configuration, default 10 ms.
pub fn configure() -> u32 {
    let period = param("period").and_then(|p| p.parse().ok()).unwrap_or(10);
    check("set_tick_period_ok", abi::set_tick_period(period), OK);
    1
}

pub fn request_headers(ctx: u32) -> u32 {
    with(|s| s.parked.push(ctx));
    abi::PAUSE
}

pub fn tick(root_id: u32) {
    let parked: Vec<u32> = with(|s| std::mem::take(&mut s.parked));
    for ctx in parked {
        check(
            "set_effective_context_to_stream",
            abi::set_effective_context(ctx),
            OK,
        );
        check(
            "body_not_delivered_while_headers_paused",
            with(|s| s.bodies.get(&ctx).map_or(0, Vec::len)),
            0,
        );
        check(
            "headers_writable_via_effective_context",
            abi::map_add(abi::MAP_REQUEST_HEADERS, "x-resumed", "yes"),
            OK,
        );
        check(
            "continue_stream_ok",
            abi::continue_stream(abi::STREAM_REQUEST),
            OK,
        );
        note(&format!("resumed ctx={ctx}"));
    }
    check(
        "set_effective_context_unknown",
        abi::set_effective_context(0x0dea_dbee),
        BAD_ARGUMENT,
    );
    check(
        "set_effective_context_back_to_root",
        abi::set_effective_context(root_id),
        OK,
    );
}

pub fn request_body(ctx: u32, size: usize, eos: bool) -> u32 {
    if eos {
        let seen = with(|s| s.bodies.get(&ctx).cloned().unwrap_or_default());
        check("body_delivered_once_after_resume", seen, vec![(size, true)]);
        let (s, body) = abi::get_buffer(abi::BUF_REQUEST_BODY, 0, size);
        check("resumed_body_bytes", (s, body), (OK, b"abcdef".to_vec()));
    }
    abi::CONTINUE
}
