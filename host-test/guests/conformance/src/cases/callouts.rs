//! Cases `http_callout`, `grpc_callout` and `grpc_stream`: argument validation (unknown cluster, missing
//! pseudo-headers), the callback's context and token, response maps and buffers, timeouts
//! (`num_headers == 0`), gRPC message bytes end to end, and resuming the paused request.
//! The request's `x-mode` header picks the variant: `ok` (default), `timeout`, `fail`, `deny`.

use crate::abi::{self, BAD_ARGUMENT, MAP_CALL_RESPONSE_HEADERS as CALL, OK, PARSE_FAILURE};
use crate::report::{check, check_that, note};
use crate::with;

/// The gRPC request message (arbitrary bytes, including NUL and 0xff).
pub const GRPC_MESSAGE: &[u8] = &[0x0a, 0x03, b'a', b'b', b'c', 0x00, 0xff, 0x10];

fn mode(ctx: u32) -> String {
    with(|s| s.modes.get(&ctx).cloned().unwrap_or_default())
}

fn expect_token(ctx: u32, token: u32) {
    let want = with(|s| s.tokens.get(&ctx).copied());
    check(
        "callback_context_and_token_match_the_call",
        Some(token),
        want,
    );
}

pub fn http_request_headers(ctx: u32) -> u32 {
    let ok = [
        (":method", "POST"),
        (":path", "/check"),
        (":authority", "auth.local"),
    ];
    check(
        "http_call_unknown_cluster",
        abi::http_call("no-such-cluster", &ok, b"", &[], 1000).0,
        BAD_ARGUMENT,
    );
    let no_path = [(":method", "GET"), (":authority", "auth.local")];
    check(
        "http_call_missing_path",
        abi::http_call("auth", &no_path, b"", &[], 1000).0,
        BAD_ARGUMENT,
    );
    let no_authority = [(":method", "GET"), (":path", "/check")];
    check(
        "http_call_missing_authority",
        abi::http_call("auth", &no_authority, b"", &[], 1000).0,
        BAD_ARGUMENT,
    );
    let no_method = [(":path", "/check"), (":authority", "auth.local")];
    check(
        "http_call_missing_method",
        abi::http_call("auth", &no_method, b"", &[], 1000).0,
        BAD_ARGUMENT,
    );
    let mode = mode(ctx);
    let timeout = if mode == "timeout" { 100 } else { 1000 };
    let headers = [
        (":method", "POST"),
        (":path", "/check"),
        (":authority", "auth.local"),
        ("x-mode", mode.as_str()),
    ];
    let (s, token) = abi::http_call("auth", &headers, b"ping", &[], timeout);
    check("http_call_dispatched", s, OK);
    check_that("http_call_token_nonzero", token != 0, token);
    with(|st| st.tokens.insert(ctx, token));
    abi::PAUSE
}

pub fn http_response(ctx: u32, token: u32, num_headers: usize, body_size: usize) {
    expect_token(ctx, token);
    if num_headers == 0 {
        note(&format!("callout {token} failed or timed out"));
        let s = abi::send_local_response(504, "auth callout failed", b"auth unavailable", &[], -1);
        check("local_reply_from_callout_callback", s, OK);
        return;
    }
    check(
        "call_response_status",
        abi::map_get(CALL, ":status"),
        (OK, "200".into()),
    );
    check(
        "call_response_header",
        abi::map_get(CALL, "x-verdict"),
        (OK, "allow".into()),
    );
    check("call_response_body_size", body_size, 7);
    let (s, body) = abi::get_buffer(abi::BUF_CALL_RESPONSE_BODY, 0, body_size);
    check("call_response_body", (s, body), (OK, b"granted".to_vec()));
    check(
        "request_headers_writable_while_paused",
        abi::map_add(abi::MAP_REQUEST_HEADERS, "x-verdict", "allow"),
        OK,
    );
    check(
        "continue_after_callout",
        abi::continue_stream(abi::STREAM_REQUEST),
        OK,
    );
}

pub fn grpc_request_headers(ctx: u32) -> u32 {
    let md = [("x-md", "1")];
    check(
        "grpc_call_unknown_cluster_parse_failure",
        abi::grpc_call(
            "no-such-cluster",
            "meshward.test.Echo",
            "Reverse",
            &md,
            GRPC_MESSAGE,
            1000,
        )
        .0,
        PARSE_FAILURE,
    );
    let (s, token) = abi::grpc_call(
        "ratelimit",
        "meshward.test.Echo",
        "Reverse",
        &md,
        GRPC_MESSAGE,
        1000,
    );
    check("grpc_call_dispatched", s, OK);
    check_that("grpc_token_nonzero", token != 0, token);
    with(|st| st.tokens.insert(ctx, token));
    abi::PAUSE
}

pub fn grpc_receive(ctx: u32, token: u32, size: usize) {
    expect_token(ctx, token);
    let want: Vec<u8> = GRPC_MESSAGE.iter().rev().copied().collect();
    check("grpc_message_size", size, want.len());
    check(
        "grpc_message_bytes",
        abi::get_buffer(abi::BUF_GRPC_MESSAGE, 0, size),
        (OK, want),
    );
}

pub fn grpc_close(ctx: u32, token: u32, status: u32) {
    expect_token(ctx, token);
    let (s, (code, message)) = abi::get_status();
    check("get_status_ok", s, OK);
    check("get_status_code_matches_close", code, status);
    if mode(ctx) == "deny" {
        check("grpc_close_status_denied", status, 7);
        check("grpc_status_message", message, "denied by test".to_string());
        check(
            "deny_local_reply",
            abi::send_local_response(403, "grpc denied", b"denied", &[], 7),
            OK,
        );
    } else {
        check("grpc_close_status_ok", status, 0);
        check(
            "continue_after_grpc",
            abi::continue_stream(abi::STREAM_REQUEST),
            OK,
        );
    }
}

/// A token that no call or stream ever had.
const BOGUS_TOKEN: u32 = 0x0dea_dbe0;

pub fn grpc_stream_request_headers(ctx: u32) -> u32 {
    let md = [("x-md", "1")];
    check(
        "grpc_stream_unknown_cluster_parse_failure",
        abi::grpc_stream("no-such-cluster", "meshward.test.Echo", "Reverse", &md).0,
        PARSE_FAILURE,
    );
    let (s, token) = abi::grpc_stream("ratelimit", "meshward.test.Echo", "Reverse", &md);
    check("grpc_stream_opened", s, OK);
    check_that("grpc_stream_token_nonzero", token != 0, token);
    with(|st| st.tokens.insert(ctx, token));
    check("grpc_send_first", abi::grpc_send(token, b"one", false), OK);
    check(
        "grpc_send_unknown_not_found",
        abi::grpc_send(BOGUS_TOKEN, b"x", false),
        abi::NOT_FOUND,
    );
    check(
        "grpc_cancel_unknown_not_found",
        abi::grpc_cancel(BOGUS_TOKEN),
        abi::NOT_FOUND,
    );
    check(
        "grpc_close_unknown_not_found",
        abi::grpc_close(BOGUS_TOKEN),
        abi::NOT_FOUND,
    );
    abi::PAUSE
}

pub fn grpc_stream_receive(ctx: u32, token: u32, size: usize) {
    expect_token(ctx, token);
    let (s, msg) = abi::get_buffer(abi::BUF_GRPC_MESSAGE, 0, size);
    check("grpc_stream_message_ok", s, OK);
    match msg.as_slice() {
        b"eno" => {
            note("stream got eno");
            check("grpc_send_last", abi::grpc_send(token, b"two", true), OK);
        }
        b"owt" => note("stream got owt"),
        other => {
            check_that("grpc_stream_message_expected", false, other);
        }
    }
}

pub fn grpc_stream_close(ctx: u32, token: u32, status: u32) {
    expect_token(ctx, token);
    check("grpc_stream_closed_ok", status, 0);
    check(
        "grpc_close_after_remote_close_not_found",
        abi::grpc_close(token),
        abi::NOT_FOUND,
    );
    check(
        "continue_after_stream",
        abi::continue_stream(abi::STREAM_REQUEST),
        OK,
    );
}
