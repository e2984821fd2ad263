//! The global rate limit service for rules with `global: true`: envoyproxy/ratelimit
//! (Deployment + Service), its Redis, and its config (domain + descriptors derived from the
//! policy). Knows the RLS config format; not how the filter talks to it.
//!
//! Descriptor contract (what the ratelimit filter sends, `meshward_core::ratelimit::limiter`):
//! one descriptor per global rule with the entries `meshward_rule=<route>/<rule>`, then one
//! per key part in policy order: `remote_address=<masked client ip>`, `route=<route>`,
//! `<header name>=<value>`, `<claim name>=<value>`. The RLS config nests the same keys;
//! key parts other than `route` have no value, so every distinct value gets its own counter.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, KeyToPath, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, SecurityContext, Service, ServicePort,
    ServiceSpec, TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use meshward_core::policy::{KeyPart, Rate, Rule};
use serde_json::json;

use super::{to_yaml, Ctx, Out};
use crate::crd::monitoring::{MetricsEndpoint, ServiceMonitorSpec};
use crate::crd::{LabelSelector as CrdSelector, Object};
use crate::RenderError;

/// gRPC port the filter calls.
pub(super) const RLS_GRPC_PORT: i32 = 8081;

pub(super) fn render(ctx: &Ctx, out: &mut Out) -> Result<(), RenderError> {
    let globals: Vec<(&str, &Rule)> = ctx
        .policy
        .routes
        .iter()
        .flat_map(|r| {
            r.ratelimit
                .iter()
                .flat_map(|rl| rl.rules.iter())
                .filter(|rule| rule.global)
                .map(move |rule| (r.name.as_str(), rule))
        })
        .collect();
    if globals.is_empty() {
        return Ok(());
    }
    let settings = ctx.policy.ratelimit_settings();
    let domain = settings
        .global
        .as_ref()
        .map(|g| g.domain.clone())
        .ok_or_else(|| {
            ctx.unrenderable(
                "ratelimit.global",
                "rules with `global: true` need `ratelimit.global` (cluster, domain)",
            )
        })?;
    let mut descriptors = Vec::new();
    for (route, rule) in &globals {
        let path = format!("routes[{route}].ratelimit.rules[{}].rate", rule.name);
        let limit = |rate: Rate| -> Result<serde_json::Value, RenderError> {
            let (unit, n) = rls_rate(rate).ok_or_else(|| {
                ctx.unrenderable(
                    &path,
                    format!("rate `{rate}` has no envoyproxy/ratelimit unit (second, minute, hour, day with a whole count)"),
                )
            })?;
            let mut node = json!({ "rate_limit": { "unit": unit, "requests_per_unit": n } });
            if rule.shadow {
                node["shadow_mode"] = json!(true);
            }
            Ok(node)
        };
        if !rule.tiers.is_empty() {
            return Err(ctx.unrenderable(
                &format!("routes[{route}].ratelimit.rules[{}].tiers", rule.name),
                "a global rule cannot have tiers: the filter's RLS descriptor carries no tier, so the service would apply one rate to every tier",
            ));
        }
        // Key parts in the filter's descriptor order, with the names it sends.
        let parts: Vec<serde_json::Value> = rule
            .key
            .iter()
            .map(|k| match k {
                KeyPart::ClientIp => json!({ "key": "remote_address" }),
                KeyPart::Route => json!({ "key": "route", "value": route }),
                KeyPart::Header(h) => json!({ "key": h }),
                KeyPart::Claim(c) => json!({ "key": c }),
            })
            .collect();
        descriptors.push(attach(
            json!({ "key": "meshward_rule", "value": format!("{route}/{}", rule.name) }),
            &parts,
            limit(rule.rate)?,
        ));
    }
    let config = json!({ "domain": domain, "descriptors": descriptors });
    let config_yaml = to_yaml(&config, "ratelimit config")?;
    let name = "ratelimit";
    let redis = "ratelimit-redis";
    out.push(
        "global-ratelimit.yaml",
        Some(format!("envoyproxy/ratelimit config for domain `{domain}`: one descriptor tree per global rule\n(route -> rule [-> tier] -> key parts), see the renderer's global_rls.rs for the contract.")),
        &ConfigMap {
            metadata: ctx.meta("ratelimit-config", "global-ratelimit"),
            data: Some(BTreeMap::from([("config.yaml".to_string(), config_yaml)])),
            ..ConfigMap::default()
        },
    )?;
    let env = |k: &str, v: &str| EnvVar {
        name: k.to_string(),
        value: Some(v.to_string()),
        ..EnvVar::default()
    };
    let rls_container = Container {
        name: name.into(),
        image: Some(ctx.dep.global_ratelimit.image.clone()),
        command: Some(vec!["/bin/ratelimit".into()]),
        env: Some(vec![
            env("LOG_LEVEL", "info"),
            env("REDIS_SOCKET_TYPE", "tcp"),
            env("REDIS_URL", &format!("{redis}:6379")),
            env("RUNTIME_ROOT", "/data"),
            env("RUNTIME_SUBDIRECTORY", "ratelimit"),
            env("RUNTIME_WATCH_ROOT", "false"),
            env("RUNTIME_IGNOREDOTFILES", "true"),
            env("USE_STATSD", "false"),
            env("USE_PROMETHEUS", "true"),
            env("PROMETHEUS_ADDR", ":9090"),
        ]),
        ports: Some(vec![
            port("http", 8080),
            port("grpc", RLS_GRPC_PORT),
            port("metrics", 9090),
        ]),
        volume_mounts: Some(vec![VolumeMount {
            name: "config".into(),
            mount_path: "/data/ratelimit/config".into(),
            read_only: Some(true),
            ..VolumeMount::default()
        }]),
        readiness_probe: Some(tcp_probe(RLS_GRPC_PORT)),
        resources: Some(resources("100m", "128Mi", "256Mi")),
        security_context: Some(restricted()),
        ..Container::default()
    };
    let config_volume = Volume {
        name: "config".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: "ratelimit-config".into(),
            items: Some(vec![KeyToPath {
                key: "config.yaml".into(),
                path: "config.yaml".into(),
                ..KeyToPath::default()
            }]),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    };
    out.push(
        "global-ratelimit.yaml",
        None,
        &deployment(
            ctx,
            name,
            ctx.dep.global_ratelimit.replicas,
            rls_container,
            vec![config_volume],
        ),
    )?;
    out.push(
        "global-ratelimit.yaml",
        None,
        &service(
            ctx,
            name,
            &[("http", 8080), ("grpc", RLS_GRPC_PORT), ("metrics", 9090)],
        ),
    )?;
    let redis_container = Container {
        name: "redis".into(),
        image: Some(ctx.dep.global_ratelimit.redis_image.clone()),
        // Counters only: no persistence, bounded memory, oldest keys evicted.
        args: Some(vec![
            "--save".into(),
            "".into(),
            "--appendonly".into(),
            "no".into(),
            "--maxmemory".into(),
            "200mb".into(),
            "--maxmemory-policy".into(),
            "volatile-ttl".into(),
        ]),
        ports: Some(vec![port("redis", 6379)]),
        readiness_probe: Some(tcp_probe(6379)),
        resources: Some(resources("100m", "128Mi", "256Mi")),
        security_context: Some(restricted()),
        ..Container::default()
    };
    out.push(
        "global-ratelimit.yaml",
        None,
        &deployment(ctx, redis, 1, redis_container, Vec::new()),
    )?;
    out.push(
        "global-ratelimit.yaml",
        None,
        &service(ctx, redis, &[("redis", 6379)]),
    )?;
    out.push(
        "monitoring.yaml",
        None,
        &Object::new(
            ctx.meta("ratelimit", "global-ratelimit"),
            ServiceMonitorSpec {
                selector: CrdSelector {
                    match_labels: BTreeMap::from([("app".to_string(), name.to_string())]),
                },
                endpoints: vec![MetricsEndpoint {
                    port: Some("metrics".into()),
                    port_number: None,
                    path: "/metrics".into(),
                    interval: "30s".into(),
                    relabelings: Vec::new(),
                }],
            },
        ),
    )?;
    Ok(())
}

/// Hangs `parts` (nested descriptor keys) under `parent`, the innermost one carrying `limit`.
fn attach(
    mut parent: serde_json::Value,
    parts: &[serde_json::Value],
    limit: serde_json::Value,
) -> serde_json::Value {
    match parts.split_first() {
        None => {
            if let (Some(p), Some(l)) = (parent.as_object_mut(), limit.as_object()) {
                for (k, v) in l {
                    p.insert(k.clone(), v.clone());
                }
            }
            parent
        }
        Some((first, rest)) => {
            let child = attach(first.clone(), rest, limit);
            parent["descriptors"] = json!([child]);
            parent
        }
    }
}

/// envoyproxy/ratelimit `unit` + `requests_per_unit` for a rate, when one fits exactly.
pub(super) fn rls_rate(rate: Rate) -> Option<(&'static str, u64)> {
    let period = rate.period().as_nanos();
    let units: [(&str, u64); 4] = [
        ("second", 1_000_000_000),
        ("minute", 60_000_000_000),
        ("hour", 3_600_000_000_000),
        ("day", 86_400_000_000_000),
    ];
    for (unit, nanos) in units {
        if period == nanos {
            return Some((unit, rate.count()));
        }
    }
    // e.g. 10/2s: scale to the smallest unit the period divides with a whole count.
    for (unit, nanos) in units {
        if nanos % period == 0 {
            return Some((unit, rate.count() * (nanos / period)));
        }
    }
    None
}

pub(super) fn port(name: &str, n: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: n,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}

pub(super) fn tcp_probe(port: i32) -> Probe {
    Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::Int(port),
            ..TCPSocketAction::default()
        }),
        period_seconds: Some(10),
        ..Probe::default()
    }
}

pub(super) fn resources(cpu: &str, mem: &str, mem_limit: &str) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity(cpu.into())),
            ("memory".to_string(), Quantity(mem.into())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_string(),
            Quantity(mem_limit.into()),
        )])),
        ..ResourceRequirements::default()
    }
}

pub(super) fn restricted() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        run_as_non_root: Some(true),
        run_as_user: Some(65532),
        capabilities: Some(k8s_openapi::api::core::v1::Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        ..SecurityContext::default()
    }
}

fn deployment(
    ctx: &Ctx,
    name: &str,
    replicas: i32,
    container: Container,
    volumes: Vec<Volume>,
) -> Deployment {
    let mut labels = ctx.labels("global-ratelimit");
    labels.insert("app".into(), name.into());
    let selector = BTreeMap::from([("app".to_string(), name.to_string())]);
    Deployment {
        metadata: ctx.meta(name, "global-ratelimit"),
        spec: DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(selector),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: if volumes.is_empty() {
                        None
                    } else {
                        Some(volumes)
                    },
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    }
}

fn service(ctx: &Ctx, name: &str, ports: &[(&str, i32)]) -> Service {
    let mut meta = ctx.meta(name, "global-ratelimit");
    if let Some(l) = meta.labels.as_mut() {
        l.insert("app".into(), name.into());
    }
    Service {
        metadata: meta,
        spec: Some(ServiceSpec {
            selector: Some(BTreeMap::from([("app".to_string(), name.to_string())])),
            ports: Some(
                ports
                    .iter()
                    .map(|(n, p)| ServicePort {
                        // Istio picks the protocol from the port name prefix.
                        name: Some((*n).to_string()),
                        port: *p,
                        target_port: Some(IntOrString::Int(*p)),
                        app_protocol: Some(if *n == "grpc" {
                            "grpc".to_string()
                        } else if *n == "redis" {
                            "tcp".to_string()
                        } else {
                            "http".to_string()
                        }),
                        ..ServicePort::default()
                    })
                    .collect(),
            ),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}
