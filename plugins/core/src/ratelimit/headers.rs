//! What a client is told: IETF `RateLimit-Policy` / `RateLimit` structured fields
//! (draft-ietf-httpapi-ratelimit-headers-10: `"name";q=100;w=60` and `"name";r=50;t=30`),
//! draft-03 `X-RateLimit-*` for older clients, `Retry-After` in whole seconds, and RFC 9457
//! problem+json bodies with the draft's `quota-exceeded` type. Pure string building, and
//! without `core::fmt` on the per-request fields (it is the slowest part of a decision in an
//! `opt-level = "z"` Wasm module): numbers go through [`push_u64`].

use crate::policy::{HeaderStyle, Rate};

const NS_PER_S: u64 = 1_000_000_000;

/// The draft's problem type for rate-limited requests.
pub const QUOTA_EXCEEDED: &str = "https://iana.org/assignments/http-problem-types#quota-exceeded";

/// One rule as the headers describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item<'a> {
    /// Policy identifier (rule name).
    pub name: &'a str,
    /// The rule's effective rate: `q` and `w` of the policy field ([`quota_window`], only
    /// worked out where a field needs them).
    pub rate: Rate,
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

/// `n`'s decimal digits, written at the end of `buf` (what `format!("{n}")` gives).
pub(crate) fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    while i > 0 {
        i -= 1;
        if let Some(d) = buf.get_mut(i) {
            // n % 10 < 10: one ASCII digit.
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.get(i..).unwrap_or(&[])
}

/// Appends `n` in decimal (what `write!(out, "{n}")` writes), digits copied at once.
pub fn push_u64(out: &mut String, n: u64) {
    // ASCII digits are always UTF-8.
    out.push_str(std::str::from_utf8(decimal(n, &mut [0; 20])).unwrap_or(""));
}

fn sf_string(out: &mut String, s: &str) {
    out.push('"');
    // Rule names are DNS-1123 labels: the common case needs no escaping and is copied whole.
    if s.bytes()
        .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
    {
        out.push_str(s);
    } else {
        for c in s.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            if (' '..='~').contains(&c) {
                out.push(c);
            }
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
        sf_string(&mut out, i.name);
        let (x, y) = val(i);
        for (k, v) in [(a, x), (b, y)] {
            out.push(';');
            out.push_str(k);
            out.push('=');
            push_u64(&mut out, v);
        }
    }
    out
}

/// `RateLimit-Policy` value.
pub fn policy_field(items: &[Item]) -> String {
    fields(items, "q", "w", |i| quota_window(i.rate))
}

/// `RateLimit` value.
pub fn ratelimit_field(items: &[Item]) -> String {
    fields(items, "r", "t", |i| (i.remaining, i.reset_s))
}

/// The response fields of `style` for `items`, given the route's precomputed
/// `RateLimit-Policy` value (`policy`); none without items.
pub fn response_fields(
    style: HeaderStyle,
    policy: &str,
    items: &[Item],
) -> Vec<(&'static str, String)> {
    if items.is_empty() || style == HeaderStyle::None {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(5);
    out.push(("ratelimit-policy", policy.to_string()));
    out.push(("ratelimit", ratelimit_field(items)));
    if style == HeaderStyle::IetfAndLegacy {
        out.extend(legacy_fields(items));
    }
    out
}

/// draft-03 `X-RateLimit-Limit/Remaining/Reset` for the item closest to its limit.
pub fn legacy_fields(items: &[Item]) -> Vec<(&'static str, String)> {
    let Some(i) = items
        .iter()
        .min_by_key(|i| (i.remaining, u64::MAX - i.reset_s))
    else {
        return Vec::new();
    };
    let number = |n: u64| {
        let mut s = String::with_capacity(20);
        push_u64(&mut s, n);
        s
    };
    let (quota, window_s) = quota_window(i.rate);
    let mut limit = number(quota);
    limit.push_str(", ");
    push_u64(&mut limit, quota);
    limit.push_str(";w=");
    push_u64(&mut limit, window_s);
    vec![
        ("x-ratelimit-limit", limit),
        ("x-ratelimit-remaining", number(i.remaining)),
        ("x-ratelimit-reset", number(i.reset_s)),
    ]
}

/// Appends `s` as a JSON string. Names and messages rarely need escaping, so the common case
/// is copied whole; anything else goes through serde_json (serializing a `&str`, not a
/// `Value`, keeps its number and map writers out of the Wasm module; it cannot fail).
fn push_json_string(out: &mut String, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&serde_json::to_string(s).unwrap_or_default());
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_json_string(&mut out, s);
    out
}

/// RFC 9457 body for a rate-limited request.
pub fn quota_exceeded_body(status: u16, route: &str, rule: &str, retry_s: u64) -> String {
    let mut detail = String::with_capacity(64 + rule.len() + route.len());
    detail.push_str("rate limit `");
    detail.push_str(rule);
    detail.push_str("` of route `");
    detail.push_str(route);
    detail.push_str("` exceeded; retry in ");
    push_u64(&mut detail, retry_s);
    detail.push_str(" s");
    let mut out = String::with_capacity(192 + detail.len() + rule.len());
    out.push_str("{\"type\":");
    push_json_string(&mut out, QUOTA_EXCEEDED);
    out.push_str(",\"title\":\"Too Many Requests\",\"status\":");
    push_u64(&mut out, u64::from(status));
    out.push_str(",\"detail\":");
    push_json_string(&mut out, &detail);
    out.push_str(",\"violated-policies\":[");
    push_json_string(&mut out, rule);
    out.push_str("]}");
    out
}

/// RFC 9457 body for a request refused outright (deny list, global limit unavailable).
pub fn problem_body(status: u16, title: &str, detail: &str) -> String {
    format!(
        "{{\"type\":\"about:blank\",\"title\":{},\"status\":{status},\"detail\":{}}}",
        json_string(title),
        json_string(detail)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_as_display_writes_them() {
        for n in [0, 1, 9, 10, 99, 100, 12_345, 1 << 40, u64::MAX] {
            let mut s = String::from("x");
            push_u64(&mut s, n);
            assert_eq!(s, format!("x{n}"));
        }
    }

    #[test]
    fn structured_fields_list_every_item() {
        let items = [
            Item {
                name: "per-client",
                rate: "100/min".parse().expect("rate"),
                remaining: 7,
                reset_s: 12,
            },
            Item {
                name: "a\"b\\c\u{7f}",
                rate: "5/s".parse().expect("rate"),
                remaining: 0,
                reset_s: 1,
            },
        ];
        assert_eq!(
            policy_field(&items),
            r#""per-client";q=100;w=60, "a\"b\\c";q=5;w=1"#
        );
        assert_eq!(
            ratelimit_field(&items),
            r#""per-client";r=7;t=12, "a\"b\\c";r=0;t=1"#
        );
        assert_eq!(
            legacy_fields(&items),
            [
                ("x-ratelimit-limit", "5, 5;w=1".to_string()),
                ("x-ratelimit-remaining", "0".to_string()),
                ("x-ratelimit-reset", "1".to_string()),
            ]
        );
    }

    #[test]
    fn response_fields_follow_the_style() {
        let items = [Item {
            name: "a",
            rate: "10/s".parse().expect("rate"),
            remaining: 4,
            reset_s: 1,
        }];
        let names = |style| {
            response_fields(style, "P", &items)
                .into_iter()
                .map(|(k, _)| k)
                .collect::<Vec<_>>()
        };
        assert!(names(HeaderStyle::None).is_empty());
        assert_eq!(names(HeaderStyle::Ietf), ["ratelimit-policy", "ratelimit"]);
        assert_eq!(names(HeaderStyle::IetfAndLegacy).len(), 5);
        assert_eq!(response_fields(HeaderStyle::Ietf, "P", &items)[0].1, "P");
        assert!(response_fields(HeaderStyle::Ietf, "P", &[]).is_empty());
    }

    #[test]
    fn the_problem_body_is_json_naming_rule_route_and_retry() {
        let body = quota_exceeded_body(429, "api", "per \"client\"\n", 3);
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["type"], QUOTA_EXCEEDED);
        assert_eq!(v["status"], 429);
        assert_eq!(
            v["detail"],
            "rate limit `per \"client\"\n` of route `api` exceeded; retry in 3 s"
        );
        assert_eq!(v["violated-policies"][0], "per \"client\"\n");
        let plain = quota_exceeded_body(429, "api", "per-client", 1);
        let v: serde_json::Value = serde_json::from_str(&plain).expect("json");
        assert_eq!(v["violated-policies"][0], "per-client");
    }
}
