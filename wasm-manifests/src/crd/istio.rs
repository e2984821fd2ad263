//! Istio custom resources (extensions.istio.io/v1alpha1 WasmPlugin, networking.istio.io/v1
//! VirtualService/DestinationRule/Gateway, security.istio.io/v1, telemetry.istio.io/v1), from
//! `../shared/schemas/istio/crd-all.gen.yaml` (istio/istio 86c9f01). Only the fields meshward
//! sets. Knows nothing of policies.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{CrdKind, LabelSelector};

// ---------------------------------------------------------------- WasmPlugin

/// `extensions.istio.io/v1alpha1 WasmPlugin` spec.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WasmPluginSpec {
    /// Workloads the plugin attaches to (exclusive with `target_refs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Gateways the plugin attaches to (exclusive with `selector`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<PolicyTargetReference>,
    /// `oci://host/repo@sha256:...`.
    pub url: String,
    /// Hex of the image manifest digest (for oci://), when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// `IfNotPresent` / `Always`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// Docker pull secret in the same namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_pull_secret: Option<String>,
    /// Passed to the plugin as JSON.
    pub plugin_config: serde_json::Value,
    /// Envoy root_id.
    pub plugin_name: String,
    /// `AUTHN` / `AUTHZ` / `STATS` / `UNSPECIFIED_PHASE`.
    pub phase: String,
    /// Order within a phase, higher first.
    pub priority: i32,
    /// `FAIL_OPEN` / `FAIL_CLOSE` / `FAIL_RELOAD`.
    pub fail_strategy: String,
    /// VM settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vm_config: Option<VmConfig>,
    /// Traffic the plugin sees.
    #[serde(rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<TrafficSelector>,
    /// `HTTP`.
    #[serde(rename = "type")]
    pub plugin_type: String,
}

impl CrdKind for WasmPluginSpec {
    const API_VERSION: &'static str = "extensions.istio.io/v1alpha1";
    const KIND: &'static str = "WasmPlugin";
}

/// `targetRefs[]`.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyTargetReference {
    /// API group.
    pub group: String,
    /// Kind.
    pub kind: String,
    /// Name.
    pub name: String,
}

/// `vmConfig`.
#[derive(Debug, Clone, Serialize)]
pub struct VmConfig {
    /// Environment variables of the VM.
    pub env: Vec<EnvVar>,
}

/// `vmConfig.env[]`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    /// Name.
    pub name: String,
    /// `INLINE` / `HOST`.
    pub value_from: String,
    /// Value (INLINE only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// `match[]`.
#[derive(Debug, Clone, Serialize)]
pub struct TrafficSelector {
    /// `CLIENT` / `SERVER` / `CLIENT_AND_SERVER`.
    pub mode: String,
    /// Destination ports.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSelector>,
}

/// A port number.
#[derive(Debug, Clone, Serialize)]
pub struct PortSelector {
    /// Port.
    pub number: u32,
}

// ---------------------------------------------------------------- networking

/// `networking.istio.io/v1 VirtualService` spec.
#[derive(Debug, Clone, Serialize)]
pub struct VirtualServiceSpec {
    /// Hosts the routes apply to.
    pub hosts: Vec<String>,
    /// Gateways (`mesh` for sidecars).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    /// HTTP routes, first match wins.
    pub http: Vec<HttpRoute>,
}

impl CrdKind for VirtualServiceSpec {
    const API_VERSION: &'static str = "networking.istio.io/v1";
    const KIND: &'static str = "VirtualService";
}

/// `http[]`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRoute {
    /// Route name (shows in access logs).
    pub name: String,
    /// Any-of conditions; empty = all requests.
    #[serde(rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<HttpMatchRequest>,
    /// Where the traffic goes.
    pub route: Vec<HttpRouteDestination>,
    /// Whole-request timeout (retries included).
    pub timeout: String,
    /// Retry policy.
    pub retries: HttpRetry,
}

/// `http[].match[]`.
#[derive(Debug, Clone, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct HttpMatchRequest {
    /// Match name (joined to the route name in logs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<StringMatch>,
    /// Method.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<StringMatch>,
    /// `:authority`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authority: Option<StringMatch>,
    /// Headers.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, StringMatch>,
}

/// Istio StringMatch (one of).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub enum StringMatch {
    /// Exact.
    Exact(String),
    /// Prefix.
    Prefix(String),
    /// RE2 regex, whole-string.
    Regex(String),
}

/// `http[].route[]`.
#[derive(Debug, Clone, Serialize)]
pub struct HttpRouteDestination {
    /// Destination.
    pub destination: Destination,
}

/// A destination service.
#[derive(Debug, Clone, Serialize)]
pub struct Destination {
    /// Service host.
    pub host: String,
    /// Port.
    pub port: PortSelector,
}

/// `http[].retries`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRetry {
    /// Retries (0 disables).
    pub attempts: u32,
    /// Timeout of each attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_try_timeout: Option<String>,
    /// Envoy retry conditions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_on: Option<String>,
    /// Base interval of Envoy's exponential backoff.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff: Option<String>,
}

/// `networking.istio.io/v1 DestinationRule` spec.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationRuleSpec {
    /// Service host.
    pub host: String,
    /// Policy.
    pub traffic_policy: TrafficPolicy,
}

impl CrdKind for DestinationRuleSpec {
    const API_VERSION: &'static str = "networking.istio.io/v1";
    const KIND: &'static str = "DestinationRule";
}

/// `trafficPolicy`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficPolicy {
    /// Connection pool limits.
    pub connection_pool: ConnectionPool,
    /// Passive health checking.
    pub outlier_detection: OutlierDetection,
}

/// `connectionPool`.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionPool {
    /// TCP.
    pub tcp: TcpSettings,
    /// HTTP.
    pub http: HttpSettings,
}

/// `connectionPool.tcp`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TcpSettings {
    /// Max connections per host.
    pub max_connections: u32,
    /// Connect timeout.
    pub connect_timeout: String,
}

/// `connectionPool.http`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpSettings {
    /// Max pending requests.
    pub http1_max_pending_requests: u32,
    /// Max concurrent requests (HTTP/2).
    pub http2_max_requests: u32,
    /// Max concurrent retries to the cluster.
    pub max_retries: u32,
    /// Idle timeout of upstream connections.
    pub idle_timeout: String,
}

/// `outlierDetection`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutlierDetection {
    /// Consecutive 5xx before ejection.
    pub consecutive5xx_errors: u32,
    /// Sweep interval.
    pub interval: String,
    /// Min ejection time.
    pub base_ejection_time: String,
    /// Max % ejected.
    pub max_ejection_percent: u32,
}

/// `networking.istio.io/v1 Gateway` spec.
#[derive(Debug, Clone, Serialize)]
pub struct GatewaySpec {
    /// Gateway pods.
    pub selector: BTreeMap<String, String>,
    /// Listeners.
    pub servers: Vec<Server>,
}

impl CrdKind for GatewaySpec {
    const API_VERSION: &'static str = "networking.istio.io/v1";
    const KIND: &'static str = "Gateway";
}

/// `servers[]`.
#[derive(Debug, Clone, Serialize)]
pub struct Server {
    /// Port.
    pub port: ServerPort,
    /// Hosts (`ns/host` or `host`).
    pub hosts: Vec<String>,
    /// TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServerTls>,
}

/// `servers[].port`.
#[derive(Debug, Clone, Serialize)]
pub struct ServerPort {
    /// Number.
    pub number: u32,
    /// Name.
    pub name: String,
    /// `HTTP`, `HTTPS`.
    pub protocol: String,
}

/// `servers[].tls`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerTls {
    /// `SIMPLE` termination, or redirect for plain HTTP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// 301 to HTTPS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub https_redirect: Option<bool>,
    /// TLS Secret name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_name: Option<String>,
    /// `TLSV1_2`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_protocol_version: Option<String>,
    /// `TLSV1_3`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_protocol_version: Option<String>,
}

// ---------------------------------------------------------------- security

/// `security.istio.io/v1 PeerAuthentication` spec.
#[derive(Debug, Clone, Serialize)]
pub struct PeerAuthenticationSpec {
    /// Workloads.
    pub selector: LabelSelector,
    /// mTLS mode.
    pub mtls: Mtls,
}

impl CrdKind for PeerAuthenticationSpec {
    const API_VERSION: &'static str = "security.istio.io/v1";
    const KIND: &'static str = "PeerAuthentication";
}

/// `mtls`.
#[derive(Debug, Clone, Serialize)]
pub struct Mtls {
    /// `STRICT`.
    pub mode: String,
}

/// `security.istio.io/v1 AuthorizationPolicy` spec.
#[derive(Debug, Clone, Serialize)]
pub struct AuthorizationPolicySpec {
    /// Workloads (none = namespace-wide).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// `ALLOW` / `DENY`.
    pub action: String,
    /// Rules (any-of).
    pub rules: Vec<AuthzRule>,
}

impl CrdKind for AuthorizationPolicySpec {
    const API_VERSION: &'static str = "security.istio.io/v1";
    const KIND: &'static str = "AuthorizationPolicy";
}

/// `rules[]`.
#[derive(Debug, Clone, Serialize)]
pub struct AuthzRule {
    /// Sources.
    pub from: Vec<AuthzFrom>,
}

/// `rules[].from[]`.
#[derive(Debug, Clone, Serialize)]
pub struct AuthzFrom {
    /// Source.
    pub source: AuthzSource,
}

/// `rules[].from[].source`.
#[derive(Debug, Clone, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct AuthzSource {
    /// Peer namespaces (mTLS identity).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// JWT principals (`iss/sub`), `*` = any valid token.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub request_principals: Vec<String>,
}

/// `security.istio.io/v1 RequestAuthentication` spec.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestAuthenticationSpec {
    /// Workloads.
    pub selector: LabelSelector,
    /// JWT issuers.
    pub jwt_rules: Vec<JwtRule>,
}

impl CrdKind for RequestAuthenticationSpec {
    const API_VERSION: &'static str = "security.istio.io/v1";
    const KIND: &'static str = "RequestAuthentication";
}

/// `jwtRules[]`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JwtRule {
    /// Issuer.
    pub issuer: String,
    /// JWKS URL.
    pub jwks_uri: String,
    /// Audiences.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// Keep the token for the app.
    pub forward_original_token: bool,
    /// Claims copied into headers (overwriting client values).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub output_claim_to_headers: Vec<ClaimToHeader>,
}

/// `outputClaimToHeaders[]`.
#[derive(Debug, Clone, Serialize)]
pub struct ClaimToHeader {
    /// Header.
    pub header: String,
    /// Claim.
    pub claim: String,
}

// ---------------------------------------------------------------- telemetry

/// `telemetry.istio.io/v1 Telemetry` spec.
#[derive(Debug, Clone, Serialize)]
pub struct TelemetrySpec {
    /// Workloads.
    pub selector: LabelSelector,
    /// Tracing.
    pub tracing: Vec<TracingConfig>,
}

impl CrdKind for TelemetrySpec {
    const API_VERSION: &'static str = "telemetry.istio.io/v1";
    const KIND: &'static str = "Telemetry";
}

/// `tracing[]`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TracingConfig {
    /// Providers by meshConfig extension provider name.
    pub providers: Vec<ProviderRef>,
    /// Sampling percentage 0..100.
    pub random_sampling_percentage: f64,
}

/// `providers[]`.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderRef {
    /// Name.
    pub name: String,
}
