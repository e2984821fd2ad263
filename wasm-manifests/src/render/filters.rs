//! One `WasmPlugin` per filter the policy uses, pinned to its image manifest digest, plus the
//! mesh-config fragment (`proxyStatsMatcher`, tracing provider) that makes the filters'
//! metrics visible. Knows the filter order and failure strategy; not what the filters do.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use meshward_core::policy::deployment::{PullPolicy, TracingBackend};

use super::{filter_metrics, to_yaml, Ctx, Out};
use crate::crd::istio::{EnvVar, PortSelector, TrafficSelector, VmConfig, WasmPluginSpec};
use crate::crd::{LabelSelector, Object};
use crate::RenderError;

/// Where a filter sits in the chain and what happens when its VM fails.
struct Profile {
    priority: i32,
    fail_strategy: &'static str,
    why: &'static str,
}

/// All filters run in phase STATS: after Istio authentication and authorization (so requests
/// RBAC rejects never spend rate-limit budget, and JWT claims copied to headers by
/// RequestAuthentication are present and trustworthy) and before the stats filter (so the
/// 429/503 the filters answer still show in istio_requests_total). Inside the phase Istio
/// runs higher priority first, giving degrade -> ratelimit -> throttle -> fallback:
/// shed by service level first (cheapest, protects everything after it), then per-client
/// limits, then the concurrency bulkhead/queue for what is left, and fallback last, closest
/// to the upstream, where it sees the upstream's answers.
const PHASE: &str = "STATS";

fn profile(filter: &str) -> Option<Profile> {
    Some(match filter {
        "degrade" => Profile {
            priority: 400,
            fail_strategy: "FAIL_OPEN",
            why: "degradation is a safety valve: if its VM breaks, serve at the normal level rather than fail every request",
        },
        "ratelimit" => Profile {
            priority: 300,
            fail_strategy: "FAIL_OPEN",
            why: "a broken limiter must not take the service down: requests pass unlimited until the VM recovers (alert MeshwardWasmVmRestarting / MeshwardWasmModuleFetchFailing)",
        },
        "throttle" => Profile {
            priority: 200,
            fail_strategy: "FAIL_OPEN",
            why: "without the bulkhead requests reach the upstream directly, which Envoy's connection-pool limits still bound; failing closed would turn a plugin bug into a full outage",
        },
        "fallback" => Profile {
            priority: 100,
            fail_strategy: "FAIL_OPEN",
            why: "fallback only replaces failed answers; without it the upstream's own answers go out unchanged",
        },
        _ => return None,
    })
}

pub(super) fn render(ctx: &Ctx, out: &mut Out) -> Result<(), RenderError> {
    let dep = ctx.dep;
    let registry = dep.image.registry.trim_end_matches('/');
    for filter in ctx.policy.filters_used() {
        let name = filter.name();
        let prof = profile(name).ok_or_else(|| {
            ctx.unrenderable(
                "routes",
                format!("filter `{name}` has no place in the renderer's filter order yet"),
            )
        })?;
        let digest = ctx.digests.get(name).ok_or_else(|| {
            ctx.unrenderable(
                &format!("deployment.image.digests.{name}"),
                format!(
                    "no image digest for filter `{name}`: push it (`meshward push`) and pass `--digests FILE`, or set it here"
                ),
            )
        })?;
        let spec = WasmPluginSpec {
            selector: Some(LabelSelector {
                match_labels: dep.selector.clone(),
            }),
            target_refs: Vec::new(),
            // Pinned by manifest digest. `sha256` is left unset on purpose: for oci:// URLs
            // Istio compares it with the same manifest digest the URL already names, and the
            // registry serves content by that digest, so a second copy adds nothing but a way
            // to disagree.
            url: format!("oci://{registry}/{name}@{digest}"),
            sha256: None,
            image_pull_policy: Some(
                match dep.image.pull_policy {
                    PullPolicy::IfNotPresent => "IfNotPresent",
                    PullPolicy::Always => "Always",
                }
                .to_string(),
            ),
            image_pull_secret: dep.image.pull_secret.clone(),
            plugin_config: ctx.policy.filter_config(filter),
            plugin_name: name.to_string(),
            phase: PHASE.to_string(),
            priority: prof.priority,
            fail_strategy: prof.fail_strategy.to_string(),
            // HOST values come from the istio-proxy container's environment: the filters put
            // the pod in their log lines. (Changing env does not reload a running VM.)
            vm_config: Some(VmConfig {
                env: ["POD_NAME", "POD_NAMESPACE"]
                    .iter()
                    .map(|n| EnvVar {
                        name: n.to_string(),
                        value_from: "HOST".to_string(),
                        value: None,
                    })
                    .collect(),
            }),
            // Inbound traffic to the service port only: the filters protect this service,
            // not the calls it makes.
            matches: vec![TrafficSelector {
                mode: "SERVER".to_string(),
                ports: vec![PortSelector {
                    number: u32::from(dep.ports.http),
                }],
            }],
            plugin_type: "HTTP".to_string(),
        };
        let comment = format!(
            "Filter `{name}`: phase {PHASE}, priority {} (order degrade -> ratelimit -> throttle -> fallback).\nfailStrategy {}: {}.",
            prof.priority, prof.fail_strategy, prof.why
        );
        out.push(
            "filters.yaml",
            Some(comment),
            &Object::new(
                ctx.meta(&format!("{}-{name}", ctx.service()), "filter"),
                spec,
            ),
        )?;
    }
    mesh_config(ctx, out)
}

/// `proxyStatsMatcher`: Envoy's Wasm VM stats, server stats (uptime) and every custom
/// metric of the filters in use (Envoy names them `wasmcustom.<name>`).
fn stats_matcher(ctx: &Ctx) -> serde_json::Value {
    let mut prefixes: Vec<String> = vec!["wasm.".to_string(), "server.".to_string()];
    for f in ctx.policy.filters_used() {
        prefixes.push(format!("wasmcustom.meshward_{}.", f.name()));
    }
    serde_json::json!({ "inclusionPrefixes": prefixes })
}

fn mesh_config(ctx: &Ctx, out: &mut Out) -> Result<(), RenderError> {
    let matcher = stats_matcher(ctx);
    let metric_list: Vec<&str> = ctx
        .policy
        .filters_used()
        .iter()
        .flat_map(|f| filter_metrics(f.name()))
        .map(|m| m.stat)
        .collect();
    let metric_list = serde_json::json!(metric_list);
    let proxy_config = serde_json::json!({ "proxyStatsMatcher": matcher });
    let tracing = &ctx.dep.tracing;
    let collector = match tracing.backend {
        TracingBackend::Jaeger => format!(
            "{}-jaeger-collector.{}.svc.cluster.local",
            ctx.service(),
            ctx.ns()
        ),
        TracingBackend::OtelCollector => format!(
            "{}-otel-collector.{}.svc.cluster.local",
            ctx.service(),
            ctx.ns()
        ),
        TracingBackend::None => format!("otel-collector.{}.svc.cluster.local", ctx.ns()),
    };
    let mesh_fragment = serde_json::json!({
        "meshConfig": {
            "extensionProviders": [{
                "name": tracing.provider,
                "opentelemetry": { "service": collector, "port": tracing.otlp_port }
            }],
            "defaultConfig": proxy_config,
        }
    });
    let annotation = serde_json::to_string(&proxy_config).map_err(|e| RenderError::Serialize {
        what: "proxy.istio.io/config".into(),
        message: e.to_string(),
    })?;
    let cm = ConfigMap {
        metadata: ctx.meta(
            &format!("{}-meshward-mesh-config", ctx.service()),
            "mesh-config",
        ),
        data: Some(BTreeMap::from([
            (
                "mesh-config-fragment.yaml".to_string(),
                to_yaml(&mesh_fragment, "mesh config")?,
            ),
            ("proxy.istio.io-config.json".to_string(), annotation),
            ("filter-metrics.json".to_string(), metric_list.to_string()),
        ])),
        ..ConfigMap::default()
    };
    out.push(
        "mesh-config.yaml",
        Some("Not applied by itself: merge `mesh-config-fragment.yaml` into the mesh config (IstioOperator / helm\nvalues `meshConfig`), or put `proxy.istio.io-config.json` into the workload's pod annotation\n`proxy.istio.io/config`. Without proxyStatsMatcher Istio drops the filters' metrics and the alerts stay blind.".into()),
        &cm,
    )
}
