//! Alertmanager configuration: routes alerts by `severity` (critical -> PagerDuty, warning ->
//! Slack, info -> email; a missing receiver falls back to the next configured one), shipped as
//! the native `alertmanager.yaml` in a Secret (`alertmanager-<service>`, the name the
//! prometheus-operator reads for an Alertmanager of that name), so `amtool check-config` can
//! check exactly what runs. Receiver secrets are files mounted from the Secret
//! `meshward-alerting` (Alertmanager `spec.secrets`), never inlined. Knows Alertmanager's
//! config format; not the alerts.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use meshward_core::policy::deployment::Alerts;
use serde::Serialize;

use super::rules::SERVICE_LABEL;
use super::{to_yaml, Ctx, Out};
use crate::RenderError;

#[derive(Serialize)]
struct Config {
    global: Global,
    route: Route,
    receivers: Vec<Receiver>,
    inhibit_rules: Vec<Inhibit>,
}

#[derive(Serialize)]
struct Global {
    resolve_timeout: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    smtp_smarthost: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    smtp_from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    smtp_require_tls: Option<bool>,
}

#[derive(Serialize)]
struct Route {
    receiver: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    matchers: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    group_by: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group_wait: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group_interval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    repeat_interval: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    routes: Vec<Route>,
}

#[derive(Serialize)]
struct Receiver {
    name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pagerduty_configs: Vec<PagerDutyConfig>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    slack_configs: Vec<SlackConfig>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    email_configs: Vec<EmailConfig>,
}

#[derive(Serialize)]
struct PagerDutyConfig {
    routing_key_file: String,
    send_resolved: bool,
    description: String,
}

#[derive(Serialize)]
struct SlackConfig {
    api_url_file: String,
    channel: String,
    send_resolved: bool,
    title: String,
    text: String,
}

#[derive(Serialize)]
struct EmailConfig {
    to: String,
    send_resolved: bool,
}

#[derive(Serialize)]
struct Inhibit {
    source_matchers: Vec<String>,
    target_matchers: Vec<String>,
    equal: Vec<String>,
}

/// Receiver name per severity, after fallbacks; `None` when no receiver is configured.
pub(crate) fn receiver_for(alerts: &Alerts, severity: &str) -> Option<&'static str> {
    let order: &[&str] = match severity {
        "critical" => &["pagerduty", "slack", "email"],
        "warning" => &["slack", "email", "pagerduty"],
        _ => &["email", "slack", "pagerduty"],
    };
    order.iter().copied().find(|r| match *r {
        "pagerduty" => alerts.pagerduty.is_some(),
        "slack" => alerts.slack.is_some(),
        _ => alerts.email.is_some(),
    })
}

pub(super) fn render(ctx: &Ctx, out: &mut Out) -> Result<(), RenderError> {
    let Some(alerts) = &ctx.dep.alerts else {
        return Ok(());
    };
    let mut receivers = Vec::new();
    if let Some(pd) = &alerts.pagerduty {
        receivers.push(Receiver {
            name: "pagerduty".into(),
            pagerduty_configs: vec![PagerDutyConfig {
                routing_key_file: pd.routing_key_file.clone(),
                send_resolved: true,
                description: "{{ .CommonLabels.alertname }}: {{ .CommonAnnotations.summary }}"
                    .into(),
            }],
            slack_configs: Vec::new(),
            email_configs: Vec::new(),
        });
    }
    if let Some(s) = &alerts.slack {
        receivers.push(Receiver {
            name: "slack".into(),
            pagerduty_configs: Vec::new(),
            slack_configs: vec![SlackConfig {
                api_url_file: s.api_url_file.clone(),
                channel: s.channel.clone(),
                send_resolved: true,
                title: "[{{ .Status | toUpper }}] {{ .CommonLabels.alertname }} ({{ .CommonLabels.severity }})".into(),
                text: "{{ range .Alerts }}{{ .Annotations.description }}\nRunbook: {{ .Annotations.runbook_url }}\n{{ end }}".into(),
            }],
            email_configs: Vec::new(),
        });
    }
    if let Some(e) = &alerts.email {
        receivers.push(Receiver {
            name: "email".into(),
            pagerduty_configs: Vec::new(),
            slack_configs: Vec::new(),
            email_configs: vec![EmailConfig {
                to: e.to.clone(),
                send_resolved: true,
            }],
        });
    }
    let default = receiver_for(alerts, "info").ok_or_else(|| {
        ctx.unrenderable(
            "deployment.alerts",
            "names no receiver (slack, pagerduty or email)",
        )
    })?;
    let routes = ["critical", "warning", "info"]
        .iter()
        .filter_map(|sev| {
            receiver_for(alerts, sev).map(|r| Route {
                receiver: r.to_string(),
                matchers: vec![format!("severity=\"{sev}\"")],
                group_by: Vec::new(),
                group_wait: None,
                group_interval: None,
                // Pages repeat sooner than chat messages.
                repeat_interval: Some(if *sev == "critical" { "1h" } else { "4h" }.to_string()),
                routes: Vec::new(),
            })
        })
        .collect();
    let config = Config {
        global: Global {
            resolve_timeout: "5m".into(),
            smtp_smarthost: alerts.email.as_ref().map(|e| e.smarthost.clone()),
            smtp_from: alerts.email.as_ref().map(|e| e.from.clone()),
            smtp_require_tls: alerts.email.as_ref().map(|_| true),
        },
        route: Route {
            receiver: default.to_string(),
            matchers: Vec::new(),
            group_by: vec!["alertname".into(), SERVICE_LABEL.into()],
            group_wait: Some("30s".into()),
            group_interval: Some("5m".into()),
            repeat_interval: Some("4h".into()),
            routes,
        },
        receivers,
        // While a critical alert fires for a service, its warnings are noise.
        inhibit_rules: vec![Inhibit {
            source_matchers: vec!["severity=\"critical\"".into()],
            target_matchers: vec!["severity=\"warning\"".into()],
            equal: vec![SERVICE_LABEL.into()],
        }],
    };
    let text = to_yaml(&config, "alertmanager.yaml")?;
    let mut meta = ctx.meta(&format!("alertmanager-{}", ctx.service()), "alerting");
    if let Some(l) = meta.labels.as_mut() {
        l.insert("meshward.io/alertmanager-config".into(), "true".into());
    }
    out.push(
        "alerting.yaml",
        Some("Native Alertmanager config (checked with `amtool check-config`). Mount the Secret `meshward-alerting`\n(keys slack-webhook-url, pagerduty-routing-key) with Alertmanager `spec.secrets: [meshward-alerting]`.".into()),
        &Secret {
            metadata: meta,
            string_data: Some(BTreeMap::from([("alertmanager.yaml".to_string(), text)])),
            type_: Some("Opaque".into()),
            ..Secret::default()
        },
    )
}
