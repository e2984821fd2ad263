//! Case `local_reply`: `proxy_send_local_response` from on_request_headers while returning
//! CONTINUE (the host must stop the request anyway), the reply passing through this plugin's
//! own on_response_headers, and a second local reply being refused. A request for another
//! path than `/limited` gets a 403 whose body and `x-path` header are that path (replies that
//! differ from one request to the next, for the host's reuse of reply buffers).

use crate::abi::{self, MAP_REQUEST_HEADERS as REQ, MAP_RESPONSE_HEADERS as RESP, OK};
use crate::report::{check, check_that};

pub fn request_headers() -> u32 {
    let (_, path) = abi::map_get(REQ, ":path");
    if path != "/limited" {
        let s = abi::send_local_response(403, "by path", path.as_bytes(), &[("X-Path", &path)], -1);
        check("send_local_response_by_path_ok", s, OK);
        return abi::CONTINUE;
    }
    let s = abi::send_local_response(429, "rate limited", b"denied", &[("X-Reason", "quota")], -1);
    check("send_local_response_ok", s, OK);
    abi::CONTINUE
}

pub fn response_headers() -> u32 {
    if abi::map_get(RESP, ":status").1 == "403" {
        let (s, path) = abi::map_get(RESP, "x-path");
        check_that(
            "by_path_reply_in_response_headers",
            s == OK && path.starts_with('/'),
            s,
        );
        return abi::CONTINUE;
    }
    check(
        "own_local_reply_in_response_headers",
        abi::map_get(RESP, ":status"),
        (OK, "429".into()),
    );
    check(
        "local_reply_header_lowercased",
        abi::map_get(RESP, "x-reason"),
        (OK, "quota".into()),
    );
    let second = abi::send_local_response(500, "again", b"again", &[], -1);
    check_that("second_local_reply_refused", second != OK, second);
    abi::CONTINUE
}
