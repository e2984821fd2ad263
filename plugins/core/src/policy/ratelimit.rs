//! The rate-limit part of the policy: rules per route (`routes[].ratelimit.rules`) and the
//! filter-wide settings (`ratelimit:`): client identity, tiers, CIDR lists, response shape,
//! shared-data bounds and the global rate limit service. Only types and their parsing from
//! strings live here; checks that span fields are in `validate.rs`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::cidr::Cidr;
use super::map::Map;
use super::units::{invalid, split_at_byte, Duration, Rate, UnitError};

/// Rate limits of one route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRateLimit {
    /// Every rule must admit a request; a rejected request consumes nothing.
    pub rules: Vec<Rule>,
}

/// One limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Unique within the route; used in metrics, keys and the `RateLimit` header.
    pub name: String,
    /// How the limit is enforced.
    #[serde(default)]
    pub algorithm: Algorithm,
    /// The sustained rate (per key).
    pub rate: Rate,
    /// Extra requests allowed at once above the rate (token/leaky bucket; default 1 for the
    /// token bucket = no burst beyond one request, 0 for the leaky bucket = no queue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// What makes two requests share a bucket. Empty = one bucket for the route.
    #[serde(default = "default_key", skip_serializing_if = "Vec::is_empty")]
    pub key: Vec<KeyPart>,
    /// Per-tier rate overrides: `{ free: 10/s, premium: 1000/s }`. A tier not listed uses
    /// `rate`.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub tiers: Map<Rate>,
    /// Count and mark would-be rejections but let them through.
    #[serde(default, skip_serializing_if = "is_false")]
    pub shadow: bool,
    /// Leaky bucket only: longest a request may be held before it is rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_delay: Option<Duration>,
    /// Leaky bucket only (nginx `delay=`): this many excess requests pass without waiting
    /// before pacing starts. Default 0 (every excess request waits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_after: Option<u32>,
    /// Ask the global rate limit service (`ratelimit.global`) instead of counting locally.
    #[serde(default, skip_serializing_if = "is_false")]
    pub global: bool,
    /// Global rules: what to do when the service cannot answer (overrides
    /// `ratelimit.global.failure_mode`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_mode: Option<FailureMode>,
    /// Cost of one request (RLS `hits_addend`; local algorithms charge this many units).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<u32>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

pub(super) fn default_key() -> Vec<KeyPart> {
    vec![KeyPart::ClientIp]
}

/// Rate-limiting algorithm of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    /// GCRA token bucket: `rate` sustained, `burst` at once.
    #[default]
    TokenBucket,
    /// Leaky bucket that paces excess requests (holds them up to `max_delay`).
    LeakyBucket,
    /// Sliding-window counter (two fixed windows weighted).
    SlidingWindow,
    /// Fixed window aligned to the clock.
    FixedWindow,
}

impl Algorithm {
    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::TokenBucket => "token-bucket",
            Algorithm::LeakyBucket => "leaky-bucket",
            Algorithm::SlidingWindow => "sliding-window",
            Algorithm::FixedWindow => "fixed-window",
        }
    }
}

/// A request attribute that a key, or the tier, is made of.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum KeyPart {
    /// The client address (see `ratelimit.client_ip`), masked.
    ClientIp,
    /// A request header, lower-case name.
    Header(String),
    /// A JWT claim, read from the header that `ratelimit.claim_headers` names for it.
    Claim(String),
    /// The route name.
    Route,
}

impl FromStr for KeyPart {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "client-ip" => Ok(KeyPart::ClientIp),
            "route" => Ok(KeyPart::Route),
            _ => match split_at_byte(s, b':') {
                Some(("header", n)) if is_header_name(n) => {
                    Ok(KeyPart::Header(n.to_ascii_lowercase()))
                }
                Some(("claim", n)) if !n.is_empty() && !n.contains(char::is_whitespace) => {
                    Ok(KeyPart::Claim(n.to_string()))
                }
                _ => Err(invalid(
                    "key",
                    s,
                    &["expected `client-ip`, `route`, `header:<name>` or `claim:<name>`"],
                )),
            },
        }
    }
}

/// An HTTP field name token (RFC 9110 `token`), not a pseudo-header.
pub fn is_header_name(n: &str) -> bool {
    !n.is_empty()
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl TryFrom<String> for KeyPart {
    type Error = UnitError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<KeyPart> for String {
    fn from(k: KeyPart) -> String {
        k.to_string()
    }
}

impl fmt::Display for KeyPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyPart::ClientIp => write!(f, "client-ip"),
            KeyPart::Route => write!(f, "route"),
            KeyPart::Header(h) => write!(f, "header:{h}"),
            KeyPart::Claim(c) => write!(f, "claim:{c}"),
        }
    }
}

/// Allow or deny when something cannot be decided (RLS down, CAS retries exhausted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureMode {
    /// Let the request through (counted).
    #[default]
    Allow,
    /// Reject the request (counted).
    Deny,
}

/// Filter-wide rate-limit settings (`ratelimit:` at the top of the policy).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Where the client address comes from.
    #[serde(default)]
    pub client_ip: ClientIpSettings,
    /// How a request's tier is chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tiers: Option<TierSettings>,
    /// JWT claim name -> the request header Istio's `RequestAuthentication`
    /// (`outputClaimToHeaders`) writes it to.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub claim_headers: Map<String>,
    /// Clients in these blocks bypass every rule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_cidrs: Vec<Cidr>,
    /// Clients in these blocks get 403 (checked before `allow_cidrs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny_cidrs: Vec<Cidr>,
    /// Shape of the answers.
    #[serde(default)]
    pub response: ResponseSettings,
    /// Cross-worker counters in proxy shared data.
    #[serde(default)]
    pub shared: SharedSettings,
    /// Per-worker queue for leaky-bucket delays.
    #[serde(default)]
    pub queue: QueueSettings,
    /// The global rate limit service (Envoy RLS v3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global: Option<GlobalSettings>,
}

/// Client address source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientIpSettings {
    /// `peer` (the connection's `source.address`) or `xff` (X-Forwarded-For).
    #[serde(default)]
    pub source: IpSource,
    /// With `xff`: proxies in front of this one that append to X-Forwarded-For and are
    /// trusted. The client is the `trusted_hops`-th address from the right; with 0 the peer
    /// address is used.
    #[serde(default)]
    pub trusted_hops: u8,
    /// IPv4 prefix that identifies one client (32 = per address).
    #[serde(default = "default_v4_mask")]
    pub ipv4_mask: u8,
    /// IPv6 prefix that identifies one client (64 = per subnet, the usual allocation).
    #[serde(default = "default_v6_mask")]
    pub ipv6_mask: u8,
}

pub(super) fn default_v4_mask() -> u8 {
    32
}
pub(super) fn default_v6_mask() -> u8 {
    64
}

impl Default for ClientIpSettings {
    fn default() -> Self {
        Self {
            source: IpSource::Peer,
            trusted_hops: 0,
            ipv4_mask: default_v4_mask(),
            ipv6_mask: default_v6_mask(),
        }
    }
}

/// Where the client address is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IpSource {
    /// The downstream connection's peer address.
    #[default]
    Peer,
    /// X-Forwarded-For, counting `trusted_hops` from the right.
    Xff,
}

/// Tier selection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierSettings {
    /// `header:<name>` or `claim:<name>`. Only trust a header that an earlier filter
    /// overwrites (RequestAuthentication's `outputClaimToHeaders` does).
    pub from: KeyPart,
    /// Tier of requests without a value or with a value not in `names`.
    pub default: String,
    /// Known tiers.
    pub names: Vec<String>,
}

/// Which rate-limit headers go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum HeaderStyle {
    /// IETF `RateLimit` + `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers-10).
    #[default]
    #[serde(rename = "ietf")]
    Ietf,
    /// IETF fields plus draft-03 `X-RateLimit-Limit/Remaining/Reset`.
    #[serde(rename = "ietf+legacy")]
    IetfAndLegacy,
    /// No rate-limit headers (Retry-After is still sent on rejections).
    #[serde(rename = "none")]
    None,
}

/// Shape of rejections and headers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseSettings {
    /// Status of a rate-limited request (400..=599; default 429).
    #[serde(default = "default_status")]
    pub status: u16,
    /// Rate-limit header style.
    #[serde(default)]
    pub headers: HeaderStyle,
    /// Also put the headers on allowed responses.
    #[serde(default = "default_true")]
    pub on_allowed: bool,
    /// RFC 9457 `application/problem+json` body on rejections (else an empty body).
    #[serde(default = "default_true")]
    pub problem_json: bool,
    /// Request header added upstream when a shadow rule would have rejected.
    #[serde(default = "default_shadow_header")]
    pub shadow_header: String,
}

pub(super) fn default_status() -> u16 {
    429
}
pub(super) fn default_true() -> bool {
    true
}
pub(super) fn default_shadow_header() -> String {
    "x-meshward-ratelimit-shadow".to_string()
}

impl Default for ResponseSettings {
    fn default() -> Self {
        Self {
            status: default_status(),
            headers: HeaderStyle::default(),
            on_allowed: true,
            problem_json: true,
            shadow_header: default_shadow_header(),
        }
    }
}

/// Bounds of the shared-data key space and CAS behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedSettings {
    /// Hash slots per rule (keys map to `rule prefix + slot`). Memory is bounded by
    /// `slots × rules × ~60 bytes`, whatever clients send.
    #[serde(default = "default_slots")]
    pub slots: u32,
    /// CAS attempts per rule and request before `on_cas_exhausted` applies.
    #[serde(default = "default_cas_retries")]
    pub cas_retries: u32,
    /// What happens when CAS retries run out (counted as `cas_exhausted`).
    #[serde(default)]
    pub on_cas_exhausted: FailureMode,
}

pub(super) fn default_slots() -> u32 {
    65_536
}
pub(super) fn default_cas_retries() -> u32 {
    8
}

impl Default for SharedSettings {
    fn default() -> Self {
        Self {
            slots: default_slots(),
            cas_retries: default_cas_retries(),
            on_cas_exhausted: FailureMode::Allow,
        }
    }
}

/// Leaky-bucket wait queue (one per worker).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSettings {
    /// Most requests held at once per worker; more are rejected.
    #[serde(default = "default_queue_len")]
    pub max_len: u32,
    /// Timer granularity for releasing held requests.
    #[serde(default = "default_tick")]
    pub tick: Duration,
}

pub(super) fn default_queue_len() -> u32 {
    1024
}
pub(super) fn default_tick() -> Duration {
    Duration::from_millis(10)
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            max_len: default_queue_len(),
            tick: default_tick(),
        }
    }
}

/// Envoy rate limit service (`envoy.service.ratelimit.v3.RateLimitService`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalSettings {
    /// Envoy cluster of the service (`outbound|8081||ratelimit.ns.svc.cluster.local`).
    pub cluster: String,
    /// RLS domain.
    pub domain: String,
    /// Per-call timeout (default 20ms, as Envoy's filter).
    #[serde(default = "default_rls_timeout")]
    pub timeout: Duration,
    /// Default for rules without `failure_mode`.
    #[serde(default)]
    pub failure_mode: FailureMode,
    /// Entries of the longest OVER_LIMIT cache (bounded; oldest evicted).
    #[serde(default = "default_cache_entries")]
    pub cache_entries: u32,
}

pub(super) fn default_rls_timeout() -> Duration {
    Duration::from_millis(20)
}
pub(super) fn default_cache_entries() -> u32 {
    4096
}
