//! Case `properties`: Envoy attribute names and encodings seen through `proxy_get_property`.
//! The host test opens the stream with source `10.1.2.3:5555`, `connection.mtls` true, and
//! sends `GET /prop?x=1` to authority `svc.local` with `x-custom: c`.

use crate::abi::{self, NOT_FOUND, OK};
use crate::param;
use crate::report::check;

fn text(path: &[&str]) -> (u32, String) {
    let (s, v) = abi::get_property(path);
    (s, String::from_utf8_lossy(&v).into_owned())
}

pub fn request_headers() -> u32 {
    check(
        "plugin_name",
        text(&["plugin_name"]),
        (OK, param("name").unwrap_or_default()),
    );
    check(
        "plugin_root_id",
        text(&["plugin_root_id"]),
        (OK, param("root").unwrap_or_default()),
    );
    check("plugin_vm_id", text(&["plugin_vm_id"]), (OK, String::new()));
    check(
        "source_address",
        text(&["source", "address"]),
        (OK, "10.1.2.3:5555".into()),
    );
    check(
        "source_port_is_int64_le",
        abi::get_property(&["source", "port"]),
        (OK, 5555u64.to_le_bytes().to_vec()),
    );
    check(
        "connection_mtls_is_bool_byte",
        abi::get_property(&["connection", "mtls"]),
        (OK, vec![1]),
    );
    check(
        "request_path",
        text(&["request", "path"]),
        (OK, "/prop?x=1".into()),
    );
    check(
        "request_url_path",
        text(&["request", "url_path"]),
        (OK, "/prop".into()),
    );
    check(
        "request_method",
        text(&["request", "method"]),
        (OK, "GET".into()),
    );
    check(
        "request_host",
        text(&["request", "host"]),
        (OK, "svc.local".into()),
    );
    check(
        "request_header_by_path",
        text(&["request", "headers", "x-custom"]),
        (OK, "c".into()),
    );
    check(
        "missing_property_not_found",
        abi::get_property(&["no", "such", "property"]).0,
        NOT_FOUND,
    );
    check(
        "set_property_ok",
        abi::set_property(&["meshward_note"], b"hi"),
        OK,
    );
    check(
        "set_property_roundtrip",
        text(&["meshward_note"]),
        (OK, "hi".into()),
    );
    abi::CONTINUE
}

pub fn response_headers() -> u32 {
    check(
        "response_code_is_int64_le",
        abi::get_property(&["response", "code"]),
        (OK, 200u64.to_le_bytes().to_vec()),
    );
    abi::CONTINUE
}
