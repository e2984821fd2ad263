//! The scenario file's data model: what a person writes in YAML (see `docs/scenario.md`).
//! Plain serde types with `deny_unknown_fields`; cross-field checks live in `validate.rs`.
//! Knows nothing of any plugin's configuration: a plugin's `config` is opaque data.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::units::{Percent, Rate, Span};

/// A traffic scenario.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// A label for reports.
    #[serde(default)]
    pub name: Option<String>,
    /// Seeds every random choice (arrivals, templates, clients, upstream). Same seed, same run.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Worker threads (one VM per plugin per worker). `--workers` overrides it. Default 1.
    #[serde(default)]
    pub workers: Option<usize>,
    /// How requests are spread over workers.
    #[serde(default)]
    pub assign: Assign,
    /// The plugin chain, in request order. `--plugin` on the command line replaces it.
    #[serde(default)]
    pub plugins: Vec<PluginEntry>,
    /// Clusters the plugins may call out to (`dispatch_http_call`, `dispatch_grpc_call`).
    #[serde(default)]
    pub clusters: BTreeMap<String, Cluster>,
    /// How the service behind the chain answers forwarded requests.
    #[serde(default)]
    pub upstream: Upstream,
    /// Request shapes, by name.
    pub request_templates: BTreeMap<String, Template>,
    /// The traffic, one phase after another.
    pub phases: Vec<Phase>,
    /// How long to wait after the last phase for paused requests and upstream answers.
    #[serde(default = "default_drain")]
    pub drain: Span,
}

fn default_seed() -> u64 {
    1
}
fn default_drain() -> Span {
    Span(std::time::Duration::from_secs(30))
}

/// Assignment of requests to workers.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Assign {
    /// Request n goes to worker n mod N.
    #[default]
    RoundRobin,
    /// A client always lands on the same worker (a hash of its address).
    ClientHash,
}

/// One plugin of the chain.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginEntry {
    /// A `.wasm` file, relative to the scenario file.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// A module built into the CLI (`meshward run` knows `noop`, `headers`, the filters...).
    #[serde(default)]
    pub module: Option<String>,
    /// The plugin's name (Istio: the WasmPlugin's name). Default: the file stem or module.
    #[serde(default)]
    pub name: Option<String>,
    /// `root_id` (Istio: `pluginName`). Default: empty.
    #[serde(default)]
    pub root_id: Option<String>,
    /// `vm_id`. Default: empty, as Istio.
    #[serde(default)]
    pub vm_id: Option<String>,
    /// Plugin configuration written inline (any YAML; passed to the plugin as JSON).
    #[serde(default)]
    pub config: Option<serde_yaml::Value>,
    /// Plugin configuration from a file (passed as is), relative to the scenario file.
    #[serde(default)]
    pub config_file: Option<PathBuf>,
    /// What a trap does to later requests.
    #[serde(default)]
    pub fail_strategy: FailStrategyName,
}

/// Istio's failure policy for a plugin whose VM trapped.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FailStrategyName {
    /// Reply 503 to requests while the VM is dead.
    #[default]
    FailClosed,
    /// Skip the plugin while the VM is dead.
    FailOpen,
    /// Start a fresh VM.
    FailReload,
}

/// Kind of callout cluster.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ClusterKind {
    /// Answers `dispatch_http_call`.
    #[default]
    Http,
    /// Answers `dispatch_grpc_call`.
    Grpc,
}

/// How a callout cluster answers.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// `http` (default) or `grpc`.
    #[serde(default)]
    pub kind: ClusterKind,
    /// Time to answer.
    #[serde(default)]
    pub latency: Latency,
    /// HTTP status of the answer (http clusters). Default 200.
    #[serde(default)]
    pub status: Option<u16>,
    /// gRPC status of the answer (grpc clusters). Default 0 (OK).
    #[serde(default)]
    pub grpc_status: Option<i32>,
    /// Response headers (http) or trailing metadata (grpc).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Response body (http) or response message bytes (grpc), as text.
    #[serde(default)]
    pub body: String,
    /// Share of calls that fail (no answer; the plugin sees a failed call after `latency`).
    #[serde(default = "zero_percent")]
    pub failure: Percent,
}

fn zero_percent() -> Percent {
    "0%".parse()
        .unwrap_or_else(|_| unreachable!("0% is a valid percentage"))
}

/// A latency distribution. Samples are clamped at zero. Written as a map with one key:
/// `{fixed: 20ms}`, `{uniform: {min: 10ms, max: 30ms}}`, `{normal: {mean: 20ms, stddev: 5ms}}`
/// or `{lognormal: {median: 20ms, sigma: 0.5}}`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(try_from = "LatencyRepr")]
pub enum Latency {
    /// Always the same.
    Fixed(Span),
    /// Uniform between `min` and `max`.
    Uniform {
        /// Lowest value.
        min: Span,
        /// Highest value.
        max: Span,
    },
    /// Normal with `mean` and `stddev`.
    Normal {
        /// Mean.
        mean: Span,
        /// Standard deviation.
        stddev: Span,
    },
    /// Log-normal with the given `median` and shape `sigma` (the tail grows with sigma).
    Lognormal {
        /// Median.
        median: Span,
        /// Standard deviation of the underlying normal.
        sigma: f64,
    },
}

/// The YAML form of [`Latency`] (serde_yaml 0.9 wants `!tags` for enums; people write maps).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LatencyRepr {
    #[serde(default)]
    fixed: Option<Span>,
    #[serde(default)]
    uniform: Option<MinMax>,
    #[serde(default)]
    normal: Option<MeanStddev>,
    #[serde(default)]
    lognormal: Option<MedianSigma>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MinMax {
    min: Span,
    max: Span,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MeanStddev {
    mean: Span,
    stddev: Span,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MedianSigma {
    median: Span,
    sigma: f64,
}

impl TryFrom<LatencyRepr> for Latency {
    type Error = String;
    fn try_from(r: LatencyRepr) -> Result<Self, String> {
        let mut found = Vec::new();
        if let Some(d) = r.fixed {
            found.push(Latency::Fixed(d));
        }
        if let Some(MinMax { min, max }) = r.uniform {
            found.push(Latency::Uniform { min, max });
        }
        if let Some(MeanStddev { mean, stddev }) = r.normal {
            found.push(Latency::Normal { mean, stddev });
        }
        if let Some(MedianSigma { median, sigma }) = r.lognormal {
            found.push(Latency::Lognormal { median, sigma });
        }
        match found.as_slice() {
            [one] => Ok(*one),
            _ => Err("a latency is one of `fixed: 20ms`, `uniform: {min, max}`, `normal: {mean, stddev}`, `lognormal: {median, sigma}`".into()),
        }
    }
}

impl Default for Latency {
    fn default() -> Self {
        Latency::Fixed(Span::default())
    }
}

/// How the service behind the chain answers.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// Status mix, e.g. `{200: 95%, 503: 5%}`; must add up to 100%.
    #[serde(default = "default_status_mix")]
    pub status: BTreeMap<u16, Percent>,
    /// Time from forwarding to the response headers.
    #[serde(default)]
    pub latency: Latency,
    /// Response body size in bytes.
    #[serde(default)]
    pub body_bytes: usize,
    /// Extra response headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Connection failures (the proxy answers 503 in place of the upstream).
    #[serde(default)]
    pub failures: Failures,
}

fn default_status_mix() -> BTreeMap<u16, Percent> {
    BTreeMap::from([(200, "100%".parse().unwrap_or_else(|_| unreachable!()))])
}

impl Default for Upstream {
    fn default() -> Self {
        Upstream {
            status: default_status_mix(),
            latency: Latency::default(),
            body_bytes: 0,
            headers: BTreeMap::new(),
            failures: Failures::default(),
        }
    }
}

/// Upstream failures, as shares of forwarded requests.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Failures {
    /// Connection refused: 503 at once (`upstream connect error`).
    #[serde(default = "zero_percent")]
    pub connect: Percent,
    /// Reset after the latency, before headers: 503 (`upstream reset`).
    #[serde(default = "zero_percent")]
    pub reset: Percent,
}

impl Default for Failures {
    fn default() -> Self {
        Failures {
            connect: zero_percent(),
            reset: zero_percent(),
        }
    }
}

/// The shape of a request. Strings may use `{{client}}` (client number), `{{ip}}` (client
/// address), `{{seq}}` (request number in the run) and `{{phase}}` (phase name).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    /// `:method`. Default `GET`.
    #[serde(default = "default_method")]
    pub method: String,
    /// `:path`. Default `/`.
    #[serde(default = "default_path")]
    pub path: String,
    /// `:authority`. Default `example.com`.
    #[serde(default = "default_authority")]
    pub authority: String,
    /// `:scheme`. Default `http`.
    #[serde(default = "default_scheme")]
    pub scheme: String,
    /// Other request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Who sends the requests.
    #[serde(default)]
    pub clients: Clients,
    /// Request body size in bytes (0: headers only).
    #[serde(default)]
    pub body_bytes: usize,
    /// `destination.address` of the connection. Default `10.0.0.2:8080`.
    #[serde(default = "default_destination")]
    pub destination: String,
}

fn default_method() -> String {
    "GET".into()
}
fn default_path() -> String {
    "/".into()
}
fn default_authority() -> String {
    "example.com".into()
}
fn default_scheme() -> String {
    "http".into()
}
fn default_destination() -> String {
    "10.0.0.2:8080".into()
}

/// A pool of client addresses. Each request picks one client uniformly.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Clients {
    /// Addresses taken in order from this block (IPv4 or IPv6), e.g. `10.1.0.0/24`.
    #[serde(default)]
    pub cidr: Option<String>,
    /// How many clients to take from `cidr`. Default: 1.
    #[serde(default)]
    pub count: Option<u32>,
    /// Explicit addresses (instead of `cidr`).
    #[serde(default)]
    pub list: Vec<String>,
}

impl Default for Clients {
    fn default() -> Self {
        Clients {
            cidr: None,
            count: None,
            list: vec!["10.1.0.1".into()],
        }
    }
}

/// How arrivals are spaced within a phase.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Arrival {
    /// Exactly 1/rate apart.
    #[default]
    Even,
    /// Exponential gaps (a Poisson process) with the phase's mean rate.
    Poisson,
}

/// A stretch of traffic.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    /// Label for reports.
    pub name: String,
    /// Length in virtual time.
    pub duration: Span,
    /// Mean request rate (`0/s`: an idle phase, ticks still fire).
    pub rate: Rate,
    /// Spacing of arrivals.
    #[serde(default)]
    pub arrival: Arrival,
    /// Template weights, e.g. `{browse: 3, checkout: 1}`. Default: every template, equal weight.
    #[serde(default)]
    pub templates: BTreeMap<String, u32>,
}
