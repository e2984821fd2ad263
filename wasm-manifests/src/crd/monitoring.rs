//! prometheus-operator custom resources (monitoring.coreos.com/v1 PrometheusRule, PodMonitor,
//! ServiceMonitor), from `../shared/schemas/prometheus-operator` (6adcebc). Only the fields
//! meshward sets. Knows nothing of policies.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{CrdKind, LabelSelector};

/// `PrometheusRule` spec; also exactly the `groups:` file `promtool check rules` reads.
#[derive(Debug, Clone, Serialize)]
pub struct PrometheusRuleSpec {
    /// Rule groups.
    pub groups: Vec<RuleGroup>,
}

impl CrdKind for PrometheusRuleSpec {
    const API_VERSION: &'static str = "monitoring.coreos.com/v1";
    const KIND: &'static str = "PrometheusRule";
}

/// `groups[]`.
#[derive(Debug, Clone, Serialize)]
pub struct RuleGroup {
    /// Group name.
    pub name: String,
    /// Rules.
    pub rules: Vec<AlertRule>,
}

/// An alerting rule.
#[derive(Debug, Clone, Serialize)]
pub struct AlertRule {
    /// Alert name.
    pub alert: String,
    /// PromQL.
    pub expr: String,
    /// Pending duration.
    #[serde(rename = "for")]
    pub for_: String,
    /// Labels (`severity`).
    pub labels: BTreeMap<String, String>,
    /// `summary`, `description`, `runbook_url`.
    pub annotations: BTreeMap<String, String>,
}

/// `PodMonitor` spec.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodMonitorSpec {
    /// Pods.
    pub selector: LabelSelector,
    /// Endpoints.
    pub pod_metrics_endpoints: Vec<MetricsEndpoint>,
}

impl CrdKind for PodMonitorSpec {
    const API_VERSION: &'static str = "monitoring.coreos.com/v1";
    const KIND: &'static str = "PodMonitor";
}

/// `ServiceMonitor` spec.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceMonitorSpec {
    /// Services.
    pub selector: LabelSelector,
    /// Endpoints.
    pub endpoints: Vec<MetricsEndpoint>,
}

impl CrdKind for ServiceMonitorSpec {
    const API_VERSION: &'static str = "monitoring.coreos.com/v1";
    const KIND: &'static str = "ServiceMonitor";
}

/// `podMetricsEndpoints[]` / `endpoints[]`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricsEndpoint {
    /// Port name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// Port number (PodMonitor only; for ports the pod does not name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port_number: Option<u32>,
    /// Path.
    pub path: String,
    /// Interval.
    pub interval: String,
    /// Target relabelings.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub relabelings: Vec<Relabeling>,
}

/// A relabel config.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Relabeling {
    /// `replace`, `keep`.
    pub action: String,
    /// Source labels.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub source_labels: Vec<String>,
    /// RE2 regex over the joined source labels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// Target label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_label: Option<String>,
    /// Value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replacement: Option<String>,
}
