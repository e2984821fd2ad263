//! A validated policy compiled for the request path: which route, which client, which tier,
//! which slots. Builds the [`Check`]s the engine evaluates and the descriptors the global
//! service is asked about. No I/O, no clock, no panics: every lookup is total.
//!
//! Keys are bounded: a rule's key material (masked client address, header values, ...) is
//! hashed into one of `shared.slots` slots, so the store holds at most `slots` entries per
//! rule whatever clients send. Two keys in one slot share a bucket (the cost of a collision
//! is under-admission for both, never over-admission); with `n` active keys the share of
//! keys that collide is about `1 - e^(-n/slots)`.

use std::net::IpAddr;

use crate::policy::{
    canonical_ip, mask_ip, Algorithm, IpSource, KeyPart, Policy, Rate, RateLimitSettings,
    RequestAttrs, Rule,
};

use super::algo::Params;
use super::engine::Check;

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
    /// Rule name.
    pub name: String,
    /// The engine's check (slot + params + cost).
    pub check: Check,
    /// Effective rate (after the tier override).
    pub rate: Rate,
    /// Shadow rule.
    pub shadow: bool,
    /// Global rule: RLS descriptor entries.
    pub descriptor: Option<Vec<(String, String)>>,
}

/// Everything the filter needs for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Index and name of the matched route.
    pub route: (usize, String),
    /// The request's tier (when tiers are configured).
    pub tier: Option<String>,
    /// The route's rules, in policy order.
    pub rules: Vec<PlannedRule>,
}

impl Plan {
    /// Enforcing local rules.
    pub fn local(&self) -> impl Iterator<Item = &PlannedRule> {
        self.rules
            .iter()
            .filter(|r| !r.shadow && r.descriptor.is_none())
    }
    /// Shadow local rules.
    pub fn shadow(&self) -> impl Iterator<Item = &PlannedRule> {
        self.rules
            .iter()
            .filter(|r| r.shadow && r.descriptor.is_none())
    }
    /// Global rules.
    pub fn global(&self) -> impl Iterator<Item = &PlannedRule> {
        self.rules.iter().filter(|r| r.descriptor.is_some())
    }
}

/// The compiled policy.
#[derive(Debug, Clone)]
pub struct Limiter {
    policy: Policy,
    settings: RateLimitSettings,
    headers: Vec<String>,
    /// Slot-key prefix (`mwrl␟service␟route␟rule␟`) by route and rule index.
    prefixes: Vec<Vec<Vec<u8>>>,
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
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical_ip(ip));
    }
    if let Some(rest) = s.strip_prefix('[') {
        let inner = rest.split(']').next()?;
        return inner.parse::<IpAddr>().ok().map(canonical_ip);
    }
    let (host, port) = s.rsplit_once(':')?;
    if port.bytes().all(|b| b.is_ascii_digit()) {
        host.parse::<IpAddr>().ok().map(canonical_ip)
    } else {
        None
    }
}

impl Limiter {
    /// Compiles a policy (which the caller has validated).
    pub fn new(policy: Policy) -> Self {
        let settings = policy.ratelimit_settings();
        let headers = needed_headers(&policy, &settings);
        let prefixes = policy
            .routes
            .iter()
            .map(|route| {
                let rules = route.ratelimit.as_ref().map_or(&[][..], |rl| &rl.rules);
                rules
                    .iter()
                    .map(|rule| {
                        format!(
                            "mwrl\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}",
                            policy.service, route.name, rule.name
                        )
                        .into_bytes()
                    })
                    .collect()
            })
            .collect();
        Self {
            policy,
            settings,
            headers,
            prefixes,
        }
    }

    /// Every request header (lower-case, no duplicates) that route matching, keys, claims,
    /// tiers, X-Forwarded-For or the request id may read: a filter fetches these and no
    /// others.
    pub fn header_names(&self) -> &[String] {
        &self.headers
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The filter-wide settings.
    pub fn settings(&self) -> &RateLimitSettings {
        &self.settings
    }

    /// The client address: the peer, or with `source: xff` the `trusted_hops`-th entry of
    /// X-Forwarded-For from the right (each trusted proxy appended the address it saw).
    /// Entries a client wrote itself are left of those and never read; when the header has
    /// fewer entries than trusted hops, or the chosen entry is not an address, the peer
    /// address is used.
    pub fn client_ip(&self, peer: Option<IpAddr>, xff: Option<&str>) -> Option<IpAddr> {
        let ci = &self.settings.client_ip;
        if ci.source == IpSource::Peer || ci.trusted_hops == 0 {
            return peer.map(canonical_ip);
        }
        let chosen = xff.and_then(|x| {
            let entries: Vec<&str> = x.split(',').collect();
            let idx = entries.len().checked_sub(usize::from(ci.trusted_hops))?;
            entries.get(idx).and_then(|e| parse_addr(e))
        });
        chosen.or(peer.map(canonical_ip))
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
    pub fn tier(&self, req: &dyn RequestAttrs) -> Option<String> {
        let t = self.settings.tiers.as_ref()?;
        let v = self.attr(req, &t.from).map(str::trim);
        Some(match v {
            Some(v) if t.names.iter().any(|n| n == v) => v.to_string(),
            _ => t.default.clone(),
        })
    }

    /// The matched route's rules, ready to evaluate (`None`: no route or no rules).
    pub fn plan(&self, req: &dyn RequestAttrs, client: Option<IpAddr>) -> Option<Plan> {
        let (ri, route) = crate::policy::select(&self.policy.routes, req)?;
        let rl = route.ratelimit.as_ref()?;
        let tier = self.tier(req);
        let ci = &self.settings.client_ip;
        let client_text = client.map(|ip| {
            let m = if ip.is_ipv4() {
                ci.ipv4_mask
            } else {
                ci.ipv6_mask
            };
            mask_ip(ip, m).to_string()
        });
        let slots = u64::from(self.settings.shared.slots.max(1));
        let mut rules = Vec::with_capacity(rl.rules.len());
        for (i, rule) in rl.rules.iter().enumerate() {
            let rate = tier
                .as_ref()
                .and_then(|t| rule.tiers.get(t))
                .copied()
                .unwrap_or(rule.rate);
            let value = |part: &KeyPart| -> &str {
                match part {
                    KeyPart::ClientIp => client_text.as_deref().unwrap_or(""),
                    KeyPart::Route => &route.name,
                    KeyPart::Header(_) | KeyPart::Claim(_) => self.attr(req, part).unwrap_or(""),
                }
            };
            let mut h = Hash64::new();
            h.part(route.name.as_bytes());
            h.part(rule.name.as_bytes());
            for part in &rule.key {
                h.part(value(part).as_bytes());
            }
            let slot = h.finish() % slots;
            let prefix = self
                .prefixes
                .get(ri)
                .and_then(|p| p.get(i))
                .map_or(&[][..], Vec::as_slice);
            let mut key = Vec::with_capacity(prefix.len() + 20);
            key.extend_from_slice(prefix);
            push_decimal(&mut key, slot);
            let descriptor = rule.global.then(|| {
                let mut d = Vec::with_capacity(rule.key.len() + 1);
                d.push((
                    "meshward_rule".to_string(),
                    format!("{}/{}", route.name, rule.name),
                ));
                for part in &rule.key {
                    let k = match part {
                        KeyPart::ClientIp => "remote_address",
                        KeyPart::Route => "route",
                        KeyPart::Header(h) => h,
                        KeyPart::Claim(c) => c,
                    };
                    d.push((k.to_string(), value(part).to_string()));
                }
                d
            });
            rules.push(PlannedRule {
                index: i,
                name: rule.name.clone(),
                check: Check {
                    slot: key,
                    params: params(rule, rate),
                    cost: u64::from(rule.cost.unwrap_or(1)),
                },
                rate,
                shadow: rule.shadow,
                descriptor,
            });
        }
        Some(Plan {
            route: (ri, route.name.clone()),
            tier,
            rules,
        })
    }
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
    for n in &mut names {
        n.make_ascii_lowercase();
    }
    names.sort();
    names.dedup();
    names
}

/// Appends `n` in decimal (as `format!("{n}")` would).
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        if let Some(d) = digits.get_mut(i) {
            // n % 10 < 10: always one ASCII digit.
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(i..).unwrap_or(&[]));
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
