//! Monitoring: the PodMonitor that scrapes the workload's sidecars (Envoy + Istio agent
//! merged endpoint) and a PrometheusRule with the SLO alerts (availability burn rate, P95/P99
//! latency, error rate, from Istio's standard metrics) and alerts on the filters' own metrics,
//! the Wasm VMs and the backups. Every alert has a `severity` label and a `runbook_url`
//! pointing at `docs/runbooks/<page>.md`. Knows PromQL and the metric contract
//! (`metrics.rs`); not the filters' internals.

use std::collections::BTreeMap;

use super::metrics::{
    DG_LEVEL, FB_BREAKERS_OPEN, RL_ALLOWED, RL_ERRORS, RL_LIMITED, TH_QUEUE_CAPACITY,
    TH_QUEUE_LENGTH,
};
use super::{Ctx, Out};
use crate::crd::monitoring::{
    AlertRule, MetricsEndpoint, PodMonitorSpec, PrometheusRuleSpec, Relabeling, RuleGroup,
};
use crate::crd::{LabelSelector, Object};
use crate::RenderError;

/// Label the PodMonitor puts on every series of the workload; the alerts select on it.
pub(crate) const SERVICE_LABEL: &str = "meshward_service";

pub(super) fn render(ctx: &Ctx, out: &mut Out) -> Result<(), RenderError> {
    out.push(
        "monitoring.yaml",
        Some("Scrapes the sidecars' merged endpoint (:15020/stats/prometheus: Envoy stats incl. the filters'\ncustom metrics, plus istio-agent metrics) and labels every series meshward_service.".into()),
        &Object::new(
            ctx.meta(&format!("{}-sidecars", ctx.service()), "monitoring"),
            PodMonitorSpec {
                selector: LabelSelector {
                    match_labels: ctx.dep.selector.clone(),
                },
                pod_metrics_endpoints: vec![MetricsEndpoint {
                    port: Some("http-envoy-prom".into()),
                    port_number: None,
                    path: "/stats/prometheus".into(),
                    interval: "30s".into(),
                    relabelings: vec![
                        Relabeling {
                            action: "replace".into(),
                            source_labels: vec!["__meta_kubernetes_pod_ip".into()],
                            regex: Some("(.+)".into()),
                            target_label: Some("__address__".into()),
                            replacement: Some("$1:15020".into()),
                        },
                        Relabeling {
                            action: "replace".into(),
                            source_labels: Vec::new(),
                            regex: None,
                            target_label: Some(SERVICE_LABEL.into()),
                            replacement: Some(ctx.service().to_string()),
                        },
                    ],
                }],
            },
        ),
    )?;
    out.push(
        "monitoring.yaml",
        Some(
            "SLO, filter, Wasm VM and backup alerts. `promtool check rules` reads .spec as is."
                .into(),
        ),
        &Object::new(
            ctx.meta(&format!("{}-meshward", ctx.service()), "monitoring"),
            rule_spec(ctx),
        ),
    )
}

struct A<'a> {
    ctx: &'a Ctx<'a>,
    rules: Vec<AlertRule>,
}

impl A<'_> {
    /// `(alert name, severity, for)`, then the expression and texts.
    fn add(
        &mut self,
        (name, severity, for_): (&str, &str, &str),
        expr: String,
        summary: &str,
        description: String,
        runbook: &str,
    ) {
        let base = self.ctx.dep.runbook_base_url.trim_end_matches('/');
        self.rules.push(AlertRule {
            alert: name.to_string(),
            expr,
            for_: for_.to_string(),
            labels: BTreeMap::from([
                ("severity".to_string(), severity.to_string()),
                (SERVICE_LABEL.to_string(), self.ctx.service().to_string()),
            ]),
            annotations: BTreeMap::from([
                ("summary".to_string(), summary.to_string()),
                ("description".to_string(), description),
                ("runbook_url".to_string(), format!("{base}/{runbook}.md")),
            ]),
        });
    }
}

/// Prometheus float text without exponent noise (`0.00144`).
fn num(x: f64) -> String {
    let s = format!("{x:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() {
        "0".into()
    } else {
        s.to_string()
    }
}

fn err_ratio(sel: &str, window: &str) -> String {
    format!(
        "(sum(rate(istio_requests_total{{{sel},response_code=~\"5..\"}}[{window}])) / sum(rate(istio_requests_total{{{sel}}}[{window}])))"
    )
}

pub(super) fn rule_spec(ctx: &Ctx) -> PrometheusRuleSpec {
    let svc = ctx.service();
    let slo = &ctx.dep.slo;
    let sel = format!("{SERVICE_LABEL}=\"{svc}\",reporter=\"destination\"");
    let m = format!("{SERVICE_LABEL}=\"{svc}\"");
    let budget = 1.0 - slo.availability.fraction();
    let mut slo_rules = A {
        ctx,
        rules: Vec::new(),
    };
    // Multi-window burn rates (Google SRE workbook ch. 5): 14.4x budget over 1h (and 5m, so it
    // stops quickly) spends 2 % of a 30-day budget in an hour; 6x over 6h (and 30m) 5 % in 6h.
    for (name, sev, factor, long, short, for_) in [
        (
            "MeshwardAvailabilityFastBurn",
            "critical",
            14.4,
            "1h",
            "5m",
            "2m",
        ),
        (
            "MeshwardAvailabilitySlowBurn",
            "warning",
            6.0,
            "6h",
            "30m",
            "15m",
        ),
    ] {
        let threshold = num(factor * budget);
        slo_rules.add(
            (name, sev, for_),
            format!(
                "{} > {threshold}\nand\n{} > {threshold}",
                err_ratio(&sel, long),
                err_ratio(&sel, short)
            ),
            "The error budget of the availability SLO is burning fast",
            format!(
                "{svc}: 5xx ratio over {long} and {short} is above {factor}x the budget of the {}% availability SLO (threshold {threshold}).",
                slo.availability.0
            ),
            "availability-burn",
        );
    }
    for (name, sev, q, ms) in [
        (
            "MeshwardLatencyP95High",
            "warning",
            "0.95",
            slo.latency_p95.0,
        ),
        (
            "MeshwardLatencyP99High",
            "critical",
            "0.99",
            slo.latency_p99.0,
        ),
    ] {
        slo_rules.add(
            (name, sev, "10m"),
            format!(
                "histogram_quantile({q}, sum by (le) (rate(istio_request_duration_milliseconds_bucket{{{sel}}}[5m]))) > {ms}"
            ),
            "Request latency is above the SLO",
            format!("{svc}: P{} latency over 5m is {{{{ $value | humanize }}}}ms, objective {ms}ms.", &q[2..]),
            "latency",
        );
    }
    let er = slo.error_rate.fraction();
    slo_rules.add(
        ("MeshwardErrorRateHigh", "critical", "5m"),
        format!("{} > {}", err_ratio(&sel, "5m"), num(er)),
        "The 5xx error rate is above the objective",
        format!("{svc}: {{{{ $value | humanizePercentage }}}} of requests failed with 5xx over 5m (objective {}%).", slo.error_rate.0),
        "error-rate",
    );

    let mut filter_rules = A {
        ctx,
        rules: Vec::new(),
    };
    for f in ctx.policy.filters_used() {
        match f.name() {
            "ratelimit" => {
                let limited = format!("sum(rate({}[5m]))", RL_LIMITED.selector(&m));
                let allowed = format!("sum(rate({}[5m]))", RL_ALLOWED.selector(&m));
                filter_rules.add(
                    ("MeshwardRateLimitedRatioHigh", "warning", "10m"),
                    format!("{limited}\n/\n({allowed} + {limited})\n> 0.1"),
                    "More than 10% of requests are rate limited",
                    format!("{svc}: {{{{ $value | humanizePercentage }}}} of rate-limit decisions were 429 over 5m."),
                    "ratelimit-limited",
                );
                filter_rules.add(
                    ("MeshwardRateLimitErrors", "warning", "10m"),
                    format!("sum(rate({}[5m])) > 0", RL_ERRORS.selector(&m)),
                    "The rate limiter cannot decide some requests",
                    format!("{svc}: the ratelimit filter falls back to its failure mode for {{{{ $value | humanize }}}} req/s (RLS unreachable or shared-data contention)."),
                    "ratelimit-errors",
                );
            }
            "throttle" => filter_rules.add(
                ("MeshwardThrottleQueueSaturated", "warning", "5m"),
                format!("sum({}) / sum({}) > 0.8", TH_QUEUE_LENGTH.selector(&m), TH_QUEUE_CAPACITY.selector(&m)),
                "The throttle queue is more than 80% full",
                format!("{svc}: queued requests fill {{{{ $value | humanizePercentage }}}} of the queue; rejections follow."),
                "throttle-queue",
            ),
            "degrade" => {
                filter_rules.add(
                    ("MeshwardDegraded", "warning", "5m"),
                    format!("max({}) >= 1", DG_LEVEL.selector(&m)),
                    "The service runs degraded",
                    format!("{svc}: degradation level {{{{ $value }}}} (1 degraded, 2 critical, 3 emergency)."),
                    "degraded",
                );
                filter_rules.add(
                    ("MeshwardDegradedCritical", "critical", "2m"),
                    format!("max({}) >= 2", DG_LEVEL.selector(&m)),
                    "The service runs at critical or emergency level",
                    format!("{svc}: degradation level {{{{ $value }}}}; optional routes are shed."),
                    "degraded",
                );
            }
            "fallback" => filter_rules.add(
                ("MeshwardCircuitBreakerOpen", "warning", "2m"),
                format!("max({}) > 0", FB_BREAKERS_OPEN.selector(&m)),
                "A circuit breaker is open",
                format!("{svc}: {{{{ $value }}}} breaker(s) open; answers come from fallbacks."),
                "breaker-open",
            ),
            _ => {}
        }
    }
    if !ctx.policy.filters_used().is_empty() {
        filter_rules.add(
            ("MeshwardWasmVmRestarting", "warning", "0m"),
            format!("sum by (pod) (increase(envoy_wasm_envoy_wasm_runtime_v8_created{{{m}}}[10m])) > 0\nand on (pod)\nmax by (pod) (envoy_server_uptime{{{m}}}) > 900"),
            "Wasm VMs are being re-created in a long-running proxy",
            format!("{svc}: pod {{{{ $labels.pod }}}} created {{{{ $value }}}} Wasm VMs in 10m after more than 15m of uptime: a filter crashed and was reloaded (or a WasmPlugin changed). With FAIL_OPEN the filter is bypassed meanwhile."),
            "wasm-vm",
        );
        filter_rules.add(
            ("MeshwardWasmModuleFetchFailing", "critical", "5m"),
            format!("sum by (pod) (increase(istio_agent_wasm_remote_fetch_count{{{m},result!=\"success\"}}[10m])) > 0"),
            "The sidecar cannot fetch a filter module",
            format!("{svc}: pod {{{{ $labels.pod }}}} failed to fetch a Wasm module; with FAIL_OPEN the filter is not running there."),
            "wasm-fetch",
        );
    }

    let mut backup_rules = A {
        ctx,
        rules: Vec::new(),
    };
    if let Some(b) = &ctx.dep.backup {
        let ns = ctx.ns();
        if b.postgres.is_some() {
            backup_rules.add(
                ("MeshwardBackupVerifyFailed", "critical", "0m"),
                format!("max by (job_name) (kube_job_status_failed{{namespace=\"{ns}\",job_name=~\"{svc}-pg-verify-.*\"}}) > 0"),
                "The latest PostgreSQL dump did not restore and verify",
                format!("{svc}: the verification job {{{{ $labels.job_name }}}} failed: the newest backup may not be restorable."),
                "backup-verify",
            );
        }
        for (what, present) in [("pg", b.postgres.is_some()), ("redis", b.redis.is_some())] {
            if present {
                backup_rules.add(
                    (if what == "pg" { "MeshwardPostgresBackupStale" } else { "MeshwardRedisBackupStale" }, "warning", "15m"),
                    format!("time() - max(kube_cronjob_status_last_successful_time{{namespace=\"{ns}\",cronjob=\"{svc}-{what}-backup\"}}) > 90000"),
                    "No successful backup for more than 25 hours",
                    format!("{svc}: the last successful {what} backup finished {{{{ $value | humanizeDuration }}}} ago."),
                    "backup-stale",
                );
            }
        }
    }

    let mut groups = vec![RuleGroup {
        name: format!("meshward-{svc}-slo"),
        rules: slo_rules.rules,
    }];
    if !filter_rules.rules.is_empty() {
        groups.push(RuleGroup {
            name: format!("meshward-{svc}-filters"),
            rules: filter_rules.rules,
        });
    }
    if !backup_rules.rules.is_empty() {
        groups.push(RuleGroup {
            name: format!("meshward-{svc}-backup"),
            rules: backup_rules.rules,
        });
    }
    PrometheusRuleSpec { groups }
}
