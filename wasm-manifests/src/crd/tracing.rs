//! Tracing backends: jaegertracing.io/v1 Jaeger (Jaeger operator 87d8ae0) and
//! opentelemetry.io/v1beta1 OpenTelemetryCollector (OpenTelemetry operator be89444), from
//! `../shared/schemas`. Only the fields meshward sets. Knows nothing of policies.

use std::collections::BTreeMap;

use serde::Serialize;

use super::CrdKind;

/// `Jaeger` spec.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JaegerSpec {
    /// `allInOne`.
    pub strategy: String,
    /// All-in-one settings.
    pub all_in_one: JaegerAllInOne,
    /// Storage.
    pub storage: JaegerStorage,
}

impl CrdKind for JaegerSpec {
    const API_VERSION: &'static str = "jaegertracing.io/v1";
    const KIND: &'static str = "Jaeger";
}

/// `allInOne`.
#[derive(Debug, Clone, Serialize)]
pub struct JaegerAllInOne {
    /// Command-line options (`collector.otlp.enabled`).
    pub options: BTreeMap<String, serde_json::Value>,
}

/// `storage`.
#[derive(Debug, Clone, Serialize)]
pub struct JaegerStorage {
    /// `memory` / `badger` / ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Storage options.
    pub options: BTreeMap<String, serde_json::Value>,
}

/// `OpenTelemetryCollector` (v1beta1) spec.
#[derive(Debug, Clone, Serialize)]
pub struct OtelCollectorSpec {
    /// `deployment`.
    pub mode: String,
    /// Replicas.
    pub replicas: i32,
    /// Collector pipeline config.
    pub config: serde_json::Value,
}

impl CrdKind for OtelCollectorSpec {
    const API_VERSION: &'static str = "opentelemetry.io/v1beta1";
    const KIND: &'static str = "OpenTelemetryCollector";
}
