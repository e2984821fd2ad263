//! PASS/FAIL reporting: each check logs `PASS <name>` (info) or
//! `FAIL <name>: expected <want> got <got>` (error), so the host test can assert on the log.
//! Knows nothing of the ABI beyond `proxy_log`.

use crate::abi;
use std::fmt::Debug;

pub fn check<T: PartialEq + Debug>(name: &str, got: T, want: T) -> bool {
    if got == want {
        abi::log(abi::LOG_INFO, &format!("PASS {name}"));
        true
    } else {
        abi::log(
            abi::LOG_ERROR,
            &format!("FAIL {name}: expected {want:?} got {got:?}"),
        );
        false
    }
}

pub fn check_that(name: &str, ok: bool, detail: impl Debug) -> bool {
    if ok {
        abi::log(abi::LOG_INFO, &format!("PASS {name}"));
    } else {
        abi::log(abi::LOG_ERROR, &format!("FAIL {name}: {detail:?}"));
    }
    ok
}

/// An informational line the host test reads (`NOTE <text>`).
pub fn note(text: &str) {
    abi::log(abi::LOG_INFO, &format!("NOTE {text}"));
}

/// A lifecycle event line (`EV <callback> ctx=<id> ...`).
pub fn event(text: &str) {
    abi::log(abi::LOG_INFO, &format!("EV {text}"));
}
