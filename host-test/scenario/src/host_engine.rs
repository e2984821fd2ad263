//! The [`Engine`] over meshward-host: a host on a virtual clock with the scenario's callout
//! clusters, the plugin chain loaded (configuration checked), and one `Worker` per worker
//! index, all advanced together. Runs any proxy-wasm plugin; knows none of their configs.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meshward_host::{
    CalloutReply, FailStrategy, Flow, GrpcCallRequest, GrpcReply, Host, HttpCallRequest,
    HttpResponse, LogLevel, MetricValue, PluginSpec, StreamId, StreamProps, VirtualClock, Worker,
};

use crate::dist::Draw;
use crate::engine::{
    Engine, Level, LogLine, MetricKind, MetricSample, Response, Step, StreamKey, Trap,
};
use crate::error::RunError;
use crate::model::{Cluster, ClusterKind, FailStrategyName, Scenario};
use crate::report::PluginInfo;
use crate::traffic::Request;

/// Virtual time starts here (2026-01-01T00:00:00Z), so runs are the same on every machine.
pub const START_UNIX_NANOS: u64 = 1_767_225_600_000_000_000;

/// A plugin ready to load: bytes and configuration resolved.
#[derive(Clone, Debug)]
pub struct ChainPlugin {
    /// Name (Istio: the WasmPlugin's name).
    pub name: String,
    /// root_id.
    pub root_id: String,
    /// vm_id.
    pub vm_id: String,
    /// The module.
    pub wasm: Vec<u8>,
    /// PLUGIN_CONFIGURATION bytes.
    pub config: Vec<u8>,
    /// Failure policy.
    pub fail_strategy: FailStrategyName,
    /// Where it came from, for the report.
    pub source: String,
}

impl ChainPlugin {
    /// The report's view of this plugin.
    pub fn info(&self) -> PluginInfo {
        PluginInfo {
            name: self.name.clone(),
            root_id: self.root_id.clone(),
            source: self.source.clone(),
        }
    }
}

/// Resolves the scenario's `plugins:` against `base` (the scenario file's directory);
/// `builtin` maps a `module:` name to its bytes.
pub fn resolve_plugins(
    scenario: &Scenario,
    base: &Path,
    builtin: &dyn Fn(&str) -> Option<Vec<u8>>,
) -> Result<Vec<ChainPlugin>, RunError> {
    scenario
        .plugins
        .iter()
        .map(|p| {
            let (wasm, source, default_name) = match (&p.path, &p.module) {
                (Some(path), _) => {
                    let full = base.join(path);
                    let bytes = std::fs::read(&full).map_err(|source| RunError::Read {
                        what: "plugin",
                        path: full.display().to_string(),
                        source,
                    })?;
                    let stem = full
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    (bytes, full.display().to_string(), stem)
                }
                (None, Some(m)) => {
                    let bytes = builtin(m)
                        .ok_or_else(|| RunError::Host(format!("no built-in module `{m}`")))?;
                    (bytes, format!("builtin:{m}"), m.clone())
                }
                (None, None) => {
                    return Err(RunError::Host("a plugin needs `path` or `module`".into()))
                }
            };
            let config = match (&p.config, &p.config_file) {
                (Some(v), _) => serde_json::to_vec(v)
                    .map_err(|e| RunError::Host(format!("plugin config: {e}")))?,
                (None, Some(f)) => {
                    let full = base.join(f);
                    std::fs::read(&full).map_err(|source| RunError::Read {
                        what: "plugin config",
                        path: full.display().to_string(),
                        source,
                    })?
                }
                (None, None) => Vec::new(),
            };
            Ok(ChainPlugin {
                name: p.name.clone().unwrap_or(default_name),
                root_id: p.root_id.clone().unwrap_or_default(),
                vm_id: p.vm_id.clone().unwrap_or_default(),
                wasm,
                config,
                fail_strategy: p.fail_strategy,
                source,
            })
        })
        .collect()
}

/// The engine: a host, its plugins and its workers.
pub struct HostEngine {
    host: Host,
    workers: Vec<Worker>,
    now: Duration,
    trap_cursor: u64,
    traps_dropped: u64,
}

impl std::fmt::Debug for HostEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostEngine")
            .field("workers", &self.workers.len())
            .field("now", &self.now)
            .finish()
    }
}

impl HostEngine {
    /// Builds the host (virtual clock, the scenario's clusters), loads `chain` (a rejected
    /// configuration is an error carrying the plugin's log lines) and starts `workers` workers.
    pub fn new(
        scenario: &Scenario,
        chain: &[ChainPlugin],
        workers: usize,
    ) -> Result<Self, RunError> {
        if chain.is_empty() {
            return Err(RunError::NoPlugins);
        }
        let clock = VirtualClock::new(START_UNIX_NANOS);
        let mut b = Host::builder().clock(clock).random_seed(scenario.seed);
        for (i, (name, c)) in scenario.clusters.iter().enumerate() {
            let draw = Arc::new(Mutex::new(Draw::new(scenario.seed, 100 + i as u64)));
            b = match c.kind {
                ClusterKind::Http => b.http_cluster(name, http_handler(c.clone(), draw)),
                ClusterKind::Grpc => b.grpc_cluster(name, grpc_handler(c.clone(), draw)),
            };
        }
        let host = b.build().map_err(|e| RunError::Host(e.to_string()))?;
        let mut plugins = Vec::new();
        for p in chain {
            let spec = PluginSpec::new(p.name.clone(), p.wasm.clone())
                .root_id(p.root_id.clone())
                .vm_id(p.vm_id.clone())
                .plugin_config(p.config.clone())
                .fail_strategy(match p.fail_strategy {
                    FailStrategyName::FailClosed => FailStrategy::FailClosed,
                    FailStrategyName::FailOpen => FailStrategy::FailOpen,
                    FailStrategyName::FailReload => FailStrategy::FailReload,
                });
            let plugin = host.load(spec).map_err(|e| RunError::Load {
                plugin: p.name.clone(),
                message: e.to_string(),
            })?;
            plugins.push(plugin);
        }
        let workers = (0..workers.max(1))
            .map(|_| host.worker(&plugins))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| RunError::Host(e.to_string()))?;
        Ok(HostEngine {
            host,
            workers,
            now: Duration::ZERO,
            trap_cursor: 0,
            traps_dropped: 0,
        })
    }

    /// The host (for readback beyond the report: shared data, Prometheus text).
    pub fn host(&self) -> &Host {
        &self.host
    }

    fn worker(&mut self, i: usize) -> Result<&mut Worker, RunError> {
        self.workers
            .get_mut(i)
            .ok_or_else(|| RunError::Host(format!("no worker {i}")))
    }
}

fn http_handler(
    c: Cluster,
    draw: Arc<Mutex<Draw>>,
) -> impl Fn(&HttpCallRequest) -> CalloutReply + Send + Sync {
    move |_req| {
        let mut d = draw.lock().unwrap_or_else(|p| p.into_inner());
        let after = d.latency(&c.latency);
        if d.chance(c.failure.fraction()) {
            return CalloutReply::Fail { after };
        }
        let mut response = HttpResponse::new(c.status.unwrap_or(200), c.body.clone().into_bytes());
        for (k, v) in &c.headers {
            response = response.header(k, v);
        }
        CalloutReply::Respond { after, response }
    }
}

fn grpc_handler(
    c: Cluster,
    draw: Arc<Mutex<Draw>>,
) -> impl Fn(&GrpcCallRequest) -> Option<GrpcReply> + Send + Sync {
    move |_req| {
        let mut d = draw.lock().unwrap_or_else(|p| p.into_inner());
        let after = d.latency(&c.latency);
        if d.chance(c.failure.fraction()) {
            return Some(GrpcReply::error(14, "upstream connect error").after(after));
        }
        let mut reply = GrpcReply::ok(c.body.clone().into_bytes()).after(after);
        reply.status = c.grpc_status.unwrap_or(0);
        for (k, v) in &c.headers {
            reply.trailing_metadata.add(k.as_bytes(), v.as_bytes());
        }
        Some(reply)
    }
}

fn step(flow: Flow) -> Step {
    match flow {
        Flow::Continue => Step::Continue,
        Flow::Paused { .. } => Step::Paused,
        Flow::LocalReply(r) => Step::LocalReply {
            status: u16::try_from(r.status).unwrap_or(0),
            details: r.details.clone(),
        },
        Flow::Reset => Step::Reset,
    }
}

fn host_err(e: meshward_host::HostError) -> RunError {
    RunError::Host(e.to_string())
}

fn pairs(h: &[(String, String)]) -> Vec<(&str, &str)> {
    h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

impl Engine for HostEngine {
    fn workers(&self) -> usize {
        self.workers.len()
    }

    fn advance_to(&mut self, to: Duration) -> Result<(), RunError> {
        let d = to.saturating_sub(self.now);
        let mut refs: Vec<&mut Worker> = self.workers.iter_mut().collect();
        self.host.advance(d, &mut refs);
        self.now = self.now.max(to);
        Ok(())
    }

    fn next_event(&mut self) -> Option<Duration> {
        self.workers
            .iter_mut()
            .filter_map(Worker::next_due)
            .min()
            .map(|t| Duration::from_nanos(t.saturating_sub(START_UNIX_NANOS)))
    }

    fn start(&mut self, worker: usize, r: &Request) -> Result<(StreamKey, Step), RunError> {
        let w = self.worker(worker)?;
        let id = w.open_http_stream(
            StreamProps::new()
                .source_address(&r.source)
                .destination_address(&r.destination),
        );
        let eos = r.body_bytes == 0;
        let mut flow = w
            .request_headers(id, &pairs(&r.headers), eos)
            .map_err(host_err)?;
        if !eos && matches!(flow, Flow::Continue | Flow::Paused { .. }) {
            let body = vec![b'x'; r.body_bytes];
            let after_body = w.request_body(id, &body, true).map_err(host_err)?;
            if !matches!(flow, Flow::Paused { .. }) || !matches!(after_body, Flow::Continue) {
                flow = after_body;
            }
        }
        Ok(((worker, id.0), step(flow)))
    }

    fn respond(&mut self, (worker, id): StreamKey, resp: &Response) -> Result<Step, RunError> {
        let w = self.worker(worker)?;
        let id = StreamId(id);
        let eos = resp.body.is_empty();
        let mut flow = w
            .response_headers(id, &pairs(&resp.headers), eos)
            .map_err(host_err)?;
        if !eos && matches!(flow, Flow::Continue | Flow::Paused { .. }) {
            let after_body = w.response_body(id, &resp.body, true).map_err(host_err)?;
            if !matches!(flow, Flow::Paused { .. }) || !matches!(after_body, Flow::Continue) {
                flow = after_body;
            }
        }
        Ok(step(flow))
    }

    fn status(&mut self, (worker, id): StreamKey) -> Step {
        let Some(s) = self
            .workers
            .get(worker)
            .and_then(|w| w.stream(StreamId(id)))
        else {
            return Step::Reset;
        };
        if let Some(r) = s.local_reply() {
            return Step::LocalReply {
                status: u16::try_from(r.status).unwrap_or(0),
                details: r.details.clone(),
            };
        }
        if s.reset() {
            return Step::Reset;
        }
        if s.paused() {
            return Step::Paused;
        }
        Step::Continue
    }

    fn finish(&mut self, (worker, id): StreamKey) -> Result<Option<u16>, RunError> {
        let w = self.worker(worker)?;
        let id = StreamId(id);
        let done = w.stream(id).is_some_and(|s| s.complete());
        if !done {
            w.complete(id).map_err(host_err)?;
        }
        let status = w.stream(id).and_then(|s| match s.local_reply() {
            Some(r) => u16::try_from(r.status).ok(),
            None => s
                .response_headers()
                .get(":status")
                .and_then(|v| v.parse().ok()),
        });
        w.release(id);
        Ok(status)
    }

    fn take_logs(&mut self) -> Vec<LogLine> {
        self.host
            .take_logs()
            .into_iter()
            .map(|r| LogLine {
                at_ms: crate::report::round3(r.at.saturating_sub(START_UNIX_NANOS) as f64 / 1e6),
                plugin: r.plugin,
                worker: r.worker,
                level: match r.level {
                    LogLevel::Trace => Level::Trace,
                    LogLevel::Debug => Level::Debug,
                    LogLevel::Info => Level::Info,
                    LogLevel::Warn => Level::Warn,
                    LogLevel::Error => Level::Error,
                    LogLevel::Critical => Level::Critical,
                },
                message: r.message,
            })
            .collect()
    }

    fn take_traps(&mut self) -> Vec<Trap> {
        let batch = self.host.traps_since(self.trap_cursor);
        self.trap_cursor = batch.next;
        self.traps_dropped += batch.missed;
        batch
            .traps
            .into_iter()
            .map(|t| Trap {
                plugin: t.plugin,
                worker: t.worker,
                callback: t.callback,
                message: t.message,
            })
            .collect()
    }

    fn take_dropped_traps(&mut self) -> u64 {
        std::mem::take(&mut self.traps_dropped)
    }

    fn metrics(&self) -> Vec<(String, MetricSample)> {
        self.host
            .metrics()
            .all()
            .into_iter()
            .map(|(name, v)| {
                let s = match v {
                    MetricValue::Counter(n) => MetricSample {
                        kind: MetricKind::Counter,
                        value: n as f64,
                    },
                    MetricValue::Gauge(n) => MetricSample {
                        kind: MetricKind::Gauge,
                        value: n as f64,
                    },
                    MetricValue::Histogram { count, .. } => MetricSample {
                        kind: MetricKind::Histogram,
                        value: count as f64,
                    },
                };
                (name, s)
            })
            .collect()
    }
}

/// Loads `chain` into a fresh host and runs `scenario` on `workers` workers.
pub fn run_chain(
    scenario: &Scenario,
    chain: &[ChainPlugin],
    workers: usize,
    log_cap: usize,
    progress: Option<&mut dyn FnMut(crate::Progress)>,
) -> Result<crate::Report, RunError> {
    let mut engine = HostEngine::new(scenario, chain, workers)?;
    let infos = chain.iter().map(ChainPlugin::info).collect();
    crate::run(
        scenario,
        &mut engine,
        infos,
        crate::RunOptions {
            workers,
            log_cap,
            progress,
        },
    )
}
