//! Dispatch from callbacks to the case selected by the plugin configuration. Each case lives
//! in its own file and knows only the ABI wrappers and the reporter.

mod buffers;
mod callouts;
mod headers;
mod lifecycle;
mod local_reply;
mod metrics;
mod pause;
mod properties;
mod queues;
mod shared;
mod shutdown;
mod ticks;
mod wasi;

use crate::abi;

pub fn on_configure(case: &str, root_id: u32) -> u32 {
    match case {
        "lifecycle" => lifecycle::configure(root_id),
        "reject" => {
            abi::log(
                abi::LOG_ERROR,
                "invalid configuration: field `limit`: must be positive",
            );
            0
        }
        "ticks" => ticks::configure(),
        "queues" => queues::configure(),
        "pause_resume" => pause::configure(),
        "cas_race" => shared::configure_race(),
        "headers" | "buffers" | "shared_data" | "metrics" | "properties" | "http_callout"
        | "grpc_callout" | "local_reply" | "close_stream" | "wasi" | "shared_loop"
        | "grpc_stream" | "shutdown" => 1,
        other => {
            abi::log(abi::LOG_ERROR, &format!("unknown case `{other}`"));
            0
        }
    }
}

pub fn on_tick(case: &str, root_id: u32, n: u32) {
    match case {
        "ticks" => ticks::tick(n),
        "pause_resume" => pause::tick(root_id),
        "shutdown" => shutdown::tick(),
        _ => {}
    }
}

pub fn on_done(case: &str, ctx: u32) -> u32 {
    match case {
        "shutdown" => shutdown::done(ctx),
        _ => 1,
    }
}

pub fn on_queue_ready(case: &str, queue_id: u32) {
    if case == "queues" {
        queues::ready(queue_id);
    }
}

pub fn on_request_headers(case: &str, ctx: u32, num_headers: usize, eos: bool) -> u32 {
    match case {
        "lifecycle" => lifecycle::request_headers(),
        "headers" => headers::request_headers(num_headers),
        "shared_data" => shared::request_headers(),
        "cas_race" => shared::race(),
        "shared_loop" => shared::shared_loop(),
        "queues" => queues::request_headers(),
        "metrics" => metrics::request_headers(),
        "properties" => properties::request_headers(),
        "http_callout" => callouts::http_request_headers(ctx),
        "grpc_callout" => callouts::grpc_request_headers(ctx),
        "grpc_stream" => callouts::grpc_stream_request_headers(ctx),
        "local_reply" => local_reply::request_headers(),
        "pause_resume" => pause::request_headers(ctx),
        "close_stream" => {
            crate::report::check(
                "close_stream_ok",
                abi::close_stream(abi::STREAM_REQUEST),
                abi::OK,
            );
            abi::PAUSE
        }
        "wasi" => wasi::run(),
        _ => {
            let _ = eos;
            abi::CONTINUE
        }
    }
}

pub fn on_request_body(case: &str, ctx: u32, size: usize, eos: bool) -> u32 {
    match case {
        "headers" => headers::request_body(eos),
        "buffers" => buffers::request_body(size, eos),
        "pause_resume" => pause::request_body(ctx, size, eos),
        _ => abi::CONTINUE,
    }
}

pub fn on_response_headers(case: &str, _ctx: u32, _num: usize, _eos: bool) -> u32 {
    match case {
        "headers" => headers::response_headers(),
        "properties" => properties::response_headers(),
        "local_reply" => local_reply::response_headers(),
        _ => abi::CONTINUE,
    }
}

pub fn on_response_body(case: &str, _ctx: u32, size: usize, eos: bool) -> u32 {
    match case {
        "buffers" => buffers::response_body(size, eos),
        _ => abi::CONTINUE,
    }
}

pub fn on_http_call_response(case: &str, ctx: u32, token: u32, num_headers: usize, body: usize) {
    if case == "http_callout" {
        callouts::http_response(ctx, token, num_headers, body);
    }
}

pub fn on_grpc_receive(ctx: u32, token: u32, size: usize) {
    if crate::case() == "grpc_stream" {
        callouts::grpc_stream_receive(ctx, token, size);
    } else {
        callouts::grpc_receive(ctx, token, size);
    }
}

pub fn on_grpc_close(ctx: u32, token: u32, status: u32) {
    if crate::case() == "grpc_stream" {
        callouts::grpc_stream_close(ctx, token, status);
    } else {
        callouts::grpc_close(ctx, token, status);
    }
}

pub fn on_log(case: &str, _ctx: u32) {
    if case == "headers" {
        headers::log();
    }
}
