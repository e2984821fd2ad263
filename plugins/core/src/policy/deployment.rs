//! The `deployment:` section of a policy file: where and how the filters run in a cluster
//! (namespace, workload selector, image registry and digests, ports, gateway, SLOs, tracing,
//! backup targets, alert receivers, the global rate-limit service).
//!
//! Only the manifest renderer (`meshward-manifests`) reads this section; the filters ignore it.
//! This file knows nothing of Kubernetes object shapes: it is the user's vocabulary, checked
//! (types here, cross-field rules in [`Deployment::problems`]) and defaulted, nothing more.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Everything the renderer needs beyond the routes. All sub-sections except `namespace`,
/// `selector`, `image` and `ports` are optional and have documented defaults.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    /// Kubernetes namespace of the service (DNS-1123 label).
    pub namespace: String,
    /// Pod labels of the workload the filters attach to (`WasmPlugin.spec.selector`).
    pub selector: BTreeMap<String, String>,
    /// Where the filter images live and which manifest digest each filter is pinned to.
    pub image: Image,
    /// Ports of the service.
    pub ports: Ports,
    /// Host name(s) of the service inside the mesh; default `<service>.<namespace>.svc.cluster.local`.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Public ingress through an Istio Gateway with TLS termination; none when absent.
    #[serde(default)]
    pub gateway: Option<Gateway>,
    /// Service level objectives the alerts are built from.
    #[serde(default)]
    pub slo: Slo,
    /// Envoy-level timeouts, retries, connection pool and outlier detection.
    #[serde(default)]
    pub traffic: Traffic,
    /// JWT authentication (needed when rate-limit tiers come from a claim).
    #[serde(default)]
    pub jwt: Option<Jwt>,
    /// Namespaces allowed to call the service (besides its own); AuthorizationPolicy.
    #[serde(default)]
    pub allowed_namespaces: Vec<String>,
    /// Distributed tracing.
    #[serde(default)]
    pub tracing: Tracing,
    /// Backups of the service's data stores.
    #[serde(default)]
    pub backup: Option<Backup>,
    /// Alert receivers by severity.
    #[serde(default)]
    pub alerts: Option<Alerts>,
    /// Where the alert runbooks are published (each alert links `<base>/<page>.md`);
    /// default `docs/runbooks` (the repository path).
    #[serde(default = "default_runbook_base")]
    pub runbook_base_url: String,
    /// The envoyproxy/ratelimit service used by `global: true` rules.
    #[serde(default)]
    pub global_ratelimit: GlobalRateLimitService,
}

fn default_runbook_base() -> String {
    "docs/runbooks".to_string()
}

/// Filter images: `oci://<registry>/<filter>@<digest>`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    /// Registry and repository prefix, e.g. `ghcr.io/acme/meshward` (no scheme).
    pub registry: String,
    /// Tag the images were pushed with (informational: the WasmPlugin pins the digest).
    #[serde(default)]
    pub tag: Option<String>,
    /// Manifest digest per filter name (`ratelimit`, `throttle`, `degrade`, `fallback`),
    /// `sha256:<64 hex>`. May be supplied or overridden by `meshward render --digests FILE`.
    #[serde(default)]
    pub digests: BTreeMap<String, String>,
    /// `IfNotPresent` (default) or `Always`.
    #[serde(default)]
    pub pull_policy: PullPolicy,
    /// Name of a docker-registry Secret in the namespace, for private registries.
    #[serde(default)]
    pub pull_secret: Option<String>,
}

/// How Istio's agent re-fetches a module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
pub enum PullPolicy {
    /// Fetch once per digest (the digest pins the content, so this is the right default).
    #[default]
    IfNotPresent,
    /// Re-fetch on every change of the WasmPlugin resource.
    Always,
}

/// Service ports.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Ports {
    /// The HTTP port of the service (the filters match on it).
    pub http: u16,
}

/// Ingress gateway.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Gateway {
    /// Public host names.
    pub hosts: Vec<String>,
    /// Name of the `kubernetes.io/tls` Secret (in the gateway's namespace) holding the cert.
    pub tls_secret: String,
    /// Labels of the ingress gateway pods; default `{istio: ingressgateway}`.
    #[serde(default = "default_gateway_selector")]
    pub selector: BTreeMap<String, String>,
}

fn default_gateway_selector() -> BTreeMap<String, String> {
    BTreeMap::from([("istio".to_string(), "ingressgateway".to_string())])
}

/// Service level objectives.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    /// Share of requests that must not fail with 5xx, e.g. `99.99%`.
    #[serde(default = "default_availability")]
    pub availability: Percent,
    /// P95 latency objective.
    #[serde(default = "default_p95")]
    pub latency_p95: Millis,
    /// P99 latency objective.
    #[serde(default = "default_p99")]
    pub latency_p99: Millis,
    /// Error rate (5xx share) that pages when exceeded over 5 minutes.
    #[serde(default = "default_error_rate")]
    pub error_rate: Percent,
}

fn default_availability() -> Percent {
    Percent(99.99)
}
fn default_p95() -> Millis {
    Millis(200)
}
fn default_p99() -> Millis {
    Millis(500)
}
fn default_error_rate() -> Percent {
    Percent(1.0)
}

impl Default for Slo {
    fn default() -> Self {
        Slo {
            availability: default_availability(),
            latency_p95: default_p95(),
            latency_p99: default_p99(),
            error_rate: default_error_rate(),
        }
    }
}

/// Envoy's own resilience (rendered into VirtualService / DestinationRule).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Traffic {
    /// Whole-request timeout (all retries included) per route class; classes not listed use
    /// `timeout`.
    #[serde(default)]
    pub class_timeouts: BTreeMap<String, Millis>,
    /// Default whole-request timeout.
    #[serde(default = "default_timeout")]
    pub timeout: Millis,
    /// Retry attempts (0 disables retries) for idempotent routes.
    #[serde(default = "default_attempts")]
    pub retry_attempts: u32,
    /// Timeout of each attempt.
    #[serde(default = "default_per_try")]
    pub per_try_timeout: Millis,
    /// Max concurrent connections to one upstream host.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Max pending HTTP requests to one upstream host.
    #[serde(default = "default_max_pending")]
    pub max_pending_requests: u32,
    /// Consecutive 5xx before a host is ejected.
    #[serde(default = "default_consecutive_5xx")]
    pub consecutive_5xx: u32,
    /// Max share of hosts ejected at once.
    #[serde(default = "default_max_ejection")]
    pub max_ejection: Percent,
}

fn default_timeout() -> Millis {
    Millis(10_000)
}
fn default_attempts() -> u32 {
    2
}
fn default_per_try() -> Millis {
    Millis(2_000)
}
fn default_max_connections() -> u32 {
    1024
}
fn default_max_pending() -> u32 {
    1024
}
fn default_consecutive_5xx() -> u32 {
    5
}
fn default_max_ejection() -> Percent {
    Percent(50.0)
}

impl Default for Traffic {
    fn default() -> Self {
        Traffic {
            class_timeouts: BTreeMap::new(),
            timeout: default_timeout(),
            retry_attempts: default_attempts(),
            per_try_timeout: default_per_try(),
            max_connections: default_max_connections(),
            max_pending_requests: default_max_pending(),
            consecutive_5xx: default_consecutive_5xx(),
            max_ejection: default_max_ejection(),
        }
    }
}

/// JWT validation by the sidecar (RequestAuthentication).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Jwt {
    /// Token issuer (`iss`).
    pub issuer: String,
    /// JWKS URL of the issuer.
    pub jwks_uri: String,
    /// Accepted audiences; empty accepts any.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Claims copied to request headers after validation (`claim -> header`); the sidecar
    /// overwrites any client-sent header of that name. Tier claims belong here.
    #[serde(default)]
    pub claims_to_headers: BTreeMap<String, String>,
    /// Reject requests without a token (AuthorizationPolicy requiring a principal).
    #[serde(default)]
    pub required: bool,
}

/// Tracing.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Tracing {
    /// Sampling share, default `10%`.
    #[serde(default = "default_sampling")]
    pub sampling: Percent,
    /// Name of the meshConfig extension provider.
    #[serde(default = "default_provider")]
    pub provider: String,
    /// Backend deployed with the service: `jaeger` (Jaeger operator, all-in-one) or
    /// `otel-collector` (OpenTelemetry operator); `none` to point at an existing collector.
    #[serde(default)]
    pub backend: TracingBackend,
    /// OTLP gRPC port of the collector.
    #[serde(default = "default_otlp_port")]
    pub otlp_port: u16,
}

fn default_sampling() -> Percent {
    Percent(10.0)
}
fn default_provider() -> String {
    "meshward-otel".to_string()
}
fn default_otlp_port() -> u16 {
    4317
}

impl Default for Tracing {
    fn default() -> Self {
        Tracing {
            sampling: default_sampling(),
            provider: default_provider(),
            backend: TracingBackend::default(),
            otlp_port: default_otlp_port(),
        }
    }
}

/// Which tracing backend to deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TracingBackend {
    /// A `jaegertracing.io/v1 Jaeger` (all-in-one, OTLP enabled).
    #[default]
    Jaeger,
    /// An `opentelemetry.io/v1beta1 OpenTelemetryCollector`.
    OtelCollector,
    /// Nothing deployed; `tracing.provider` points at an existing service.
    None,
}

/// Backups.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Backup {
    /// `s3://bucket/prefix` where dumps and Velero backups go.
    pub bucket: String,
    /// S3 region.
    #[serde(default = "default_region")]
    pub region: String,
    /// S3 endpoint URL for non-AWS stores (MinIO, ...).
    #[serde(default)]
    pub s3_url: Option<String>,
    /// Secret holding `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (and Velero's `cloud` key).
    #[serde(default = "default_s3_secret")]
    pub s3_secret: String,
    /// Days a dump is kept.
    #[serde(default = "default_retention")]
    pub retention_days: u32,
    /// Velero schedule (cron) for namespace backups.
    #[serde(default = "default_velero_schedule")]
    pub velero_schedule: String,
    /// PostgreSQL to dump, if any.
    #[serde(default)]
    pub postgres: Option<PostgresBackup>,
    /// Redis to snapshot, if any.
    #[serde(default)]
    pub redis: Option<RedisBackup>,
}

fn default_region() -> String {
    "us-east-1".to_string()
}
fn default_s3_secret() -> String {
    "backup-s3-credentials".to_string()
}
fn default_retention() -> u32 {
    14
}
fn default_velero_schedule() -> String {
    "0 2 * * *".to_string()
}

/// PostgreSQL backup target.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresBackup {
    /// Host name of the server.
    pub host: String,
    /// Port.
    #[serde(default = "default_pg_port")]
    pub port: u16,
    /// Database to dump.
    pub database: String,
    /// User.
    pub user: String,
    /// Secret with key `password`.
    pub password_secret: String,
    /// Cron schedule of the dump.
    #[serde(default = "default_pg_schedule")]
    pub schedule: String,
    /// Scratch database the verification restores into (dropped and recreated each run).
    #[serde(default = "default_verify_db")]
    pub verify_database: String,
    /// Container image with the PostgreSQL client tools (psql, pg_dump, pg_restore) and the
    /// AWS CLI (`aws`) the scripts need for `s3://` destinations. Required: no public image
    /// carries both, so a default would only fail at 3 a.m.
    pub image: String,
}

fn default_pg_port() -> u16 {
    5432
}
fn default_pg_schedule() -> String {
    "15 * * * *".to_string()
}
fn default_verify_db() -> String {
    "meshward_restore_check".to_string()
}

/// Redis backup target.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedisBackup {
    /// Host name.
    pub host: String,
    /// Port.
    #[serde(default = "default_redis_port")]
    pub port: u16,
    /// Secret with key `password`; none for a password-less Redis.
    #[serde(default)]
    pub password_secret: Option<String>,
    /// Cron schedule of the snapshot.
    #[serde(default = "default_redis_schedule")]
    pub schedule: String,
    /// Container image with redis-cli and the AWS CLI (`aws`). Required, as for PostgreSQL.
    pub image: String,
}

fn default_redis_port() -> u16 {
    6379
}
fn default_redis_schedule() -> String {
    "30 * * * *".to_string()
}

/// Alert receivers: critical pages PagerDuty, warning goes to Slack, info to email (each
/// severity falls back to the next receiver that is configured).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Alerts {
    /// Slack.
    #[serde(default)]
    pub slack: Option<Slack>,
    /// PagerDuty (Events API v2).
    #[serde(default)]
    pub pagerduty: Option<PagerDuty>,
    /// Email.
    #[serde(default)]
    pub email: Option<Email>,
}

/// Slack receiver.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Slack {
    /// Channel, e.g. `#orders-alerts`.
    pub channel: String,
    /// File (mounted from a Secret) holding the webhook URL.
    #[serde(default = "default_slack_file")]
    pub api_url_file: String,
}

fn default_slack_file() -> String {
    "/etc/alertmanager/secrets/meshward-alerting/slack-webhook-url".to_string()
}

/// PagerDuty receiver.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDuty {
    /// File (mounted from a Secret) holding the Events v2 routing key.
    #[serde(default = "default_pd_file")]
    pub routing_key_file: String,
}

fn default_pd_file() -> String {
    "/etc/alertmanager/secrets/meshward-alerting/pagerduty-routing-key".to_string()
}

/// Email receiver.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Email {
    /// Recipient.
    pub to: String,
    /// Sender.
    pub from: String,
    /// SMTP relay `host:port`.
    pub smarthost: String,
}

/// The envoyproxy/ratelimit deployment for `global: true` rules.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalRateLimitService {
    /// Container image of envoyproxy/ratelimit (pin a digest in production).
    #[serde(default = "default_rls_image")]
    pub image: String,
    /// Redis image for the RLS counters.
    #[serde(default = "default_rls_redis_image")]
    pub redis_image: String,
    /// Replicas of the RLS.
    #[serde(default = "default_rls_replicas")]
    pub replicas: i32,
}

fn default_rls_image() -> String {
    "envoyproxy/ratelimit:3fcc3609".to_string()
}
fn default_rls_redis_image() -> String {
    "redis:7-alpine".to_string()
}
fn default_rls_replicas() -> i32 {
    2
}

impl Default for GlobalRateLimitService {
    fn default() -> Self {
        GlobalRateLimitService {
            image: default_rls_image(),
            redis_image: default_rls_redis_image(),
            replicas: default_rls_replicas(),
        }
    }
}

/// A percentage written `99.99%` (a bare number is accepted too). Stored as the number before `%`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Percent(pub f64);

impl Percent {
    /// The share as a fraction in `0..=1`.
    pub fn fraction(self) -> f64 {
        self.0 / 100.0
    }
}

impl Serialize for Percent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}%", self.0))
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Percent;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a percentage between 0 and 100 like `99.9%`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Percent, E> {
                let n = v.trim().strip_suffix('%').unwrap_or(v).trim();
                let x: f64 = n
                    .parse()
                    .map_err(|_| E::custom(format!("`{v}` is not a percentage like `99.9%`")))?;
                self.visit_f64(x)
            }
            fn visit_f64<E: de::Error>(self, x: f64) -> Result<Percent, E> {
                if x.is_finite() && (0.0..=100.0).contains(&x) {
                    Ok(Percent(x))
                } else {
                    Err(E::custom(format!("{x}% is outside 0%..100%")))
                }
            }
            fn visit_u64<E: de::Error>(self, x: u64) -> Result<Percent, E> {
                self.visit_f64(x as f64)
            }
            fn visit_i64<E: de::Error>(self, x: i64) -> Result<Percent, E> {
                self.visit_f64(x as f64)
            }
        }
        d.deserialize_any(V)
    }
}

/// A duration in whole milliseconds written `250ms`, `10s`, `2m` or `1h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Millis(pub u64);

impl Millis {
    /// Istio/Envoy duration text (`250ms`, `10s`).
    pub fn to_istio(self) -> String {
        if self.0 % 1000 == 0 {
            format!("{}s", self.0 / 1000)
        } else {
            format!("{}ms", self.0)
        }
    }
}

impl Serialize for Millis {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}ms", self.0))
    }
}

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Millis;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration like `250ms`, `10s`, `2m` or `1h`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Millis, E> {
                let bad =
                    || E::custom(format!("`{v}` is not a duration like `250ms`, `10s`, `2m`"));
                let t = v.trim();
                let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
                let (num, unit) = t.split_at(split);
                let n: u64 = num.parse().map_err(|_| bad())?;
                let mult = match unit {
                    "ms" => 1,
                    "s" => 1_000,
                    "m" => 60_000,
                    "h" => 3_600_000,
                    _ => return Err(bad()),
                };
                let ms = n.checked_mul(mult).ok_or_else(bad)?;
                if ms == 0 {
                    return Err(E::custom(format!(
                        "duration `{v}` must be greater than zero"
                    )));
                }
                Ok(Millis(ms))
            }
        }
        d.deserialize_str(V)
    }
}

impl Deployment {
    /// Cross-field problems (each as `(field path, message)`); empty when the section is sound.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut p = |path: &str, msg: String| out.push((path.to_string(), msg));
        if !is_dns_label(&self.namespace) {
            p(
                "deployment.namespace",
                format!("`{}` is not a DNS-1123 label", self.namespace),
            );
        }
        if self.selector.is_empty() {
            p(
                "deployment.selector",
                "needs at least one label: an empty selector would attach the filters to every workload of the namespace".into(),
            );
        }
        if self.image.registry.contains("://") || self.image.registry.is_empty() {
            p(
                "deployment.image.registry",
                format!(
                    "`{}` must be `host/path` without a scheme",
                    self.image.registry
                ),
            );
        }
        for (filter, digest) in &self.image.digests {
            if !is_digest(digest) {
                p(
                    &format!("deployment.image.digests.{filter}"),
                    format!("`{digest}` is not `sha256:` followed by 64 lowercase hex digits"),
                );
            }
        }
        if self.ports.http == 0 {
            p("deployment.ports.http", "port 0 is not a port".into());
        }
        if let Some(g) = &self.gateway {
            if g.hosts.is_empty() {
                p("deployment.gateway.hosts", "needs at least one host".into());
            }
        }
        if self.slo.latency_p95 > self.slo.latency_p99 {
            p(
                "deployment.slo.latency_p95",
                "must not exceed latency_p99".into(),
            );
        }
        if self.slo.availability.0 <= 0.0 || self.slo.availability.0 >= 100.0 {
            p(
                "deployment.slo.availability",
                "must be strictly between 0% and 100% (100% leaves no error budget)".into(),
            );
        }
        if self.traffic.per_try_timeout > self.traffic.timeout {
            p(
                "deployment.traffic.per_try_timeout",
                "must not exceed traffic.timeout".into(),
            );
        }
        if let Some(b) = &self.backup {
            if !b.bucket.starts_with("s3://") || b.bucket.len() <= 5 {
                p(
                    "deployment.backup.bucket",
                    format!("`{}` must look like `s3://bucket/prefix`", b.bucket),
                );
            }
            if b.retention_days == 0 {
                p(
                    "deployment.backup.retention_days",
                    "must be at least 1".into(),
                );
            }
            let crons = [
                (
                    "deployment.backup.velero_schedule",
                    Some(&b.velero_schedule),
                ),
                (
                    "deployment.backup.postgres.schedule",
                    b.postgres.as_ref().map(|x| &x.schedule),
                ),
                (
                    "deployment.backup.redis.schedule",
                    b.redis.as_ref().map(|x| &x.schedule),
                ),
            ];
            for (path, cron) in crons {
                if let Some(c) = cron {
                    if c.split_whitespace().count() != 5 {
                        p(path, format!("`{c}` is not a 5-field cron expression"));
                    }
                }
            }
        }
        if let Some(a) = &self.alerts {
            if a.slack.is_none() && a.pagerduty.is_none() && a.email.is_none() {
                p("deployment.alerts", "names no receiver".into());
            }
        }
        if self.global_ratelimit.replicas < 1 {
            p(
                "deployment.global_ratelimit.replicas",
                "must be at least 1".into(),
            );
        }
        out
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// `sha256:` + 64 lowercase hex digits.
pub fn is_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> serde_json::Value {
        serde_json::json!({
            "namespace": "shop",
            "selector": {"app": "orders-api"},
            "image": {"registry": "ghcr.io/acme/meshward"},
            "ports": {"http": 8080}
        })
    }

    #[test]
    fn defaults_fill_the_optional_sections() {
        let d: Deployment = serde_json::from_value(minimal()).unwrap();
        assert_eq!(d.slo.availability, Percent(99.99));
        assert_eq!(d.slo.latency_p95, Millis(200));
        assert_eq!(d.slo.latency_p99, Millis(500));
        assert_eq!(d.slo.error_rate, Percent(1.0));
        assert_eq!(d.tracing.sampling, Percent(10.0));
        assert!(d.problems().is_empty(), "{:?}", d.problems());
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let mut v = minimal();
        v["namespce"] = "x".into();
        let e = serde_json::from_value::<Deployment>(v).unwrap_err();
        assert!(e.to_string().contains("namespce"), "{e}");
    }

    #[test]
    fn percentages_and_durations_parse_and_reject_nonsense() {
        let mut v = minimal();
        v["slo"] = serde_json::json!({"availability": "99.9%", "latency_p95": "1s"});
        let d: Deployment = serde_json::from_value(v.clone()).unwrap();
        assert!((d.slo.availability.fraction() - 0.999).abs() < 1e-12);
        assert_eq!(d.slo.latency_p95, Millis(1000));
        v["slo"] = serde_json::json!({"availability": "120%"});
        assert!(serde_json::from_value::<Deployment>(v.clone()).is_err());
        v["slo"] = serde_json::json!({"latency_p95": "10 parsecs"});
        assert!(serde_json::from_value::<Deployment>(v).is_err());
    }

    #[test]
    fn backup_jobs_need_an_explicit_image() {
        let mut v = minimal();
        v["backup"] = serde_json::json!({
            "bucket": "s3://b/p",
            "redis": {"host": "r"}
        });
        let e = serde_json::from_value::<Deployment>(v.clone()).unwrap_err();
        assert!(e.to_string().contains("image"), "{e}");
        v["backup"]["redis"]["image"] = "tools:redis7".into();
        let d: Deployment = serde_json::from_value(v).unwrap();
        assert_eq!(d.backup.unwrap().redis.unwrap().image, "tools:redis7");
    }

    #[test]
    fn cross_field_problems_are_named_by_path() {
        let mut v = minimal();
        v["image"]["digests"] = serde_json::json!({"ratelimit": "sha256:abc"});
        v["slo"] = serde_json::json!({"latency_p95": "900ms", "latency_p99": "500ms"});
        let d: Deployment = serde_json::from_value(v).unwrap();
        let paths: Vec<String> = d.problems().into_iter().map(|(p, _)| p).collect();
        assert!(paths.contains(&"deployment.image.digests.ratelimit".to_string()));
        assert!(paths.contains(&"deployment.slo.latency_p95".to_string()));
    }
}
