//! Typed custom resources the renderer emits (Istio, Velero, prometheus-operator, Jaeger,
//! OpenTelemetry operator), written from the CRD schemas in `../shared/schemas` so that a
//! misspelt field does not compile. Only the fields meshward sets are modelled; every struct
//! skips unset options so the output carries no nulls. Knows nothing of policies.

pub mod istio;
pub mod monitoring;
pub mod tracing;
pub mod velero;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

/// A custom resource kind: its `apiVersion` and `kind`.
pub trait CrdKind: Serialize {
    /// `group/version`.
    const API_VERSION: &'static str;
    /// Kind.
    const KIND: &'static str;
}

/// A custom resource object: `apiVersion`, `kind`, `metadata`, `spec`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Object<S: CrdKind> {
    api_version: &'static str,
    kind: &'static str,
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: S,
}

impl<S: CrdKind> Object<S> {
    /// Wraps a spec with its kind's apiVersion/kind.
    pub fn new(metadata: ObjectMeta, spec: S) -> Self {
        Object {
            api_version: S::API_VERSION,
            kind: S::KIND,
            metadata,
            spec,
        }
    }
}

/// `matchLabels` selector shared by several CRDs.
#[derive(Debug, Clone, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// Labels to match.
    pub match_labels: std::collections::BTreeMap<String, String>,
}
