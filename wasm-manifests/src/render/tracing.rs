//! Tracing: an Istio Telemetry resource that samples the workload's requests (10 % by
//! default) to the OTLP extension provider named in the mesh-config fragment, and the backend
//! that receives them (a Jaeger all-in-one with OTLP, or an OpenTelemetry Collector).
//! Knows the tracing kinds; not the filters.

use std::collections::BTreeMap;

use meshward_core::policy::deployment::TracingBackend;
use serde_json::json;

use super::{Ctx, Out};
use crate::crd::istio::{ProviderRef, TelemetrySpec, TracingConfig};
use crate::crd::tracing::{JaegerAllInOne, JaegerSpec, JaegerStorage, OtelCollectorSpec};
use crate::crd::{LabelSelector, Object};
use crate::RenderError;

pub(super) fn render(ctx: &Ctx, out: &mut Out) -> Result<(), RenderError> {
    let t = &ctx.dep.tracing;
    out.push(
        "tracing.yaml",
        Some(format!(
            "Sampling {}% of requests without an upstream decision to provider `{}` (defined in mesh-config.yaml).",
            t.sampling.0, t.provider
        )),
        &Object::new(
            ctx.meta(ctx.service(), "tracing"),
            TelemetrySpec {
                selector: LabelSelector {
                    match_labels: ctx.dep.selector.clone(),
                },
                tracing: vec![TracingConfig {
                    providers: vec![ProviderRef {
                        name: t.provider.clone(),
                    }],
                    random_sampling_percentage: t.sampling.0,
                }],
            },
        ),
    )?;
    match t.backend {
        TracingBackend::Jaeger => out.push(
            "tracing.yaml",
            Some("Jaeger all-in-one (in-memory, bounded): the operator creates the `<name>-collector` Service with OTLP gRPC 4317.".into()),
            &Object::new(
                ctx.meta(&format!("{}-jaeger", ctx.service()), "tracing"),
                JaegerSpec {
                    strategy: "allInOne".into(),
                    all_in_one: JaegerAllInOne {
                        options: BTreeMap::from([(
                            "collector".to_string(),
                            json!({ "otlp": { "enabled": true } }),
                        )]),
                    },
                    storage: JaegerStorage {
                        kind: "memory".into(),
                        options: BTreeMap::from([(
                            "memory".to_string(),
                            json!({ "max-traces": 100000 }),
                        )]),
                    },
                },
            ),
        ),
        TracingBackend::OtelCollector => out.push(
            "tracing.yaml",
            Some("OpenTelemetry Collector: OTLP in, batched, out to the collector's debug exporter; replace the\nexporter with your tracing store.".into()),
            &Object::new(
                ctx.meta(&format!("{}-otel", ctx.service()), "tracing"),
                OtelCollectorSpec {
                    mode: "deployment".into(),
                    replicas: 1,
                    config: json!({
                        "receivers": { "otlp": { "protocols": { "grpc": { "endpoint": format!("0.0.0.0:{}", t.otlp_port) } } } },
                        "processors": { "batch": {}, "memory_limiter": { "check_interval": "1s", "limit_percentage": 80, "spike_limit_percentage": 20 } },
                        "exporters": { "debug": {} },
                        "service": { "pipelines": { "traces": { "receivers": ["otlp"], "processors": ["memory_limiter", "batch"], "exporters": ["debug"] } } }
                    }),
                },
            ),
        ),
        TracingBackend::None => Ok(()),
    }
}
