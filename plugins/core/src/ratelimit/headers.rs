//! What a client is told: IETF `RateLimit-Policy` / `RateLimit` structured fields
//! (draft-ietf-httpapi-ratelimit-headers-10: `"name";q=100;w=60` and `"name";r=50;t=30`),
//! draft-03 `X-RateLimit-*` for older clients, `Retry-After` in whole seconds, and RFC 9457
//! problem+json bodies with the draft's `quota-exceeded` type. Pure string building.

use std::fmt::Write;

use crate::policy::Rate;

const NS_PER_S: u64 = 1_000_000_000;

/// The draft's problem type for rate-limited requests.
pub const QUOTA_EXCEEDED: &str = "https://iana.org/assignments/http-problem-types#quota-exceeded";

/// One rule as the headers describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Policy identifier (rule name).
    pub name: String,
    /// Quota `q` per window `w` seconds.
    pub quota: u64,
    /// Window `w` in whole seconds (>= 1).
    pub window_s: u64,
    /// Remaining `r`.
    pub remaining: u64,
    /// Seconds `t` until more quota.
    pub reset_s: u64,
}

/// Whole seconds, rounded up (0 stays 0).
pub fn ceil_secs(ns: u64) -> u64 {
    ns.div_ceil(NS_PER_S)
}

/// `Retry-After` seconds: rounded up, at least 1.
pub fn retry_after_secs(ns: u64) -> u64 {
    ceil_secs(ns).max(1)
}

/// The policy's `(q, w)` for a rate: the count per period, with sub-second or fractional
/// periods scaled to a whole number of seconds (`w` must be an integer > 0).
pub fn quota_window(rate: Rate) -> (u64, u64) {
    let period = rate.period().as_nanos();
    let w = ceil_secs(period).max(1);
    let q =
        u128::from(rate.count()) * u128::from(w) * u128::from(NS_PER_S) / u128::from(period.max(1));
    (u64::try_from(q).unwrap_or(u64::MAX), w)
}

fn sf_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        if (' '..='~').contains(&c) {
            out.push(c);
        }
    }
    out.push('"');
}

/// `"name";a=x;b=y, ...` for every item, written into one string.
fn fields(items: &[Item], a: &str, b: &str, val: impl Fn(&Item) -> (u64, u64)) -> String {
    let mut out = String::with_capacity(items.len() * 32);
    for (n, i) in items.iter().enumerate() {
        if n > 0 {
            out.push_str(", ");
        }
        sf_string(&mut out, &i.name);
        let (x, y) = val(i);
        // Writing into a String cannot fail.
        let _ = write!(out, ";{a}={x};{b}={y}");
    }
    out
}

/// `RateLimit-Policy` value.
pub fn policy_field(items: &[Item]) -> String {
    fields(items, "q", "w", |i| (i.quota, i.window_s))
}

/// `RateLimit` value.
pub fn ratelimit_field(items: &[Item]) -> String {
    fields(items, "r", "t", |i| (i.remaining, i.reset_s))
}

/// draft-03 `X-RateLimit-Limit/Remaining/Reset` for the item closest to its limit.
pub fn legacy_fields(items: &[Item]) -> Vec<(&'static str, String)> {
    let Some(i) = items
        .iter()
        .min_by_key(|i| (i.remaining, u64::MAX - i.reset_s))
    else {
        return Vec::new();
    };
    vec![
        (
            "x-ratelimit-limit",
            format!("{}, {};w={}", i.quota, i.quota, i.window_s),
        ),
        ("x-ratelimit-remaining", i.remaining.to_string()),
        ("x-ratelimit-reset", i.reset_s.to_string()),
    ]
}

fn json_string(s: &str) -> String {
    // Serializing a `&str` (not a `Value`) keeps serde_json's number and map writers out
    // of the Wasm module; it cannot fail.
    serde_json::to_string(s).unwrap_or_default()
}

/// RFC 9457 body for a rate-limited request.
pub fn quota_exceeded_body(status: u16, route: &str, rule: &str, retry_s: u64) -> String {
    format!(
        "{{\"type\":{},\"title\":\"Too Many Requests\",\"status\":{status},\"detail\":{},\"violated-policies\":[{}]}}",
        json_string(QUOTA_EXCEEDED),
        json_string(&format!(
            "rate limit `{rule}` of route `{route}` exceeded; retry in {retry_s} s"
        )),
        json_string(rule)
    )
}

/// RFC 9457 body for a request refused outright (deny list, global limit unavailable).
pub fn problem_body(status: u16, title: &str, detail: &str) -> String {
    format!(
        "{{\"type\":\"about:blank\",\"title\":{},\"status\":{status},\"detail\":{}}}",
        json_string(title),
        json_string(detail)
    )
}
