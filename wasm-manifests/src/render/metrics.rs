//! The metrics each filter defines (the contract documented in `docs/metrics.md`): the
//! renderer puts them into `proxyStatsMatcher`, the alert rules and the dashboards.
//!
//! A filter defines Envoy custom metrics named `meshward_<filter>.<...>`; Envoy keeps them as
//! `wasmcustom.meshward_<filter>.<...>` and its Prometheus endpoint exports them without the
//! `wasmcustom` namespace, with every character outside `[a-zA-Z0-9_]` turned into `_` and no
//! labels of their own (Prometheus adds `namespace`, `pod`, `meshward_service`). Per-route or
//! per-rule metrics therefore differ in their *name*, and PromQL selects them with a regex on
//! `__name__`. Knows nothing of YAML.

/// Prometheus type of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Monotonic counter.
    Counter,
    /// Gauge.
    Gauge,
}

/// One metric (or family of per-route/rule metrics) a filter defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterMetric {
    /// Envoy stat name as the filter defines it (`<route>`, `<rule>` are placeholders).
    pub stat: &'static str,
    /// Regex over the exported Prometheus name (`__name__`).
    pub prom: &'static str,
    /// Type.
    pub kind: MetricKind,
    /// What it counts.
    pub help: &'static str,
}

impl FilterMetric {
    /// A PromQL vector selector for this metric plus extra `matchers` (`a="b",...`).
    pub fn selector(&self, matchers: &str) -> String {
        let extra = if self.prom.ends_with("_limited") {
            // `..._shadow_limited` also ends in `_limited`.
            ",__name__!~\".+_shadow_limited\""
        } else {
            ""
        };
        format!("{{__name__=~\"{}\"{extra},{matchers}}}", self.prom)
    }
}

const fn c(stat: &'static str, prom: &'static str, help: &'static str) -> FilterMetric {
    FilterMetric {
        stat,
        prom,
        kind: MetricKind::Counter,
        help,
    }
}

const fn g(stat: &'static str, prom: &'static str, help: &'static str) -> FilterMetric {
    FilterMetric {
        stat,
        prom,
        kind: MetricKind::Gauge,
        help,
    }
}

/// ratelimit (plugins/ratelimit, `Shared::count`).
pub const RL_ALLOWED: FilterMetric = c(
    "meshward_ratelimit.<route>.<rule>.allowed",
    "meshward_ratelimit_.+_allowed",
    "requests a rule admitted",
);
/// Rejected with the limit status.
pub const RL_LIMITED: FilterMetric = c(
    "meshward_ratelimit.<route>.<rule>.limited",
    "meshward_ratelimit_.+_limited",
    "requests a rule rejected (429)",
);
/// Filter-level failures to decide.
pub const RL_ERRORS: FilterMetric = c(
    "meshward_ratelimit.<route>.<rule>.{rls_error,cas_exhausted}",
    "meshward_ratelimit_.+_(rls_error|cas_exhausted)",
    "decisions that fell back to the failure mode (RLS unreachable, CAS retries exhausted)",
);

const RATELIMIT: &[FilterMetric] = &[
    RL_ALLOWED,
    RL_LIMITED,
    c(
        "meshward_ratelimit.<route>.<rule>.delayed",
        "meshward_ratelimit_.+_delayed",
        "requests a leaky-bucket rule held back to pace them",
    ),
    c(
        "meshward_ratelimit.<route>.<rule>.shadow_limited",
        "meshward_ratelimit_.+_shadow_limited",
        "requests a shadow rule would have rejected (let through)",
    ),
    RL_ERRORS,
    c(
        "meshward_ratelimit.denied",
        "meshward_ratelimit_denied",
        "requests rejected by deny_cidrs (403)",
    ),
    c(
        "meshward_ratelimit.bypassed",
        "meshward_ratelimit_bypassed",
        "requests that skipped every rule (allow_cidrs)",
    ),
];

/// throttle (contract for the filter; names chosen here).
pub const TH_QUEUE_LENGTH: FilterMetric = g(
    "meshward_throttle.queue_length",
    "meshward_throttle_queue_length",
    "requests waiting in the queue now",
);
/// Queue bound.
pub const TH_QUEUE_CAPACITY: FilterMetric = g(
    "meshward_throttle.queue_capacity",
    "meshward_throttle_queue_capacity",
    "configured queue length bound",
);

const THROTTLE: &[FilterMetric] = &[
    c(
        "meshward_throttle.admitted",
        "meshward_throttle_admitted",
        "requests admitted (directly or after queueing)",
    ),
    c(
        "meshward_throttle.rejected",
        "meshward_throttle_rejected",
        "requests rejected because the bulkhead and queue were full",
    ),
    c(
        "meshward_throttle.queue_timeouts",
        "meshward_throttle_queue_timeouts",
        "queued requests that waited past their class timeout",
    ),
    TH_QUEUE_LENGTH,
    TH_QUEUE_CAPACITY,
];

/// degrade (contract for the filter).
pub const DG_LEVEL: FilterMetric = g(
    "meshward_degrade.level",
    "meshward_degrade_level",
    "current level: 0 normal, 1 degraded, 2 critical, 3 emergency",
);

const DEGRADE: &[FilterMetric] = &[
    DG_LEVEL,
    c(
        "meshward_degrade.shed",
        "meshward_degrade_shed",
        "requests shed because of the level",
    ),
];

/// fallback (contract for the filter).
pub const FB_BREAKERS_OPEN: FilterMetric = g(
    "meshward_fallback.breakers_open",
    "meshward_fallback_breakers_open",
    "circuit breakers open now",
);

const FALLBACK: &[FilterMetric] = &[
    FB_BREAKERS_OPEN,
    c(
        "meshward_fallback.served",
        "meshward_fallback_served",
        "answers replaced by a cached or static fallback",
    ),
    c(
        "meshward_fallback.upstream_failures",
        "meshward_fallback_upstream_failures",
        "upstream failures the breakers counted",
    ),
];

/// The metrics `filter` (by name) defines; empty for an unknown filter.
pub fn filter_metrics(filter: &str) -> &'static [FilterMetric] {
    match filter {
        "ratelimit" => RATELIMIT,
        "throttle" => THROTTLE,
        "degrade" => DEGRADE,
        "fallback" => FALLBACK,
        _ => &[],
    }
}
