//! Checks that span fields (names unique, the `default` route last, tiers known, options
//! that only one algorithm understands, ...). Collects every problem with its field path;
//! never stops at the first. Knows nothing of files or line numbers.

use super::error::Problems;
use super::ratelimit::{
    is_header_name, Algorithm, IpSource, KeyPart, RateLimitSettings, RouteRateLimit,
};
use super::route::{PathMatch, RouteMatch, DEFAULT_ROUTE};
use super::text::concat;
use super::{Policy, API_VERSION, KIND};

/// Longest rate-limit queue a worker may hold.
const MAX_QUEUE: u32 = 100_000;
/// The message for a queue length out of range (written out: formatting the constant at
/// run time cost the filters a `format!`; a test holds it to `MAX_QUEUE`).
const QUEUE_RANGE: &str = "must be 1..=100000";
/// Values met so far; lists in a policy are short, and a linear scan keeps a B-tree per
/// element type out of the filters' Wasm.
struct Seen<'a, T: ?Sized>(Vec<&'a T>);

impl<T: ?Sized> Default for Seen<'_, T> {
    fn default() -> Self {
        Seen(Vec::new())
    }
}

impl<'a, T: PartialEq + ?Sized> Seen<'a, T> {
    /// False when `x` was seen before (like `BTreeSet::insert`).
    fn insert(&mut self, x: &'a T) -> bool {
        if self.0.contains(&x) {
            return false;
        }
        self.0.push(x);
        true
    }
}

/// `at` followed by `suffix` (`.match`): the path of a field of the value at `at`.
fn field(at: &str, suffix: &str) -> String {
    concat(&[at, suffix])
}

/// `a, b, c`: the one list a message shows. A loop, not `[String]::join`, whose generic
/// copy is a kilobyte of the filters' Wasm.
fn joined(items: &[String]) -> String {
    let mut out = String::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(item);
    }
    out
}

/// Most hash slots per rule (memory: slots × rules × ~60 bytes).
const MAX_SLOTS: u32 = 1 << 20;
/// The message for a slot count out of range (see `QUEUE_RANGE`).
const SLOTS_RANGE: &str = "must be 1..=1048576";

pub(crate) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

// `#[inline(never)]` on the checks: inlined into the filter's `on_configure` they made
// one huge function, and the module 347 bytes larger after wasm-opt.
#[inline(never)]
pub(crate) fn problems(p: &Policy) -> Problems {
    let mut out = Problems::default();
    if p.api_version != API_VERSION {
        out.at(
            "",
            "apiVersion",
            format!("`{}` is not supported; use `{API_VERSION}`", p.api_version),
        );
    }
    if p.kind != KIND {
        out.at(
            "",
            "kind",
            format!("`{}` is not supported; use `{KIND}`", p.kind),
        );
    }
    if !is_dns_label(&p.service) {
        out.at(
            "",
            "service",
            format!(
                "`{}` is not a DNS-1123 label (lower-case letters, digits, `-`, at most 63)",
                p.service
            ),
        );
    }
    let defaults;
    let settings = match &p.ratelimit {
        Some(s) => s,
        None => {
            defaults = RateLimitSettings::default();
            &defaults
        }
    };
    let mut names = Seen::default();
    let mut default_at = None;
    for (i, r) in p.routes.iter().enumerate() {
        let at = format!("routes[{i}]");
        if !is_dns_label(&r.name) {
            out.at(
                &at,
                ".name",
                format!("`{}` is not a DNS-1123 label", r.name),
            );
        }
        if !names.insert(r.name.as_str()) {
            out.at(&at, ".name", format!("route `{}` is defined twice", r.name));
        }
        if let Some(d) = default_at {
            out.at(
                &at,
                "",
                format!(
                    "unreachable: routes[{d}] (`default`) matches every request before this one"
                ),
            );
        }
        match (&r.matcher, r.name == DEFAULT_ROUTE) {
            (None, true) => default_at = Some(i),
            (None, false) => out.at(
                &at,
                "",
                "a route needs `match` (only the route named `default` matches everything)",
            ),
            (Some(_), true) => out.at(
                &at,
                ".match",
                "the `default` route matches every request; remove `match` or rename the route",
            ),
            (Some(m), false) => check_match(m, &field(&at, ".match"), &mut out),
        }
        if let Some(rl) = &r.ratelimit {
            check_rules(
                rl,
                settings,
                p.ratelimit.is_some(),
                &field(&at, ".ratelimit"),
                &mut out,
            );
        }
    }
    if let Some(s) = &p.ratelimit {
        check_settings(s, &mut out);
    }
    #[cfg(feature = "deployment")]
    if let Some(d) = &p.deployment {
        for (path, msg) in d.problems() {
            out.push(path, msg);
        }
    }
    out
}

#[inline(never)]
fn check_match(m: &RouteMatch, at: &str, out: &mut Problems) {
    if let Some(p) = &m.path {
        let pat = p.pattern();
        if !pat.starts_with('/') {
            out.at(at, ".path", format!("`{pat}` must start with `/`"));
        }
        if pat.contains(['?', '#']) {
            out.at(
                at,
                ".path",
                "paths are matched without the query string; remove `?`/`#`",
            );
        }
        if let PathMatch::Template(t) = p {
            let mut vars = Seen::default();
            for seg in t.split('/') {
                let has_brace = seg.contains(['{', '}']);
                let var = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}'));
                match var {
                    Some(v) if !v.is_empty() && !v.contains(['{', '}']) && !vars.insert(v) => {
                        out.at(
                            at,
                            ".path.template",
                            format!("variable `{{{v}}}` appears twice"),
                        );
                    }
                    Some(v) if !v.is_empty() && !v.contains(['{', '}']) => {}
                    _ if has_brace => out.at(
                        at,
                        ".path.template",
                        format!(
                            "segment `{seg}`: a variable must be a whole segment like `{{id}}`"
                        ),
                    ),
                    _ => {}
                }
            }
        }
    }
    for (j, meth) in m.methods.iter().enumerate() {
        if meth.is_empty() || !meth.bytes().all(|b| b.is_ascii_uppercase() || b == b'-') {
            out.push(
                format!("{at}.methods[{j}]"),
                format!("`{meth}` is not an upper-case HTTP method"),
            );
        }
    }
    if let Some(h) = &m.host {
        if h.is_empty() || h.contains(['/', ' ']) {
            out.at(at, ".host", format!("`{h}` is not a host name"));
        }
    }
    for k in m.headers.keys() {
        if !is_header_name(k) || k.bytes().any(|b| b.is_ascii_uppercase()) {
            out.at(
                at,
                &concat(&[".headers.", k]),
                "header names must be lower-case tokens",
            );
        }
    }
}

#[inline(never)]
fn check_rules(
    rl: &RouteRateLimit,
    s: &RateLimitSettings,
    has_settings: bool,
    at: &str,
    out: &mut Problems,
) {
    if rl.rules.is_empty() {
        out.at(at, ".rules", "needs at least one rule");
    }
    let mut names = Seen::default();
    for (j, rule) in rl.rules.iter().enumerate() {
        let at = format!("{at}.rules[{j}]");
        if !is_dns_label(&rule.name) {
            out.at(
                &at,
                ".name",
                format!("`{}` is not a DNS-1123 label", rule.name),
            );
        }
        if !names.insert(rule.name.as_str()) {
            out.at(
                &at,
                ".name",
                format!("rule `{}` is defined twice in this route", rule.name),
            );
        }
        let cost = u64::from(rule.cost.unwrap_or(1));
        if rule.cost == Some(0) {
            out.at(&at, ".cost", "must be at least 1");
        }
        match rule.algorithm {
            Algorithm::TokenBucket => {
                let burst = u64::from(rule.burst.unwrap_or(1));
                if burst == 0 {
                    out.at(&at, ".burst", "a token bucket needs burst >= 1");
                } else if cost > burst {
                    out.at(
                        &at,
                        ".cost",
                        format!("cost {cost} is above burst {burst}: no request could ever pass"),
                    );
                }
            }
            Algorithm::LeakyBucket => {
                if let (Some(d), b) = (rule.delay_after, rule.burst.unwrap_or(0)) {
                    if d > b {
                        out.at(
                            &at,
                            ".delay_after",
                            format!("{d} is above burst {b}: only burst requests can be early"),
                        );
                    }
                }
                if rule.max_delay.is_some_and(|d| d.is_zero()) {
                    out.at(&at, ".max_delay", "must be greater than 0");
                }
            }
            Algorithm::SlidingWindow | Algorithm::FixedWindow => {
                if rule.burst.is_some() {
                    out.at(&at, ".burst", format!("`{}` counts requests per window; burst applies to token-bucket and leaky-bucket", rule.algorithm.as_str()),
                    );
                }
                if cost > rule.rate.count() {
                    out.at(&at, ".cost", "cost is above the window's count");
                }
            }
        }
        if rule.algorithm != Algorithm::LeakyBucket {
            if rule.max_delay.is_some() {
                out.at(
                    &at,
                    ".max_delay",
                    "only a leaky-bucket rule can delay requests",
                );
            }
            if rule.delay_after.is_some() {
                out.at(
                    &at,
                    ".delay_after",
                    "only a leaky-bucket rule can delay requests",
                );
            }
        }
        if rule.global {
            if s.global.is_none() {
                out.at(&at, ".global", "a global rule needs `ratelimit.global` (cluster and domain of the rate limit service)",
                );
            }
            if rule.algorithm == Algorithm::LeakyBucket {
                out.at(
                    &at,
                    ".algorithm",
                    "a global rule is decided by the rate limit service and cannot delay",
                );
            }
        } else if rule.failure_mode.is_some() {
            out.at(
                &at,
                ".failure_mode",
                "only global rules can fail (set `global: true` or remove it)",
            );
        }
        for (k, part) in rule.key.iter().enumerate() {
            if let KeyPart::Claim(c) = part {
                if !s.claim_headers.contains_key(c) {
                    out.push(
                        format!("{at}.key[{k}]"),
                        format!("claim `{c}` has no header: add `ratelimit.claim_headers: {{ {c}: <header> }}` naming the header RequestAuthentication outputClaimToHeaders writes"),
                    );
                }
            }
        }
        let mut parts = Seen::default();
        if !rule.key.iter().all(|k| parts.insert(k)) {
            out.at(&at, ".key", "a key part is listed twice");
        }
        if !rule.tiers.is_empty() {
            match &s.tiers {
                None => out.at(&at, ".tiers", if has_settings {
                        "tiers need `ratelimit.tiers` (where the tier comes from, the default, the names)"
                    } else {
                        "tiers need a top-level `ratelimit.tiers` section"
                    },
                ),
                Some(t) => {
                    for name in rule.tiers.keys() {
                        if !t.names.contains(name) {
                            out.push(
                                format!("{at}.tiers.{name}"),
                                format!("unknown tier `{name}`; known: {}", joined(&t.names)),
                            );
                        }
                    }
                }
            }
        }
    }
}

#[inline(never)]
fn check_settings(s: &RateLimitSettings, out: &mut Problems) {
    let at = "ratelimit";
    let ip = &s.client_ip;
    if ip.ipv4_mask > 32 {
        out.at(at, ".client_ip.ipv4_mask", "must be 0..=32");
    }
    if ip.ipv6_mask > 128 {
        out.at(at, ".client_ip.ipv6_mask", "must be 0..=128");
    }
    if ip.trusted_hops > 16 {
        out.at(at, ".client_ip.trusted_hops", "must be 0..=16");
    }
    if ip.source == IpSource::Peer && ip.trusted_hops > 0 {
        out.at(
            at,
            ".client_ip.trusted_hops",
            "trusted hops only apply with `source: xff`",
        );
    }
    if let Some(t) = &s.tiers {
        match &t.from {
            KeyPart::Header(_) => {}
            KeyPart::Claim(c) => {
                if !s.claim_headers.contains_key(c) {
                    out.at(
                        at,
                        ".tiers.from",
                        format!("claim `{c}` has no header in `ratelimit.claim_headers`"),
                    );
                }
            }
            other => out.at(
                at,
                ".tiers.from",
                concat(&[
                    "`",
                    if *other == KeyPart::Route {
                        "route"
                    } else {
                        "client-ip"
                    },
                    "` cannot name a tier; use `header:<name>` or `claim:<name>`",
                ]),
            ),
        }
        if t.names.is_empty() {
            out.at(at, ".tiers.names", "needs at least one tier");
        }
        let mut seen = Seen::default();
        for (i, n) in t.names.iter().enumerate() {
            if !is_dns_label(n) {
                out.push(
                    format!("{at}.tiers.names[{i}]"),
                    format!("`{n}` is not a DNS-1123 label"),
                );
            }
            if !seen.insert(n.as_str()) {
                out.push(
                    format!("{at}.tiers.names[{i}]"),
                    format!("tier `{n}` is listed twice"),
                );
            }
        }
        if !t.names.contains(&t.default) {
            out.at(
                at,
                ".tiers.default",
                format!("`{}` is not one of the tier names", t.default),
            );
        }
    }
    for (claim, header) in &s.claim_headers {
        if !is_header_name(header) {
            out.push(
                format!("{at}.claim_headers.{claim}"),
                format!("`{header}` is not a header name"),
            );
        }
    }
    let r = &s.response;
    if !(400..=599).contains(&r.status) {
        out.at(at, ".response.status", "must be 400..=599");
    }
    if !is_header_name(&r.shadow_header) {
        out.at(at, ".response.shadow_header", "not a header name");
    }
    let sh = &s.shared;
    if sh.slots == 0 || sh.slots > MAX_SLOTS {
        out.at(at, ".shared.slots", SLOTS_RANGE);
    }
    if sh.cas_retries == 0 || sh.cas_retries > 64 {
        out.at(at, ".shared.cas_retries", "must be 1..=64");
    }
    let q = &s.queue;
    if q.max_len == 0 || q.max_len > MAX_QUEUE {
        out.at(at, ".queue.max_len", QUEUE_RANGE);
    }
    let tick = q.tick.as_nanos();
    if !(1_000_000..=1_000_000_000).contains(&tick) {
        out.at(at, ".queue.tick", "must be between 1ms and 1s");
    }
    if let Some(g) = &s.global {
        if g.cluster.trim().is_empty() {
            out.at(at, ".global.cluster", "must name an Envoy cluster");
        }
        if g.domain.trim().is_empty() {
            out.at(at, ".global.domain", "must not be empty");
        }
        let t = g.timeout.as_nanos();
        if t == 0 || t > 10_000_000_000 {
            out.at(at, ".global.timeout", "must be between 1ms and 10s");
        }
        if g.cache_entries > 65_536 {
            out.at(at, ".global.cache_entries", "must be 0..=65536");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn range_messages_name_the_limits() {
        assert_eq!(
            super::QUEUE_RANGE,
            format!("must be 1..={}", super::MAX_QUEUE)
        );
        assert_eq!(
            super::SLOTS_RANGE,
            format!("must be 1..={}", super::MAX_SLOTS)
        );
    }
}
