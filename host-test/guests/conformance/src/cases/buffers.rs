//! Case `buffers`: body buffering on pause (cumulative sizes), reads by slice, Envoy's
//! `set_buffer_bytes` rules (start 0 replaces a prefix or prepends, start >= length appends,
//! anything else is BAD_ARGUMENT). The host test sends `abc` then `def` (end of stream) and a
//! response body `xyz`.

use crate::abi::{self, BAD_ARGUMENT, BUF_REQUEST_BODY as BODY, BUF_RESPONSE_BODY, OK};
use crate::report::check;

fn text(got: (u32, Vec<u8>)) -> (u32, String) {
    (got.0, String::from_utf8_lossy(&got.1).into_owned())
}

pub fn request_body(size: usize, eos: bool) -> u32 {
    if !eos {
        check("first_chunk_size", size, 3);
        check(
            "buffer_status_reports_size",
            abi::buffer_status(BODY),
            (OK, 3),
        );
        check(
            "get_body_bytes",
            text(abi::get_buffer(BODY, 0, size)),
            (OK, "abc".into()),
        );
        return abi::PAUSE;
    }
    check("paused_body_size_is_cumulative", size, 6);
    check(
        "buffered_body_is_whole",
        text(abi::get_buffer(BODY, 0, size)),
        (OK, "abcdef".into()),
    );
    check(
        "get_body_slice",
        text(abi::get_buffer(BODY, 2, 2)),
        (OK, "cd".into()),
    );
    check(
        "set_replaces_prefix",
        abi::set_buffer(BODY, 0, 6, b"ABCDEF"),
        OK,
    );
    check("set_prepends", abi::set_buffer(BODY, 0, 0, b"<"), OK);
    check("set_appends", abi::set_buffer(BODY, 7, 0, b">"), OK);
    check(
        "body_after_edits",
        text(abi::get_buffer(BODY, 0, 100)),
        (OK, "<ABCDEF>".into()),
    );
    check(
        "set_in_middle_bad_argument",
        abi::set_buffer(BODY, 3, 1, b"x"),
        BAD_ARGUMENT,
    );
    check(
        "unknown_buffer_bad_argument",
        abi::get_buffer(99, 0, 1).0,
        BAD_ARGUMENT,
    );
    abi::CONTINUE
}

pub fn response_body(size: usize, eos: bool) -> u32 {
    check("response_body_eos", eos, true);
    check(
        "response_body_read",
        text(abi::get_buffer(BUF_RESPONSE_BODY, 0, size)),
        (OK, "xyz".into()),
    );
    check(
        "response_body_replaced",
        abi::set_buffer(BUF_RESPONSE_BODY, 0, size, b"XYZ!"),
        OK,
    );
    abi::CONTINUE
}
