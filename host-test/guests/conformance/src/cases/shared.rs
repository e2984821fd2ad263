//! Cases `shared_data` (Envoy's CAS rules, checked one by one) and `cas_race` (a CAS-loop
//! counter that several workers increment at once; the host test checks the final count), and
//! `shared_loop` (the benchmark's guest-driven loop: `x-n` rounds of get + CAS set).

use crate::abi::{self, CAS_MISMATCH, NOT_FOUND, OK};
use crate::report::{check, check_that};

const RACE_KEY: &str = "conformance/race/counter";

pub fn request_headers() -> u32 {
    let (_, id) = abi::map_get(abi::MAP_REQUEST_HEADERS, "x-key");
    let key = format!("conformance/cas/{id}");
    check("get_missing_not_found", abi::get_shared(&key).0, NOT_FOUND);
    check(
        "set_missing_key_ignores_cas",
        abi::set_shared(&key, b"v1", 12345),
        OK,
    );
    let (s, (v, c1)) = abi::get_shared(&key);
    check("get_after_set", (s, v), (OK, b"v1".to_vec()));
    check_that("cas_is_never_zero", c1 != 0, c1);
    check(
        "stale_cas_mismatch",
        abi::set_shared(&key, b"v2", c1.wrapping_add(1)),
        CAS_MISMATCH,
    );
    check(
        "value_unchanged_after_mismatch",
        abi::get_shared(&key).1 .0,
        b"v1".to_vec(),
    );
    check("matching_cas_ok", abi::set_shared(&key, b"v2", c1), OK);
    let (_, (v, c2)) = abi::get_shared(&key);
    check("value_after_cas_set", v, b"v2".to_vec());
    check_that("cas_changes_on_every_set", c2 != c1 && c2 != 0, (c1, c2));
    check(
        "old_cas_now_mismatch",
        abi::set_shared(&key, b"v3", c1),
        CAS_MISMATCH,
    );
    check(
        "zero_cas_is_unconditional",
        abi::set_shared(&key, b"v3", 0),
        OK,
    );
    check(
        "value_after_unconditional",
        abi::get_shared(&key).1 .0,
        b"v3".to_vec(),
    );
    check("empty_value_ok", abi::set_shared(&key, b"", 0), OK);
    let (s, (v, _)) = abi::get_shared(&key);
    check("empty_value_keeps_key", (s, v.len()), (OK, 0));
    abi::CONTINUE
}

pub fn configure_race() -> u32 {
    let (s, _) = abi::define_metric(abi::METRIC_COUNTER, "conformance_race_retries");
    check("define_retry_counter", s, OK);
    1
}

/// Increments the shared counter with a bounded CAS loop. The key must exist (the host test
/// creates it with one request first): Envoy ignores `cas` for a missing key, so two first
/// writers would both succeed.
pub fn race() -> u32 {
    let (_, retries_metric) = abi::define_metric(abi::METRIC_COUNTER, "conformance_race_retries");
    for attempt in 0..10_000u32 {
        let (s, (v, cas)) = abi::get_shared(RACE_KEY);
        let (n, cas) = if s == OK {
            (String::from_utf8_lossy(&v).parse::<u64>().unwrap_or(0), cas)
        } else {
            (0, 0)
        };
        match abi::set_shared(RACE_KEY, (n + 1).to_string().as_bytes(), cas) {
            OK => {
                if attempt > 0 {
                    abi::increment_metric(retries_metric, i64::from(attempt));
                }
                return abi::CONTINUE;
            }
            CAS_MISMATCH => continue,
            other => {
                check("race_set_status", other, OK);
                return abi::CONTINUE;
            }
        }
    }
    check_that(
        "race_cas_loop_converges",
        false,
        "10000 CAS mismatches in a row",
    );
    abi::CONTINUE
}

/// `x-n` rounds of get + CAS set on one key, inside one callback (benchmark driver). Reports a
/// FAIL line if a round does not succeed (one VM, so no round may see a mismatch).
pub fn shared_loop() -> u32 {
    let (_, n) = abi::map_get(abi::MAP_REQUEST_HEADERS, "x-n");
    let n: u32 = n.parse().unwrap_or(0);
    for _ in 0..n {
        let (s, (v, cas)) = abi::get_shared("bench/shared");
        let cas = if s == OK { cas } else { 0 };
        let next = v.first().copied().unwrap_or(0).wrapping_add(1);
        let s = abi::set_shared("bench/shared", &[next], cas);
        if s != OK {
            check("shared_loop_set", s, OK);
            break;
        }
    }
    abi::CONTINUE
}
