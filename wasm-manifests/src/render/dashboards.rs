//! Grafana dashboards as ConfigMaps (label `grafana_dashboard: "1"`, picked up by the Grafana
//! sidecar): an overview of the service (traffic, errors, latency against the SLO) and one
//! per filter in use, built from the metric contract. Knows Grafana's dashboard JSON; not
//! the filters.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{json, Value};

use super::rules::SERVICE_LABEL;
use super::{filter_metrics, Ctx, MetricKind, Out};
use crate::RenderError;

fn panel(id: u32, title: &str, exprs: &[(String, String)], unit: &str, x: u32, y: u32) -> Value {
    let targets: Vec<Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, (expr, legend))| {
            json!({ "refId": ((b'A' + i as u8) as char).to_string(), "expr": expr, "legendFormat": legend })
        })
        .collect();
    json!({
        "id": id,
        "type": "timeseries",
        "title": title,
        "datasource": { "type": "prometheus", "uid": "${datasource}" },
        "gridPos": { "h": 8, "w": 12, "x": x, "y": y },
        "fieldConfig": { "defaults": { "unit": unit }, "overrides": [] },
        "targets": targets,
    })
}

fn dashboard(uid: String, title: String, panels: Vec<Value>) -> Value {
    json!({
        "uid": uid,
        "title": title,
        "tags": ["meshward"],
        "schemaVersion": 39,
        "editable": false,
        "time": { "from": "now-6h", "to": "now" },
        "refresh": "30s",
        "templating": { "list": [{
            "name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source"
        }]},
        "panels": panels,
    })
}

pub(super) fn render(ctx: &Ctx, out: &mut Out) -> Result<(), RenderError> {
    let svc = ctx.service();
    let sel = format!("{SERVICE_LABEL}=\"{svc}\",reporter=\"destination\"");
    let m = format!("{SERVICE_LABEL}=\"{svc}\"");
    let slo = &ctx.dep.slo;
    let overview = dashboard(
        format!("meshward-{svc}"),
        format!("meshward / {svc}"),
        vec![
            panel(1, "Requests by code", &[(format!("sum by (response_code) (rate(istio_requests_total{{{sel}}}[5m]))"), "{{response_code}}".into())], "reqps", 0, 0),
            panel(2, "5xx ratio vs objective", &[
                (format!("sum(rate(istio_requests_total{{{sel},response_code=~\"5..\"}}[5m])) / sum(rate(istio_requests_total{{{sel}}}[5m]))"), "5xx ratio".into()),
                (format!("vector({})", slo.error_rate.fraction()), "objective".into()),
            ], "percentunit", 12, 0),
            panel(3, "Latency P95 / P99 vs SLO", &[
                (format!("histogram_quantile(0.95, sum by (le) (rate(istio_request_duration_milliseconds_bucket{{{sel}}}[5m])))"), "P95".into()),
                (format!("histogram_quantile(0.99, sum by (le) (rate(istio_request_duration_milliseconds_bucket{{{sel}}}[5m])))"), "P99".into()),
                (format!("vector({})", slo.latency_p95.0), "P95 objective".into()),
                (format!("vector({})", slo.latency_p99.0), "P99 objective".into()),
            ], "ms", 0, 8),
            panel(4, "Wasm VMs created", &[(format!("sum by (pod) (increase(envoy_wasm_envoy_wasm_runtime_v8_created{{{m}}}[10m]))"), "{{pod}}".into())], "short", 12, 8),
        ],
    );
    push(ctx, out, "overview", &overview)?;
    for f in ctx.policy.filters_used() {
        let name = f.name();
        let panels = filter_metrics(name)
            .iter()
            .enumerate()
            .map(|(i, metric)| {
                // By exported name, so each route/rule shows as its own line.
                let (expr, unit) = match metric.kind {
                    MetricKind::Counter => (
                        format!("sum by (__name__) (rate({}[5m]))", metric.selector(&m)),
                        "reqps",
                    ),
                    MetricKind::Gauge => (
                        format!("max by (__name__) ({})", metric.selector(&m)),
                        "short",
                    ),
                };
                let i = i as u32;
                panel(
                    i + 1,
                    metric.help,
                    &[(expr, "{{__name__}}".to_string())],
                    unit,
                    (i % 2) * 12,
                    (i / 2) * 8,
                )
            })
            .collect();
        let d = dashboard(
            format!("meshward-{svc}-{name}"),
            format!("meshward / {svc} / {name}"),
            panels,
        );
        push(ctx, out, name, &d)?;
    }
    Ok(())
}

fn push(ctx: &Ctx, out: &mut Out, which: &str, dashboard: &Value) -> Result<(), RenderError> {
    let json = serde_json::to_string_pretty(dashboard).map_err(|e| RenderError::Serialize {
        what: format!("dashboard {which}"),
        message: e.to_string(),
    })?;
    let mut meta = ctx.meta(
        &format!("{}-dashboard-{which}", ctx.service()),
        "dashboards",
    );
    if let Some(l) = meta.labels.as_mut() {
        l.insert("grafana_dashboard".into(), "1".into());
    }
    out.push(
        "dashboards.yaml",
        None,
        &ConfigMap {
            metadata: meta,
            data: Some(BTreeMap::from([(
                format!("meshward-{}-{which}.json", ctx.service()),
                json,
            )])),
            ..ConfigMap::default()
        },
    )
}
