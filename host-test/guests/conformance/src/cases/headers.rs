//! Case `headers`: header-map serialization, first-value-only lookups, lower-casing, the
//! BAD_ARGUMENT/NOT_FOUND split, access windows per phase, trailers added at end of stream.
//! The host test sends `:method GET, :path /h, :authority example, x-dup first,
//! x-dup second, x-remove-me 1` and a body `payload` with end_of_stream.

use crate::abi::{
    self, BAD_ARGUMENT, MAP_REQUEST_HEADERS as REQ, MAP_RESPONSE_HEADERS as RESP, NOT_FOUND, OK,
};
use crate::report::{check, check_that};

fn values(pairs: &[(String, String)], key: &str) -> Vec<String> {
    pairs
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .collect()
}

pub fn request_headers(num_headers: usize) -> u32 {
    let (s, raw) = abi::map_pairs_raw(REQ);
    check("get_pairs_ok", s, OK);
    let decoded = abi::decode_pairs(&raw);
    check_that(
        "pairs_serialization_is_well_formed",
        decoded.is_some(),
        &raw,
    );
    let pairs = decoded.unwrap_or_default();
    check("num_headers_matches_pairs", pairs.len(), num_headers);
    check(
        "repeated_header_kept_in_pairs",
        values(&pairs, "x-dup"),
        vec!["first".into(), "second".into()],
    );
    check(
        "header_map_size_is_serialized_size",
        abi::map_size(REQ),
        (OK, raw.len()),
    );
    check(
        "get_returns_first_value_only",
        abi::map_get(REQ, "x-dup"),
        (OK, "first".into()),
    );
    check(
        "get_lowercases_key",
        abi::map_get(REQ, "X-Dup"),
        (OK, "first".into()),
    );
    check(
        "get_missing_is_not_found",
        abi::map_get(REQ, "x-absent").0,
        NOT_FOUND,
    );
    check("add_ok", abi::map_add(REQ, "X-Added", "yes"), OK);
    let (_, pairs) = abi::map_pairs(REQ);
    check(
        "add_lowercases_key",
        values(&pairs, "x-added"),
        vec!["yes".into()],
    );
    check("add_no_uppercase_key", values(&pairs, "X-Added").len(), 0);
    check("replace_ok", abi::map_replace(REQ, "X-Dup", "only"), OK);
    check(
        "replace_adds_missing_ok",
        abi::map_replace(REQ, "x-new", "n"),
        OK,
    );
    let (_, pairs) = abi::map_pairs(REQ);
    check(
        "replace_replaces_all_values",
        values(&pairs, "x-dup"),
        vec!["only".into()],
    );
    check(
        "replace_adds_missing",
        values(&pairs, "x-new"),
        vec!["n".into()],
    );
    check("remove_ok", abi::map_remove(REQ, "x-remove-me"), OK);
    check(
        "removed_is_not_found",
        abi::map_get(REQ, "x-remove-me").0,
        NOT_FOUND,
    );
    check(
        "remove_missing_is_ok",
        abi::map_remove(REQ, "x-never-there"),
        OK,
    );
    check(
        "unknown_map_bad_argument",
        abi::map_get(42, "x").0,
        BAD_ARGUMENT,
    );
    check(
        "response_map_unavailable_in_request_headers",
        abi::map_get(RESP, ":status").0,
        BAD_ARGUMENT,
    );
    abi::CONTINUE
}

pub fn request_body(eos: bool) -> u32 {
    check(
        "request_headers_unavailable_after_continue",
        abi::map_get(REQ, ":path").0,
        BAD_ARGUMENT,
    );
    let (s, raw) = abi::map_pairs_raw(REQ);
    check("request_pairs_ok_after_continue", s, OK);
    check(
        "request_pairs_empty_after_continue",
        abi::decode_pairs(&raw).map(|p| p.len()),
        Some(0),
    );
    check(
        "request_headers_not_writable_after_continue",
        abi::map_add(REQ, "x-late", "1"),
        BAD_ARGUMENT,
    );
    if eos {
        check(
            "trailers_added_at_end_of_stream",
            abi::map_add(abi::MAP_REQUEST_TRAILERS, "X-Trailer", "t"),
            OK,
        );
    }
    abi::CONTINUE
}

pub fn response_headers() -> u32 {
    check(
        "response_status_readable",
        abi::map_get(RESP, ":status"),
        (OK, "200".into()),
    );
    check(
        "set_pairs_ok",
        abi::set_map_pairs(RESP, &[(":status", "201"), ("X-Set", "s")]),
        OK,
    );
    let (_, pairs) = abi::map_pairs(RESP);
    check(
        "set_pairs_replaces_map_and_lowercases",
        pairs,
        vec![
            (":status".into(), "201".into()),
            ("x-set".into(), "s".into()),
        ],
    );
    check(
        "request_headers_unavailable_in_response_phase",
        abi::map_get(REQ, ":path").0,
        BAD_ARGUMENT,
    );
    abi::CONTINUE
}

pub fn log() {
    check(
        "request_headers_readable_in_on_log",
        abi::map_get(REQ, ":path"),
        (OK, "/h".into()),
    );
    check(
        "response_headers_readable_in_on_log",
        abi::map_get(RESP, "x-set"),
        (OK, "s".into()),
    );
    check(
        "missing_in_on_log_is_not_found",
        abi::map_get(REQ, "x-absent").0,
        NOT_FOUND,
    );
}
