//! A validated policy compiled for the request path: which route, which client, which tier,
//! which slots. Builds the [`Check`]s the engine evaluates and the descriptors the global
//! service is asked about. No I/O, no clock, no panics: every lookup is total.
//!
//! Keys are bounded: a rule's key material (masked client address, header values, ...) is
//! hashed into one of `shared.slots` slots, so the store holds at most `slots` entries per
//! rule whatever clients send. Two keys in one slot share a bucket (the cost of a collision
//! is under-admission for both, never over-admission); with `n` active keys the share of
//! keys that collide is about `1 - e^(-n/slots)`.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use crate::policy::{
    canonical_ip, mask_ip, Algorithm, HeaderStyle, IpSource, KeyPart, Policy, Rate,
    RateLimitSettings, RequestAttrs, Rule,
};

use super::algo::Params;
use super::engine::{Check, RuleState};
use super::headers::{self, FieldSink, Item};

/// How a client address is treated before any rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// In `deny_cidrs`: 403.
    Deny,
    /// In `allow_cidrs`: no rule applies.
    Bypass,
    /// Rules apply.
    Limit,
}

/// One rule of the matched route, ready for this request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRule {
    /// Index of the rule in its route.
    pub index: usize,
    /// Rule name (shared with the limiter: cloning it copies nothing).
    pub name: Arc<str>,
    /// The engine's check (slot + params + cost).
    pub check: Check,
    /// Effective rate (after the tier override).
    pub rate: Rate,
    /// Shadow rule.
    pub shadow: bool,
    /// Global rule: RLS descriptor entries.
    pub descriptor: Option<Vec<(String, String)>>,
}

impl AsRef<Check> for PlannedRule {
    fn as_ref(&self) -> &Check {
        &self.check
    }
}

/// Everything the filter needs for one request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Index and name of the matched route.
    pub route: (usize, Arc<str>),
    /// The request's tier (when tiers are configured).
    pub tier: Option<Arc<str>>,
    /// The `RateLimit-Policy` field value of the enforcing local rules at this tier
    /// (computed once per route and tier when the limiter is built).
    pub policy_field: Arc<str>,
    /// The route's rules grouped by kind: enforcing local rules, then shadow rules, then
    /// global rules, each group in policy order (so each kind is one slice).
    rules: Vec<PlannedRule>,
    /// End of the local group in `rules`.
    local_end: usize,
    /// End of the shadow group in `rules`.
    shadow_end: usize,
}

impl Plan {
    /// Every rule of the route, grouped by kind (local, shadow, global).
    pub fn rules(&self) -> &[PlannedRule] {
        &self.rules
    }
    /// Enforcing local rules, in policy order.
    #[inline(always)]
    pub fn local(&self) -> &[PlannedRule] {
        self.rules.get(..self.local_end).unwrap_or(&[])
    }
    /// Shadow local rules, in policy order.
    #[inline(always)]
    pub fn shadow(&self) -> &[PlannedRule] {
        self.rules
            .get(self.local_end..self.shadow_end)
            .unwrap_or(&[])
    }
    /// Global rules, in policy order.
    #[inline(always)]
    pub fn global(&self) -> &[PlannedRule] {
        self.rules.get(self.shadow_end..).unwrap_or(&[])
    }

    /// The enforcing local rules as the response fields describe them, with `states` (the
    /// engine's, one per local rule, in order).
    /// One rule (the usual route) is held in place, more in a vector.
    pub fn items(&self, states: &[RuleState]) -> Items<'_> {
        match (self.local(), states) {
            ([r], [s]) => Items::One([item(r, s)]),
            (rules, _) => Items::Many(rules.iter().zip(states).map(|(r, s)| item(r, s)).collect()),
        }
    }

    /// How many fields [`Limiter::put_response_fields`] writes for this plan.
    #[inline(always)]
    pub fn response_field_count(&self, style: HeaderStyle, states: &[RuleState]) -> usize {
        if self.local().is_empty() || states.is_empty() {
            return 0;
        }
        match style {
            HeaderStyle::None => 0,
            HeaderStyle::Ietf => 2,
            HeaderStyle::IetfAndLegacy => 5,
        }
    }
}

/// [`Plan::items`]: reads as a slice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Items<'p> {
    /// The one enforcing rule, without an allocation.
    One([Item<'p>; 1]),
    /// Any other number of rules.
    Many(Vec<Item<'p>>),
}

impl<'p> std::ops::Deref for Items<'p> {
    type Target = [Item<'p>];
    fn deref(&self) -> &[Item<'p>] {
        match self {
            Items::One(one) => one,
            Items::Many(many) => many,
        }
    }
}

/// One enforcing rule as the response fields describe it.
fn item<'p>(r: &'p PlannedRule, s: &RuleState) -> Item<'p> {
    Item {
        name: &r.name,
        rate: r.rate,
        remaining: s.remaining,
        reset_s: headers::ceil_secs(s.reset_ns),
    }
}

/// A route's names and slot-key prefixes, compiled once.
#[derive(Debug, Clone)]
struct CompiledRoute {
    name: Arc<str>,
    rules: Vec<CompiledRule>,
    /// `RateLimit-Policy` of the enforcing local rules, by tier index (one entry without tiers).
    policy_fields: Vec<Arc<str>>,
    /// The rules' indices in plan order: enforcing local, shadow, global (policy order within
    /// each group), so that planning walks the rules once.
    order: Vec<usize>,
    /// Where the shadow rules start in `order`, and where the global ones start.
    local_end: usize,
    shadow_end: usize,
}

/// A rule's group in a plan: 0 enforcing local, 1 shadow, 2 global.
fn rule_group(r: &Rule) -> u8 {
    match (r.global, r.shadow) {
        (false, false) => 0,
        (false, true) => 1,
        (true, _) => 2,
    }
}

#[derive(Debug, Clone)]
struct CompiledRule {
    name: Arc<str>,
    /// The slot hash after the route and rule names (the same for every request).
    seed: Hash64,
    /// Slot-key prefix `mwrl␟service␟route␟rule␟`.
    prefix: Vec<u8>,
    /// The rule's `RateLimit` item up to its `r` value, `"name";r=`: the name quoted once
    /// (see [`Limiter::put_response_fields`]).
    head: Vec<u8>,
    /// The rule's rate and algorithm numbers for each tier, in the limiter's tier order (one
    /// entry without tiers): worked out once (a rate's interval is a 64-bit division, and a
    /// tier's rate a lookup by name), not per request.
    by_tier: Vec<(Rate, Params)>,
}

/// The compiled policy.
#[derive(Debug, Clone)]
pub struct Limiter {
    policy: Policy,
    settings: RateLimitSettings,
    headers: Vec<String>,
    /// By route index.
    routes: Vec<CompiledRoute>,
    /// Tier names (and the default tier last), shared with every plan.
    tiers: Vec<Arc<str>>,
}

/// FNV-1a 64 with a splitmix64 finish: cheap, stable across workers and builds.
pub fn hash64(parts: &[&[u8]]) -> u64 {
    let mut h = Hash64::new();
    for p in parts {
        h.part(p);
    }
    h.finish()
}

/// [`hash64`] fed one part at a time (no slice of parts to build).
#[derive(Debug, Clone, Copy)]
pub struct Hash64(u64);

impl Default for Hash64 {
    fn default() -> Self {
        Self::new()
    }
}

impl Hash64 {
    /// The FNV offset basis.
    pub fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    /// Adds one part (its bytes, then a separator).
    #[inline(always)]
    pub fn part(&mut self, p: &[u8]) {
        let mut h = self.0;
        for b in p {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= 0x1f;
        self.0 = h.wrapping_mul(0x0000_0100_0000_01b3);
    }

    /// The finished hash.
    #[inline(always)]
    pub fn finish(self) -> u64 {
        let mut h = self.0;
        h ^= h >> 30;
        h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h ^= h >> 27;
        h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^ (h >> 31)
    }
}

/// Parses an address as it appears in `source.address` or X-Forwarded-For: `a.b.c.d`,
/// `a.b.c.d:port`, `::1`, `[::1]:port`. IPv4-mapped IPv6 becomes IPv4.
pub fn parse_addr(s: &str) -> Option<IpAddr> {
    // `a.b.c.d` / `a.b.c.d:port`, the usual `source.address`, in one pass before anything
    // else (a Unicode trim costs more than the whole read), then once more trimmed. Every
    // IPv4 form with or without a port ends here, so what follows only sees the others.
    let mut s = s;
    for trim in [false, true] {
        if trim {
            s = s.trim();
        }
        if let Some(v4) = parse_v4_port(s.as_bytes()) {
            return Some(IpAddr::V4(v4));
        }
    }
    if let Some(rest) = s.strip_prefix('[') {
        let inner = rest.split(']').next()?;
        return inner.parse::<IpAddr>().ok().map(canonical_ip);
    }
    let host_port = s
        .rsplit_once(':')
        .filter(|(_, port)| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical_ip(ip));
    }
    host_port.and_then(|(h, _)| h.parse::<IpAddr>().ok().map(canonical_ip))
}

/// `peer` with an IPv4-mapped IPv6 address made IPv4. An IPv4 peer is canonical already and
/// is taken as it is: only IPv6 goes through the check (at opt-level z, `Option::map` and the
/// check are two calls per request).
#[inline(always)]
fn canonical_peer(peer: Option<IpAddr>) -> Option<IpAddr> {
    match peer {
        Some(IpAddr::V6(v6)) => Some(canonical_ip(IpAddr::V6(v6))),
        other => other,
    }
}

/// [`parse_addr`] on raw bytes (a property value as the host gives it): the usual
/// `a.b.c.d` / `a.b.c.d:port` is read straight from the bytes, anything else must be UTF-8
/// and goes through [`parse_addr`] (the same result for every input; not UTF-8 is `None`).
pub fn parse_addr_bytes(b: &[u8]) -> Option<IpAddr> {
    match parse_v4_port(b) {
        Some(v4) => Some(IpAddr::V4(v4)),
        None => parse_addr(std::str::from_utf8(b).ok()?),
    }
}

/// `a.b.c.d` or `a.b.c.d:port`, the form `source.address` has for every IPv4 client, read
/// in one pass from its bytes. Accepts exactly what the standard parser accepts for the
/// address (one to three digits per octet, no leading zeros, octets up to 255), with a port
/// of one or more digits or none.
fn parse_v4_port(s: &[u8]) -> Option<Ipv4Addr> {
    // Octet by octet, each octet's digits read by position: four rounds instead of a round
    // per byte (each loop round pays a Cranelift epoch check, and the byte-by-byte walk this
    // replaced carried a state machine through each: ~35 instructions a byte, 485 for
    // `10.0.1.7:40000`, now 368). A digit right after an octet's third, or any other byte
    // where a separator belongs, fails the separator check.
    let (mut ip, mut i) = octet(s, 0)?;
    for _ in 0..3 {
        let (o, next) = octet(s, after_dot(s, i)?)?;
        (ip, i) = ((ip << 8) | o, next);
    }
    let ip = Ipv4Addr::from(ip);
    match s.get(i..) {
        Some([]) => Some(ip),
        Some([b':', port @ ..]) => {
            (!port.is_empty() && port.iter().all(u8::is_ascii_digit)).then_some(ip)
        }
        _ => None,
    }
}

/// The decimal digit at `s[i]`, if there is one.
#[inline(always)]
fn digit_at(s: &[u8], i: usize) -> Option<u32> {
    let d = s.get(i)?.wrapping_sub(b'0');
    (d <= 9).then_some(u32::from(d))
}

/// The octet starting at `s[i]` (one to three digits, no leading zero, at most 255) and the
/// index after it.
#[inline(always)]
fn octet(s: &[u8], i: usize) -> Option<(u32, usize)> {
    let x = digit_at(s, i)?;
    let Some(y) = digit_at(s, i + 1) else {
        return Some((x, i + 1));
    };
    if x == 0 {
        return None;
    }
    let Some(z) = digit_at(s, i + 2) else {
        return Some((x * 10 + y, i + 2));
    };
    let v = x * 100 + y * 10 + z;
    (v <= 255).then_some((v, i + 3))
}

/// The index after the `.` at `s[i]`, if that is one.
#[inline(always)]
fn after_dot(s: &[u8], i: usize) -> Option<usize> {
    (s.get(i) == Some(&b'.')).then_some(i + 1)
}

impl Limiter {
    /// Compiles a policy (which the caller has validated).
    #[inline(never)]
    pub fn new(mut policy: Policy) -> Self {
        // Moved out rather than cloned (a clone of every setting costs ~0.9 KB of module).
        let settings = policy.ratelimit.take().unwrap_or_default();
        let headers = needed_headers(&policy, &settings);
        let tiers: Vec<Arc<str>> = settings.tiers.as_ref().map_or_else(Vec::new, |t| {
            t.names
                .iter()
                .chain(std::iter::once(&t.default))
                .map(|n| Arc::from(n.as_str()))
                .collect()
        });
        let routes = policy
            .routes
            .iter()
            .map(|route| {
                let rules = route.ratelimit.as_ref().map_or(&[][..], |rl| &rl.rules);
                // Group by group, policy order within each (no sort: its code costs ~5 KB
                // of module); `ends[g]` is where group `g` ends.
                let mut order = Vec::with_capacity(rules.len());
                let mut ends = [0usize; 3];
                for (g, end) in (0u8..).zip(ends.iter_mut()) {
                    for (i, r) in rules.iter().enumerate() {
                        if rule_group(r) == g {
                            order.push(i);
                        }
                    }
                    *end = order.len();
                }
                let [local_end, shadow_end, _] = ends;
                CompiledRoute {
                    local_end,
                    shadow_end,
                    order,
                    policy_fields: route_policy_fields(rules, &tiers),
                    name: Arc::from(route.name.as_str()),
                    rules: rules
                        .iter()
                        .map(|rule| CompiledRule {
                            name: Arc::from(rule.name.as_str()),
                            seed: {
                                let mut h = Hash64::new();
                                h.part(route.name.as_bytes());
                                h.part(rule.name.as_bytes());
                                h
                            },
                            prefix: format!(
                                "mwrl\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}",
                                policy.service, route.name, rule.name
                            )
                            .into_bytes(),
                            head: {
                                let mut head = Vec::with_capacity(rule.name.len() + 5);
                                headers::put_ratelimit_head(&mut head, &rule.name);
                                head
                            },
                            // Index `i` is tier `tiers[i]`; without tiers, the one entry
                            // is the rule's own rate.
                            by_tier: (0..tiers.len().max(1))
                                .map(|i| {
                                    let rate = tier_rate(rule, tiers.get(i).map(|t| &**t));
                                    (rate, params(rule, rate))
                                })
                                .collect(),
                        })
                        .collect(),
                }
            })
            .collect();
        Self {
            policy,
            settings,
            headers,
            routes,
            tiers,
        }
    }

    /// Every request header (lower-case, no duplicates) that route matching, keys, claims,
    /// tiers, X-Forwarded-For or the request id may read: a filter fetches these and no
    /// others.
    pub fn header_names(&self) -> &[String] {
        &self.headers
    }

    /// The policy, without its `ratelimit` settings: those moved to [`Limiter::settings`].
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The filter-wide settings.
    pub fn settings(&self) -> &RateLimitSettings {
        &self.settings
    }

    /// The response fields of `style` for the enforcing local rules of `plan` with `states`
    /// (the engine's, one per local rule, in order): what [`headers::put_response_fields`]
    /// writes for [`Plan::items`], with the rule names quoted when the limiter was built and
    /// no items made for the IETF fields.
    pub fn put_response_fields(
        &self,
        plan: &Plan,
        style: HeaderStyle,
        states: &[RuleState],
        sink: &mut dyn FieldSink,
    ) {
        if plan.response_field_count(style, states) == 0 {
            return;
        }
        let local = plan.local();
        let compiled = self.routes.get(plan.route.0);
        sink.shared_field("ratelimit-policy", &plan.policy_field);
        sink.field("ratelimit", &mut |v| {
            for (n, (r, s)) in local.iter().zip(states).enumerate() {
                if n > 0 {
                    v.extend_from_slice(b", ");
                }
                let reset_s = headers::ceil_secs(s.reset_ns);
                match compiled.and_then(|c| c.rules.get(r.index)) {
                    Some(c) => headers::put_ratelimit_item(v, &c.head, s.remaining, reset_s),
                    None => {
                        let mut head = Vec::new();
                        headers::put_ratelimit_head(&mut head, &r.name);
                        headers::put_ratelimit_item(v, &head, s.remaining, reset_s);
                    }
                }
            }
        });
        if style == HeaderStyle::IetfAndLegacy {
            headers::put_legacy_fields(&plan.items(states), sink);
        }
    }

    /// The client address: the peer, or with `source: xff` the `trusted_hops`-th entry of
    /// X-Forwarded-For from the right (each trusted proxy appended the address it saw).
    /// Entries a client wrote itself are left of those and never read; when the header has
    /// fewer entries than trusted hops, or the chosen entry is not an address, the peer
    /// address is used.
    pub fn client_ip(&self, peer: Option<IpAddr>, xff: Option<&str>) -> Option<IpAddr> {
        let ci = &self.settings.client_ip;
        if ci.source == IpSource::Peer || ci.trusted_hops == 0 {
            return canonical_peer(peer);
        }
        let chosen = xff.and_then(|x| {
            let entries: Vec<&str> = x.split(',').collect();
            let idx = entries.len().checked_sub(usize::from(ci.trusted_hops))?;
            entries.get(idx).and_then(|e| parse_addr(e))
        });
        chosen.or_else(|| canonical_peer(peer))
    }

    /// True when [`Limiter::client_ip`] reads X-Forwarded-For (a filter need not fetch the
    /// header otherwise).
    pub fn reads_xff(&self) -> bool {
        let ci = &self.settings.client_ip;
        ci.source != IpSource::Peer && ci.trusted_hops > 0
    }

    /// Deny list first, then allow list.
    pub fn access(&self, ip: Option<IpAddr>) -> Access {
        let Some(ip) = ip else {
            return Access::Limit;
        };
        if self.settings.deny_cidrs.iter().any(|c| c.contains(ip)) {
            Access::Deny
        } else if self.settings.allow_cidrs.iter().any(|c| c.contains(ip)) {
            Access::Bypass
        } else {
            Access::Limit
        }
    }

    fn attr<'r>(&self, req: &'r dyn RequestAttrs, part: &KeyPart) -> Option<&'r str> {
        match part {
            KeyPart::Header(h) => req.header(h),
            KeyPart::Claim(c) => self
                .settings
                .claim_headers
                .get(c)
                .and_then(|h| req.header(h)),
            _ => None,
        }
    }

    /// The request's tier: the configured header's value if it is exactly one of the tier
    /// names; anything else (absent, unknown, a list, different case) is the default tier.
    pub fn tier(&self, req: &dyn RequestAttrs) -> Option<Arc<str>> {
        self.tier_index(req)
            .and_then(|i| self.tiers.get(i))
            .map(Arc::clone)
    }

    /// Index of the request's tier in `self.tiers` (the default is last).
    fn tier_index(&self, req: &dyn RequestAttrs) -> Option<usize> {
        let t = self.settings.tiers.as_ref()?;
        let v = self.attr(req, &t.from).map(str::trim);
        let default = self.tiers.len().checked_sub(1)?;
        let named = v.and_then(|v| self.tiers.get(..default)?.iter().position(|n| &**n == v));
        Some(named.unwrap_or(default))
    }

    /// The matched route's rules, ready to evaluate (`None`: no route or no rules).
    pub fn plan(&self, req: &dyn RequestAttrs, client: Option<IpAddr>) -> Option<Plan> {
        let mut plan = Plan::default();
        self.plan_into(req, client, &mut plan).then_some(plan)
    }

    /// [`Limiter::plan`] into `out`, whose rule vector and slot-key buffers are reused (a
    /// filter keeps one plan per worker: a request then allocates nothing for its plan).
    /// False when no route with rules matched (`out` is then left as it was).
    pub fn plan_into(
        &self,
        req: &dyn RequestAttrs,
        client: Option<IpAddr>,
        out: &mut Plan,
    ) -> bool {
        let Some((ri, route)) = crate::policy::select(&self.policy.routes, req) else {
            return false;
        };
        let (Some(rl), Some(compiled)) = (route.ratelimit.as_ref(), self.routes.get(ri)) else {
            return false;
        };
        let tier_index = self.tier_index(req);
        let tier = tier_index.and_then(|i| self.tiers.get(i)).map(Arc::clone);
        let policy_field = compiled.policy_fields.get(tier_index.unwrap_or(0));
        let ci = &self.settings.client_ip;
        let masked = client.map(|ip| {
            let m = if ip.is_ipv4() {
                ci.ipv4_mask
            } else {
                ci.ipv6_mask
            };
            mask_ip(ip, m)
        });
        // The client's key material is the masked address's bytes (4 or 16): nothing to
        // format per request. Its text is only needed for a global rule's descriptor.
        let (v4, v6);
        let client_bytes: &[u8] = match masked {
            Some(IpAddr::V4(a)) => {
                v4 = a.octets();
                &v4
            }
            Some(IpAddr::V6(a)) => {
                v6 = a.octets();
                &v6
            }
            None => &[],
        };
        let slots = u64::from(self.settings.shared.slots.max(1));
        // In plan order (see `CompiledRoute::order`).
        let rules = &mut out.rules;
        let mut n = 0;
        for &i in &compiled.order {
            let (Some(rule), Some(c)) = (rl.rules.get(i), compiled.rules.get(i)) else {
                continue;
            };
            // (Every tier index has its entry: `by_tier` is made from the same tier list.)
            let Some(&(rate, check_params)) = c.by_tier.get(tier_index.unwrap_or(0)) else {
                continue;
            };
            let mut h = c.seed;
            for part in &rule.key {
                let bytes = match part {
                    KeyPart::ClientIp => client_bytes,
                    KeyPart::Route => route.name.as_bytes(),
                    KeyPart::Header(_) | KeyPart::Claim(_) => {
                        self.attr(req, part).unwrap_or("").as_bytes()
                    }
                };
                h.part(bytes);
            }
            let slot = h.finish() % slots;
            // The slot key goes into the buffer of the rule this one replaces, if any.
            let descriptor = rule.global.then(|| {
                let mut d = Vec::with_capacity(rule.key.len() + 1);
                d.push((
                    "meshward_rule".to_string(),
                    format!("{}/{}", route.name, rule.name),
                ));
                for part in &rule.key {
                    let (k, v) = match part {
                        KeyPart::ClientIp => (
                            "remote_address",
                            masked.map_or_else(String::new, |ip| ip.to_string()),
                        ),
                        KeyPart::Route => ("route", route.name.clone()),
                        KeyPart::Header(h) => {
                            (h.as_str(), self.attr(req, part).unwrap_or("").into())
                        }
                        KeyPart::Claim(c) => {
                            (c.as_str(), self.attr(req, part).unwrap_or("").into())
                        }
                    };
                    d.push((k.to_string(), v));
                }
                d
            });
            let cost = u64::from(rule.cost.unwrap_or(1));
            // Written over the rule of the last plan at this position, if any: its
            // slot-key buffer is reused, and its name kept when it is the same rule (the
            // usual case).
            if rules.len() <= n {
                rules.push(PlannedRule {
                    index: i,
                    name: Arc::clone(&c.name),
                    check: Check {
                        slot: Vec::with_capacity(c.prefix.len() + 20),
                        params: check_params,
                        cost,
                    },
                    rate,
                    shadow: rule.shadow,
                    descriptor: None,
                });
            }
            if let Some(planned) = rules.get_mut(n) {
                planned.index = i;
                // The key of the same rule (planned last time at this position, the usual
                // case) already starts with this rule's prefix: only its slot number changes.
                let key = &mut planned.check.slot;
                if Arc::ptr_eq(&planned.name, &c.name) && key.len() >= c.prefix.len() {
                    key.truncate(c.prefix.len());
                } else {
                    planned.name = Arc::clone(&c.name);
                    key.clear();
                    key.extend_from_slice(&c.prefix);
                }
                push_decimal(key, slot);
                planned.check.params = check_params;
                planned.check.cost = cost;
                planned.rate = rate;
                planned.shadow = rule.shadow;
                // Assigned only when either holds a descriptor (local rules have none: no
                // drop of the old `None`).
                match descriptor {
                    Some(d) => planned.descriptor = Some(d),
                    None if planned.descriptor.is_some() => planned.descriptor = None,
                    None => {}
                }
            }
            n += 1;
        }
        rules.truncate(n);
        let (local_end, shadow_end) = (compiled.local_end.min(n), compiled.shadow_end.min(n));
        // The worker's plan usually held the same route: its shared values stay as they are.
        out.route.0 = ri;
        set_shared(&mut out.route.1, &compiled.name);
        out.tier = tier;
        match policy_field {
            Some(f) => set_shared(&mut out.policy_field, f),
            None => out.policy_field = Arc::from(""),
        }
        out.local_end = local_end;
        out.shadow_end = shadow_end;
        true
    }
}

/// Points `slot` at `value` (nothing to count when it already does).
#[inline(always)]
fn set_shared<T: ?Sized>(slot: &mut Arc<T>, value: &Arc<T>) {
    if !Arc::ptr_eq(slot, value) {
        *slot = Arc::clone(value);
    }
}

/// `rule`'s rate for the tier named `tier`: the one it sets for that tier, else its own.
fn tier_rate(rule: &Rule, tier: Option<&str>) -> Rate {
    tier.and_then(|t| rule.tiers.get(t))
        .copied()
        .unwrap_or(rule.rate)
}

/// A route's `RateLimit-Policy` value for each of `tiers` (the limiter's tier order), or one
/// value when no tiers are configured.
fn route_policy_fields(rules: &[Rule], tiers: &[Arc<str>]) -> Vec<Arc<str>> {
    let field = |tier: Option<&str>| -> Arc<str> {
        let items: Vec<Item> = rules
            .iter()
            .filter(|r| !r.global && !r.shadow)
            .map(|r| Item {
                name: &r.name,
                rate: tier_rate(r, tier),
                remaining: 0,
                reset_s: 0,
            })
            .collect();
        Arc::from(headers::policy_field(&items))
    };
    if tiers.is_empty() {
        return vec![field(None)];
    }
    tiers.iter().map(|t| field(Some(t))).collect()
}

fn needed_headers(policy: &Policy, settings: &RateLimitSettings) -> Vec<String> {
    let mut names: Vec<String> = vec!["x-request-id".to_string()];
    if settings.client_ip.source != IpSource::Peer {
        names.push("x-forwarded-for".to_string());
    }
    names.extend(settings.claim_headers.values().cloned());
    let mut part = |p: &KeyPart| match p {
        KeyPart::Header(h) => names.push(h.clone()),
        KeyPart::Claim(c) => names.extend(settings.claim_headers.get(c).cloned()),
        _ => {}
    };
    if let Some(t) = &settings.tiers {
        part(&t.from);
    }
    for route in &policy.routes {
        if let Some(rl) = &route.ratelimit {
            for rule in &rl.rules {
                rule.key.iter().for_each(&mut part);
            }
        }
    }
    for route in &policy.routes {
        if let Some(m) = &route.matcher {
            names.extend(m.headers.keys().cloned());
        }
    }
    // Each name once, in first-seen order: a linear scan over a few names, where a sort
    // would put ~5 KB of stable-sort code into the filter's Wasm.
    let mut unique: Vec<String> = Vec::with_capacity(names.len());
    for mut n in names {
        n.make_ascii_lowercase();
        if !unique.contains(&n) {
            unique.push(n);
        }
    }
    unique
}

/// Appends `n` in decimal (as `format!("{n}")` would).
fn push_decimal(out: &mut Vec<u8>, n: u64) {
    headers::append(out, headers::decimal(n, &mut [0; 20]));
}

/// Algorithm numbers of `rule` at `rate`.
pub fn params(rule: &Rule, rate: Rate) -> Params {
    match rule.algorithm {
        Algorithm::TokenBucket => Params::TokenBucket {
            t: rate.interval_nanos(),
            burst: u64::from(rule.burst.unwrap_or(1).max(1)),
        },
        Algorithm::LeakyBucket => Params::LeakyBucket {
            t: rate.interval_nanos(),
            burst: u64::from(rule.burst.unwrap_or(0)),
            delay_after: u64::from(rule.delay_after.unwrap_or(0)),
            max_delay: rule.max_delay.map_or(u64::MAX, |d| d.as_nanos()),
        },
        Algorithm::FixedWindow => Params::FixedWindow {
            count: rate.count(),
            window: rate.period().as_nanos(),
        },
        Algorithm::SlidingWindow => Params::SlidingWindow {
            count: rate.count(),
            window: rate.period().as_nanos(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::parse_json;

    #[test]
    fn addresses_parse_in_every_form_envoy_and_proxies_write() {
        let v4 = |s: &str| Some(s.parse::<IpAddr>().expect("test address"));
        for (text, want) in [
            ("10.1.2.3", v4("10.1.2.3")),
            ("10.1.2.3:8080", v4("10.1.2.3")),
            (" 10.1.2.3 ", v4("10.1.2.3")),
            ("\u{a0}10.1.2.3:80\t", v4("10.1.2.3")),
            (" [::1]:443 ", v4("::1")),
            ("::1", v4("::1")),
            ("[::1]:443", v4("::1")),
            ("2001:db8::7", v4("2001:db8::7")),
            ("[2001:db8::7]", v4("2001:db8::7")),
            ("::ffff:10.0.0.9", v4("10.0.0.9")),
            ("::ffff:10.0.0.9:80", v4("10.0.0.9")),
            ("[::ffff:10.0.0.9]:80", v4("10.0.0.9")),
            ("10.1.2.3:", None),
            ("10.1.2.3:x", None),
            ("unknown", None),
            ("", None),
            ("[", None),
            ("1.2.3", None),
            ("1.2.3.4.5", None),
            ("1.2.3:80", None),
            ("1.2.3.4.", None),
            ("1.2.3.4.:80", None),
            ("256.1.1.1", None),
            ("01.2.3.4", None),
            ("1..3.4", None),
            ("0.0.0.0:0", v4("0.0.0.0")),
            ("255.255.255.255:65535", v4("255.255.255.255")),
        ] {
            assert_eq!(parse_addr(text), want, "{text:?}");
        }
        // The one-pass reader agrees with the standard parser on every dotted form.
        for text in [
            "1.2.3.4",
            "001.2.3.4",
            "1.2.3.4 ",
            "1.2.3.",
            ".1.2.3",
            "9.9.9.9:",
            "1.2.3.4:x",
        ] {
            let std = text.parse::<Ipv4Addr>().ok();
            let fast = parse_v4_port(text.as_bytes());
            assert!(
                fast.is_none() || fast == std,
                "{text:?}: {fast:?} vs {std:?}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn the_one_pass_reader_never_disagrees_with_the_standard_parser(
            text in "[0-9.:]{0,22}",
            o in proptest::array::uniform4(0u8..=255),
            port in proptest::option::of(0u16..),
        ) {
            let fast = parse_v4_port(text.as_bytes());
            let host = text.split_once(':').map_or(text.as_str(), |(h, _)| h);
            let std = host.parse::<Ipv4Addr>().ok();
            proptest::prop_assert!(fast.is_none() || fast == std);
            // And it misses none: `parse_addr` has no other IPv4 path.
            let port_ok = text
                .split_once(':')
                .is_none_or(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
            if port_ok {
                proptest::prop_assert_eq!(fast, std);
            }
            let ip = Ipv4Addr::from(o);
            let text = port.map_or(ip.to_string(), |p| format!("{ip}:{p}"));
            proptest::prop_assert_eq!(parse_v4_port(text.as_bytes()), Some(ip));
        }
    }

    /// What `parse_addr` and `parse_addr_bytes` must give, by the standard parsers alone
    /// (no one-pass reader): `None` when not UTF-8.
    fn by_std(b: &[u8]) -> Option<IpAddr> {
        let s = std::str::from_utf8(b).ok()?.trim();
        if let Some(rest) = s.strip_prefix('[') {
            let inner = rest.split(']').next()?;
            return inner.parse::<IpAddr>().ok().map(canonical_ip);
        }
        let host_port = s
            .rsplit_once(':')
            .filter(|(_, port)| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Some(canonical_ip(ip));
        }
        host_port.and_then(|(h, _)| h.parse::<IpAddr>().ok().map(canonical_ip))
    }

    /// `parse_addr_bytes` and `parse_addr` both give what [`by_std`] gives.
    fn by_text(b: &[u8]) -> Option<IpAddr> {
        let want = by_std(b);
        if let Ok(s) = std::str::from_utf8(b) {
            assert_eq!(parse_addr(s), want, "{s:?}");
        }
        want
    }

    #[test]
    fn the_byte_reader_gives_what_the_text_parser_gives() {
        let mut inputs: Vec<Vec<u8>> = [
            "10.3.17.7:40000",
            "10.3.17.7",
            "0.0.0.0",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "256.1.1.1",
            "1.256.1.1:80",
            "1.1.1.300",
            "999.1.1.1",
            "01.2.3.4",
            "1.02.3.4:80",
            "1.2.3.00",
            "00.0.0.0",
            "1.2.3.0001",
            "1.2.3.4:",
            "1.2.3.4:x",
            "1.2.3.4:80x",
            "1.2.3.4:-1",
            "1.2.3.4::80",
            "1.2.3.4:99999999999999999999999",
            "1.2.3",
            "1.2.3.4.5",
            "1.2.3.4.",
            ".1.2.3.4",
            "1..2.3",
            "1.2.3.4 ",
            " 1.2.3.4",
            "\u{a0}10.1.2.3:80\t",
            "1.2.3.4\n",
            "+1.2.3.4",
            "1.2.3.-4",
            "[2001:db8::1]:443",
            "[2001:db8::1]",
            "[2001:db8::1",
            "2001:db8::1",
            "::1",
            "[::1]:443",
            " [::1]:443 ",
            "::ffff:10.0.0.9",
            "::ffff:10.0.0.9:80",
            "[::ffff:10.0.0.9]:80",
            "[10.0.0.1]:80",
            "[1.2.3.4]",
            "1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7:8:80",
            "unknown",
            "",
            ":",
            "[",
            "]",
            "[]:80",
            "１.2.3.4",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        inputs.extend([
            b"1.2.3.4\xff".to_vec(),
            b"\xff1.2.3.4".to_vec(),
            b"1.2.3.4:8\x80".to_vec(),
            b"[::1]\xc3".to_vec(),
            vec![0xc3, 0x28],
        ]);
        for i in 0..1000u32 {
            let (a, b) = (i % 300, (i * 7) % 260);
            inputs.push(format!("{a}.{b}.{}.{}", i % 10, i).into_bytes());
            inputs.push(format!("{b}.{a}.0.{}:{}", i % 256, i * 97).into_bytes());
        }
        for b in &inputs {
            assert_eq!(
                parse_addr_bytes(b),
                by_text(b),
                "{:?}",
                String::from_utf8_lossy(b)
            );
        }
        assert_eq!(
            parse_addr_bytes(b"10.3.17.7:40000"),
            Some(IpAddr::V4(Ipv4Addr::new(10, 3, 17, 7)))
        );
        assert_eq!(parse_addr_bytes(b"[2001:db8::1]:443"), v6("2001:db8::1"));
        assert_eq!(parse_addr_bytes(b"1.2.3.4\xff"), None);
    }

    fn v6(s: &str) -> Option<IpAddr> {
        s.parse().ok()
    }

    proptest::proptest! {
        #[test]
        fn the_byte_reader_agrees_with_the_text_parser_on_any_bytes(
            text in "[0-9.:\\[\\]a-f ]{0,24}",
            raw in proptest::collection::vec(proptest::num::u8::ANY, 0..24),
            o in proptest::array::uniform4(0u8..=255),
            port in proptest::option::of(0u16..),
        ) {
            proptest::prop_assert_eq!(parse_addr_bytes(text.as_bytes()), by_text(text.as_bytes()));
            proptest::prop_assert_eq!(parse_addr_bytes(&raw), by_text(&raw));
            let ip = Ipv4Addr::from(o);
            let text = port.map_or(ip.to_string(), |p| format!("{ip}:{p}"));
            proptest::prop_assert_eq!(parse_addr_bytes(text.as_bytes()), Some(IpAddr::V4(ip)));
        }
    }

    struct Req(&'static str);

    impl RequestAttrs for Req {
        fn method(&self) -> &str {
            "GET"
        }
        fn path(&self) -> &str {
            "/"
        }
        fn host(&self) -> &str {
            "a"
        }
        fn header(&self, name: &str) -> Option<&str> {
            (name == "x-tier").then_some(self.0)
        }
    }

    fn limiter() -> Limiter {
        let policy = parse_json(
            br#"{"apiVersion":"meshward.io/v1alpha1","kind":"Policy","service":"s",
            "routes":[{"name":"default","ratelimit":{"rules":[
              {"name":"g","rate":"5/s","key":["client-ip"],"global":true},
              {"name":"shadow","rate":"5/s","key":["client-ip"],"shadow":true},
              {"name":"ip","rate":"5/s","key":["client-ip"],"tiers":{"gold":"50/s"}},
              {"name":"all","rate":"9/s","key":["route"]}]}}],
            "ratelimit":{"shared":{"slots":64},
              "tiers":{"from":"header:x-tier","names":["free","gold"],"default":"free"},
              "global":{"domain":"d","cluster":"rls"}}}"#,
        )
        .expect("policy");
        Limiter::new(policy)
    }

    #[test]
    fn a_plan_groups_rules_by_kind_in_policy_order() {
        let l = limiter();
        let plan = l.plan(&Req("gold"), parse_addr("10.0.0.1")).expect("plan");
        let names = |rs: &[PlannedRule]| rs.iter().map(|r| r.name.to_string()).collect::<Vec<_>>();
        assert_eq!(names(plan.local()), ["ip", "all"]);
        assert_eq!(names(plan.shadow()), ["shadow"]);
        assert_eq!(names(plan.global()), ["g"]);
        assert_eq!(
            plan.local().iter().map(|r| r.index).collect::<Vec<_>>(),
            [2, 3]
        );
        assert_eq!(plan.tier.as_deref(), Some("gold"));
        assert_eq!(plan.local()[0].rate.count(), 50, "the tier's rate");
        let d = plan.global()[0].descriptor.clone().expect("descriptor");
        assert_eq!(d[1], ("remote_address".to_string(), "10.0.0.1".to_string()));
        assert_eq!(l.tier(&Req("GOLD")).as_deref(), Some("free"));
    }

    #[test]
    fn a_reused_plan_is_the_plan_of_the_new_request() {
        let l = limiter();
        let mut reused = Plan::default();
        for (tier, ip) in [("gold", "10.0.0.1"), ("free", "10.9.8.7"), ("", "::1")] {
            assert!(l.plan_into(&Req(tier), parse_addr(ip), &mut reused));
            assert_eq!(Some(&reused), l.plan(&Req(tier), parse_addr(ip)).as_ref());
        }
        // A route with fewer rules than the last plan had: the extra rules are gone.
        let two = Limiter::new(
            parse_json(
                br#"{"apiVersion":"meshward.io/v1alpha1","kind":"Policy","service":"s",
                "routes":[
                  {"name":"x","match":{"path":{"prefix":"/x"}},"ratelimit":{"rules":[
                    {"name":"one","rate":"5/s","key":["client-ip"]}]}},
                  {"name":"default","ratelimit":{"rules":[
                    {"name":"a","rate":"5/s","key":["client-ip"]},
                    {"name":"b","rate":"5/s","key":["route"],"shadow":true}]}}]}"#,
            )
            .expect("policy"),
        );
        struct Path(&'static str);
        impl RequestAttrs for Path {
            fn method(&self) -> &str {
                "GET"
            }
            fn path(&self) -> &str {
                self.0
            }
            fn host(&self) -> &str {
                "a"
            }
            fn header(&self, _: &str) -> Option<&str> {
                None
            }
        }
        let ip = parse_addr("10.0.0.1");
        for path in ["/y", "/x", "/y"] {
            assert!(two.plan_into(&Path(path), ip, &mut reused));
            assert_eq!(Some(&reused), two.plan(&Path(path), ip).as_ref(), "{path}");
        }
        assert_eq!(reused.rules().len(), 2);
        // Items: the one enforcing rule in place, two in a vector, in rule order either way.
        let st = |remaining| RuleState {
            remaining,
            reset_ns: 1_500_000_000,
        };
        let one = two.plan(&Path("/x"), ip).expect("plan");
        let items = one.items(&[st(3)]);
        assert!(matches!(items, Items::One(_)));
        assert_eq!(
            (items[0].name, items[0].remaining, items[0].reset_s),
            ("one", 3, 2)
        );
        let both = l.plan(&Req("gold"), ip).expect("plan");
        let items = both.items(&[st(1), st(2)]);
        let got: Vec<_> = items.iter().map(|i| (i.name, i.remaining)).collect();
        assert_eq!(got, [("ip", 1), ("all", 2)]);
    }

    #[test]
    fn a_plan_writes_the_response_fields_the_items_give() {
        let l = limiter();
        let odd = Limiter::new(
            parse_json(
                br#"{"apiVersion":"meshward.io/v1alpha1","kind":"Policy","service":"s",
                "routes":[{"name":"default","ratelimit":{"rules":[
                  {"name":"per-client","rate":"100/min","key":["client-ip"]}]}}]}"#,
            )
            .expect("policy"),
        );
        let st = |remaining, reset_ns| RuleState {
            remaining,
            reset_ns,
        };
        let ip = parse_addr("10.0.0.1");
        for (limiter, tier) in [(&l, "gold"), (&l, "free"), (&odd, "")] {
            let plan = limiter.plan(&Req(tier), ip).expect("plan");
            for states in [
                vec![],
                vec![st(0, 1)],
                vec![st(7, 12_000_000_000), st(0, 999_999_999)],
                vec![st(u64::MAX, u64::MAX), st(100, 0)],
                vec![st(12_345, 1_000_000_001), st(9, 60_000_000_000), st(1, 1)],
            ] {
                for style in [
                    HeaderStyle::None,
                    HeaderStyle::Ietf,
                    HeaderStyle::IetfAndLegacy,
                ] {
                    let want =
                        headers::response_fields(style, &plan.policy_field, &plan.items(&states));
                    let mut got: Vec<(&'static str, Vec<u8>)> = Vec::new();
                    limiter.put_response_fields(&plan, style, &states, &mut got);
                    let got: Vec<_> = got
                        .into_iter()
                        .map(|(k, v)| (k, String::from_utf8(v).expect("ascii")))
                        .collect();
                    assert_eq!(got, want, "{style:?} {states:?}");
                    assert_eq!(plan.response_field_count(style, &states), want.len());
                }
            }
        }
    }

    #[test]
    fn clients_get_stable_bounded_slots() {
        let l = limiter();
        let slot = |ip: &str| {
            let plan = l.plan(&Req(""), parse_addr(ip)).expect("plan");
            String::from_utf8(plan.local()[0].check.slot.clone()).expect("utf-8")
        };
        assert_eq!(slot("10.0.0.1"), slot("10.0.0.1:999"));
        let mut seen = std::collections::HashSet::new();
        for i in 0..1000u32 {
            let s = slot(&format!("10.{}.{}.1", i >> 8, i & 0xff));
            assert!(
                s.starts_with("mwrl\u{1f}s\u{1f}default\u{1f}ip\u{1f}"),
                "{s}"
            );
            seen.insert(s);
        }
        assert!(seen.len() <= 64 && seen.len() > 32, "{}", seen.len());
    }
}
