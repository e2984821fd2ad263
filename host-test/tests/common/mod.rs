//! Shared helpers for the conformance tests: a host on virtual time, the conformance guest
//! configured for one case, and readers for the guest's `PASS`/`FAIL`/`NOTE`/`EV` log lines.
//! Knows the guests' log-line protocol (host-test/guests/conformance/src/report.rs), not the
//! host's internals.

#![allow(dead_code)]

use meshward_host::{Host, LogRecord, PluginSpec, VirtualClock};

/// 2026-01-01T00:00:00Z in Unix nanoseconds: the start of virtual time in every test.
pub const START: u64 = 1_767_225_600_000_000_000;
pub const START_MS: u64 = START / 1_000_000;

/// A host on a virtual clock (returned too, for tests that move it).
pub fn host() -> (Host, VirtualClock) {
    let clock = VirtualClock::new(START);
    let host = Host::builder()
        .clock(clock.clone())
        .build()
        .expect("host builds");
    (host, clock)
}

/// The conformance guest, configured for `config` (`<case> [key=value ...]`).
pub fn conformance(name: &str, config: &str) -> PluginSpec {
    PluginSpec::new(name, meshward_artifacts::CONFORMANCE).plugin_config(config.as_bytes().to_vec())
}

/// Log records of one plugin.
pub fn records(host: &Host, plugin: &str) -> Vec<LogRecord> {
    host.logs()
        .into_iter()
        .filter(|r| r.plugin == plugin)
        .collect()
}

/// Log messages of one plugin.
pub fn lines(host: &Host, plugin: &str) -> Vec<String> {
    records(host, plugin)
        .into_iter()
        .map(|r| r.message)
        .collect()
}

/// Asserts the guest reported no `FAIL` line and reported `PASS` for every check in `expected`
/// (so a check that never ran fails the test too).
#[track_caller]
pub fn assert_checks(host: &Host, plugin: &str, expected: &[&str]) {
    let lines = lines(host, plugin);
    let failures: Vec<&String> = lines.iter().filter(|l| l.starts_with("FAIL ")).collect();
    let missing: Vec<&&str> = expected
        .iter()
        .filter(|check| !lines.iter().any(|l| l == &format!("PASS {check}")))
        .collect();
    assert!(
        failures.is_empty() && missing.is_empty(),
        "plugin {plugin}: failed checks {failures:#?}\nchecks that never ran: {missing:?}\nlog:\n{}",
        lines.join("\n")
    );
}

/// The `EV <callback> ...` lines, in order (just the callback names, for one context if given).
pub fn events(host: &Host, plugin: &str, ctx: Option<u32>) -> Vec<String> {
    lines(host, plugin)
        .iter()
        .filter_map(|l| l.strip_prefix("EV "))
        .filter(|l| {
            ctx.is_none_or(|c| l.contains(&format!("ctx={c} ")) || l.ends_with(&format!("ctx={c}")))
        })
        .map(|l| l.split_whitespace().next().unwrap_or_default().to_string())
        .collect()
}

/// The value of `key=` in the first `EV <callback>` line with that callback.
pub fn event_field(host: &Host, plugin: &str, callback: &str, key: &str) -> Option<String> {
    lines(host, plugin).iter().find_map(|l| {
        let rest = l.strip_prefix("EV ")?;
        let mut words = rest.split_whitespace();
        if words.next()? != callback {
            return None;
        }
        words.find_map(|w| w.strip_prefix(&format!("{key}=")).map(str::to_string))
    })
}

/// Request headers of a plain GET.
pub fn get(path: &str) -> Vec<(&'static str, &str)> {
    vec![
        (":method", "GET"),
        (":path", path),
        (":authority", "svc.local"),
        (":scheme", "http"),
    ]
}
