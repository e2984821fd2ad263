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

/// Whole seconds, rounded up (0 stays 0). Below 2^39 ns (over nine minutes: every reset a
/// per-second or per-minute rule gives) without a 64-bit divide (tens of cycles, and kept a
/// divide at `opt-level = "z"`): `x / 10^9` is `(x / 2^9) / 1_953_125`, and for a dividend
/// below 2^31 the multiply by `ceil(2^53 / 1_953_125)` and shift is exact (its error,
/// below 2^31 / 2^53, is less than the 1 / 1_953_125 a fraction needs to reach the next
/// whole number), with the product below 2^64.
pub fn ceil_secs(ns: u64) -> u64 {
    if ns < 1 << 39 {
        let y = (ns + (NS_PER_S - 1)) >> 9;
        (y * 4_611_686_019) >> 53
    } else {
        ns.div_ceil(NS_PER_S)
    }
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
#[inline(always)]
pub(crate) fn decimal(n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let start = digits_before(buf, 20, n);
    buf.get(start..).unwrap_or(&[])
}

/// Writes `n`'s decimal digits into `buf` so that they end at `end` and returns where they
/// start (digits with no room left of them are dropped: callers leave 20 bytes, `u64::MAX`'s
/// length). In 32-bit arithmetic once `n` fits, where a tenth is a multiply and a shift
/// ([`div10`]); Wasm has no 64-bit multiply-high, so above `u32::MAX` it stays a division.
#[inline(always)]
fn digits_before(buf: &mut [u8], end: usize, n: u64) -> usize {
    let mut i = end;
    let mut big = n;
    while big > u64::from(u32::MAX) {
        i = i.saturating_sub(1);
        if let Some(d) = buf.get_mut(i) {
            // big % 10 < 10: one ASCII digit.
            *d = b'0' + (big % 10) as u8;
        }
        big /= 10;
    }
    // Fits: `big <= u32::MAX`.
    let mut m = big as u32;
    loop {
        i = i.saturating_sub(1);
        let q = div10(m);
        if let Some(d) = buf.get_mut(i) {
            // m - 10q < 10: one ASCII digit.
            *d = b'0' + (m - 10 * q) as u8;
        }
        m = q;
        if m == 0 {
            break;
        }
    }
    i
}

/// `m / 10` as a multiply and a shift (0xCCCC_CCCD / 2^35 is 1/10 closely enough for every
/// `u32`, the reciprocal compilers use). At `opt-level = "z"` LLVM keeps `m / 10` a division,
/// and a hardware divide costs tens of cycles where a multiply costs three; a number's digits
/// are a chain of them.
#[inline(always)]
fn div10(m: u32) -> u32 {
    ((u64::from(m) * 0xCCCC_CCCD) >> 35) as u32
}

/// Bytes [`put_ratelimit_item`] puts an item together in.
const ITEM_ROOM: usize = 96;

/// Appends one `RateLimit` item: `head` (`"name";r=`, see [`put_ratelimit_head`]), then
/// `remaining`, `;t=` and `reset_s`. Put together right to left in a stack buffer and
/// appended with one copy: at `opt-level = "z"` each `extend_from_slice` is a chain of three
/// calls and a `memory.copy` (~200 instructions), four of them per item before. A head too
/// long for the buffer (a rule name of over 50 bytes) is appended on its own.
pub fn put_ratelimit_item(out: &mut Vec<u8>, head: &[u8], remaining: u64, reset_s: u64) {
    let mut buf = [0u8; ITEM_ROOM];
    let mut i = digits_before(&mut buf, ITEM_ROOM, reset_s);
    for &b in b";t=".iter().rev() {
        i = i.saturating_sub(1);
        if let Some(d) = buf.get_mut(i) {
            *d = b;
        }
    }
    i = digits_before(&mut buf, i, remaining);
    let start = i.saturating_sub(head.len());
    match buf.get_mut(start..i) {
        Some(room) if room.len() == head.len() => {
            // SAFETY: `room` is `head.len()` bytes of the local `buf`, which `head` cannot
            // overlap. (Not `copy_from_slice`: a call at opt-level z, with a panic path.)
            unsafe { std::ptr::copy_nonoverlapping(head.as_ptr(), room.as_mut_ptr(), head.len()) };
            i = start;
        }
        _ => out.extend_from_slice(head),
    }
    append(out, buf.get(i..).unwrap_or(&[]));
}

/// Appends `bytes` to `out`: `extend_from_slice` without its chain of calls (at
/// `opt-level = "z"` it is three calls deep before the copy, ~110 instructions more than this
/// for the short values a request appends).
#[inline(always)]
pub(crate) fn append(out: &mut Vec<u8>, bytes: &[u8]) {
    if out.capacity() - out.len() < bytes.len() {
        out.reserve(bytes.len());
    }
    let len = out.len();
    if out.capacity() - len >= bytes.len() {
        // SAFETY: there is room for `bytes.len()` more bytes after `len` (checked just above),
        // `bytes` cannot overlap `out`'s spare capacity (`out` is borrowed mutably), and the
        // copied bytes initialize what `set_len` takes in.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), out.as_mut_ptr().add(len), bytes.len());
            out.set_len(len + bytes.len());
        }
    }
}

/// Appends `n` in decimal (what `write!(out, "{n}")` writes), digits copied at once.
pub fn push_u64(out: &mut String, n: u64) {
    // ASCII digits are always UTF-8.
    out.push_str(std::str::from_utf8(decimal(n, &mut [0; 20])).unwrap_or(""));
}

/// Appends `n` in decimal to a byte buffer (a header value or body being written).
pub fn put_u64(out: &mut Vec<u8>, n: u64) {
    match u8::try_from(n) {
        // One digit (`r=0`, `t=1`, ...): no digit buffer and no copy.
        Ok(d @ 0..=9) => out.push(b'0' + d),
        _ => out.extend_from_slice(decimal(n, &mut [0; 20])),
    }
}

fn sf_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    // Rule names are DNS-1123 labels: the common case needs no escaping and is copied whole.
    if s.bytes()
        .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
    {
        out.extend_from_slice(s.as_bytes());
    } else {
        for b in s.bytes() {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            // Printable ASCII only; every byte of a multi-byte character is >= 0x80.
            if (b' '..=b'~').contains(&b) {
                out.push(b);
            }
        }
    }
    out.push(b'"');
}

/// `"name";r=`, a `RateLimit` item up to its remaining units (written once per rule when a
/// limiter is built; see `Limiter::put_response_fields`).
pub fn put_ratelimit_head(out: &mut Vec<u8>, name: &str) {
    sf_string(out, name);
    out.extend_from_slice(b";r=");
}

/// `"name";a=x;b=y, ...` for every item, appended to `out`.
fn put_fields(out: &mut Vec<u8>, items: &[Item], a: u8, b: u8, val: impl Fn(&Item) -> (u64, u64)) {
    for (n, i) in items.iter().enumerate() {
        if n > 0 {
            out.extend_from_slice(b", ");
        }
        sf_string(out, i.name);
        let (x, y) = val(i);
        for (k, v) in [(a, x), (b, y)] {
            out.extend_from_slice(&[b';', k, b'=']);
            put_u64(out, v);
        }
    }
}

/// Text written by this module's byte writers (ASCII only) as a `String`.
fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_default()
}

/// `RateLimit-Policy` value.
pub fn policy_field(items: &[Item]) -> String {
    let mut out = Vec::with_capacity(items.len() * 32);
    put_fields(&mut out, items, b'q', b'w', |i| quota_window(i.rate));
    text(out)
}

/// `RateLimit` value, appended to `out`.
pub fn put_ratelimit_field(out: &mut Vec<u8>, items: &[Item]) {
    put_fields(out, items, b'r', b't', |i| (i.remaining, i.reset_s));
}

/// `RateLimit` value.
pub fn ratelimit_field(items: &[Item]) -> String {
    let mut out = Vec::with_capacity(items.len() * 32);
    put_ratelimit_field(&mut out, items);
    text(out)
}

/// Where response fields are written: each field's value is appended by the writer it is
/// handed (a local reply's serialized header map, or values kept for the response).
pub trait FieldSink {
    /// Adds the field `name`; `value` appends its value to the buffer it is given.
    fn field(&mut self, name: &'static str, value: &mut dyn FnMut(&mut Vec<u8>));

    /// Adds the field `name` with a value the caller shares (a per-route constant): a sink
    /// that keeps fields may keep it without a copy. Copied by default.
    fn shared_field(&mut self, name: &'static str, value: &std::sync::Arc<str>) {
        self.field(name, &mut |v| v.extend_from_slice(value.as_bytes()));
    }
}

/// Fields kept as name and value bytes.
impl FieldSink for Vec<(&'static str, Vec<u8>)> {
    fn field(&mut self, name: &'static str, value: &mut dyn FnMut(&mut Vec<u8>)) {
        let mut v = Vec::with_capacity(32);
        value(&mut v);
        self.push((name, v));
    }
}

/// How many fields [`put_response_fields`] writes for `style` and `items`.
pub fn response_field_count(style: HeaderStyle, items: &[Item]) -> usize {
    match style {
        _ if items.is_empty() => 0,
        HeaderStyle::None => 0,
        HeaderStyle::Ietf => 2,
        HeaderStyle::IetfAndLegacy => 5,
    }
}

/// Writes the response fields of `style` for `items` into `sink`, given the route's
/// precomputed `RateLimit-Policy` value (`policy`); none without items.
pub fn put_response_fields(
    style: HeaderStyle,
    policy: &str,
    items: &[Item],
    sink: &mut dyn FieldSink,
) {
    if response_field_count(style, items) == 0 {
        return;
    }
    sink.field("ratelimit-policy", &mut |v| {
        v.extend_from_slice(policy.as_bytes())
    });
    sink.field("ratelimit", &mut |v| put_ratelimit_field(v, items));
    if style == HeaderStyle::IetfAndLegacy {
        put_legacy_fields(items, sink);
    }
}

/// The response fields of `style` for `items` as strings (see [`put_response_fields`]).
pub fn response_fields(
    style: HeaderStyle,
    policy: &str,
    items: &[Item],
) -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, Vec<u8>)> = Vec::new();
    put_response_fields(style, policy, items, &mut out);
    out.into_iter().map(|(k, v)| (k, text(v))).collect()
}

/// draft-03 `X-RateLimit-Limit/Remaining/Reset` for the item closest to its limit.
pub fn put_legacy_fields(items: &[Item], sink: &mut dyn FieldSink) {
    let Some(i) = items
        .iter()
        .min_by_key(|i| (i.remaining, u64::MAX - i.reset_s))
    else {
        return;
    };
    let (quota, window_s) = quota_window(i.rate);
    sink.field("x-ratelimit-limit", &mut |v| {
        put_u64(v, quota);
        v.extend_from_slice(b", ");
        put_u64(v, quota);
        v.extend_from_slice(b";w=");
        put_u64(v, window_s);
    });
    sink.field("x-ratelimit-remaining", &mut |v| put_u64(v, i.remaining));
    sink.field("x-ratelimit-reset", &mut |v| put_u64(v, i.reset_s));
}

/// draft-03 `X-RateLimit-Limit/Remaining/Reset` for the item closest to its limit.
pub fn legacy_fields(items: &[Item]) -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, Vec<u8>)> = Vec::new();
    put_legacy_fields(items, &mut out);
    out.into_iter().map(|(k, v)| (k, text(v))).collect()
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

/// The RFC 9457 body of a rate-limited request for one route and rule, built once: only the
/// `Retry-After` seconds in its `detail` change per request, so a request writes the text
/// before them, the number and the text after them. JSON escapes each character on its own,
/// so escaping the detail in two parts gives the same text as escaping it whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaBody {
    /// Up to the number, inside the open `detail` string.
    head: Vec<u8>,
    /// From after the number to the end.
    tail: Vec<u8>,
}

impl QuotaBody {
    /// The body parts for `rule` of `route`, answered with `status`.
    pub fn new(status: u16, route: &str, rule: &str) -> Self {
        let mut detail = String::with_capacity(64 + rule.len() + route.len());
        detail.push_str("rate limit `");
        detail.push_str(rule);
        detail.push_str("` of route `");
        detail.push_str(route);
        detail.push_str("` exceeded; retry in ");
        let mut head = String::with_capacity(192 + detail.len());
        head.push_str("{\"type\":");
        push_json_string(&mut head, QUOTA_EXCEEDED);
        head.push_str(",\"title\":\"Too Many Requests\",\"status\":");
        push_u64(&mut head, u64::from(status));
        head.push_str(",\"detail\":");
        push_json_string(&mut head, &detail);
        // Reopen the detail string: the number and " s" follow inside it.
        head.pop();
        let mut tail = String::with_capacity(32 + rule.len());
        tail.push_str(" s\",\"violated-policies\":[");
        push_json_string(&mut tail, rule);
        tail.push_str("]}");
        Self {
            head: head.into_bytes(),
            tail: tail.into_bytes(),
        }
    }

    /// Bytes the body takes with a `Retry-After` of up to 20 digits.
    pub fn max_len(&self) -> usize {
        self.head.len() + 20 + self.tail.len()
    }

    /// Appends the body for `retry_s` seconds to `out`.
    pub fn put(&self, retry_s: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.head);
        put_u64(out, retry_s);
        out.extend_from_slice(&self.tail);
    }
}

/// RFC 9457 body for a rate-limited request.
pub fn quota_exceeded_body(status: u16, route: &str, rule: &str, retry_s: u64) -> String {
    let q = QuotaBody::new(status, route, rule);
    let mut out = Vec::with_capacity(q.max_len());
    q.put(retry_s, &mut out);
    text(out)
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
        for n in [0, 1, 9, 10, 99, 100, 255, 256, 12_345, 1 << 40, u64::MAX] {
            let mut s = String::from("x");
            push_u64(&mut s, n);
            assert_eq!(s, format!("x{n}"));
            let mut b = b"x".to_vec();
            put_u64(&mut b, n);
            assert_eq!(b, format!("x{n}").into_bytes());
        }
    }

    #[test]
    fn the_multiply_for_a_tenth_divides_as_a_division_does() {
        // A sweep over the whole u32 range, its top, and both sides of every power of ten
        // (the proof that the reciprocal is exact for every u32 is the standard one; this
        // checks the constant and the shift).
        let mut m: u64 = 0;
        while m <= u64::from(u32::MAX) {
            let v = m as u32;
            assert_eq!(div10(v), v / 10, "{v}");
            m += 997;
        }
        for v in [
            u32::MAX,
            u32::MAX - 1,
            u32::MAX - 5,
            4_294_967_290,
            1 << 31,
            (1 << 31) - 1,
        ] {
            assert_eq!(div10(v), v / 10, "{v}");
        }
        let mut p = 10u64;
        while p <= u64::from(u32::MAX) {
            for v in [p - 1, p, p + 1] {
                let v = v as u32;
                assert_eq!(div10(v), v / 10, "{v}");
            }
            p *= 10;
        }
    }

    #[test]
    fn whole_seconds_without_a_divide_are_the_divided_ones() {
        let mut ns: Vec<u64> = vec![0, 1, 511, 512, 513, u64::MAX, u64::MAX - 1];
        for k in 0..=600u64 {
            let b = k * NS_PER_S;
            ns.extend([
                b.saturating_sub(1),
                b,
                b + 1,
                b + 511,
                b + 512,
                b + 999_999_999,
            ]);
        }
        for b in [1u64 << 39, 1 << 40, 1 << 32, 1 << 31] {
            ns.extend([b - 2, b - 1, b, b + 1]);
        }
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ns.extend([x >> 24, x >> 25, x >> 30, x]);
        }
        for n in ns {
            assert_eq!(ceil_secs(n), n.div_ceil(NS_PER_S), "{n}");
        }
    }

    #[test]
    fn every_number_is_written_as_display_writes_it() {
        let mut ns: Vec<u64> = (0..20_000).collect();
        let mut p = 1u64;
        while let Some(next) = p.checked_mul(10) {
            ns.extend([p - 1, p, p + 1, next - 1]);
            p = next;
        }
        ns.extend([u64::MAX, u64::MAX - 1, 1 << 63, 4_294_967_295]);
        for n in ns {
            assert_eq!(decimal(n, &mut [0; 20]), n.to_string().as_bytes(), "{n}");
        }
    }

    #[test]
    fn an_item_put_together_at_once_is_the_field_item() {
        // Names short enough for the stack buffer and too long for it, numbers of every length.
        let names: Vec<String> = [1, 10, 49, 50, 51, 52, 53, 54, 80, 200]
            .iter()
            .map(|&n| "n".repeat(n))
            .collect();
        for name in &names {
            let mut head = Vec::new();
            put_ratelimit_head(&mut head, name);
            for (remaining, reset_s) in [(0, 0), (7, 1), (99_999, 60), (u64::MAX, u64::MAX)] {
                let item = Item {
                    name,
                    rate: "1/s".parse().expect("rate"),
                    remaining,
                    reset_s,
                };
                let mut want = b"x, ".to_vec();
                put_ratelimit_field(&mut want, &[item]);
                let mut got = b"x, ".to_vec();
                put_ratelimit_item(&mut got, &head, remaining, reset_s);
                assert_eq!(
                    String::from_utf8(got).expect("ascii"),
                    String::from_utf8(want).expect("ascii"),
                    "{} {remaining} {reset_s}",
                    name.len()
                );
            }
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
        // Built once and written per request, the body is what escaping the detail whole gives.
        for (route, rule) in [("api", "per-client"), ("a\"p\\i", "r\u{1}\"x")] {
            for retry in [1, 42, u64::MAX] {
                let detail =
                    format!("rate limit `{rule}` of route `{route}` exceeded; retry in {retry} s");
                let want = format!(
                    "{{\"type\":\"{QUOTA_EXCEEDED}\",\"title\":\"Too Many Requests\",\"status\":503,\
                     \"detail\":{},\"violated-policies\":[{}]}}",
                    serde_json::to_string(&detail).expect("json"),
                    serde_json::to_string(rule).expect("json"),
                );
                let q = QuotaBody::new(503, route, rule);
                let mut got = Vec::new();
                q.put(retry, &mut got);
                assert!(got.len() <= q.max_len());
                assert_eq!(String::from_utf8(got).expect("utf-8"), want);
            }
        }
        let plain = quota_exceeded_body(429, "api", "per-client", 1);
        let v: serde_json::Value = serde_json::from_str(&plain).expect("json");
        assert_eq!(v["violated-policies"][0], "per-client");
    }
}
