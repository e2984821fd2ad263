//! Case `wasi`: the WASI preview 1 subset Envoy provides, called both raw and through std:
//! stdout/stderr as log lines, clocks, random, the plugin's environment, empty args.
//! The host test sets env `GREETING=hello` and uses a virtual clock.

use crate::abi;
use crate::report::{check, check_that};

pub fn run() -> u32 {
    check(
        "fd_write_stdout",
        abi::wasi_fd_write(1, b"hello from stdout\n"),
        (0, 18),
    );
    check(
        "fd_write_stderr",
        abi::wasi_fd_write(2, b"hello from stderr\n"),
        (0, 18),
    );
    check("fd_write_other_fd_badf", abi::wasi_fd_write(5, b"x").0, 8);
    let proxy_now = abi::now_nanos();
    check(
        "clock_realtime_matches_proxy_time",
        abi::wasi_clock(0),
        (0, proxy_now),
    );
    check("clock_monotonic_ok", abi::wasi_clock(1).0, 0);
    check("clock_cputime_notsup", abi::wasi_clock(2).0, 58);
    let (e, bytes) = abi::wasi_random(32);
    check("random_get_ok", e, 0);
    check_that("random_get_fills", bytes.iter().any(|b| *b != 0), &bytes);
    check("random_get_too_large_inval", abi::wasi_random(65537).0, 28);
    let (e, (vars, size)) = abi::wasi_environ();
    check("environ_ok", e, 0);
    check_that(
        "environ_has_plugin_env",
        vars.iter().any(|v| v == "GREETING=hello"),
        &vars,
    );
    check(
        "environ_size_consistent",
        size,
        vars.iter().map(|v| v.len() + 1).sum::<usize>(),
    );
    check_that(
        "environ_does_not_leak_host",
        !vars.iter().any(|v| v.starts_with("PATH=")),
        &vars,
    );
    check(
        "std_env_var",
        std::env::var("GREETING").ok(),
        Some("hello".to_string()),
    );
    check("args_empty", abi::wasi_args_sizes(), (0, (0, 0)));
    let std_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    check("std_systemtime_uses_wasi_clock", std_now, proxy_now);
    println!("println reaches the log");
    abi::CONTINUE
}
