//! Case `metrics`: counter/gauge/histogram semantics and statuses. Each request adds 6 to
//! `conformance_requests`, leaves `conformance_inflight` at 4 and records 42 in
//! `conformance_latency_ms`.

use crate::abi::{self, BAD_ARGUMENT, NOT_FOUND, OK};
use crate::report::check;

pub fn request_headers() -> u32 {
    let (s, c) = abi::define_metric(abi::METRIC_COUNTER, "conformance_requests");
    check("define_counter", s, OK);
    let (s, g) = abi::define_metric(abi::METRIC_GAUGE, "conformance_inflight");
    check("define_gauge", s, OK);
    let (s, h) = abi::define_metric(abi::METRIC_HISTOGRAM, "conformance_latency_ms");
    check("define_histogram", s, OK);
    check(
        "define_unknown_type_bad_argument",
        abi::define_metric(7, "bad").0,
        BAD_ARGUMENT,
    );
    let (s, before) = abi::get_metric(c);
    check("get_counter", s, OK);
    check("counter_increment_ok", abi::increment_metric(c, 5), OK);
    check("counter_increments", abi::get_metric(c), (OK, before + 5));
    check(
        "counter_decrement_bad_argument",
        abi::increment_metric(c, -1),
        BAD_ARGUMENT,
    );
    let (s, c2) = abi::define_metric(abi::METRIC_COUNTER, "conformance_requests");
    check("redefine_ok", s, OK);
    abi::increment_metric(c2, 1);
    check(
        "redefined_metric_shares_stat",
        abi::get_metric(c),
        (OK, before + 6),
    );
    check("gauge_record_ok", abi::record_metric(g, 7), OK);
    check("gauge_record_sets", abi::get_metric(g), (OK, 7));
    check("gauge_decrement_ok", abi::increment_metric(g, -3), OK);
    check("gauge_decrements", abi::get_metric(g), (OK, 4));
    check("histogram_record_ok", abi::record_metric(h, 42), OK);
    check(
        "histogram_get_bad_argument",
        abi::get_metric(h).0,
        BAD_ARGUMENT,
    );
    check(
        "unknown_metric_get_not_found",
        abi::get_metric(0x0dea_dbe0).0,
        NOT_FOUND,
    );
    check(
        "unknown_metric_increment_not_found",
        abi::increment_metric(0x0dea_dbe0, 1),
        NOT_FOUND,
    );
    abi::CONTINUE
}
