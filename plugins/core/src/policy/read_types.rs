//! [`FromNode`] for every policy type: the field lists, defaults and variant names of the
//! serde attributes on the types (`rename`, `default = "..."`, `rename_all`), written once
//! more in the shape `read.rs` runs. `read_test.rs` holds them to the serde derives. Knows
//! the policy's field names, nothing of how a tree is walked.

use super::de::{At, Chain, DeError, Node};
use super::map::Map;
use super::ratelimit::{
    default_cache_entries, default_cas_retries, default_key, default_queue_len,
    default_rls_timeout, default_shadow_header, default_slots, default_status, default_tick,
    default_true, default_v4_mask, default_v6_mask,
};
use super::read::{
    fields, from_text, newtype, read_into, required, unit_variant, variant, FromNode,
};
use super::text::concat;
use super::{
    Algorithm, Cidr, ClientIpSettings, Duration, FailureMode, GlobalSettings, HeaderStyle,
    IpSource, KeyPart, PathMatch, Policy, QueueSettings, Rate, RateLimitSettings, ResponseSettings,
    Route, RouteClass, RouteMatch, RouteRateLimit, Rule, SharedSettings, TierSettings,
};

/// `FromNode` for a struct with `deny_unknown_fields`: `field: "name" = expr` takes `expr`
/// when absent (serde's `default`); `field: required "name" = expr` must be present (`expr`
/// only fills the place until it is read). The struct is built once, from these values, and
/// each value read overwrites its field in place ([`read_into`], generic over the field's
/// type only), so each struct is a table of calls, not a copy of every field reader.
macro_rules! read_struct {
    ($ty:ident, $expecting:literal, {
        $($field:ident : $($required:ident)? $name:literal = $init:expr),+ $(,)?
    }) => {
        impl FromNode for $ty {
            fn from_node(at: At<'_, '_>) -> Result<Self, DeError> {
                #[allow(non_camel_case_types)]
                enum F { $($field),+ }
                const NAMES: &[&str] = &[$($name),+];
                const REQUIRED: u64 = 0 $($(| (read_struct!(@bit $required) << F::$field as u64))?)+;
                let mut out = $ty { $($field: $init),+ };
                let seen = fields(at, $expecting, NAMES, &mut |i, v| {
                    $(if i == F::$field as usize {
                        return read_into(&mut out.$field, v);
                    })+
                    Ok(())
                })?;
                required(seen, REQUIRED, NAMES)?;
                Ok(out)
            }
        }
    };
    (@bit required) => { 1u64 };
}

/// `FromNode` for an enum of unit variants: `Variant = "name"`. (`unit_variant` only
/// answers indexes of `NAMES`, which has one name per variant of `ALL`; the first variant
/// stands in for an index that cannot come, instead of an error message of its own.)
macro_rules! read_unit_enum {
    ($ty:ident, $expecting:literal, {
        $first:ident = $first_name:literal $(, $variant:ident = $name:literal)* $(,)?
    }) => {
        impl FromNode for $ty {
            fn from_node(at: At<'_, '_>) -> Result<Self, DeError> {
                const NAMES: &[&str] = &[$first_name $(, $name)*];
                const ALL: &[$ty] = &[$ty::$first $(, $ty::$variant)*];
                let i = unit_variant(&at, $expecting, NAMES)?;
                Ok(ALL.get(i).copied().unwrap_or($ty::$first))
            }
        }
    };
}

impl FromNode for Policy {
    fn from_node(at: At<'_, '_>) -> Result<Self, DeError> {
        #[cfg(feature = "deployment")]
        const NAMES: &[&str] = &[
            "apiVersion",
            "kind",
            "service",
            "routes",
            "ratelimit",
            "deployment",
        ];
        #[cfg(not(feature = "deployment"))]
        const NAMES: &[&str] = &["apiVersion", "kind", "service", "routes", "ratelimit"];
        let mut out = Policy {
            api_version: String::new(),
            kind: String::new(),
            service: String::new(),
            routes: Vec::new(),
            ratelimit: None,
            #[cfg(feature = "deployment")]
            deployment: None,
        };
        let seen = fields(at, "struct Policy", NAMES, &mut |i, v| match i {
            0 => read_into(&mut out.api_version, v),
            1 => read_into(&mut out.kind, v),
            2 => read_into(&mut out.service, v),
            3 => read_into(&mut out.routes, v),
            4 => read_into(&mut out.ratelimit, v),
            #[cfg(feature = "deployment")]
            5 => {
                out.deployment = super::read::with_serde(v)?;
                Ok(())
            }
            _ => Ok(()),
        })?;
        // apiVersion, kind and service.
        required(seen, 0b111, NAMES)?;
        Ok(out)
    }
}

read_struct!(Route, "struct Route", {
    name: required "name" = String::new(),
    matcher: "match" = None,
    class: "class" = None,
    ratelimit: "ratelimit" = None,
});

read_unit_enum!(RouteClass, "enum RouteClass", {
    Critical = "critical",
    Standard = "standard",
    Optional = "optional",
});

read_struct!(RouteMatch, "struct RouteMatch", {
    path: "path" = None,
    methods: "methods" = Vec::new(),
    host: "host" = None,
    headers: "headers" = Map::new(),
});

impl FromNode for PathMatch {
    fn from_node(at: At<'_, '_>) -> Result<Self, DeError> {
        const NAMES: &[&str] = &["exact", "prefix", "template"];
        let (i, value) = variant(&at, "enum PathMatch", NAMES)?;
        let s = newtype(&at, NAMES, i, value)?;
        Ok(match i {
            0 => PathMatch::Exact(s),
            1 => PathMatch::Prefix(s),
            _ => PathMatch::Template(s),
        })
    }
}

read_struct!(RouteRateLimit, "struct RouteRateLimit", {
    rules: required "rules" = Vec::new(),
});

read_struct!(Rule, "struct Rule", {
    name: required "name" = String::new(),
    algorithm: "algorithm" = Algorithm::default(),
    rate: required "rate" = Rate::PLACEHOLDER,
    burst: "burst" = None,
    key: "key" = default_key(),
    tiers: "tiers" = Map::new(),
    shadow: "shadow" = false,
    max_delay: "max_delay" = None,
    delay_after: "delay_after" = None,
    global: "global" = false,
    failure_mode: "failure_mode" = None,
    cost: "cost" = None,
});

read_unit_enum!(Algorithm, "enum Algorithm", {
    TokenBucket = "token-bucket",
    LeakyBucket = "leaky-bucket",
    SlidingWindow = "sliding-window",
    FixedWindow = "fixed-window",
});

read_unit_enum!(FailureMode, "enum FailureMode", {
    Allow = "allow",
    Deny = "deny",
});

read_struct!(RateLimitSettings, "struct RateLimitSettings", {
    client_ip: "client_ip" = ClientIpSettings::default(),
    tiers: "tiers" = None,
    claim_headers: "claim_headers" = Map::new(),
    allow_cidrs: "allow_cidrs" = Vec::new(),
    deny_cidrs: "deny_cidrs" = Vec::new(),
    response: "response" = ResponseSettings::default(),
    shared: "shared" = SharedSettings::default(),
    queue: "queue" = QueueSettings::default(),
    global: "global" = None,
});

read_struct!(ClientIpSettings, "struct ClientIpSettings", {
    source: "source" = IpSource::default(),
    trusted_hops: "trusted_hops" = 0,
    ipv4_mask: "ipv4_mask" = default_v4_mask(),
    ipv6_mask: "ipv6_mask" = default_v6_mask(),
});

read_unit_enum!(IpSource, "enum IpSource", {
    Peer = "peer",
    Xff = "xff",
});

read_struct!(TierSettings, "struct TierSettings", {
    from: required "from" = KeyPart::ClientIp,
    default: required "default" = String::new(),
    names: required "names" = Vec::new(),
});

read_unit_enum!(HeaderStyle, "enum HeaderStyle", {
    Ietf = "ietf",
    IetfAndLegacy = "ietf+legacy",
    None = "none",
});

read_struct!(ResponseSettings, "struct ResponseSettings", {
    status: "status" = default_status(),
    headers: "headers" = HeaderStyle::default(),
    on_allowed: "on_allowed" = default_true(),
    problem_json: "problem_json" = default_true(),
    shadow_header: "shadow_header" = default_shadow_header(),
});

read_struct!(SharedSettings, "struct SharedSettings", {
    slots: "slots" = default_slots(),
    cas_retries: "cas_retries" = default_cas_retries(),
    on_cas_exhausted: "on_cas_exhausted" = FailureMode::default(),
});

read_struct!(QueueSettings, "struct QueueSettings", {
    max_len: "max_len" = default_queue_len(),
    tick: "tick" = default_tick(),
});

read_struct!(GlobalSettings, "struct GlobalSettings", {
    cluster: required "cluster" = String::new(),
    domain: required "domain" = String::new(),
    timeout: "timeout" = default_rls_timeout(),
    failure_mode: "failure_mode" = FailureMode::default(),
    cache_entries: "cache_entries" = default_cache_entries(),
});

impl FromNode for Duration {
    fn from_node(at: At<'_, '_>) -> Result<Self, DeError> {
        from_text(at)
    }
}

impl FromNode for Rate {
    fn from_node(at: At<'_, '_>) -> Result<Self, DeError> {
        from_text(at)
    }
}

impl FromNode for Cidr {
    fn from_node(at: At<'_, '_>) -> Result<Self, DeError> {
        from_text(at)
    }
}

impl FromNode for KeyPart {
    fn from_node(at: At<'_, '_>) -> Result<Self, DeError> {
        from_text(at)
    }
}

/// serde's `Map` visitor (`map.rs`): entries in any order, a repeated key is an error at
/// the map's path (after its value was read, as serde reads key then value).
impl<V: FromNode> FromNode for Map<V> {
    fn from_node(at: At<'_, '_>) -> Result<Self, DeError> {
        let Node::Map(entries) = at.value else {
            return at.wrong("a map");
        };
        let mut m = Map::new();
        for (key, value) in entries {
            let chain = Chain::Key(at.at, key);
            let v = V::from_node(At { value, at: &chain }).map_err(|e| e.at(&chain))?;
            if m.contains_key(key) {
                return Err(DeError::new(concat(&["duplicate key `", key, "`"])));
            }
            m.insert(key.clone(), v);
        }
        Ok(m)
    }
}
